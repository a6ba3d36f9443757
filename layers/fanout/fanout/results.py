"""Settling a job: the per-row results file, the summary and the JobCompleted/JobFailed event.

Runs once per job, when its last chunk settles (or at once when the split itself fails). Every input row
appears exactly once in `results/<job>/rows.csv`, in file order.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import re
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain

from fanout.aws import client
from fanout.models import ChunkState, JobStatus, RowResult, RowState
from fanout.observability import key_ref, logger
from fanout.sent_contacts import contact_hash, record
from fanout.staging import (
    S3Writer,
    chunk_result_key,
    iter_lines,
    put_bytes,
    read_object,
    rejected_jsonl_key,
    result_key,
    staged_rows,
)
from fanout.store import Chunk, Job, JobStore, now_iso

EVENT_SOURCE = "journey-fanout"
SETTLE_LEASE_SECONDS = 300
# Chunk result files read ahead of the merge, S3 GETs in flight at once (the S3 client's pool holds 20).
# A million-row Mateo job has 2,000 of them: one after the other, at 15-30 ms a GET on AWS, they alone
# would take most of the settling sender's 60 s. Memory: this many chunks' results, a few MB at most.
READ_AHEAD = 16
ROWS_HEADER = ["row", "identity", "state", "answer"]
FLUSH_LINES = 10_000  # rows.csv lines joined before each write: about 1 MB
_NUMBER = re.compile(r"[+-]?[\d\s().-]*")  # +46 70-123 45 67, -5: a spreadsheet reads these as numbers


def spreadsheet_safe(value: str) -> str:
    """`value` as a spreadsheet shows it as text, never runs it: one starting with =, +, -, @, tab or CR
    (a formula, or a DDE call such as `=cmd|' /C calc'!A0`) gets a leading apostrophe, unless it is a
    plain number such as a phone number. For every CSV people open: rows.csv and rejected.csv."""
    if value[:1] in ("=", "+", "-", "@", "\t", "\r") and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def rows_csv_text(results: Iterable[RowResult]) -> str:
    """Rows as rows.csv has them, without its header: the one place that writes a row's CSV form. A
    settled chunk's results are stored so, and settling the job merges them with little more than a
    CSV read and write a row (a million rows: about 2 s of CPU rather than 7)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(_fields(r) for r in results)
    return buffer.getvalue()


def _fields(result: RowResult) -> list[str]:
    return [
        str(result.row),
        spreadsheet_safe(result.identity),
        result.state.value,
        spreadsheet_safe(result.answer),
    ]


# A row's number (for the merge), its rows.csv line as written, its state and its identity (for the record
# of contacts sent).
_Record = tuple[int, str, str, str]


def _records(text: str) -> list[_Record]:
    """The rows of a chunk's results (rows_csv_text's output), each with its line as written.

    Text with no quote character holds one row a line and no comma inside a field (csv quotes both), so
    it is cut by hand, a few times faster than a CSV read and write; any other is read as CSV and each
    row written again, which gives back the same line."""
    if '"' not in text:
        records = []
        for line in text.split("\n"):
            if line:
                row, identity, state, _answer = line.split(",", 3)
                records.append((int(row), line + "\n", state, identity))
        return records
    return [_record(fields) for fields in csv.reader(io.StringIO(text))]


def _record(fields: list[str]) -> _Record:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return int(fields[0]), buffer.getvalue(), fields[2], fields[1]


def _chunk_records(bucket: str, job: Job, chunk: Chunk) -> list[_Record]:
    """A settled chunk's rows; a chunk never answered gives its staged rows as failed."""
    data = read_object(bucket, chunk_result_key(job.job_id, chunk.chunk_id))
    if data is not None:
        return _records(data.decode("utf-8"))
    reason = chunk.last_error or job.message or "not sent"
    state = RowState.UNCERTAIN if chunk.state is ChunkState.UNCERTAIN else RowState.FAILED
    staged = staged_rows(bucket, chunk.key, chunk.byte_range)
    return [_record(_fields(RowResult(row.row, row.identity, state, reason))) for row in staged]


def read_ahead[T, R](items: Iterable[T], fetch: Callable[[T], R], window: int) -> Iterator[R]:
    """`fetch(item)` for each item, in order, with up to `window` fetches running ahead on threads."""
    with ThreadPoolExecutor(max_workers=window, thread_name_prefix="read-ahead") as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(fetch, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _lanes(bucket: str, job: Job, chunks: list[Chunk]) -> list[Iterator[_Record]]:
    """One row-ordered stream per lane: chunks of a lane hold increasing, disjoint row ranges."""
    by_lane: dict[str, list[Chunk]] = {}
    for chunk in sorted(chunks, key=lambda c: c.chunk_id):
        if chunk.state is not ChunkState.SPLIT:
            by_lane.setdefault(chunk.chunk_id[0], []).append(chunk)
    window = max(2, READ_AHEAD // max(1, len(by_lane)))

    def fetch(chunk: Chunk) -> list[_Record]:
        return _chunk_records(bucket, job, chunk)

    return [chain.from_iterable(read_ahead(lane, fetch, window)) for lane in by_lane.values()]


def _rejected(bucket: str, job_id: str) -> Iterator[_Record]:
    for line in iter_lines(bucket, rejected_jsonl_key(job_id)):
        data = json.loads(line)
        row = int(data["row"])
        yield _record(_fields(RowResult(row, "", RowState.REJECTED, data["reason"])))


def write_rows_file(bucket: str, job: Job, chunks: list[Chunk]) -> array:
    """Merge rejected rows and every chunk's results into rows.csv, in file order; the hashes of the
    contacts sent (or maybe sent: uncertain) for the record only-new reads (sent_contacts.py)."""
    sent = array("Q")
    streams: list[Iterable[_Record]] = [_rejected(bucket, job.job_id), *_lanes(bucket, job, chunks)]
    with S3Writer(bucket, result_key(job.job_id, "rows.csv"), content_type="text/csv") as out:
        lines = [",".join(ROWS_HEADER) + "\n"]
        for _row, line, state, identity in heapq.merge(*streams):
            lines.append(line)
            if state in _SENT_STATES:
                sent.append(contact_hash(identity))
            if len(lines) >= FLUSH_LINES:
                out.write("".join(lines).encode("utf-8"))
                lines.clear()
        out.write("".join(lines).encode("utf-8"))
    return sent


_SENT_STATES = frozenset({RowState.SENT.value, RowState.UNCERTAIN.value})


def final_status(job: Job) -> JobStatus:
    """failed when no row reached the provider (or may have); with errors when some rows failed or are
    uncertain; completed otherwise (rejected rows within the tolerated share are reported, not errors)."""
    if job.status is JobStatus.FAILED:
        return JobStatus.FAILED
    if job.counts.sent == 0 and job.counts.uncertain == 0 and job.counts.read > job.counts.rejected:
        return JobStatus.FAILED
    if job.counts.failed or job.counts.uncertain:
        return JobStatus.COMPLETED_WITH_ERRORS
    return JobStatus.COMPLETED


def publish(bucket: str, bus: str, job: Job) -> None:
    """summary.json and the JobCompleted / JobFailed event (no contact data in either)."""
    summary = job.summary()
    put_bytes(bucket, result_key(job.job_id, "summary.json"), json.dumps(summary, indent=2).encode())
    detail_type = "JobFailed" if job.status is JobStatus.FAILED else "JobCompleted"
    if job.status is JobStatus.PLANNED:
        detail_type = "JobPlanned"
    client("events").put_events(
        Entries=[
            {
                "Source": EVENT_SOURCE,
                "DetailType": detail_type,
                "Detail": json.dumps(summary),
                "EventBusName": bus,
            }
        ]
    )
    logged = {**summary, "source": {**summary["source"], "key": key_ref(job.key)}}
    logged["message"] = job.message.replace(job.key, key_ref(job.key)) if job.key else job.message
    logger.info("job settled", extra={"job_id": job.job_id, "status": job.status.value, "counts": logged})


def settle_job(store: JobStore, bucket: str, bus: str, job_id: str) -> Job | None:
    """Finish the job if every chunk has settled; exactly one caller at a time does it.

    Returns the final job, or None when the job is not ready or another caller holds the settling lease.
    The event and summary go out before the final status is stored: a crash in between lets the lease
    lapse and the next caller settles again, so the event is sent at least once, never lost.
    """
    if not store.begin_settling(job_id, SETTLE_LEASE_SECONDS):
        return None
    job = store.get_job(job_id)
    if job is None:
        return None
    sent = write_rows_file(bucket, job, store.chunks(job_id))
    _record_sent(bucket, job, sent)
    job.status = final_status(job)
    if job.status is JobStatus.FAILED and not job.message:
        job.message = f"no row could be sent; see results/{job_id}/rows.csv for each row's answer"
    job.finished_at = now_iso()
    publish(bucket, bus, job)
    store.finish_job(job_id, job.status, job.message)
    return job


def _record_sent(bucket: str, job: Job, sent: array) -> None:
    """Add the job's sent contacts to its destination and target's record (what only-new skips). A record
    that cannot be written is logged, not fatal: the job has sent what it sent either way."""
    if not sent or not job.destination:
        return
    try:
        record(bucket, job.destination, job.target, job.job_id, job.created_at[:10], sent)
    except Exception as exc:  # the job's own results are written; only the only-new record is behind
        logger.warning("sent contacts not recorded", extra={"job_id": job.job_id, "error": str(exc)})
