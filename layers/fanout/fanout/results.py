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
from operator import attrgetter

from fanout.aws import client
from fanout.models import ChunkState, JobStatus, RowResult, RowState, StagedRow
from fanout.observability import key_ref, logger
from fanout.sent_contacts import NewContacts, contact_hash, record
from fanout.staging import (
    S3Writer,
    byte_range,
    chunk_result_key,
    iter_lines,
    put_bytes,
    range_bounds,
    read_object,
    rejected_jsonl_key,
    result_key,
)
from fanout.store import Chunk, Job, JobStore, now_iso

EVENT_SOURCE = "journey-fanout"
# The lease of a settle the splitter makes in place (a job that failed at its split, or staged no chunk);
# a settle handed to the job function leases its invocation's time left instead (fanout.settling).
SETTLE_LEASE_SECONDS = 300
# Chunk result files read ahead of the merge, S3 GETs in flight at once (the S3 client's pool holds 20).
# A million-row Mateo job has 2,000 of them: one after the other, at 15-30 ms a GET on AWS, they alone
# would take most of the settling sender's 60 s. Memory: this many chunks' results, a few MB at most.
READ_AHEAD = 16
ROWS_HEADER = ["row", "identity", "state", "answer"]
# A chunk whose rows all got one answer keeps it on its record (DynamoDB: a KB a write unit) rather than in
# a result file; a longer one, which no provider's seed gives, goes to a file like any other.
ANSWER_ON_RECORD_MAX = 1_000
# Staged bytes one read fetches for chunks settled with one answer (never more than one staged object):
# five Mateo chunks, so a million-row job's 2,000 chunks are some 450 reads (a read stays in one object).
# 1 MiB of Mateo lines makes 1.1 MB of records (tracemalloc), so READ_AHEAD reads in flight hold about
# 35 MB of the settling sender's memory (a whole 4 MiB object a read: some 145 MB).
STAGED_READ_BYTES = 1024 * 1024
FLUSH_LINES = 10_000  # rows.csv lines joined before each write: about 1 MB
_ROW = attrgetter("row")
_ROW_STATE = {  # the rows' state in a chunk settled with one answer (`one_answer`), by the chunk's
    ChunkState.SENT: RowState.SENT,
    ChunkState.FAILED: RowState.FAILED,
    ChunkState.UNCERTAIN: RowState.UNCERTAIN,
}
# A staged line's row and identity, when the identity is one CSV writes as is: no comma, quote or line
# break (a JSON string without escapes holds no quote or line break; a backslash would be an escape).
# Matched after a line break (the text read with one put before it): a line's start, never text inside an
# item, and about three times faster than a multi-line ^ (0.45 against 1.41 µs a row).
_PLAIN_STAGED_LINE = re.compile(r'\n\{"row":(0|[1-9][0-9]*),"identity":"([^"\\,\n]+)","item":')
_QUOTED = re.compile(r'[,"\r\n]')  # a field holding one of these is quoted (csv_line)
_NUMBER = re.compile(r"[+-]?[\d\s().-]*")  # +46 70-123 45 67, -5: a spreadsheet reads these as numbers


def spreadsheet_safe(value: str) -> str:
    """`value` as a spreadsheet shows it as text, never runs it: one starting with =, +, -, @, tab or CR
    (a formula, or a DDE call such as `=cmd|' /C calc'!A0`) gets a leading apostrophe, unless it is a
    plain number such as a phone number. For every CSV people open: rows.csv and rejected.csv."""
    if value[:1] in ("=", "+", "-", "@", "\t", "\r") and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_line(fields: Iterable[str]) -> str:
    """One line of a CSV file people open (rows.csv, rejected.csv): the one place that writes a line.

    A field is quoted when it holds a comma, a quote or a line break, a CR alone included: csv.writer
    with "\n" line ends leaves a lone CR bare, and readers and spreadsheets break the row there."""
    return ",".join(['"' + f.replace('"', '""') + '"' if _QUOTED.search(f) else f for f in fields]) + "\n"


def rows_csv_text(results: Iterable[RowResult]) -> str:
    """Rows as rows.csv has them, without its header: the one place that gives a row's fields. A
    settled chunk's results are stored so, and settling the job merges them with little more than a
    CSV read and write a row (a million rows: about 2 s of CPU rather than 7)."""
    return "".join([csv_line(_fields(r)) for r in results])


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
    return [_record(fields) for fields in csv.reader(io.StringIO(text, newline=""))]


def _record(fields: list[str]) -> _Record:
    return int(fields[0]), csv_line(fields), fields[2], fields[1]


def one_answer(results: list[RowResult], state: ChunkState, rows: int) -> str | None:
    """The answer every one of a chunk's `rows` rows got, when they all got the same one in the row state
    of the chunk's `state` (and it is short enough for the chunk's record): the chunk is then settled with
    it and no result file (`Chunk.answer`). None when a result file must hold each row's answer."""
    row_state = _ROW_STATE.get(state)
    if row_state is None or not results or len(results) != rows:
        return None
    answer = results[0].answer
    if len(answer) > ANSWER_ON_RECORD_MAX:
        return None
    return answer if all(r.state is row_state and r.answer == answer for r in results) else None


def _staged_records(data: bytes, state: RowState, answer: str) -> list[_Record]:
    """A chunk's rows from its staged lines, each ending `state` with `answer`: the records its result
    file would have held.

    Lines as `staged_line` writes them whose identity holds nothing CSV quotes (nor a JSON escape) are cut
    by one pattern, and each line is its row, its identity made spreadsheet-safe and the CSV form of state
    and answer, written once (`rows_csv_text`): 1.3 µs a row against 5.8 through StagedRow and the CSV
    writer (100,000 Mateo lines), which take any other chunk; tests hold the two to the same records."""
    text = data.decode("utf-8")
    found = _PLAIN_STAGED_LINE.findall("\n" + text)
    if len(found) != text.count("\n"):
        staged = sorted((StagedRow.from_json(line) for line in text.split("\n") if line), key=_ROW)
        return _records(rows_csv_text(RowResult(row.row, row.identity, state, answer) for row in staged))
    tail = rows_csv_text([RowResult(0, "x", state, answer)]).removeprefix("0,x,")  # state and answer
    value = state.value
    records = []
    for row, identity in found:
        safe = spreadsheet_safe(identity)
        records.append((int(row), f"{row},{safe},{tail}", value, safe))
    records.sort()
    return records


def _staged_bytes(bucket: str, key: str, span: str | None) -> bytes:
    """Staged lines; none for a chunk recorded by a split that died before its object was put."""
    return read_object(bucket, key, span) or b""


def _chunk_records(bucket: str, job: Job, chunk: Chunk) -> list[_Record]:
    """A settled chunk's rows from its result file; a chunk never answered gives its staged rows as
    failed (or uncertain) with its last error."""
    data = read_object(bucket, chunk_result_key(job.job_id, chunk.chunk_id))
    if data is not None:
        return _records(data.decode("utf-8"))
    reason = chunk.last_error or job.message or "not sent"
    state = RowState.UNCERTAIN if chunk.state is ChunkState.UNCERTAIN else RowState.FAILED
    return _staged_records(_staged_bytes(bucket, chunk.key, chunk.byte_range), state, reason)


def _answered_records(bucket: str, chunks: list[Chunk]) -> list[_Record]:
    """The rows of chunks settled with one answer each, whose staged bytes lie in one object in file
    order: one ranged read for all of them, cut at each chunk's range."""
    spans = [range_bounds(c.byte_range) if c.byte_range else None for c in chunks]
    if spans[0] is None:  # a chunk staged alone (a split half): all of its object
        span_start, span = 0, None
    else:
        span_start, span_end = spans[0][0], (spans[-1] or spans[0])[1]
        span = byte_range(span_start, span_end - span_start + 1)
    data = _staged_bytes(bucket, chunks[0].key, span)
    records: list[_Record] = []
    for chunk, bounds in zip(chunks, spans, strict=True):
        assert chunk.answer is not None
        part = data if bounds is None else data[bounds[0] - span_start : bounds[1] - span_start + 1]
        records += _staged_records(part, _ROW_STATE[chunk.state], chunk.answer)
    return records


def _reads(chunks: list[Chunk]) -> list[list[Chunk]]:
    """A lane's chunks (in file order) grouped by the S3 read that fetches them: a chunk with a result
    file alone; chunks settled with one answer whose ranges follow one another in one staged object
    together, up to STAGED_READ_BYTES."""
    groups: list[list[Chunk]] = []
    for chunk in chunks:
        if groups and _read_together(groups[-1], chunk):
            groups[-1].append(chunk)
        else:
            groups.append([chunk])
    return groups


def _read_together(group: list[Chunk], chunk: Chunk) -> bool:
    first, last = group[0], group[-1]
    if last.answer is None or chunk.answer is None or last.key != chunk.key:
        return False
    if not (first.byte_range and last.byte_range and chunk.byte_range):
        return False
    start, end = range_bounds(chunk.byte_range)
    return (
        start > range_bounds(last.byte_range)[1]
        and end - range_bounds(first.byte_range)[0] < STAGED_READ_BYTES
    )


def _group_records(bucket: str, job: Job, group: list[Chunk]) -> list[_Record]:
    if group[0].answer is None:
        return _chunk_records(bucket, job, group[0])
    return _answered_records(bucket, group)


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

    def fetch(group: list[Chunk]) -> list[_Record]:
        return _group_records(bucket, job, group)

    return [chain.from_iterable(read_ahead(_reads(lane), fetch, window)) for lane in by_lane.values()]


def _rejected(bucket: str, job_id: str) -> Iterator[_Record]:
    for line in iter_lines(bucket, rejected_jsonl_key(job_id)):
        data = json.loads(line)
        row = int(data["row"])
        yield _record(_fields(RowResult(row, "", RowState.REJECTED, data["reason"])))


def write_rows_file(bucket: str, job: Job, chunks: list[Chunk], sent: NewContacts | None = None) -> None:
    """Merge rejected rows and every chunk's results into rows.csv, in file order; the hashes of the
    contacts sent (or maybe sent: uncertain) go to `sent` when given, for the record only-new reads
    (sent_contacts.py)."""
    hashes = array("Q")
    streams: list[Iterable[_Record]] = [_rejected(bucket, job.job_id), *_lanes(bucket, job, chunks)]
    with S3Writer(bucket, result_key(job.job_id, "rows.csv"), content_type="text/csv") as out:
        lines = [",".join(ROWS_HEADER) + "\n"]
        for _row, line, state, identity in heapq.merge(*streams):
            lines.append(line)
            if state in _SENT_STATES:
                hashes.append(contact_hash(identity))
            if len(lines) >= FLUSH_LINES:
                out.write("".join(lines).encode("utf-8"))
                lines.clear()
                if sent is not None:
                    sent.add(hashes)
                del hashes[:]
        out.write("".join(lines).encode("utf-8"))
    if sent is not None:
        sent.add(hashes)


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


def settle_job(
    store: JobStore, bucket: str, bus: str, job_id: str, lease_seconds: int = SETTLE_LEASE_SECONDS
) -> Job | None:
    """Finish the job if every chunk has settled; exactly one caller at a time does it.

    Returns the final job, or None when the job is not ready or another caller holds the settling lease.
    The event and summary go out before the final status is stored: a crash in between lets the lease
    lapse and the next caller settles again, so the event is sent at least once, never lost.
    """
    if not store.begin_settling(job_id, lease_seconds):
        return None
    job = store.get_job(job_id)
    if job is None:
        return None
    with NewContacts() as sent:
        write_rows_file(bucket, job, store.chunks(job_id), sent)
        _record_sent(bucket, job, sent)
    job.status = final_status(job)
    if job.status is JobStatus.FAILED and not job.message:
        job.message = f"no row could be sent; see results/{job_id}/rows.csv for each row's answer"
    job.finished_at = now_iso()
    publish(bucket, bus, job)
    store.finish_job(job_id, job.status, job.message)
    return job


def _record_sent(bucket: str, job: Job, sent: NewContacts) -> None:
    """Add the job's sent contacts to its destination and target's record (what only-new skips). A record
    that cannot be written is logged, not fatal: the job has sent what it sent either way."""
    if not sent or not job.destination:
        return
    try:
        record(bucket, job.destination, job.target, job.job_id, job.created_at[:10], sent)
    except Exception as exc:  # the job's own results are written; only the only-new record is behind
        logger.warning("sent contacts not recorded", extra={"job_id": job.job_id, "error": str(exc)})
