"""The splitter: one S3 object in, a job with provider-sized staged chunks and one SQS message each out.

No provider is called until the whole file has been read and the invalid share checked: chunks are staged
in S3 while streaming (memory stays flat), and only then does one small message per chunk go out.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, BinaryIO, cast

from botocore.exceptions import ClientError

from fanout import ids
from fanout.aws import client
from fanout.chunking import Background, ChunkPlanner, StagedChunk
from fanout.config import SplitterConfig
from fanout.models import ChunkMessage, ChunkState, Counts, JobStatus, ObjectRef, Rejection, Route
from fanout.observability import key_ref, logger
from fanout.options import yes
from fanout.planning import plan_rows, split_problem, tolerated_percent
from fanout.providers import provider_for
from fanout.queueing import send_chunk_messages
from fanout.reading import FileFormatError, LostRows, open_rows
from fanout.results import publish, settle_job, spreadsheet_safe, write_rows_file
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
from fanout.staging import S3Writer, presign_get, rejected_jsonl_key, result_key, symplify_file_key
from fanout.store import Chunk, Job, JobStore, Settlement
from fanout.validation import file_problem

# A live split renews its claim on the job every RENEW_EVERY_SECONDS; one that died (out of memory, timed
# out) lets it lapse, and the next delivery of the event (Lambda retries asynchronous invocations after
# about one and two minutes) splits the file again from the start.
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

    def __init__(self, bucket: str, job_id: str) -> None:
        self.count = 0
        self.lost: str | None = None  # the first row after which rows of the file went unread
        self._jsonl = S3Writer(bucket, rejected_jsonl_key(job_id))
        self._csv = S3Writer(bucket, result_key(job_id, "rejected.csv"), content_type="text/csv")
        self._csv.write(REJECTED_CSV_HEADER.encode())

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


def _csv_cell(value: str) -> str:
    # Values are echoed for people to fix; neutralise spreadsheet formulas on the way out.
    value = spreadsheet_safe(value)
    if any(c in value for c in ',"\n\r'):
        value = '"' + value.replace('"', '""') + '"'
    return value


def _csv_line(rejection: Rejection) -> str:
    cells = [str(rejection.row), rejection.column, rejection.value[:200], rejection.reason]
    return ",".join(_csv_cell(c) for c in cells) + "\n"


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


def fail_job(store: JobStore, bucket: str, bus: str, job: Job, message: str) -> SplitOutcome:
    """Record the job as failed at the split with `message`; staged rows (never sent) are settled as
    failed, rows.csv and summary.json are written and the JobFailed event is sent."""
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


def _failed_split_event(record: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The splitter event inside an entry of SplitterFailureQueue, and why it failed: Lambda's on-failure
    destination record (retries spent), or the event itself (EventBridge could not invoke the splitter)."""
    if "requestPayload" in record:
        response = record.get("responsePayload") or {}
        error = response.get("errorMessage") if isinstance(response, dict) else None
        attempts = record.get("requestContext", {}).get("approximateInvokeCount", "several")
        return record["requestPayload"], f"{error or 'the splitter failed'} ({attempts} attempts)"
    return record, "EventBridge could not invoke the splitter"


def fail_unfinished_split(store: JobStore, bucket: str, bus: str, record: dict[str, Any]) -> list[str]:
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
            if job.status is not JobStatus.SPLITTING:
                continue  # the split finished (or failed) after all: its own outcome stands
            chunks = store.chunks(job.job_id)
            job.chunks_total = len(chunks)
            job.counts = Counts(read=sum(c.rows for c in chunks))
            fail_job(store, bucket, bus, job, message)
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
                fail_job(store, bucket, bus, job, message)
                failed.append(job.job_id)
    return failed


class Splitter:
    """Splits objects for one deployed stack (its bucket, table, queues and bus)."""

    def __init__(self, config: SplitterConfig, store: JobStore) -> None:
        self._cfg = config
        self._store = store

    @cached_property
    def _s3(self) -> Any:
        """The container's S3 client, made at first use rather than at cold start."""
        return client("s3")

    def split(self, ref: ObjectRef) -> list[SplitOutcome]:
        """Split one object into one job per route; a duplicate event returns the existing jobs.

        A "folder" the S3 console creates (a key ending in "/") is no file: it makes no job.
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
        return [self._split_route(ref, index, route) for index, route in enumerate(routes)]

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

    def _split_route(self, ref: ObjectRef, index: int, route: Route) -> SplitOutcome:
        job = self._new_job(ref, index, route)
        if not self._store.create_job(job, SPLIT_LEASE_SECONDS):
            existing = self._store.get_job(job.job_id)
            status = existing.status if existing else JobStatus.SPLITTING
            if status is JobStatus.SPLITTING:
                raise SplitInProgress(f"job {job.job_id} is being split by another invocation")
            logger.info("duplicate event: job exists", extra={"job_id": job.job_id})
            return SplitOutcome(job.job_id, status, duplicate=True)
        try:
            return self._stream(ref, job, route)
        except FileFormatError as exc:
            return self._fail(job, str(exc))

    def _stream(self, ref: ObjectRef, job: Job, route: Route) -> SplitOutcome:
        provider = provider_for(route.destination)
        get_args: dict[str, Any] = {"Bucket": ref.bucket, "Key": ref.key}
        if ref.version:
            get_args["VersionId"] = ref.version
        body = HashingReader(self._s3.get_object(**get_args)["Body"])
        info, rows = open_rows(cast(BinaryIO, body), name=ref.key)
        job.encoding, job.file_format = info.encoding, info.format
        problem = file_problem(provider, route, info)
        if problem:
            return self._fail(job, problem)

        chunks: list[ChunkMessage] = []
        envelope = self._envelope(job, route)

        def staged(chunk: StagedChunk) -> None:
            message = ChunkMessage(
                job.job_id, chunk.chunk_id, route.destination, route.target, chunk.key, chunk.rows, envelope
            )
            chunks.append(message)
            self._store.put_chunk(
                Chunk(job.job_id, chunk.chunk_id, chunk.key, chunk.rows, message=message.to_json())
            )

        # Chunks are put to S3 and recorded on a background thread while the file is read on.
        planner = ChunkPlanner(provider, job.job_id, self._cfg.bucket_name, staged, background=Background())
        rejections = _Rejections(self._cfg.bucket_name, job.job_id)
        whole_file = (
            S3Writer(self._cfg.bucket_name, symplify_file_key(job.job_id))
            if getattr(provider, "whole_file", False)
            else None
        )
        counts = job.counts
        only_new = self._only_new(route)
        try:
            counts.read = plan_rows(
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
                progress=self._lease_keeper(job.job_id),
                skip=only_new,
            )
        finally:
            rejections.close()
            if whole_file is not None:
                whole_file.close()
        counts.rejected = rejections.count
        job.chunks_total = len(chunks)
        skipped = only_new.skipped if only_new else 0
        return self._conclude(job, route, chunks, rejections.lost, body.hexdigest(), skipped)

    def _conclude(
        self, job: Job, route: Route, chunks: list[ChunkMessage], lost: str | None, digest: str, skipped: int
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
        holder = self._claim_file(job, route, digest) if chunks else None
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

    def _lease_keeper(self, job_id: str) -> Callable[[int], None]:
        """A progress callback that renews the split lease at most every RENEW_EVERY_SECONDS."""
        last = time.monotonic()

        def renew(_rows: int) -> None:
            nonlocal last
            if time.monotonic() - last >= RENEW_EVERY_SECONDS:
                self._store.renew_split_lease(job_id, SPLIT_LEASE_SECONDS)
                last = time.monotonic()

        return renew

    def _envelope(self, job: Job, route: Route) -> dict[str, Any]:
        """The provider's shared request fields; for a whole-file provider, the presigned download URL."""
        provider = provider_for(route.destination)
        envelope = provider.envelope(route.target, route.options)
        if getattr(provider, "whole_file", False):
            envelope["downloadUrl"] = presign_get(
                self._cfg.bucket_name, symplify_file_key(job.job_id), self._cfg.presign_expiry_seconds
            )
        return envelope

    def _enqueue(self, job: Job, route: Route, messages: list[ChunkMessage]) -> None:
        send_chunk_messages(self._cfg.queue_url(route.destination), messages)
