"""The splitter: one S3 object in, a job with provider-sized staged chunks and one SQS message each out.

No provider is called until the whole file has been read and the invalid share checked: chunks are staged
in S3 while streaming (memory stays flat), and only then does one small message per chunk go out.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from botocore.exceptions import ClientError

from fanout import ids
from fanout.aws import client
from fanout.background import Background
from fanout.chunking import ChunkPlanner, StagedChunk
from fanout.config import SplitterConfig
from fanout.continuation import Checkpoint, Continuation, Invoker, object_payload, stopper
from fanout.models import ChunkMessage, ChunkState, Counts, JobStatus, ObjectRef, Rejection, Route
from fanout.observability import key_ref, logger
from fanout.options import yes
from fanout.planning import plan_some, seen_contacts, split_problem, tolerated_percent
from fanout.providers import provider_for
from fanout.queueing import send_chunk_messages
from fanout.reading import FileFormatError, FileInfo, LostRows, RawRow, TextRow, open_rows, open_rows_at
from fanout.results import csv_line, publish, settle_job, spreadsheet_safe, write_rows_file
from fanout.routing import (
    RouteError,
    decode_key,
    is_dry_run,
    options_from_metadata,
    parse_routes,
    routes_for_key,
)
from fanout.sent_contacts import OnlyNew
from fanout.sent_files import RESEND_WINDOW_SECONDS, FileClaim, HashingReader, already_sent
from fanout.settling import JobSettle
from fanout.staging import S3Writer, presign_get, rejected_jsonl_key, result_key, symplify_file_key
from fanout.store import Chunk, Job, JobStore, Settlement, SplitLost
from fanout.validation import file_problem

if TYPE_CHECKING:
    from fanout.dedup import SeenContacts

# A live split renews its claim on the job every RENEW_EVERY_SECONDS; one that died (out of memory, killed)
# lets it lapse, and the next delivery of its event (Lambda retries asynchronous invocations after about
# one and two minutes) goes on from the job's last checkpoint (fanout.continuation), or splits the file
# again from the start when there is none yet. A split never runs into the function's timeout: it hands
# over to a new invocation before (fanout.continuation).
SPLIT_LEASE_SECONDS = 90
RENEW_EVERY_SECONDS = 20


class SplitInProgress(RuntimeError):
    """Another invocation is splitting this file right now; raised so Lambda delivers the event again
    later, when that split has finished (a duplicate then) or died (then this one redoes it)."""


REJECTED_CSV_HEADER = "row,column,value,reason\n"


@dataclass(slots=True)
class SplitOutcome:
    """What one split did; `duplicate` when the event was one we had already handled."""

    job_id: str
    status: JobStatus
    duplicate: bool = False
    counts: Counts = field(default_factory=Counts)
    chunks: int = 0
    message: str = ""


class _Rejections:
    """rejected.jsonl (for the merge) and results/<job>/rejected.csv (for people), streamed."""

    def __init__(self, bucket: str, job_id: str, checkpoint: Checkpoint | None = None) -> None:
        self.count = 0
        self.lost: str | None = None  # the first row after which rows of the file went unread
        if checkpoint is not None:
            self.count, self.lost = checkpoint.rejected, checkpoint.lost
            self._jsonl = S3Writer.resume(bucket, checkpoint.writers["rejected_jsonl"])
            self._csv = S3Writer.resume(bucket, checkpoint.writers["rejected_csv"], content_type="text/csv")
            return
        self._jsonl = S3Writer(bucket, rejected_jsonl_key(job_id))
        self._csv = S3Writer(bucket, result_key(job_id, "rejected.csv"), content_type="text/csv")
        self._csv.write(REJECTED_CSV_HEADER.encode())

    def suspend(self, prefix: str) -> dict[str, dict[str, Any]]:
        return {
            "rejected_jsonl": self._jsonl.suspend(f"{prefix}/rejected-jsonl.tail"),
            "rejected_csv": self._csv.suspend(f"{prefix}/rejected-csv.tail"),
        }

    def add(self, rejection: Rejection) -> None:
        self.count += 1
        # A reading error reaches us unchanged as the reason (RowValidator passes raw.error through).
        if self.lost is None and isinstance(rejection.reason, LostRows):
            self.lost = rejection.reason
        self._jsonl.write_line(
            json.dumps({"row": rejection.row, "reason": rejection.reason}, ensure_ascii=False)
        )
        self._csv.write(_csv_line(rejection).encode("utf-8"))

    def close(self) -> None:
        self._jsonl.close()
        self._csv.close()


def _csv_line(rejection: Rejection) -> str:
    # Values are echoed for people to fix; spreadsheet formulas are neutralised on the way out.
    cells = [str(rejection.row), rejection.column, rejection.value[:200], rejection.reason]
    return csv_line([spreadsheet_safe(c) for c in cells])


def _row_number(row: RawRow | TextRow) -> int:
    return row[0] if isinstance(row, tuple) else row.number


def object_refs(event: dict[str, Any]) -> Iterator[ObjectRef]:
    """The objects an S3 notification or an EventBridge "Object Created" event names."""
    if event.get("detail-type") == "Object Created":
        detail = event["detail"]
        obj = detail["object"]
        yield ObjectRef(
            bucket=detail["bucket"]["name"],
            key=decode_key(obj["key"]),
            version=obj.get("version-id"),
            etag=obj.get("etag"),
            size=obj.get("size"),
            # S3 notifications URL-encode keys (documented); EventBridge may not: keep it as written too.
            event_key=obj["key"],
        )
        return
    for record in event.get("Records", []):
        s3 = record["s3"]
        obj = s3["object"]
        yield ObjectRef(
            bucket=s3["bucket"]["name"],
            key=decode_key(obj["key"]),
            version=obj.get("versionId"),
            etag=obj.get("eTag"),
            size=obj.get("size"),
        )


def fail_job(
    store: JobStore, bucket: str, bus: str, job: Job, message: str, settle: JobSettle | None = None
) -> SplitOutcome:
    """Record the job as failed at the split with `message`; staged rows (never sent) are settled as
    failed, rows.csv and summary.json are written and the JobFailed event is sent. The job is settled
    here (the job function), or by `settle` when given (the dead-letter function hands it over)."""
    job.message = message
    job.split_failed = True  # a redrive must never send it: that takes a corrected file
    reason = message.replace(job.key, key_ref(job.key)) if job.key else message
    logger.warning("job failed at split", extra={"job_id": job.job_id, "reason": reason})
    if job.chunks_total:
        job.status = JobStatus.SENDING
        store.finish_split(job)
        for chunk in store.chunks(job.job_id):
            store.settle_chunk(
                job.job_id, chunk.chunk_id, Settlement(ChunkState.FAILED, failed=chunk.rows, error=message)
            )
        if settle is not None:
            settle(job.job_id)
            return SplitOutcome(
                job.job_id, job.status, counts=job.counts, chunks=job.chunks_total, message=message
            )
        settled = settle_job(store, bucket, bus, job.job_id)
        if settled is not None:
            return SplitOutcome(
                job.job_id, settled.status, counts=settled.counts, chunks=job.chunks_total, message=message
            )
    job.status = JobStatus.FAILED
    if job.counts.read and not job.chunks_total:
        # Rows were read but none staged (every one rejected): rows.csv still has a line for each.
        write_rows_file(bucket, job, [])
    store.finish_split(job)
    publish(bucket, bus, job)
    return SplitOutcome(
        job.job_id, JobStatus.FAILED, counts=job.counts, chunks=job.chunks_total, message=message
    )


def failed_because(record: dict[str, Any]) -> str:
    """Why the event of Lambda's on-failure destination record (retries spent) failed."""
    response = record.get("responsePayload") or {}
    error = response.get("errorMessage") if isinstance(response, dict) else None
    attempts = record.get("requestContext", {}).get("approximateInvokeCount", "several")
    return f"{error or 'the splitter failed'} ({attempts} attempts)"


def _failed_split_event(record: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The splitter event inside an entry of SplitterFailureQueue, and why it failed: Lambda's on-failure
    destination record (retries spent), or the event itself (EventBridge could not invoke the splitter)."""
    if "requestPayload" in record:
        return record["requestPayload"], failed_because(record)
    return record, "EventBridge could not invoke the splitter"


def fail_unfinished_split(
    store: JobStore, bucket: str, bus: str, record: dict[str, Any], settle: JobSettle
) -> list[str]:
    """A splitter event whose retries are spent (an entry of SplitterFailureQueue): each job of its object
    still `splitting` ends `failed` with a message, its staged rows failed and nothing sent; an object
    whose split never made a job gets a failed one, so no drop goes unanswered. Returns those job ids."""
    event, why = _failed_split_event(record)
    failed: list[str] = []
    for ref in object_refs(event):
        message = (
            f"the file could not be split: {why}; nothing was sent. Rows staged before the split stopped are"
            " marked failed (see rows.csv); fix the cause and drop the file again"
        )
        index = 0
        while (job := store.get_job(ids.job_id(ref.bucket, ref.key, ref.identity, index))) is not None:
            index += 1
            if job.status is JobStatus.SENDING and not job.queued:
                fail_unqueued_chunks(store, job, why, settle)
                failed.append(job.job_id)
                continue
            if job.status is not JobStatus.SPLITTING:
                continue  # the split finished (or failed) after all: its own outcome stands
            chunks = store.chunks(job.job_id)
            job.chunks_total = len(chunks)
            job.counts = Counts(read=sum(c.rows for c in chunks))
            fail_job(store, bucket, bus, job, message, settle)
            failed.append(job.job_id)
        if index == 0:
            job = Job(
                job_id=ids.job_id(ref.bucket, ref.key, ref.identity, 0),
                status=JobStatus.SPLITTING,
                bucket=ref.bucket,
                key=ref.key,
                version=ref.identity,
                destination="",
                target="",
            )
            if store.create_job(job, 0):
                fail_job(store, bucket, bus, job, message, settle)
                failed.append(job.job_id)
    return failed


def fail_unqueued_chunks(store: JobStore, job: Job, why: str, settle: JobSettle) -> None:
    """A split that finished but whose chunks' messages could not all be queued on any attempt: the chunks
    no sender has claimed are failed (never sent; `fanout redrive` sends them), the ones a sender holds
    finish as usual, and the job settles when the last one does."""
    message = (
        f"the file's chunks could not be queued: {why}. Rows of chunks no sender took were not sent"
        f" (failed in rows.csv); fix the cause and, once the job has settled, `fanout redrive {job.job_id}`"
        " sends them"
    )
    logger.warning("job's chunks could not be queued", extra={"job_id": job.job_id})
    store.note_job(job.job_id, message)
    for chunk in store.chunks(job.job_id):
        if chunk.state is ChunkState.PENDING:
            settlement = Settlement(ChunkState.FAILED, failed=chunk.rows, error=message)
            store.settle_chunk(job.job_id, chunk.chunk_id, settlement, only_unclaimed=True)
    settle(job.job_id)


class Splitter:
    """Splits objects for one deployed stack (its bucket, table, queues and bus)."""

    def __init__(self, config: SplitterConfig, store: JobStore, invoker: Invoker | None = None) -> None:
        self._cfg = config
        self._store = store
        # Without an invoker (tests, tools) a split never stops early: it reads the whole file at once.
        self._invoker = invoker

    @cached_property
    def _s3(self) -> Any:
        """The container's S3 client, made at first use rather than at cold start."""
        return client("s3")

    def split(
        self, ref: ObjectRef, remaining_ms: Callable[[], int] | None = None, route_from: int = 0
    ) -> list[SplitOutcome]:
        """Split one object into one job per route; a duplicate event returns the existing jobs.

        A "folder" the S3 console creates (a key ending in "/") is no file: it makes no job.
        `remaining_ms`: the invocation's time left (Lambda's context), so a long split continues in a new
        invocation instead of running out; `route_from`: the routes before it were handed to others.
        """
        if ref.key.endswith("/"):
            logger.info("folder placeholder ignored", extra={"size": ref.size})
            return []
        head = self._head(ref)
        if head is None and ref.event_key and ref.event_key != ref.key:
            # EventBridge writes keys as they are, S3 notifications URL-encode them: "a+b.csv" from
            # EventBridge decodes to "a b.csv". The object that exists is the one the event meant.
            as_written = dataclasses.replace(ref, key=ref.event_key)
            head = self._head(as_written)
            ref = as_written if head is not None else ref
        if head is None:
            # Raising would only retry an event that can never succeed, then park it unexplained.
            message = (
                f"the object {ref.key} does not exist (deleted before it could be read?); nothing was sent"
            )
            return [self._fail_unroutable(ref, message)]
        ref = ObjectRef(
            ref.bucket,
            ref.key,
            ref.version or head.get("VersionId"),
            head.get("ETag"),
            head.get("ContentLength"),
        )
        try:
            options = options_from_metadata(head.get("Metadata", {}))
            routes = routes_for_key(ref.key, options, self._routes())
        except RouteError as exc:
            return [self._fail_unroutable(ref, str(exc))]
        outcomes: list[SplitOutcome] = []
        for index, route in enumerate(routes):
            if index < route_from:
                continue
            outcome = self._split_route(ref, index, route, remaining_ms)
            outcomes.append(outcome)
            if outcome.status is JobStatus.SPLITTING and index + 1 < len(routes) and self._invoker:
                # this invocation's time went to that route: the next ones start in a new invocation
                self._invoker.invoke(object_payload(ref, index + 1))
                break
        return outcomes

    def resume(
        self, continuation: Continuation, remaining_ms: Callable[[], int] | None = None
    ) -> SplitOutcome:
        """Go on with a split from the job's current checkpoint (a continuation's payload names it).

        A continuation for a checkpoint that is no longer current, or for a job no longer splitting, is
        a duplicate and does nothing; one for the current checkpoint while another invocation holds the
        job raises SplitInProgress, so Lambda delivers it again (and it takes over if that one died).
        """
        job = self._store.get_job(continuation.job_id)
        if job is None or job.status is not JobStatus.SPLITTING:
            status = job.status if job else JobStatus.FAILED
            logger.info("continuation for a job no longer splitting", extra={"job_id": continuation.job_id})
            return SplitOutcome(continuation.job_id, status, duplicate=True)
        outcome = self._continue(job, remaining_ms)
        if outcome is not None:
            return outcome
        if continuation.generation >= job.split_generation:
            raise SplitInProgress(f"job {job.job_id} is being split by another invocation")
        logger.info("stale continuation", extra={"job_id": job.job_id, "generation": continuation.generation})
        return SplitOutcome(job.job_id, JobStatus.SPLITTING, duplicate=True)

    def _continue(self, job: Job, remaining_ms: Callable[[], int] | None) -> SplitOutcome | None:
        """Take the job at its current checkpoint and go on; None when another invocation holds it."""
        owner = uuid.uuid4().hex
        if not self._store.claim_split(job.job_id, job.split_generation, owner, SPLIT_LEASE_SECONDS):
            return None
        job.split_owner = owner
        job.split_invocations += 1
        body = self._s3.get_object(Bucket=self._cfg.bucket_name, Key=job.checkpoint_key)["Body"].read()
        checkpoint = Checkpoint.from_json(body)
        job.counts.read, job.counts.rejected = checkpoint.read, checkpoint.rejected
        logger.info(
            "split continues",
            extra={
                "job_id": job.job_id,
                "generation": job.split_generation,
                "after_row": checkpoint.last_row,
            },
        )
        return self._guarded(
            job, lambda: self._stream(checkpoint.ref, job, checkpoint.route, remaining_ms, checkpoint)
        )

    def _guarded(self, job: Job, work: Callable[[], SplitOutcome]) -> SplitOutcome:
        """Run a split; a file that cannot be read fails the job, a split taken over ends quietly."""
        try:
            return work()
        except FileFormatError as exc:
            return self._fail(job, str(exc))
        except SplitLost as exc:
            logger.warning(
                "split taken over by another invocation", extra={"job_id": job.job_id, "reason": str(exc)}
            )
            return SplitOutcome(job.job_id, JobStatus.SPLITTING, duplicate=True)

    def _head(self, ref: ObjectRef) -> dict[str, Any] | None:
        """The object's metadata; None when no such object (or version) exists."""
        args: dict[str, Any] = {"Bucket": ref.bucket, "Key": ref.key}
        if ref.version:
            args["VersionId"] = ref.version
        try:
            head: dict[str, Any] = self._s3.head_object(**args)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NoSuchVersion"):
                return None
            raise
        return head

    def _routes(self) -> list[dict[str, Any]]:
        try:
            body = self._s3.get_object(Bucket=self._cfg.bucket_name, Key=self._cfg.routes_key)["Body"].read()
        except self._s3.exceptions.NoSuchKey:
            return []
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise RouteError(
                f"the routes file {self._cfg.routes_key} is not UTF-8 text; save it as UTF-8"
            ) from None
        return parse_routes(text)

    def _new_job(self, ref: ObjectRef, index: int, route: Route | None) -> Job:
        return Job(
            job_id=ids.job_id(ref.bucket, ref.key, ref.identity, index),
            status=JobStatus.SPLITTING,
            bucket=ref.bucket,
            key=ref.key,
            version=ref.identity,
            destination=route.destination.value if route else "",
            target=route.target if route else "",
            dry_run=is_dry_run(ref.key, route.options) if route else False,
            options=dict(route.options) if route else {},
        )

    def _fail_unroutable(self, ref: ObjectRef, message: str) -> SplitOutcome:
        job = self._new_job(ref, 0, None)
        if not self._store.create_job(job, SPLIT_LEASE_SECONDS):
            return SplitOutcome(job.job_id, JobStatus.FAILED, duplicate=True)
        return self._fail(job, message)

    def _fail(self, job: Job, message: str) -> SplitOutcome:
        """Record the job as failed with `message`; staged rows (never sent) are settled as failed."""
        return fail_job(self._store, self._cfg.bucket_name, self._cfg.event_bus_name, job, message)

    def _split_route(
        self, ref: ObjectRef, index: int, route: Route, remaining_ms: Callable[[], int] | None = None
    ) -> SplitOutcome:
        job = self._new_job(ref, index, route)
        job.split_owner = uuid.uuid4().hex
        if not self._store.create_job(job, SPLIT_LEASE_SECONDS):
            existing = self._store.get_job(job.job_id)
            status = existing.status if existing else JobStatus.SPLITTING
            if existing is not None and status is JobStatus.SPLITTING and existing.split_generation > 0:
                # Past its first checkpoint the split goes on from there: take it over if nobody holds it
                # (its continuation was lost), else it is in hand and this event is a duplicate.
                outcome = self._continue(existing, remaining_ms)
                return outcome or SplitOutcome(job.job_id, status, duplicate=True)
            if status is JobStatus.SPLITTING:
                raise SplitInProgress(f"job {job.job_id} is being split by another invocation")
            if existing is not None and status is JobStatus.SENDING and not existing.queued:
                self._queue_unclaimed(existing, route)
            logger.info("duplicate event: job exists", extra={"job_id": job.job_id})
            return SplitOutcome(job.job_id, status, duplicate=True)
        job.split_invocations = 1
        return self._guarded(job, lambda: self._stream(ref, job, route, remaining_ms, None, index))

    def _open_object(self, ref: ObjectRef, offset: int = 0) -> Any:
        """The object's body (from byte `offset`): that version, or (unversioned) only while its ETag is
        still the one split."""
        get_args: dict[str, Any] = {"Bucket": ref.bucket, "Key": ref.key}
        if ref.version:
            get_args["VersionId"] = ref.version
        elif ref.etag:
            get_args["IfMatch"] = ref.etag
        if offset:
            get_args["Range"] = f"bytes={offset}-"
        try:
            return self._s3.get_object(**get_args)["Body"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412"):
                raise FileFormatError(
                    f"the object {ref.key} was replaced while it was being split; nothing was sent: "
                    "drop the file again"
                ) from None
            if offset and code in ("InvalidRange", "416"):  # the checkpoint was at the very end
                return io.BytesIO(b"")
            raise

    def _reopen(self, ref: ObjectRef, checkpoint: Checkpoint) -> tuple[FileInfo, Iterator[RawRow | TextRow]]:
        """The rows after the checkpoint's: read from its offset (a ranged GET) when it kept one, else
        the whole object again, skipping the rows read before."""
        after = checkpoint.last_row
        if checkpoint.offset is not None:
            known = FileInfo(
                checkpoint.file["format"],
                checkpoint.file["encoding"],
                False,
                checkpoint.file["delimiter"],
                list(checkpoint.columns),
            )
            body = self._open_object(ref, checkpoint.offset)
            return open_rows_at(body, info=known, offset=checkpoint.offset, after_row=after, cells=True)
        info, rows = open_rows(self._open_object(ref), name=ref.key, cells=True)
        return info, (row for row in rows if _row_number(row) > after)

    def _stream(
        self,
        ref: ObjectRef,
        job: Job,
        route: Route,
        remaining_ms: Callable[[], int] | None,
        checkpoint: Checkpoint | None,
        route_index: int = 0,
    ) -> SplitOutcome:
        provider = provider_for(route.destination)
        # The content's hash (a re-drop of the same bytes is not sent again) is taken while the file is
        # read in one go; a continued split hashes the object in a pass of its own at the end.
        hashing: HashingReader | None = None
        if checkpoint is None:
            hashing = HashingReader(self._open_object(ref))
            info, rows = open_rows(cast(BinaryIO, hashing), name=ref.key, cells=True)
        else:
            info, rows = self._reopen(ref, checkpoint)
        job.encoding, job.file_format = info.encoding, info.format
        if checkpoint is None:
            problem = file_problem(provider, route, info)
            if problem:
                return self._fail(job, problem)
        else:
            route_index = checkpoint.route_index

        staged: list[StagedChunk] = []
        if checkpoint is not None:
            staged.extend(StagedChunk(*chunk) for chunk in checkpoint.chunks)
        # Chunks are put to S3 on a background thread while the file is read on; their records are
        # written when the whole file is read (a checkpoint keeps the list until then).
        planner = ChunkPlanner(
            provider, job.job_id, self._cfg.bucket_name, staged.append, background=Background()
        )
        if checkpoint is not None:
            planner.resume_counts(checkpoint.lanes)
        rejections = _Rejections(self._cfg.bucket_name, job.job_id, checkpoint)
        whole_file: S3Writer | None = None
        if provider.whole_file:
            whole_file = (
                S3Writer.resume(self._cfg.bucket_name, checkpoint.writers["whole_file"])
                if checkpoint is not None
                else S3Writer(self._cfg.bucket_name, symplify_file_key(job.job_id))
            )
        seen_keys: dict[str, str] = dict(checkpoint.seen) if checkpoint is not None else {}
        seen = (
            seen_contacts(list(seen_keys), self._seen_getter(seen_keys))
            if checkpoint is not None
            else seen_contacts()
        )
        counts = job.counts
        only_new = self._only_new(route)
        try:
            planned = plan_some(
                rows,
                route=route,
                provider=provider,
                columns=info.columns,
                job_id=job.job_id,
                planner=planner,
                reject=rejections.add,
                accept=(lambda item: whole_file.write_line(json.dumps(item, ensure_ascii=False)))
                if whole_file
                else None,
                progress=self._lease_keeper(job),
                seen=seen,
                stop=stopper(remaining_ms) if self._invoker is not None else None,
                text_rows=info.text_rows,
                skip=only_new,
            )
            counts.read += planned.read
            counts.rejected = rejections.count
            if planned.stopped:
                state = Checkpoint(
                    ref=ObjectRef(ref.bucket, ref.key, ref.version, ref.etag, ref.size),
                    route_index=route_index,
                    route=route,
                    last_row=planned.last_row,
                    read=counts.read,
                    rejected=counts.rejected,
                    lost=rejections.lost,
                    lanes=planner.lane_counts(),
                    chunks=[(c.chunk_id, c.key, c.rows, c.byte_range) for c in staged],
                    writers={},
                    seen=seen_keys,
                    columns=info.columns,
                    offset=info.position(),
                    skipped=(checkpoint.skipped if checkpoint is not None else 0)
                    + (only_new.skipped if only_new else 0),
                    file={"format": info.format, "encoding": info.encoding, "delimiter": info.delimiter},
                )
                return self._checkpoint(job, state, rejections, whole_file, seen)
        finally:
            seen.close()
        rejections.close()
        if whole_file is not None:
            whole_file.close()
        messages = self._record_chunks(job, route, staged)
        skipped = (checkpoint.skipped if checkpoint is not None else 0) + (
            only_new.skipped if only_new else 0
        )

        def digest() -> str:
            return hashing.hexdigest() if hashing is not None else self._content_digest(ref)

        return self._conclude(job, route, messages, rejections.lost, digest, skipped)

    def _record_chunks(self, job: Job, route: Route, staged: list[StagedChunk]) -> list[ChunkMessage]:
        """Record every staged chunk as pending (and only those: records an interrupted invocation
        left for chunks cut differently are removed), with the message that will send it."""
        envelope = self._envelope(job, route)
        messages = [
            ChunkMessage(
                job.job_id,
                c.chunk_id,
                route.destination,
                route.target,
                c.key,
                c.rows,
                envelope,
                byte_range=c.byte_range,
            )
            for c in sorted(staged, key=lambda c: c.chunk_id)  # staged on several threads: file order
        ]
        self._store.replace_chunks(  # the records made as they are written
            Chunk(job.job_id, m.chunk_id, m.key, m.rows, message=m.to_json(), byte_range=m.byte_range)
            for m in messages
        )
        self._store.prune_chunks(job.job_id, {m.chunk_id for m in messages})
        job.chunks_total = len(messages)
        return messages

    def _seen_getter(self, keys: dict[str, str]) -> Callable[[str, Path], None]:
        def get(name: str, path: Path) -> None:
            self._s3.download_file(self._cfg.bucket_name, keys[name], str(path))

        return get

    def _checkpoint(
        self,
        job: Job,
        state: Checkpoint,
        rejections: _Rejections,
        whole_file: S3Writer | None,
        seen: SeenContacts,
    ) -> SplitOutcome:
        """Keep the split's state, make it the job's current checkpoint and hand over to a new invocation."""
        assert self._invoker is not None
        generation = job.split_generation + 1
        prefix = f"jobs/{job.job_id}/checkpoints/{generation:05d}-{job.split_owner}"
        state.writers = rejections.suspend(prefix)
        if whole_file is not None:
            state.writers["whole_file"] = whole_file.suspend(f"{prefix}/whole-file.tail")

        def put(name: str, path: Path) -> None:
            key = f"jobs/{job.job_id}/seen/{job.split_owner}-{name}"
            self._s3.upload_file(str(path), self._cfg.bucket_name, key)
            state.seen[name] = key

        names = seen.snapshot(put)
        state.seen = {name: state.seen[name] for name in names}
        key = f"{prefix}/state.json"
        self._s3.put_object(Bucket=self._cfg.bucket_name, Key=key, Body=state.to_json().encode())
        if not self._store.record_checkpoint(job.job_id, job.split_generation, job.split_owner, key):
            raise SplitLost(f"job {job.job_id}: another invocation took the split over")
        self._invoker.invoke(Continuation(job.job_id, generation, key).payload())
        logger.info(
            "split continues in a new invocation",
            extra={"job_id": job.job_id, "generation": generation, "after_row": state.last_row},
        )
        return SplitOutcome(
            job.job_id,
            JobStatus.SPLITTING,
            counts=job.counts,
            chunks=len(state.chunks),
            message=f"continued after row {state.last_row} (invocation {job.split_invocations + 1})",
        )

    def _conclude(
        self,
        job: Job,
        route: Route,
        chunks: list[ChunkMessage],
        lost: str | None,
        digest: Callable[[], str],
        skipped: int,
    ) -> SplitOutcome:
        counts = job.counts
        problem = split_problem(
            read=counts.read,
            rejected=counts.rejected,
            lost=lost,
            tolerated=tolerated_percent(route.options, self._cfg.tolerated_invalid_percent),
            rejected_at=f"results/{job.job_id}/rejected.csv",
            skipped=skipped,
        )
        if problem is not None:  # the job fails (its staged chunks settle as failed); nothing is sent
            return self._fail(job, problem)
        holder = self._claim_file(job, route, digest()) if chunks else None
        if holder is not None:
            return self._fail(job, already_sent(route.destination.value, route.target, holder))
        if job.dry_run:
            job.status = JobStatus.PLANNED
            counts.planned = counts.read - counts.rejected
            job.message = f"dry run: {counts.planned} rows in {len(chunks)} chunks would be sent"
            self._store.finish_split(job)
            publish(self._cfg.bucket_name, self._cfg.event_bus_name, job)
            return SplitOutcome(
                job.job_id, job.status, counts=counts, chunks=len(chunks), message=job.message
            )
        job.status = JobStatus.SENDING
        self._store.finish_split(job)
        self._enqueue(job, route, chunks)
        logger.info(
            "job split",
            extra={
                "job_id": job.job_id,
                "rows_read": counts.read,
                "rows_rejected": counts.rejected,
                "chunks": len(chunks),
            },
        )
        if not chunks:
            settled = settle_job(self._store, self._cfg.bucket_name, self._cfg.event_bus_name, job.job_id)
            if settled is not None:
                return SplitOutcome(job.job_id, settled.status, counts=settled.counts)
        return SplitOutcome(job.job_id, job.status, counts=counts, chunks=len(chunks))

    def _content_digest(self, ref: ObjectRef) -> str:
        """The SHA-256 of the whole object, read once more (a split that continued read it in parts)."""
        hashing = HashingReader(self._open_object(ref))
        while hashing.read(8 * 1024 * 1024):
            pass
        return hashing.hexdigest()

    def _only_new(self, route: Route) -> OnlyNew | None:
        """only-new=true: the filter that skips contacts sent to this destination and target before."""
        if not yes(route.options, "only-new"):
            return None
        return OnlyNew.load(self._cfg.bucket_name, route.destination.value, route.target)

    def _claim_file(self, job: Job, route: Route, digest: str) -> FileClaim | None:
        """Claim the file's content for the route's destination and target (sent_files.py); the claim of
        the job that has it already, if any. A dry run only asks."""
        where = (digest, route.destination.value, route.target)
        if job.dry_run:
            return self._store.file_claim(*where, RESEND_WINDOW_SECONDS)
        force = yes(route.options, "resend")
        return self._store.claim_file(*where, job.job_id, RESEND_WINDOW_SECONDS, force)

    def _lease_keeper(self, job: Job) -> Callable[[int], None]:
        """A progress callback that renews the split lease at most every RENEW_EVERY_SECONDS (SplitLost
        when another invocation has taken the job over meanwhile)."""
        last = time.monotonic()

        def renew(_rows: int) -> None:
            nonlocal last
            if time.monotonic() - last >= RENEW_EVERY_SECONDS:
                self._store.renew_split_lease(job.job_id, SPLIT_LEASE_SECONDS, job.split_owner)
                last = time.monotonic()

        return renew

    def _envelope(self, job: Job, route: Route) -> dict[str, Any]:
        """The provider's shared request fields; for a whole-file provider, the presigned download URL."""
        provider = provider_for(route.destination)
        envelope = provider.envelope(route.target, route.options)
        if provider.whole_file:
            envelope["downloadUrl"] = presign_get(
                self._cfg.bucket_name, symplify_file_key(job.job_id), self._cfg.presign_expiry_seconds
            )
        return envelope

    def _queue_unclaimed(self, job: Job, route: Route) -> None:
        """An event again for a job whose split finished but never recorded that its messages all went out:
        the split stopped while queueing (an SQS error that outlasted its retries, a crash), so chunks no
        sender has claimed may have no message yet, and Lambda's retry of the event comes here. Their messages are queued again: a copy of one that did go
        out is harmless, since a chunk is claimed once and its copies find it taken."""
        unclaimed = [
            ChunkMessage.from_json(c.message)
            for c in self._store.chunks(job.job_id)
            if c.state is ChunkState.PENDING and c.message
        ]
        if unclaimed:
            logger.info("chunks queued again", extra={"job_id": job.job_id, "chunks": len(unclaimed)})
            self._enqueue(job, route, unclaimed)

    def _enqueue(self, job: Job, route: Route, messages: list[ChunkMessage]) -> None:
        send_chunk_messages(self._cfg.queue_url(route.destination), messages)
        self._store.mark_queued(job.job_id)
