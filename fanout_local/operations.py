"""What the operator commands do, for a deployed stack or the local one alike (only endpoints differ):
find the stack's resources, submit a file, read jobs and their results, redrive failed chunks, and
validate a file with no AWS at all.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from fanout import ids
from fanout.aws import client
from fanout.chunking import ChunkPlanner, StagedChunk, Unstored
from fanout.destinations import Destination
from fanout.models import ChunkMessage, ChunkState, JobStatus, Rejection, Route
from fanout.options import DEFAULT_TOLERATED_INVALID_PERCENT, OptionsError, normalise
from fanout.planning import Plan, plan_of, plan_rows, split_problem, tolerated_percent
from fanout.providers import provider_for
from fanout.quotas import plan_note
from fanout.reading import FileFormatError, FileInfo, LostRows, open_rows
from fanout.routing import RouteError, route_from_key
from fanout.staging import chunk_result_key, presign_get, result_key, symplify_file_key
from fanout.store import DynamoJobStore, Job
from fanout.validation import REASON_COLUMN, column_mapping, file_problem
from fanout_local.deploy import REPO


def state_file() -> Path:
    """Where `fanout local up` leaves its endpoint and outputs (FANOUT_STATE_FILE moves it, e.g. in tests)."""
    return Path(os.environ.get("FANOUT_STATE_FILE", REPO / ".local" / "stack.json"))


REDRIVE_PRESIGN_SECONDS = 86400


class OperatorError(RuntimeError):
    """A command cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class StackRef:
    """A deployed (or local) stack's resources, from its CloudFormation outputs."""

    bucket: str
    table: str
    bus: str
    queues: dict[str, str]
    job_function: str  # the splitter's, which also settles jobs (fanout.settling)

    @classmethod
    def from_outputs(cls, outputs: dict[str, str]) -> StackRef:
        try:
            queues = {d.value: outputs[f"{d.logical_name}QueueUrl"] for d in Destination}
            return cls(
                outputs["BucketName"],
                outputs["TableName"],
                outputs["EventBusName"],
                queues,
                outputs["SplitterFunctionName"],
            )
        except KeyError as exc:
            raise OperatorError(f"the stack has no output {exc}; is it a journey-fanout stack?") from None

    def store(self) -> DynamoJobStore:
        return DynamoJobStore(self.table)


def write_local_state(
    endpoint: str, region: str, outputs: dict[str, str], credentials: dict[str, str] | None = None
) -> None:
    """What `fanout local up` leaves for the other commands to find it: where it is, its outputs, and the
    local operator's keys (IAM is enforced there; they open nothing but that local stack)."""
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"endpoint": endpoint, "region": region, "outputs": outputs, "credentials": credentials or {}}
    path.write_text(json.dumps(state))
    path.chmod(0o600)


def clear_local_state() -> None:
    state_file().unlink(missing_ok=True)


def connect(stack_name: str | None, endpoint: str | None) -> StackRef:
    """The stack to operate: `--stack NAME` (CloudFormation outputs; AWS_ENDPOINT_URL honoured), or else
    the running local stack (`fanout local up`). Sets the environment boto3 reads accordingly."""
    if endpoint:
        os.environ["AWS_ENDPOINT_URL"] = endpoint
    if stack_name:
        try:
            answer = client("cloudformation").describe_stacks(StackName=stack_name)
        except Exception as exc:
            raise OperatorError(f"cannot read stack '{stack_name}': {exc}") from None
        outputs = {o["OutputKey"]: o["OutputValue"] for o in answer["Stacks"][0].get("Outputs", [])}
        return StackRef.from_outputs(outputs)
    if not state_file().exists():
        raise OperatorError(
            "no stack: pass --stack NAME for a deployed stack, or start one with `fanout local up`"
        )
    state = json.loads(state_file().read_text())
    os.environ.setdefault("AWS_ENDPOINT_URL", state["endpoint"])
    os.environ.setdefault("AWS_DEFAULT_REGION", state["region"])
    for name, value in state.get("credentials", {}).items():
        os.environ.setdefault(name, value)
    return StackRef.from_outputs(state["outputs"])


def parse_destination(value: str) -> tuple[Destination, str]:
    """`mateo/<journey>` -> (Destination.MATEO, "<journey>"); OperatorError naming the fix otherwise."""
    name, _, target = value.partition("/")
    try:
        destination = Destination(name)
    except ValueError:
        known = ", ".join(d.value for d in Destination)
        raise OperatorError(f"unknown destination '{name}': use one of {known}") from None
    if not target:
        raise OperatorError(f"give the target too: {name}/<target>")
    problem = provider_for(destination).target_problem(target)
    if problem:
        raise OperatorError(problem)
    return destination, target


def check_options(options: dict[str, str]) -> dict[str, str]:
    """`-o` options as canonical ones (the model the splitter applies to metadata); OperatorError else."""
    try:
        return normalise(options, "-o")
    except OptionsError as exc:
        raise OperatorError(str(exc)) from None


def submit(stack: StackRef, path: Path, to: str, options: dict[str, str], dry_run: bool = False) -> str:
    """Upload `path` to inbox/<destination>/<target>/<name> with its options as metadata; the job id."""
    destination, target = parse_destination(to)
    if dry_run:
        options = {**options, "dry-run": "true"}
    # Canonical, so the `columns` headers travel percent-encoded (S3 metadata carries ASCII only).
    metadata = check_options(options)
    key = f"inbox/{destination.value}/{target}/{path.name}"
    with path.open("rb") as body:
        answer = client("s3").put_object(Bucket=stack.bucket, Key=key, Body=body, Metadata=metadata)
    return ids.job_id(stack.bucket, key, answer.get("VersionId") or answer["ETag"].strip('"'))


def get_job(stack: StackRef, job_id: str) -> Job:
    job = stack.store().get_job(job_id)
    if job is None:
        raise OperatorError(f"no job {job_id} in this stack (job ids look like j-0123456789abcdef)")
    return job


def parse_status(text: str) -> JobStatus:
    """`failed` -> JobStatus.FAILED; OperatorError listing the statuses for anything else."""
    try:
        return JobStatus(text.strip().lower())
    except ValueError:
        known = ", ".join(status.value for status in JobStatus)
        raise OperatorError(f"--status '{text}' is not a job status; use one of {known}") from None


def list_jobs(
    stack: StackRef, since: timedelta | None, status: JobStatus | None, limit: int = 200
) -> list[Job]:
    jobs = stack.store().list_jobs(limit)
    if since is not None:
        cutoff = (datetime.now(UTC) - since).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        jobs = [j for j in jobs if j.created_at >= cutoff]
    if status:
        jobs = [j for j in jobs if j.status is status]
    return jobs


def parse_since(text: str) -> timedelta:
    """`30m`, `12h`, `1d`, `2w` -> timedelta."""
    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    try:
        return timedelta(**{units[text[-1]]: float(text[:-1])})
    except (KeyError, ValueError, IndexError):
        raise OperatorError(f"--since '{text}': use a number and a unit, like 30m, 12h, 1d or 2w") from None


def report_rows(stack: StackRef, job: Job, states: set[str] | None) -> Iterator[dict[str, str]]:
    """The job's per-row results (results/<job>/rows.csv), optionally only some states."""
    try:
        body = client("s3").get_object(Bucket=stack.bucket, Key=result_key(job.job_id, "rows.csv"))["Body"]
    except client("s3").exceptions.NoSuchKey:
        raise OperatorError(f"job {job.job_id} has no results yet (status {job.status.value})") from None
    reader = csv.DictReader(io.TextIOWrapper(body, encoding="utf-8"))
    for row in reader:
        if states is None or row["state"] in states:
            yield row


def rejected_rows(stack: StackRef, job: Job) -> Iterator[dict[str, str]]:
    """The job's rejected rows as they are in its file, under the file's own header, each with the reason
    it was rejected (column REASON_COLUMN, which a file dropped again never sends): fix and drop again."""
    s3 = client("s3")
    try:
        body = s3.get_object(Bucket=stack.bucket, Key=result_key(job.job_id, "rejected.csv"))["Body"]
    except s3.exceptions.NoSuchKey:
        return
    reasons: dict[int, str] = {}
    for line in csv.DictReader(io.TextIOWrapper(body, encoding="utf-8")):
        reasons.setdefault(int(line["row"]), line["reason"])
    if not reasons:
        return
    source = _source(stack, job)
    info, rows = open_rows(source, name=job.key)
    for raw in rows:
        reason = reasons.get(raw.number)
        if reason is not None:
            cells = {header: _cell(raw.fields.get(header)) for header in info.columns}
            cells.update(
                (h, _cell(v)) for h, v in raw.fields.items() if h not in cells and h != REASON_COLUMN
            )
            yield {**cells, REASON_COLUMN: reason}


def _cell(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _source(stack: StackRef, job: Job) -> Any:
    """The job's file as it was dropped (its version, when the bucket keeps versions)."""
    s3 = client("s3")
    try:
        if job.version:
            try:
                return s3.get_object(Bucket=job.bucket or stack.bucket, Key=job.key, VersionId=job.version)[
                    "Body"
                ]
            except ClientError:
                pass  # the identity was an ETag (no versioning): the key's object is the file
        return s3.get_object(Bucket=job.bucket or stack.bucket, Key=job.key)["Body"]
    except ClientError:
        raise OperatorError(
            f"the file of job {job.job_id} ({job.key}) is no longer in the bucket; results/{job.job_id}/"
            "rejected.csv still lists each rejected row's number, column, value and reason"
        ) from None


@dataclass(frozen=True)
class RedriveResult:
    chunks: int
    rows: int


def redrive(stack: StackRef, job_id: str, include_uncertain: bool = False) -> RedriveResult:
    """Send again exactly the failed (and, when asked, the uncertain) chunks of a job.

    Each chunk goes back to pending with its rows taken out of the job's counters, atomically, and its
    message is queued again; the job settles anew when they do.
    """
    store = stack.store()
    job = get_job(stack, job_id)
    if not job.status.is_final:
        raise OperatorError(f"job {job_id} is still {job.status.value}; redrive once it has settled")
    if job.split_failed:
        raise OperatorError(
            f"job {job_id} failed at the split and nothing of it was sent ({job.message}); a redrive only"
            " resends what a provider failed or left uncertain: drop a corrected file instead"
        )
    wanted = {ChunkState.FAILED} | ({ChunkState.UNCERTAIN} if include_uncertain else set())
    chunks = [c for c in store.chunks(job_id) if c.state in wanted]
    messages = []
    for chunk in chunks:
        if not chunk.message:
            raise OperatorError(f"chunk {chunk.chunk_id} has no stored message; it cannot be redriven")
        if store.reopen_chunk(chunk):
            client("s3").delete_object(Bucket=stack.bucket, Key=chunk_result_key(job_id, chunk.chunk_id))
            messages.append(_fresh(stack, ChunkMessage.from_json(chunk.message)))
    for message in messages:
        client("sqs").send_message(
            QueueUrl=stack.queues[message.destination.value], MessageBody=message.to_json()
        )
    return RedriveResult(len(messages), sum(m.rows for m in messages))


def settle(stack: StackRef, job_id: str) -> None:
    """Ask the job function to settle a job every chunk of which has settled but which has not: its
    settle's tries were spent (the failure queue's alarm, a log line naming the job), and its cause is
    fixed. The job function settles it once, under its lease; `fanout watch` follows it."""
    job = get_job(stack, job_id)
    if job.status.is_final:
        raise OperatorError(f"job {job_id} has settled already ({job.status.value}): nothing to settle")
    if job.status not in (JobStatus.SENDING, JobStatus.SETTLING) or job.chunks_settled < job.chunks_total:
        raise OperatorError(
            f"job {job_id} is {job.status.value} with {job.chunks_settled} of {job.chunks_total} chunks settled;"
            f" it settles when its last chunk does (`fanout watch {job_id}`)"
        )
    # Imported here: the CLI's module is imported again in each local Lambda worker (multiprocessing's
    # spawn), and fanout.settling brings the functions' logger, which must bind the worker's own stdout.
    from fanout.settling import HandOver

    HandOver(stack.job_function)(job_id)


def _fresh(stack: StackRef, message: ChunkMessage) -> ChunkMessage:
    """A whole-file provider's download URL may have expired since the split: presign it again."""
    if "downloadUrl" not in message.envelope:
        return message
    envelope: dict[str, Any] = dict(message.envelope)
    envelope["downloadUrl"] = presign_get(
        stack.bucket, symplify_file_key(message.job_id), REDRIVE_PRESIGN_SECONDS
    )
    return ChunkMessage(
        message.job_id,
        message.chunk_id,
        message.destination,
        message.target,
        message.key,
        message.rows,
        envelope,
        byte_range=message.byte_range,
    )


@dataclass
class Validation:
    """What `fanout validate` found: the file, counts, the column mapping, the plan, every rejected row,
    and the verdict the splitter would give (`problem`: why the job would fail; None: it would send)."""

    info: FileInfo | None
    rows_read: int
    chunks: list[StagedChunk]
    rejections: list[Rejection]
    problem: str | None = None
    quota: str | None = None  # how many UTC days the file needs at the provider's daily quota, if over one
    columns: dict[str, str | None] = field(default_factory=dict)
    plan: Plan = field(default_factory=lambda: Plan(0, 0))

    @property
    def rows_valid(self) -> int:
        return self.rows_read - len(self.rejections)


def validate_file(path: Path, to: str, options: dict[str, str], tolerated: float | None = None) -> Validation:
    """The splitter's reading, validation, chunking and verdict on a local file, with no AWS at all.

    `tolerated`: the deployment's default invalid share (TOLERATED_INVALID_PERCENT), when not the usual.
    Only what needs the stack cannot be told here: whether the same file was already sent (resend).
    """
    destination, target = parse_destination(to)
    options = check_options(options)
    try:
        route = route_from_key(f"inbox/{destination.value}/{target}/{path.name}", options) or Route(
            destination, target, options
        )
    except RouteError as exc:
        raise OperatorError(str(exc)) from None
    provider = provider_for(destination)
    chunks: list[StagedChunk] = []
    rejections: list[Rejection] = []
    with path.open("rb") as stream:
        try:
            info, rows = open_rows(stream, name=path.name, cells=True)
        except FileFormatError as exc:  # the job fails so too
            return Validation(None, 0, [], [], str(exc))
        columns = column_mapping(route, info.columns)
        problem = file_problem(provider, route, info)
        if problem:
            return Validation(info, 0, [], [], problem, columns=columns)
        planner = ChunkPlanner(provider, "j-validate", "", chunks.append, sink=Unstored(chunks.append))
        try:
            read = plan_rows(
                rows,
                route=route,
                provider=provider,
                columns=info.columns,
                job_id="j-validate",
                planner=planner,
                reject=rejections.append,
                text_rows=info.text_rows,
            )
        except FileFormatError as exc:
            return Validation(info, 0, [], [], str(exc), columns=columns)
    lost = next((r.reason for r in rejections if isinstance(r.reason, LostRows)), None)
    problem = split_problem(
        read=read,
        rejected=len(rejections),
        lost=lost,
        tolerated=tolerated_percent(
            route.options, DEFAULT_TOLERATED_INVALID_PERCENT if tolerated is None else tolerated
        ),
        rejected_at="results/<job>/rejected.csv",
    )
    valid = read - len(rejections)
    calls = valid if provider.rows_per_message else len(chunks)
    return Validation(
        info,
        read,
        chunks,
        rejections,
        problem,
        quota=plan_note(destination, valid, calls),
        columns=columns,
        plan=plan_of(provider, chunks),
    )
