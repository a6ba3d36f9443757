"""A split that continues over many invocations (fanout.continuation), on the template's stack in moto:
forced to hand over every few batches, killed at random rows and while checkpointing, its continuations
delivered twice, gzip and NDJSON, duplicates across checkpoints. Every time, each row of the file ends in
exactly one state (staged in exactly one chunk, or rejected once), the same ones a split in one go gives,
and nothing is queued before the whole file is read."""

from __future__ import annotations

import gzip
import json
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import boto3
import pytest

from fanout import ids, planning
from fanout import splitter as splitter_module
from fanout.config import SplitterConfig
from fanout.continuation import Continuation, object_from_event
from fanout.destinations import Destination
from fanout.models import ChunkMessage, JobStatus, ObjectRef, StagedRow
from fanout.reading import RawRow
from fanout.splitter import SplitInProgress, SplitOutcome, Splitter
from fanout.staging import rejected_jsonl_key, symplify_file_key
from fanout.store import DynamoJobStore, Job, _job_key, _n
from fanout_local.deployed import DeployedStack

pytestmark = pytest.mark.unit

JOURNEY = "3c90c3cc-0d44-4b50-8888-8dd25736052a"


@cache
def aws(service: str) -> Any:
    return boto3.client(service, region_name="eu-west-1")  # type: ignore[call-overload]


class Killed(BaseException):
    """The invocation dies here (out of memory, the machine gone): nothing after runs, no finally."""


@dataclass
class Invoker:
    """In memory: what the split asked to invoke, delivered by the test (`twice`: each one two times)."""

    twice: bool = False
    pending: list[dict[str, Any]] = field(default_factory=list)
    made: int = 0

    def invoke(self, payload: dict[str, Any]) -> None:
        self.made += 1
        self.pending.append(payload)
        if self.twice:
            self.pending.append(json.loads(json.dumps(payload)))


class Clock:
    """The invocation's remaining time: plenty, until `batches` stop checks have passed."""

    def __init__(self, batches: int) -> None:
        self.left = batches + 1  # the first call sets the margin

    def __call__(self) -> int:
        self.left -= 1
        return 900_000 if self.left >= 0 else 0


def put(bucket: str, key: str, body: bytes) -> ObjectRef:
    # resend=true: each test splits the same bytes more than once (in one go, and continued), on purpose.
    answer = aws("s3").put_object(Bucket=bucket, Key=key, Body=body, Metadata={"resend": "true"})
    return ObjectRef(bucket, key, answer["VersionId"])


def contacts(count: int, duplicate_every: int = 17, bad_every: int = 41) -> list[dict[str, str]]:
    """Rows with duplicates far apart (each repeats a row about a third of the file back) and bad ones."""
    rows = []
    for n in range(1, count + 1):
        email = f"user{n}@example.com"
        if n % duplicate_every == 0 and n > count // 3:
            email = f"user{n - count // 3}@example.com"
        if n % bad_every == 0:
            email = f"not-an-email-{n}"
        rows.append({"email": email, "first_name": f"User {n}"})
    return rows


def as_csv(rows: list[dict[str, str]]) -> bytes:
    return ("email,first_name\n" + "".join(f"{r['email']},{r['first_name']}\n" for r in rows)).encode()


def as_ndjson(rows: list[dict[str, str]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@dataclass
class Outcome:
    job_id: str
    status: JobStatus
    staged: Counter[int]  # row -> how many chunks hold it
    rejected: dict[int, str]  # row -> reason
    rejected_lines: int
    messages: list[ChunkMessage]
    job: Job
    items: dict[int, Any]


class Harness:
    def __init__(self, config: SplitterConfig, store: DynamoJobStore, bucket: str) -> None:
        self.config = config
        self.store = store
        self.bucket = bucket
        self.invoker = Invoker()
        self.splitter = Splitter(config, store, self.invoker)
        self.invocations = 0
        self.queued_early = False

    def deliver(self, event: dict[str, Any], batches: int) -> list[SplitOutcome]:
        """One invocation of the splitter function with this event (as the entry point dispatches it)."""
        self.invocations += 1
        clock = Clock(batches)
        continuation = Continuation.from_event(event)
        if continuation is not None:
            return [self.splitter.resume(continuation, clock)]
        handed = object_from_event(event)
        if handed is not None:
            return self.splitter.split(handed[0], clock, handed[1])
        return self.splitter.split(event["ref"], clock)

    def lapse(self, job_id: str) -> None:
        """A dead invocation's lease runs out."""
        aws("dynamodb").update_item(
            TableName=self.config.table_name,
            Key=_job_key(job_id),
            UpdateExpression="SET split_lease_until = :zero",
            ExpressionAttributeValues={":zero": _n(0)},
        )

    def run(
        self, ref: ObjectRef, batches: int, kill: Callable[[], int | None] | None = None
    ) -> tuple[str, list[SplitOutcome]]:
        """Deliver the object's event, then every continuation, until none is left. `kill()` says at
        which row (if any) the next invocation dies; a killed one is delivered again (Lambda's retry)
        after its lease lapsed."""
        events: list[dict[str, Any]] = [{"ref": ref}]
        outcomes: list[SplitOutcome] = []
        job_id = ""
        while events:
            event = events.pop(0)
            die_at = kill() if kill else None
            try:
                with killing_at(die_at):
                    got = self.deliver(event, batches)
            except Killed:
                job_id = job_id or self.only_job(ref)
                self.lapse(job_id)
                events.insert(0, event)
                continue
            except SplitInProgress:
                events.append(event)  # Lambda delivers it again later
                self.lapse(job_id or self.only_job(ref))
                continue
            outcomes += got
            job_id = job_id or got[0].job_id
            job = self.store.get_job(job_id)
            assert job is not None
            if job.status is JobStatus.SPLITTING and self.queued(peek=True):
                self.queued_early = True
            events += self.invoker.pending
            self.invoker.pending = []
        return job_id, outcomes

    def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        """Every checkpoint the split kept (killed invocations' too)."""
        listed = aws("s3").list_objects_v2(Bucket=self.bucket, Prefix=f"jobs/{job_id}/checkpoints/")
        keys = [item["Key"] for item in listed.get("Contents", []) if item["Key"].endswith("/state.json")]
        return [json.loads(aws("s3").get_object(Bucket=self.bucket, Key=key)["Body"].read()) for key in keys]

    def only_job(self, ref: ObjectRef) -> str:
        return ids.job_id(ref.bucket, ref.key, ref.version or "")

    def queued(self, peek: bool = False) -> list[ChunkMessage]:
        url = self.config.queue_url(Destination.MATEO)
        if peek:
            attributes = aws("sqs").get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
            return [None] * int(attributes["ApproximateNumberOfMessages"])  # type: ignore[list-item]
        found: list[ChunkMessage] = []
        while True:
            answer = aws("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300)
            if not answer.get("Messages"):
                return found
            for message in answer["Messages"]:
                found.append(ChunkMessage.from_json(message["Body"]))
                aws("sqs").delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def outcome(self, job_id: str) -> Outcome:
        job = self.store.get_job(job_id)
        assert job is not None
        messages = self.queued()
        records = {c.chunk_id: c for c in self.store.chunks(job_id)}
        assert sorted(m.chunk_id for m in messages) == sorted(records)  # one message per recorded chunk
        staged: Counter[int] = Counter()
        items: dict[int, Any] = {}
        for message in messages:
            ranged = {"Range": message.byte_range} if message.byte_range else {}
            body = aws("s3").get_object(Bucket=self.bucket, Key=message.key, **ranged)["Body"].read()
            lines = body.splitlines()
            assert len(lines) == message.rows == records[message.chunk_id].rows
            for line in lines:
                row = StagedRow.from_json(line)
                staged[row.row] += 1
                item = dict(row.item)
                # Mateo's deduplication_id derives from the job and the row: the same row, the same id
                assert item.pop("deduplication_id") == ids.row_uuid(job_id, row.row)
                items[row.row] = item
        body = aws("s3").get_object(Bucket=self.bucket, Key=rejected_jsonl_key(job_id))["Body"].read()
        lines = [json.loads(line) for line in body.splitlines()]
        rejected = {line["row"]: line["reason"] for line in lines}
        return Outcome(job_id, job.status, staged, rejected, len(lines), messages, job, items)


_real_open_rows = splitter_module.open_rows


@contextmanager
def killing_at(row: int | None) -> Iterator[None]:
    """The invocation dies when it reaches the `row`-th row it reads (None: it lives)."""
    if row is None:
        yield
        return

    def open_rows(stream: Any, **kwargs: Any) -> tuple[Any, Iterator[RawRow]]:
        info, rows = _real_open_rows(stream, **kwargs)

        def dying() -> Iterator[RawRow]:
            for count, raw in enumerate(rows, 1):
                if count >= row:
                    raise Killed
                yield raw

        return info, dying()

    saved = splitter_module.open_rows
    splitter_module.open_rows = open_rows  # type: ignore[assignment]
    try:
        yield
    finally:
        splitter_module.open_rows = saved  # type: ignore[assignment]


@pytest.fixture
def harness(
    splitter_config: SplitterConfig, stack: DeployedStack, monkeypatch: pytest.MonkeyPatch
) -> Harness:
    # The files here are sized for batches of 256 rows, so that a few thousand rows stop at many batch
    # ends (a split stops only there); how many rows a batch holds is a tuning figure, not a rule.
    monkeypatch.setattr(planning, "BATCH_ROWS", 256)
    store = DynamoJobStore(splitter_config.table_name, splitter_config.retention_days)
    made = Harness(splitter_config, store, stack.bucket)
    made.queued()  # the stack is shared by the module: start with an empty queue
    return made


def reference(harness: Harness, body: bytes, name: str) -> Outcome:
    """The same file split in one go (no invoker: it never stops)."""
    one_go = Splitter(harness.config, harness.store)
    ref = put(harness.bucket, f"inbox/mateo/{JOURNEY}/{uuid.uuid4().hex[:8]}-{name}", body)
    (outcome,) = one_go.split(ref)
    return harness.outcome(outcome.job_id)


def assert_exactly_once(got: Outcome, expected: Outcome, rows: int) -> None:
    assert got.status is JobStatus.SENDING
    assert all(times == 1 for times in got.staged.values()), "a row staged twice"
    assert got.rejected_lines == len(got.rejected), "a row rejected twice"
    assert not set(got.staged) & set(got.rejected), "a row both staged and rejected"
    assert set(got.staged) | set(got.rejected) == set(range(1, rows + 1)), "a row lost"
    assert got.staged.keys() == expected.staged.keys()
    assert got.rejected == expected.rejected
    assert got.items == expected.items
    counts = got.job.counts
    assert (counts.read, counts.rejected) == (rows, len(got.rejected))
    assert got.job.chunks_total == len(got.messages)


# --- the tests ------------------------------------------------------------------------------------------


def new_ref(harness: Harness, body: bytes, name: str) -> ObjectRef:
    return put(harness.bucket, f"inbox/mateo/{JOURNEY}/{uuid.uuid4().hex[:8]}-{name}", body)


def test_a_split_forced_to_continue_every_two_batches_ends_as_one_in_one_go(harness: Harness) -> None:
    rows = contacts(3_000)
    body = as_csv(rows)
    expected = reference(harness, body, "one-go.csv")

    job_id, outcomes = harness.run(new_ref(harness, body, "contacts.csv"), batches=2)
    got = harness.outcome(job_id)

    assert_exactly_once(got, expected, len(rows))
    assert not harness.queued_early  # nothing queued before the whole file was read
    assert got.job.split_invocations == harness.invocations == len(outcomes) > 3
    assert got.job.summary()["split_invocations"] == got.job.split_invocations
    assert [o.status for o in outcomes[:-1]] == [JobStatus.SPLITTING] * (len(outcomes) - 1)
    # duplicates of rows read in an earlier invocation were caught (they span checkpoints)
    far = [row for row, reason in got.rejected.items() if reason.startswith("duplicate of row ")]
    assert far and all(row - int(got.rejected[row].split()[-1]) == 1_000 for row in far)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_split_killed_at_random_rows_loses_and_repeats_no_row(harness: Harness, seed: int) -> None:
    rows = contacts(2_500)
    body = as_csv(rows)
    expected = reference(harness, body, "one-go.csv")
    rng = random.Random(seed)
    kills = iter([rng.randrange(1, 800) if rng.random() < 0.5 else None for _ in range(40)])

    job_id, _ = harness.run(new_ref(harness, body, "killed.csv"), batches=2, kill=lambda: next(kills, None))

    assert_exactly_once(harness.outcome(job_id), expected, len(rows))


def test_a_split_killed_while_checkpointing_or_before_invoking_goes_on(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = contacts(2_000)
    body = as_csv(rows)
    expected = reference(harness, body, "one-go.csv")
    record = harness.store.record_checkpoint
    invoke = harness.invoker.invoke
    faults = iter(["before-record", None, "after-record", None, None, "before-record"])

    def dying_record(*args: Any) -> bool:
        fault = next(faults, None)
        if fault == "before-record":
            raise Killed  # the state is kept in S3 but the job still points at the last checkpoint
        done = record(*args)
        if fault == "after-record":
            harness.invoker.invoke = dying_invoke  # type: ignore[method-assign]
        return done

    def dying_invoke(payload: dict[str, Any]) -> None:
        harness.invoker.invoke = invoke  # type: ignore[method-assign]
        raise Killed  # recorded, but the continuation never went out: Lambda retries this invocation

    monkeypatch.setattr(harness.store, "record_checkpoint", dying_record)
    job_id, _ = harness.run(new_ref(harness, body, "checkpoint-kills.csv"), batches=2)

    assert_exactly_once(harness.outcome(job_id), expected, len(rows))


def test_a_continuation_delivered_twice_runs_once(harness: Harness) -> None:
    rows = contacts(2_000)
    body = as_csv(rows)
    expected = reference(harness, body, "one-go.csv")
    harness.invoker.twice = True

    job_id, outcomes = harness.run(new_ref(harness, body, "twice.csv"), batches=2)
    got = harness.outcome(job_id)

    assert_exactly_once(got, expected, len(rows))
    assert sum(o.duplicate for o in outcomes) >= harness.invoker.made  # every second delivery did nothing
    assert got.job.split_invocations == harness.invoker.made + 1


@pytest.mark.parametrize("form", ["gzip-csv", "ndjson", "gzip-ndjson", "csv"])
def test_gzip_and_ndjson_splits_continue(harness: Harness, form: str) -> None:
    rows = contacts(2_200)
    body = as_ndjson(rows) if "ndjson" in form else as_csv(rows)
    if form.startswith("gzip"):
        body = gzip.compress(body)
    expected = reference(harness, body, f"one-go.{form}")
    kills = iter([None, 300, None, None, 41, None])

    job_id, _ = harness.run(new_ref(harness, body, f"file.{form}"), batches=3, kill=lambda: next(kills, None))
    got = harness.outcome(job_id)

    assert_exactly_once(got, expected, len(rows))
    assert got.job.split_invocations >= 3
    offsets = [checkpoint["offset"] for checkpoint in harness.checkpoints(job_id)]
    if form.startswith("gzip"):  # read again and skipped: no offset into the compressed object
        assert offsets and all(offset is None for offset in offsets)
    else:  # each continuation read from where the last row ended (a ranged GET)
        assert offsets and all(isinstance(offset, int) and offset > 0 for offset in offsets)


def test_symplifys_whole_file_is_written_across_continuations(harness: Harness) -> None:
    body = ("id,email\n" + "".join(f"{n},user{n}@example.com\n" for n in range(1, 1_501))).encode()
    ref = put(harness.bucket, f"inbox/symplify/1001/{uuid.uuid4().hex[:8]}-c.csv", body)

    job_id, outcomes = harness.run(ref, batches=1)

    job = harness.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.SENDING and len(outcomes) >= 3
    text = aws("s3").get_object(Bucket=harness.bucket, Key=symplify_file_key(job_id))["Body"].read()
    ids_sent = [json.loads(line)["id"] for line in text.splitlines()]
    assert ids_sent == [str(n) for n in range(1, 1_501)]
    aws("sqs").purge_queue(QueueUrl=harness.config.queue_url(Destination.SYMPLIFY))


def test_a_continuation_for_a_job_another_invocation_holds_comes_back_and_a_stale_one_does_nothing(
    harness: Harness,
) -> None:
    ref = new_ref(harness, as_csv(contacts(1_200)), "held.csv")
    (first,) = harness.deliver({"ref": ref}, batches=1)
    (payload,) = harness.invoker.pending
    harness.invoker.pending = []
    continuation = Continuation.from_event(payload)
    assert first.status is JobStatus.SPLITTING and continuation is not None
    # a twin delivery got there first and holds the job: this one must come back later
    assert harness.store.claim_split(first.job_id, continuation.generation, "twin", 60)
    with pytest.raises(SplitInProgress):
        harness.splitter.resume(continuation, Clock(1))
    harness.lapse(first.job_id)  # the twin died: the redelivery takes over from the checkpoint
    (second,) = [harness.splitter.resume(continuation, Clock(1))]
    assert (second.status, second.duplicate) == (JobStatus.SPLITTING, False)
    # the first continuation again, now stale (the split moved past it, and another invocation holds it)
    assert harness.store.claim_split(first.job_id, continuation.generation + 1, "next", 60)
    stale = harness.splitter.resume(continuation, Clock(1))
    assert (stale.status, stale.duplicate) == (JobStatus.SPLITTING, True)
    harness.queued()


def test_the_real_invoker_asks_lambda_for_an_asynchronous_invocation_of_the_function_itself(
    stack: DeployedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fanout import continuation

    payload = Continuation("j-1", 3, "jobs/j-1/checkpoints/00003-x/state.json").payload()
    calls: list[dict[str, Any]] = []

    class FakeLambda:
        def invoke(self, **kwargs: Any) -> None:
            calls.append(kwargs)

    monkeypatch.setattr(
        continuation, "client", lambda service: FakeLambda() if service == "lambda" else aws(service)
    )
    lambda_invoker = continuation.invoker_from_environment(
        {"AWS_LAMBDA_FUNCTION_NAME": "stack-SplitterFunction-X"}
    )
    lambda_invoker.invoke(payload)
    assert calls == [
        {
            "FunctionName": "stack-SplitterFunction-X",
            "InvocationType": "Event",
            "Payload": json.dumps(payload).encode(),
        }
    ]


def test_a_file_with_several_routes_hands_the_next_route_to_a_new_invocation(harness: Harness) -> None:
    prefix = f"inbox/vip-{uuid.uuid4().hex[:8]}/"
    routes = {
        "routes": [
            {
                "prefix": prefix,
                "destinations": [
                    {"destination": "mateo", "target": JOURNEY},
                    {"destination": "altcraft", "target": "12"},
                ],
            }
        ]
    }
    key = harness.config.routes_key
    aws("s3").put_object(Bucket=harness.bucket, Key=key, Body=json.dumps(routes).encode())
    try:
        rows = contacts(1_500, duplicate_every=10**9, bad_every=10**9)
        ref = put(harness.bucket, f"{prefix}weekly.csv", as_csv(rows))
        _, outcomes = harness.run(ref, batches=2)
    finally:
        aws("s3").delete_object(Bucket=harness.bucket, Key=key)
    final = [o for o in outcomes if o.status is JobStatus.SENDING]
    assert len({o.job_id for o in final}) == 2  # both routes' jobs were split to the end
    for outcome in final:
        job = harness.store.get_job(outcome.job_id)
        assert job is not None and job.counts.read == 1_500 and job.split_invocations > 1
    harness.queued()
    aws("sqs").purge_queue(QueueUrl=harness.config.queue_url(Destination.ALTCRAFT))


def test_the_same_bytes_after_a_continued_split_are_not_sent_again(harness: Harness) -> None:
    """A continued split read the file in parts; its content hash (taken in a pass of its own) is the
    same as a one-go split's, so the same bytes dropped again are refused."""
    body = as_csv(contacts(1_200))
    first_key = f"inbox/mateo/{JOURNEY}/{uuid.uuid4().hex[:8]}-first.csv"
    first = ObjectRef(
        harness.bucket,
        first_key,
        aws("s3").put_object(Bucket=harness.bucket, Key=first_key, Body=body)["VersionId"],
    )
    first_job, outcomes = harness.run(first, batches=1)
    assert len(outcomes) > 1 and outcomes[-1].status is JobStatus.SENDING
    harness.queued()

    again_key = f"inbox/mateo/{JOURNEY}/{uuid.uuid4().hex[:8]}-again.csv"
    again = ObjectRef(
        harness.bucket,
        again_key,
        aws("s3").put_object(Bucket=harness.bucket, Key=again_key, Body=body)["VersionId"],
    )
    again_job, _ = harness.run(again, batches=100)

    refused = harness.store.get_job(again_job)
    assert refused is not None and refused.status is JobStatus.FAILED
    assert f"already sent to mateo/{JOURNEY} by job {first_job}" in refused.message
    assert harness.queued() == []
