"""The job store: jobs, their chunks and their counters in one DynamoDB table.

Layout (single table, `pk`/`sk`):
  JOB#<id> / JOB            the job: status, source, destination, target, counters, timings
  JOB#<id> / CHUNK#<chunk>  one staged chunk: state, rows, attempts, lease; `turn` (its live follow-up
                            message, see ChunkMessage), `batch_id`/`batch_started` (a provider batch
                            started for it, whose status is polled)
  FILE#<sha256> / TO#<dest>/<target>  which job sends that content there, and when (sent_files.py)
  RATE#<dest> / next        the pacing mark of one destination: when its next call may start (pacing.py)
`gsi1` (gsi1pk = "JOBS", gsi1sk = created_at#id) lists jobs by date.

Every state change is a conditional write, so two Lambda instances that see the same SQS message, or a
duplicate S3 event, cannot both act.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from functools import cached_property, partial
from itertools import batched
from typing import Any

from botocore.exceptions import ClientError

from fanout.aws import client
from fanout.background import in_flight
from fanout.models import ChunkState, Counts, JobStatus
from fanout.sent_files import FileClaim

# A job's `chunks_last` is its chunks_total - 1, stored wherever chunks_total is (the split's finish, a
# chunk split in halves): while fewer chunks than that have settled, the one being settled is not the last.
ANOTHER_CHUNK_OPEN = "chunks_settled < chunks_last"


def iso_utc(epoch: float, timespec: str = "seconds") -> str:
    """`epoch` as an ISO 8601 UTC time, e.g. 2026-11-27T00:00:00Z."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def now_iso() -> str:
    return iso_utc(time.time(), "milliseconds")


@dataclass(slots=True)
class Job:
    """A job as stored; counters are the row counts so far."""

    job_id: str
    status: JobStatus
    bucket: str
    key: str
    destination: str
    target: str
    created_at: str = field(default_factory=now_iso)
    version: str = ""
    counts: Counts = field(default_factory=Counts)
    chunks_total: int = 0
    chunks_settled: int = 0
    encoding: str = ""
    file_format: str = ""
    message: str = ""
    dry_run: bool = False
    finished_at: str = ""
    options: dict[str, str] = field(default_factory=dict)
    # A split that continues over several invocations (fanout.continuation): how many ran, which
    # checkpoint is current, where it is kept, and the invocation holding the split (its token).
    split_invocations: int = 0
    split_generation: int = 0
    checkpoint_key: str = ""
    split_owner: str = ""
    split_failed: bool = False  # failed at the split (bad file, options, target): no row of it may be sent
    queued: bool = False  # every chunk's message went out (set once the split has queued them all)

    def summary(self) -> dict[str, Any]:
        """The job as users see it (summary.json, events, `fanout status --json`): no contact data."""
        return {
            "job_id": self.job_id,
            "status": self.status.value,
            "source": {"bucket": self.bucket, "key": self.key, "version": self.version},
            "destination": self.destination,
            "target": self.target,
            "rows_read": self.counts.read,
            "rows_sent": self.counts.sent,
            "rows_rejected": self.counts.rejected,
            "rows_failed": self.counts.failed,
            "rows_uncertain": self.counts.uncertain,
            "rows_planned": self.counts.planned,
            "chunks_total": self.chunks_total,
            "chunks_settled": self.chunks_settled,
            "split_invocations": self.split_invocations,
            "encoding": self.encoding,
            "format": self.file_format,
            "message": self.message,
            "dry_run": self.dry_run,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


@dataclass(slots=True)
class Chunk:
    job_id: str
    chunk_id: str
    key: str
    rows: int
    state: ChunkState = ChunkState.PENDING
    attempts: int = 0
    lease_until: float = 0.0
    last_error: str = ""
    message: str = ""  # the chunk's SQS message body, kept so a redrive can send it again
    sent: int = 0
    failed: int = 0
    uncertain: int = 0
    turn: str = ""  # the follow-up message now live for the chunk ("" : the first one)
    batch_id: str = ""  # the provider batch started for this chunk, whose status decides its rows
    batch_started: float = 0.0  # when that batch was started (epoch seconds)
    byte_range: str | None = None  # the chunk's bytes of `key` when packed with others (None: all of it)
    # Settled with every row alike: each row's answer (its state the chunk's); no result file was written,
    # its rows are its staged lines (`results.py`). None: a result file holds each row's answer.
    answer: str | None = None


class Claim(StrEnum):
    """What claiming a chunk for sending found."""

    CLAIMED = "claimed"  # ours now; no earlier attempt can have reached the provider
    RESUMED = "resumed"  # ours now; an earlier delivery saved the answers it got (progress) and let go
    CLAIMED_AFTER_CRASH = "claimed_after_crash"  # ours now; an earlier attempt died mid-call
    SETTLED = "settled"  # already sent/failed/uncertain/split: nothing to do
    BUSY = "busy"  # another instance holds a live lease
    MISSING = "missing"  # no such chunk
    STALE = "stale"  # the message is not the chunk's live one (a later follow-up replaced it): drop it


@dataclass(frozen=True, slots=True)
class Settlement:
    """A chunk's final state and how many of its rows ended in each state."""

    state: ChunkState
    sent: int = 0
    failed: int = 0
    uncertain: int = 0
    error: str = ""
    answer: str | None = None  # the one answer every row got, in the row state of `state` (Chunk.answer)


class JobStore(ABC):
    """What the logic needs from storage."""

    @abstractmethod
    def create_job(self, job: Job, lease_seconds: int) -> bool:
        """Store a new job; False when it exists already and is not an abandoned split."""

    @abstractmethod
    def renew_split_lease(self, job_id: str, lease_seconds: int, owner: str = "") -> None:
        """Keep a live split's claim on its job (a split whose lease lapses is redone by the next event);
        with `owner`, only while that invocation holds it (SplitLost otherwise)."""

    @abstractmethod
    def get_job(self, job_id: str) -> Job | None: ...

    @abstractmethod
    def claim_split(self, job_id: str, generation: int, owner: str, lease_seconds: int) -> bool:
        """Take a splitting job at checkpoint `generation` for invocation `owner`, when no live
        invocation holds it (its lease lapsed or a checkpoint freed it); counts the invocation."""

    @abstractmethod
    def record_checkpoint(self, job_id: str, generation: int, owner: str, key: str) -> bool:
        """Make the checkpoint kept at `key` the job's current one (`generation` + 1) and free the job for
        the invocation that continues from it; False when `owner` no longer holds the job."""

    @abstractmethod
    def replace_chunks(self, chunks: Iterable[Chunk]) -> None:
        """Record a split's chunks as pending, overwriting what an interrupted invocation recorded (made
        as they are written: a 10M-row file has 20,000)."""

    @abstractmethod
    def prune_chunks(self, job_id: str, keep: set[str]) -> int:
        """Delete the job's chunk records not in `keep` (left by an invocation killed while recording);
        how many were deleted."""

    @abstractmethod
    def put_chunk(self, chunk: Chunk) -> None:
        """Record a staged chunk as pending, unless it exists already (a resumed split)."""

    @abstractmethod
    def finish_split(self, job: Job) -> None:
        """Store the split's counts, plan and next status (sending, planned or failed)."""

    @abstractmethod
    def mark_queued(self, job_id: str) -> None:
        """Every chunk message of the job went out."""

    @abstractmethod
    def claim_chunk(self, job_id: str, chunk_id: str, lease_seconds: int, turn: str | None = None) -> Claim:
        """Take the chunk for one delivery; `turn`: the message's (None for the chunk's first message),
        which must be the chunk's live one."""

    @abstractmethod
    def get_chunk(self, job_id: str, chunk_id: str) -> Chunk | None: ...

    @abstractmethod
    def record_batch(self, job_id: str, chunk_id: str, batch_id: str, started: float) -> bool:
        """Note on the chunk we hold the provider batch just started for it, so that no later delivery
        starts another; False when the chunk is no longer ours (in flight)."""

    @abstractmethod
    def note_job(self, job_id: str, message: str) -> None:
        """A note on a job still sending (e.g. what it waits for), shown as its message until it settles."""

    @abstractmethod
    def release_chunk(
        self, job_id: str, chunk_id: str, error: str, progress_saved: bool = False, turn: str | None = None
    ) -> None:
        """Give the chunk back for a later delivery; `progress_saved`: this delivery saved the answers it
        got, so the next claim says RESUMED (and only then is the progress read); `turn`: the follow-up
        message just queued for it, from now on its only live message."""

    @abstractmethod
    def settle_chunk(
        self, job_id: str, chunk_id: str, settlement: Settlement, *, only_unclaimed: bool = False
    ) -> bool:
        """Move the chunk to its final state and add its row counts to the job, atomically. With
        `only_unclaimed`, only while no sender has claimed it (still pending).

        True when the job may have no chunk left open (this was its last, or the chunk was settled
        already, perhaps by a delivery that died before settling the job): its caller then tries
        `begin_settling`, which decides. False when another chunk was still open after this one."""

    @abstractmethod
    def split_chunk(self, job_id: str, chunk_id: str, halves: list[Chunk]) -> None:
        """Replace a too-large chunk by its halves, atomically (the job's plan grows by one)."""

    @abstractmethod
    def reopen_chunk(self, chunk: Chunk) -> bool:
        """Put a failed or uncertain chunk back to pending for a redrive, taking its rows out of the
        job's counters and the job back to sending, atomically; False when it was not settled so."""

    @abstractmethod
    def begin_settling(self, job_id: str, lease_seconds: int) -> bool:
        """Claim the right to finish the job; True for exactly one caller (until its lease lapses)."""

    @abstractmethod
    def finish_job(self, job_id: str, status: JobStatus, message: str = "") -> None: ...

    @abstractmethod
    def chunks(self, job_id: str) -> list[Chunk]: ...

    @abstractmethod
    def list_jobs(self, limit: int = 50) -> list[Job]: ...

    @abstractmethod
    def claim_file(
        self, digest: str, destination: str, target: str, job_id: str, window_seconds: int, force: bool
    ) -> FileClaim | None:
        """Record that `job_id` sends the file whose content hash is `digest` to destination/target, in
        one conditional write; None when it is ours now, else the claim of the job that has it (within
        `window_seconds`). `force` (resend=true) takes it whoever has it."""

    @abstractmethod
    def file_claim(self, digest: str, destination: str, target: str, window_seconds: int) -> FileClaim | None:
        """Who has the file within `window_seconds` (a dry run asks without claiming)."""


def _job_key(job_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": "JOB"}}


def _chunk_key(job_id: str, chunk_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": f"CHUNK#{chunk_id}"}}


def _n(value: float) -> dict[str, str]:
    return {"N": str(value)}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _plain(attr: dict[str, Any]) -> Any:
    ((kind, value),) = attr.items()
    if kind == "S":
        return value
    if kind == "N":
        number = Decimal(value)
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == "BOOL":
        return value
    if kind == "M":
        return {k: _plain(v) for k, v in value.items()}
    if kind == "NULL":
        return None
    return value


def _item(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in raw.items()}


def job_from_item(item: dict[str, Any]) -> Job:
    return Job(
        job_id=item["job_id"],
        status=JobStatus(item["status"]),
        bucket=item.get("bucket", ""),
        key=item.get("key", ""),
        destination=item.get("destination", ""),
        target=item.get("target", ""),
        created_at=item.get("created_at", ""),
        version=item.get("version", ""),
        counts=Counts(
            read=item.get("rows_read", 0),
            sent=item.get("rows_sent", 0),
            rejected=item.get("rows_rejected", 0),
            failed=item.get("rows_failed", 0),
            uncertain=item.get("rows_uncertain", 0),
            planned=item.get("rows_planned", 0),
        ),
        chunks_total=item.get("chunks_total", 0),
        chunks_settled=item.get("chunks_settled", 0),
        encoding=item.get("encoding", ""),
        file_format=item.get("file_format", ""),
        # A sending job's note (what it waits for) shows as its message until the job settles.
        message=item.get("message", "") or item.get("note", ""),
        dry_run=bool(item.get("dry_run", False)),
        finished_at=item.get("finished_at", ""),
        options=dict(item.get("options") or {}),
        split_invocations=int(item.get("split_invocations", 0)),
        split_generation=int(item.get("split_generation", 0)),
        checkpoint_key=item.get("checkpoint_key", ""),
        split_owner=item.get("split_owner", ""),
        split_failed=bool(item.get("split_failed", False)),
        queued=bool(item.get("queued", False)),
    )


def _chunk_from_item(item: dict[str, Any]) -> Chunk:
    return Chunk(
        job_id=item["job_id"],
        chunk_id=item["chunk_id"],
        key=item["key"],
        rows=item["rows"],
        state=ChunkState(item["state"]),
        attempts=item.get("attempts", 0),
        lease_until=float(item.get("lease_until", 0)),
        last_error=item.get("last_error", ""),
        message=item.get("message", ""),
        sent=item.get("n_sent", 0),
        failed=item.get("n_failed", 0),
        uncertain=item.get("n_uncertain", 0),
        turn=item.get("turn", ""),
        batch_id=item.get("batch_id", ""),
        batch_started=float(item.get("batch_started", 0)),
        byte_range=item.get("byte_range"),
        answer=item.get("answer"),
    )


# DynamoDB's answers that say another writer, or the service, was busy: the write had no effect and can
# simply be made again. botocore's retry modes retry throttling but not these.
_BUSY_CODES = {"TransactionConflictException", "TransactionInProgressException"}
_BUSY_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
BUSY_ATTEMPTS = 8  # with jittered backoff from 50 ms up to 2 s: about 8 s of contention at most


def _cancellation_reasons(exc: ClientError) -> list[str]:
    reasons = exc.response.get("CancellationReasons") or []
    return [str(r.get("Code", "None")) for r in reasons if isinstance(r, dict)]


def _is_conditional_failure(exc: ClientError) -> bool:
    """Only a failed condition means "someone else already did it"; a transaction is that only when
    every reason it was cancelled for is a failed condition (or none)."""
    code = exc.response.get("Error", {}).get("Code", "")
    if code == "ConditionalCheckFailedException":
        return True
    if code != "TransactionCanceledException":
        return False
    reasons = _cancellation_reasons(exc)
    return "ConditionalCheckFailed" in reasons and set(reasons) <= {"ConditionalCheckFailed", "None"}


def _is_busy(exc: BaseException) -> bool:
    """A conflict with another writer, or throttling of one item: nothing was written; try again."""
    if not isinstance(exc, ClientError):
        return False
    code = exc.response.get("Error", {}).get("Code", "")
    if code in _BUSY_CODES:
        return True
    return code == "TransactionCanceledException" and bool(set(_cancellation_reasons(exc)) & _BUSY_REASONS)


class _RetryingWhenBusy:
    """The DynamoDB client, each call made again while DynamoDB answers that it was busy (see _is_busy);
    after BUSY_ATTEMPTS the error is raised, and the caller's message comes back later."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self._wrapped: dict[str, Any] = {}  # each method wrapped once: a tenacity policy a call cost ~0.2 ms

    def __getattr__(self, name: str) -> Any:
        wrapped = self._wrapped.get(name)
        if wrapped is not None:
            return wrapped
        import tenacity  # at first use, not at cold start

        method = getattr(self._db, name)
        if not callable(method):
            return method
        retrying = tenacity.retry(
            retry=tenacity.retry_if_exception(_is_busy),
            stop=tenacity.stop_after_attempt(BUSY_ATTEMPTS),
            wait=tenacity.wait_random_exponential(multiplier=0.05, max=2),
            reraise=True,
        )
        # tenacity copies its policy for every call, so one wrapper serves every thread (settle's readers)
        wrapped = self._wrapped[name] = retrying(method)
        return wrapped


class SplitLost(RuntimeError):
    """This invocation no longer holds the job's split (its lease lapsed and another took it over)."""


class DynamoJobStore(JobStore):
    """JobStore on the DynamoDB table of template.yaml."""

    def __init__(self, table_name: str, retention_days: int = 90, db: Any | None = None) -> None:
        self._table = table_name
        self._ttl_seconds = retention_days * 86400
        if db is not None:
            self._db = _RetryingWhenBusy(db)

    @cached_property
    def _db(self) -> Any:
        """The container's DynamoDB client, made at first use rather than at cold start."""
        return _RetryingWhenBusy(client("dynamodb"))

    @staticmethod
    def _applied(write: Callable[..., Any], **request: Any) -> bool:
        """Make a conditional write: False when its condition failed (someone else did it already)."""
        try:
            write(**request)
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def _expires(self) -> dict[str, str]:
        return _n(int(time.time()) + self._ttl_seconds)

    def create_job(self, job: Job, lease_seconds: int) -> bool:
        item = {
            **_job_key(job.job_id),
            "job_id": _s(job.job_id),
            "status": _s(job.status.value),
            "bucket": _s(job.bucket),
            "key": _s(job.key),
            "version": _s(job.version),
            "destination": _s(job.destination),
            "target": _s(job.target),
            "created_at": _s(job.created_at),
            "dry_run": {"BOOL": job.dry_run},
            "options": {"M": {k: _s(v) for k, v in job.options.items()}},
            "split_lease_until": _n(time.time() + lease_seconds),
            "split_generation": _n(0),
            "split_invocations": _n(1),
            "split_owner": _s(job.split_owner),
            "gsi1pk": _s("JOBS"),
            "gsi1sk": _s(f"{job.created_at}#{job.job_id}"),
            "expires_at": self._expires(),
        }
        return self._applied(
            self._db.put_item,
            TableName=self._table,
            Item=item,
            # A duplicate event finds the job and stops; a split that died (lease lapsed) before its
            # first checkpoint is redone; one past it is continued from its checkpoint instead.
            ConditionExpression=(
                "attribute_not_exists(pk) OR (#s = :splitting AND split_lease_until < :now"
                " AND (attribute_not_exists(split_generation) OR split_generation = :zero))"
            ),
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":splitting": _s(JobStatus.SPLITTING.value),
                ":now": _n(time.time()),
                ":zero": _n(0),
            },
        )

    def renew_split_lease(self, job_id: str, lease_seconds: int, owner: str = "") -> None:
        args: dict[str, Any] = {}
        if owner:
            args = {
                "ConditionExpression": "split_owner = :owner",
                "ExpressionAttributeValues": {":owner": _s(owner)},
            }
        values = {":lease": _n(time.time() + lease_seconds), **args.pop("ExpressionAttributeValues", {})}
        try:
            self._db.update_item(
                TableName=self._table,
                Key=_job_key(job_id),
                UpdateExpression="SET split_lease_until = :lease",
                ExpressionAttributeValues=values,
                **args,
            )
        except ClientError as exc:
            if owner and _is_conditional_failure(exc):
                raise SplitLost(f"job {job_id}: another invocation took the split over") from None
            raise

    def claim_split(self, job_id: str, generation: int, owner: str, lease_seconds: int) -> bool:
        now = time.time()
        return self._applied(
            self._db.update_item,
            TableName=self._table,
            Key=_job_key(job_id),
            UpdateExpression=(
                "SET split_owner = :owner, split_lease_until = :lease,"
                " split_invocations = if_not_exists(split_invocations, :zero) + :one, updated_at = :iso"
            ),
            ConditionExpression="#s = :splitting AND split_generation = :gen AND split_lease_until < :now",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":owner": _s(owner),
                ":lease": _n(now + lease_seconds),
                ":zero": _n(0),
                ":one": _n(1),
                ":iso": _s(now_iso()),
                ":splitting": _s(JobStatus.SPLITTING.value),
                ":gen": _n(generation),
                ":now": _n(now),
            },
        )

    def record_checkpoint(self, job_id: str, generation: int, owner: str, key: str) -> bool:
        return self._applied(
            self._db.update_item,
            TableName=self._table,
            Key=_job_key(job_id),
            UpdateExpression=(
                "SET split_generation = :next, checkpoint_key = :key, split_owner = :nobody,"
                " split_lease_until = :free, updated_at = :iso"
            ),
            ConditionExpression="split_generation = :gen AND split_owner = :owner",
            ExpressionAttributeValues={
                ":next": _n(generation + 1),
                ":key": _s(key),
                ":nobody": _s(""),
                ":free": _n(0),
                ":iso": _s(now_iso()),
                ":gen": _n(generation),
                ":owner": _s(owner),
            },
        )

    def replace_chunks(self, chunks: Iterable[Chunk]) -> None:
        # each batch's items made as it goes (all of a 10M-row file's at once held 52 MiB, 2.6 KB each),
        # several calls at a time (`in_flight`)
        batches = (
            [{"PutRequest": {"Item": self._new_chunk_item(c)}} for c in some] for some in batched(chunks, 25)
        )
        in_flight((partial(self._write_all, batch) for batch in batches), "recording")

    def _write_all(self, batch: list[dict[str, Any]]) -> None:
        """One BatchWriteItem of `batch`, made again for what DynamoDB leaves unprocessed."""
        pending: dict[str, Any] = {self._table: batch}
        for attempt in range(8):
            answer = self._db.batch_write_item(RequestItems=pending)
            pending = answer.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(min(0.05 * 2**attempt, 2.0))
        raise RuntimeError("DynamoDB left chunk records unwritten after 8 attempts")

    def prune_chunks(self, job_id: str, keep: set[str]) -> int:
        gone = 0
        for chunk_id in self._chunk_ids(job_id):
            if chunk_id not in keep:
                self._db.delete_item(TableName=self._table, Key=_chunk_key(job_id, chunk_id))
                gone += 1
        return gone

    def _chunk_ids(self, job_id: str) -> Iterator[str]:
        """The ids of the job's chunk records, a page at a time, nothing else of them read (the records of
        a 10M-row file's 20,000 chunks held at once were a tenth of the split's peak memory)."""
        for raw in self._chunk_items(job_id, ProjectionExpression="sk"):
            yield raw["sk"]["S"].removeprefix("CHUNK#")

    def _chunk_items(self, job_id: str, **query: Any) -> Iterator[dict[str, Any]]:
        """The job's chunk records as DynamoDB returns them, a page at a time (`query`: more of the
        query's parameters)."""
        paginator = self._db.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :chunk)",
            ExpressionAttributeValues={":pk": _s(f"JOB#{job_id}"), ":chunk": _s("CHUNK#")},
            ConsistentRead=True,
            **query,
        ):
            yield from page.get("Items", [])

    def get_job(self, job_id: str) -> Job | None:
        raw = self._db.get_item(TableName=self._table, Key=_job_key(job_id), ConsistentRead=True).get("Item")
        return job_from_item(_item(raw)) if raw else None

    def _new_chunk_item(self, chunk: Chunk) -> dict[str, Any]:
        return {
            **_chunk_key(chunk.job_id, chunk.chunk_id),
            "job_id": _s(chunk.job_id),
            "chunk_id": _s(chunk.chunk_id),
            "key": _s(chunk.key),
            "rows": _n(chunk.rows),
            "state": _s(ChunkState.PENDING.value),
            "attempts": _n(0),
            "message": _s(chunk.message),
            "expires_at": self._expires(),
            **({"byte_range": _s(chunk.byte_range)} if chunk.byte_range else {}),
        }

    def put_chunk(self, chunk: Chunk) -> None:
        try:
            self._db.put_item(
                TableName=self._table,
                Item=self._new_chunk_item(chunk),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise

    def mark_queued(self, job_id: str) -> None:
        self._db.update_item(
            TableName=self._table,
            Key=_job_key(job_id),
            UpdateExpression="SET queued = :yes",
            ExpressionAttributeValues={":yes": {"BOOL": True}},
        )

    def finish_split(self, job: Job) -> None:
        # A split that holds its job by a token finishes only while it still does (a continued split).
        held: dict[str, Any] = {"ConditionExpression": "split_owner = :owner"} if job.split_owner else {}
        try:
            self._finish_split(job, held)
        except ClientError as exc:
            if held and _is_conditional_failure(exc):
                raise SplitLost(f"job {job.job_id}: another invocation took the split over") from None
            raise

    def _finish_split(self, job: Job, held: dict[str, Any]) -> None:
        self._db.update_item(
            **held,
            TableName=self._table,
            Key=_job_key(job.job_id),
            UpdateExpression=(
                "SET #s = :status, rows_read = :read, rows_rejected = :rejected, rows_sent = :zero,"
                " rows_failed = :zero, rows_uncertain = :zero, rows_planned = :planned, chunks_total = :chunks, chunks_last = :last, chunks_settled = :zero,"
                " encoding = :encoding, file_format = :format, message = :message, updated_at = :now,"
                " split_failed = :split_failed" + (", finished_at = :now" if job.status.is_final else "")
            ),
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":status": _s(job.status.value),
                ":read": _n(job.counts.read),
                ":rejected": _n(job.counts.rejected),
                ":planned": _n(job.counts.planned),
                ":zero": _n(0),
                ":chunks": _n(job.chunks_total),
                ":last": _n(job.chunks_total - 1),
                ":encoding": _s(job.encoding),
                ":format": _s(job.file_format),
                ":message": _s(job.message),
                ":now": _s(now_iso()),
                **({":owner": _s(job.split_owner)} if held else {}),
                ":split_failed": {"BOOL": job.split_failed},
            },
        )

    def claim_chunk(self, job_id: str, chunk_id: str, lease_seconds: int, turn: str | None = None) -> Claim:
        now = time.time()
        values = {
            ":flight": _s(ChunkState.IN_FLIGHT.value),
            ":pending": _s(ChunkState.PENDING.value),
            ":lease": _n(now + lease_seconds),
            ":now": _n(now),
            ":one": _n(1),
        }
        live = "attribute_not_exists(turn)"  # a chunk's first message: no follow-up was queued since
        if turn:
            live, values[":turn"] = "turn = :turn", _s(turn)
        try:
            old = self._db.update_item(
                TableName=self._table,
                Key=_chunk_key(job_id, chunk_id),
                UpdateExpression="SET #s = :flight, lease_until = :lease ADD attempts :one",
                ConditionExpression=f"{live} AND (#s = :pending OR (#s = :flight AND lease_until < :now))",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise
            raw = self._db.get_item(
                TableName=self._table, Key=_chunk_key(job_id, chunk_id), ConsistentRead=True
            )
            if "Item" not in raw:
                return Claim.MISSING
            item = _item(raw["Item"])
            if ChunkState(item["state"]).is_settled:
                return Claim.SETTLED
            return Claim.BUSY if item.get("turn", "") == (turn or "") else Claim.STALE
        previous = _item(old.get("Attributes", {}))
        if previous.get("state") == ChunkState.IN_FLIGHT.value:
            return Claim.CLAIMED_AFTER_CRASH
        return Claim.RESUMED if previous.get("progress_saved") else Claim.CLAIMED

    def get_chunk(self, job_id: str, chunk_id: str) -> Chunk | None:
        raw = self._db.get_item(TableName=self._table, Key=_chunk_key(job_id, chunk_id), ConsistentRead=True)
        return _chunk_from_item(_item(raw["Item"])) if "Item" in raw else None

    def record_batch(self, job_id: str, chunk_id: str, batch_id: str, started: float) -> bool:
        return self._applied(
            self._db.update_item,
            TableName=self._table,
            Key=_chunk_key(job_id, chunk_id),
            UpdateExpression="SET batch_id = :batch, batch_started = :started",
            ConditionExpression="#s = :flight",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={
                ":batch": _s(batch_id),
                ":started": _n(started),
                ":flight": _s(ChunkState.IN_FLIGHT.value),
            },
        )

    def note_job(self, job_id: str, message: str) -> None:
        try:
            self._db.update_item(
                TableName=self._table,
                Key=_job_key(job_id),
                UpdateExpression="SET note = :message, updated_at = :now",
                ConditionExpression="#s = :sending",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":message": _s(message[:500]),
                    ":now": _s(now_iso()),
                    ":sending": _s(JobStatus.SENDING.value),
                },
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise

    def release_chunk(
        self, job_id: str, chunk_id: str, error: str, progress_saved: bool = False, turn: str | None = None
    ) -> None:
        values: dict[str, Any] = {
            ":pending": _s(ChunkState.PENDING.value),
            ":flight": _s(ChunkState.IN_FLIGHT.value),
            ":error": _s(error[:500]),
            ":zero": _n(0),
        }
        update = "SET #s = :pending, last_error = :error, lease_until = :zero"
        if progress_saved:  # never unset: a later delivery that saves nothing new keeps the earlier answers
            update += ", progress_saved = :true"
            values[":true"] = {"BOOL": True}
        if turn:
            update += ", turn = :turn"
            values[":turn"] = _s(turn)
        try:
            self._db.update_item(
                TableName=self._table,
                Key=_chunk_key(job_id, chunk_id),
                UpdateExpression=update,
                ConditionExpression="#s = :flight",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise

    def settle_chunk(
        self, job_id: str, chunk_id: str, settlement: Settlement, *, only_unclaimed: bool = False
    ) -> bool:
        # Whether this was the job's last open chunk is learnt from the transaction itself, not by
        # reading the job after it (one call a chunk less; a transaction returns no values): the job's
        # update holds only while another chunk stays open (ANOTHER_CHUNK_OPEN). Where that fails, the
        # transaction wrote nothing and is made again without it: this is the last chunk (or the job
        # predates `chunks_last`). The chunk's own condition keeps every settlement counted once either way.
        # Any open state: in flight (our claim), or pending/in flight for the dead-letter path; or only
        # pending, for a chunk that must not be taken from a sender that holds it.
        condition = "#s = :pending" if only_unclaimed else "NOT #s IN (:sent, :failed, :uncertain, :split)"
        states = (
            {":pending": _s(ChunkState.PENDING.value)}
            if only_unclaimed
            else {
                ":sent": _s(ChunkState.SENT.value),
                ":failed": _s(ChunkState.FAILED.value),
                ":uncertain": _s(ChunkState.UNCERTAIN.value),
                ":split": _s(ChunkState.SPLIT.value),
            }
        )
        chunk_update = {
            "TableName": self._table,
            "Key": _chunk_key(job_id, chunk_id),
            "UpdateExpression": (
                "SET #s = :state, last_error = :error, settled_at = :now,"
                " n_sent = :n_sent, n_failed = :n_failed, n_uncertain = :n_uncertain"
                + (" REMOVE answer" if settlement.answer is None else ", answer = :answer")
            ),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#s": "state"},
            "ExpressionAttributeValues": {
                ":state": _s(settlement.state.value),
                ":error": _s(settlement.error[:500]),
                ":now": _s(now_iso()),
                ":n_sent": _n(settlement.sent),
                ":n_failed": _n(settlement.failed),
                ":n_uncertain": _n(settlement.uncertain),
                **({} if settlement.answer is None else {":answer": _s(settlement.answer)}),
                **states,
            },
        }
        job_update = {
            "TableName": self._table,
            "Key": _job_key(job_id),
            "UpdateExpression": (
                "ADD rows_sent :sent, rows_failed :failed, rows_uncertain :uncertain,"
                " chunks_settled :one SET updated_at = :now"
            ),
            "ExpressionAttributeValues": {
                ":sent": _n(settlement.sent),
                ":failed": _n(settlement.failed),
                ":uncertain": _n(settlement.uncertain),
                ":one": _n(1),
                ":now": _s(now_iso()),
            },
        }
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {"Update": chunk_update},
                    {"Update": {**job_update, "ConditionExpression": ANOTHER_CHUNK_OPEN}},
                ]
            )
            return False
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise
            if _cancellation_reasons(exc)[:1] != ["None"]:
                return True  # the chunk's condition: settled by someone else, who added its counts
        try:  # the last open chunk (or a job without chunks_last)
            self._db.transact_write_items(TransactItems=[{"Update": chunk_update}, {"Update": job_update}])
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise
            # Settled by someone else in between: the counters were added once, by them.
        return True

    def split_chunk(self, job_id: str, chunk_id: str, halves: list[Chunk]) -> None:
        puts = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": self._new_chunk_item(half),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for half in halves
        ]
        self._db.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": _chunk_key(job_id, chunk_id),
                        "UpdateExpression": "SET #s = :split, settled_at = :now",
                        "ConditionExpression": "#s = :flight",
                        "ExpressionAttributeNames": {"#s": "state"},
                        "ExpressionAttributeValues": {
                            ":split": _s(ChunkState.SPLIT.value),
                            ":flight": _s(ChunkState.IN_FLIGHT.value),
                            ":now": _s(now_iso()),
                        },
                    }
                },
                *puts,
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": _job_key(job_id),
                        "UpdateExpression": (
                            "ADD chunks_total :more, chunks_settled :one SET chunks_last = chunks_total + :grown"
                        ),
                        "ExpressionAttributeValues": {
                            ":more": _n(len(halves)),
                            ":one": _n(1),
                            ":grown": _n(len(halves) - 1),  # the new chunks_total - 1
                        },
                    }
                },
            ]
        )

    def reopen_chunk(self, chunk: Chunk) -> bool:
        return self._applied(
            self._db.transact_write_items,
            TransactItems=[
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": _chunk_key(chunk.job_id, chunk.chunk_id),
                        # A redrive starts over: the stored (first) message is live again, and a
                        # provider batch is started anew (the operator's call).
                        "UpdateExpression": (
                            "SET #s = :pending, lease_until = :zero, n_sent = :zero, n_failed = :zero,"
                            " n_uncertain = :zero REMOVE turn, batch_id, batch_started, answer"
                        ),
                        "ConditionExpression": "#s = :state",
                        "ExpressionAttributeNames": {"#s": "state"},
                        "ExpressionAttributeValues": {
                            ":pending": _s(ChunkState.PENDING.value),
                            ":state": _s(chunk.state.value),
                            ":zero": _n(0),
                        },
                    }
                },
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": _job_key(chunk.job_id),
                        "UpdateExpression": (
                            "SET #s = :sending, updated_at = :now REMOVE finished_at"
                            " ADD rows_sent :sent, rows_failed :failed, rows_uncertain :uncertain,"
                            " chunks_settled :minus_one"
                        ),
                        "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": {
                            ":sending": _s(JobStatus.SENDING.value),
                            ":now": _s(now_iso()),
                            ":sent": _n(-chunk.sent),
                            ":failed": _n(-chunk.failed),
                            ":uncertain": _n(-chunk.uncertain),
                            ":minus_one": _n(-1),
                        },
                    }
                },
            ],
        )

    def begin_settling(self, job_id: str, lease_seconds: int) -> bool:
        now = time.time()
        return self._applied(
            self._db.update_item,
            TableName=self._table,
            Key=_job_key(job_id),
            UpdateExpression="SET #s = :settling, settle_lease_until = :lease REMOVE note",
            ConditionExpression=(
                "chunks_settled = chunks_total AND"
                " (#s = :sending OR (#s = :settling AND settle_lease_until < :now))"
            ),
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":settling": _s(JobStatus.SETTLING.value),
                ":sending": _s(JobStatus.SENDING.value),
                ":lease": _n(now + lease_seconds),
                ":now": _n(now),
            },
        )

    def finish_job(self, job_id: str, status: JobStatus, message: str = "") -> None:
        self._db.update_item(
            TableName=self._table,
            Key=_job_key(job_id),
            UpdateExpression="SET #s = :status, finished_at = :now, message = :message",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":status": _s(status.value),
                ":now": _s(now_iso()),
                ":message": _s(message),
            },
        )

    def chunks(self, job_id: str) -> list[Chunk]:
        return [_chunk_from_item(_item(raw)) for raw in self._chunk_items(job_id)]

    def list_jobs(self, limit: int = 50) -> list[Job]:
        raw = self._db.query(
            TableName=self._table,
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :jobs",
            ExpressionAttributeValues={":jobs": _s("JOBS")},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [job_from_item(_item(item)) for item in raw.get("Items", [])]

    def _file_key(self, digest: str, destination: str, target: str) -> dict[str, Any]:
        return {"pk": _s(f"FILE#{digest}"), "sk": _s(f"TO#{destination}/{target}")}

    def claim_file(
        self, digest: str, destination: str, target: str, job_id: str, window_seconds: int, force: bool
    ) -> FileClaim | None:
        now = time.time()
        item = {
            **self._file_key(digest, destination, target),
            "job_id": _s(job_id),
            "claimed_epoch": _n(now),
            "claimed_at": _s(iso_utc(now)),
            "expires_at": _n(int(now) + max(window_seconds, self._ttl_seconds)),
        }
        condition: dict[str, Any] = {}
        if not force:
            condition = {
                # Free, lapsed, or ours already (a split redone after its invocation died).
                "ConditionExpression": "attribute_not_exists(pk) OR claimed_epoch < :since OR job_id = :me",
                "ExpressionAttributeValues": {":since": _n(now - window_seconds), ":me": _s(job_id)},
            }
        try:
            self._db.put_item(TableName=self._table, Item=item, **condition)
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise
            holder = self.file_claim(digest, destination, target, window_seconds)
            # Lapsed between the write and this read: the caller may try again; say who had it.
            return holder or FileClaim("?", iso_utc(now))
        return None

    def file_claim(self, digest: str, destination: str, target: str, window_seconds: int) -> FileClaim | None:
        raw = self._db.get_item(
            TableName=self._table, Key=self._file_key(digest, destination, target), ConsistentRead=True
        ).get("Item")
        if not raw:
            return None
        item = _item(raw)
        if float(item.get("claimed_epoch", 0)) < time.time() - window_seconds:
            return None
        return FileClaim(str(item["job_id"]), str(item["claimed_at"]))
