"""From raw rows to staged chunks for one route: validate, de-duplicate, map to the provider's item,
chunk; then the file's verdict (`split_problem`). The splitter runs both against S3; `fanout validate` runs
the very same on a local file with no AWS at all, so it prints the verdict the job would get.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, cast

from fanout.chunking import ChunkPlanner, StagedChunk
from fanout.models import Contact, Rejection, Route
from fanout.options import DEFAULT_TOLERATED_INVALID_PERCENT
from fanout.providers.base import Provider
from fanout.reading import RawRow, TextRow
from fanout.validation import PlannedRow, RowValidator, duplicate

if TYPE_CHECKING:
    from fanout.dedup import Get, SeenContacts

# Rows validated before their duplicate check runs as one call (numpy's cost a call spread over them:
# `fanout validate` took about a µs a row more at 256, and no less at 4,096).
BATCH_ROWS = 1024
# Objects the garbage collector lets be made, less those freed, before it collects its youngest generation,
# while rows are planned. A row's lists and tuples live until its batch is staged and are then freed by
# reference counting: at Python's default (700) the collector still ran 895 times a million rows, 7 or 8
# of them over the whole heap, and freed 22 objects in all (0.49 to 0.79 s; `fanout validate` 7.0 s of CPU
# against 6.3 at this threshold, where it runs not once). Cycles, should any be made, are still
# collected, 10,000 objects later.
PLANNING_GC_THRESHOLD = 10_000
_ROW, _IDENTITY = itemgetter(0), itemgetter(1)  # of a PlannedRow
_REJECTED_ROW = attrgetter("row")


@dataclass(frozen=True, slots=True)
class Planned:
    """What `plan_some` did: rows read, the number of the last one, and whether it stopped early."""

    read: int
    last_row: int
    stopped: bool


def plan_rows(rows: Iterable[RawRow | TextRow], **kwargs: Any) -> int:
    """Plan every row (see `plan_some`); how many rows were read."""
    return plan_some(rows, **kwargs).read


def plan_some(
    rows: Iterable[RawRow | TextRow],
    *,
    route: Route,
    provider: Provider,
    columns: list[str],
    job_id: str,
    planner: ChunkPlanner,
    reject: Callable[[Rejection], None],
    accept: Callable[[Any], None] | None = None,
    progress: Callable[[int], None] | None = None,
    seen: SeenContacts | None = None,
    stop: Callable[[], bool] | None = None,
    text_rows: bool = False,
    skip: Callable[[str], str | None] | None = None,
) -> Planned:
    """Plan rows; each ends either staged in a chunk (and passed to `accept`) or rejected.

    Rows are read and handled a batch of BATCH_ROWS at a time, in file order. `text_rows`: every row's
    fields are `columns`, in order, all text (a CSV file): validated faster. After each batch,
    `progress(rows_read)` is called (the splitter renews its lease there), and after each whole batch
    `stop()` is asked: when True, planning ends there, at a chunk boundary (every open chunk is cut and
    staged), and `Planned.stopped` says rows may remain (a split that must continue).

    `skip(identity)`: why a valid, first-seen contact is not to be sent (only-new), or None to send it.
    Memory stays flat: rows stream through, chunks go to the planner's writers as they fill, and the
    duplicate check spills to disk. `seen`: the duplicate state to go on with (a continued split), kept
    open.
    """
    validator = RowValidator(route, provider, columns, text_rows)
    # A CSV file's rows that pass take its compiled row plan (one call a row, straight to the staged line);
    # every other row, and every row of a file without one, is validated and mapped as a Contact.
    compiled = validator.row_plan(job_id) if text_rows and accept is None else None
    plan_lane, row_plan = compiled if compiled is not None else ("", None)
    own_seen = seen is None
    if seen is None:
        seen = seen_contacts()
    stage = _Stager(provider, route, job_id, planner, reject, accept, seen, skip, plan_lane)
    validate = validator.validate

    def checked(raw: RawRow | TextRow) -> Contact | Rejection:
        if type(raw) is tuple:  # a TextRow the row plan did not take, or a file without one
            number, cells, size = raw
            return validate(RawRow(number, dict(zip(columns, cells, strict=True)), None, size))
        return validate(cast(RawRow, raw))

    read = last = 0
    stopped = False
    source = iter(rows)
    with _collected_less_often():
        try:
            while raws := list(islice(source, BATCH_ROWS)):
                read += len(raws)
                final = raws[-1]
                last = final[0] if type(final) is tuple else cast(RawRow, final).number
                if row_plan is not None:
                    planned = [row_plan(*raw) if type(raw) is tuple else None for raw in raws]
                    if None in planned:
                        stage.mixed(
                            [p if p is not None else checked(r) for r, p in zip(raws, planned, strict=True)]
                        )
                    else:
                        stage.planned(cast(list[PlannedRow], planned))
                else:
                    stage.mixed([checked(raw) for raw in raws])
                if progress is not None:
                    progress(read)
                if len(raws) < BATCH_ROWS:  # the file's last rows: nothing is left to hand over
                    break
                if stop is not None and stop():
                    stopped = True
                    break
            planner.finish()
        finally:
            planner.close()
            if own_seen:
                seen.close()
    return Planned(read, last, stopped)


class _Stager:
    """What `plan_some` does with a batch of checked rows: the duplicate check, then each row staged in a
    chunk or rejected, in file order."""

    def __init__(
        self,
        provider: Provider,
        route: Route,
        job_id: str,
        planner: ChunkPlanner,
        reject: Callable[[Rejection], None],
        accept: Callable[[Any], None] | None,
        seen: SeenContacts,
        skip: Callable[[str], str | None] | None,
        plan_lane: str,
    ) -> None:
        self._provider, self._route, self._job_id = provider, route, job_id
        self._planner, self._reject, self._accept = planner, reject, accept
        self._seen, self._skip = seen, skip
        self._plan_lane = plan_lane  # the lane of every row the row plan took

    def planned(self, rows: list[PlannedRow]) -> None:
        """A batch the row plan took whole (the usual one)."""
        if self._skip is not None:
            self.mixed(list(rows))
            return
        lane = self._plan_lane
        firsts = self._seen.first_rows_in(lane, map(_IDENTITY, rows), map(_ROW, rows))
        kept, duplicates = rows, []
        if firsts.count(None) != len(firsts):
            pairs = list(zip(rows, firsts, strict=True))
            kept = [planned for planned, first in pairs if first is None]
            duplicates = [duplicate(_ROW(p), first, _IDENTITY(p)) for p, first in pairs if first is not None]
        # the rest go to the planner at once; the rejections in file order (rejected.jsonl is merged so)
        for rejection in sorted([*duplicates, *self._planner.add_lines(lane, kept)], key=_REJECTED_ROW):
            self._reject(rejection)

    def mixed(self, batch: list[Contact | Rejection | PlannedRow]) -> None:
        """Any batch: planned rows, contacts and rejections."""
        provider, plan_lane, reject, skip = self._provider, self._plan_lane, self._reject, self._skip
        lane_of = provider.lane
        entries = [  # (lane, identity, row) of each row not rejected yet
            (plan_lane, c[1], c[0]) if isinstance(c, tuple) else (lane_of(c), c.identity, c.row)
            for c in batch
            if not isinstance(c, Rejection)
        ]
        firsts = self._seen.first_rows(entries)
        options, add_item, add_line = self._route.options, self._planner.add_item, self._planner.add_line
        at = 0  # the next contact's place in entries and firsts
        for checked in batch:
            if isinstance(checked, Rejection):
                reject(checked)
                continue
            lane, identity, row = entries[at]
            first = firsts[at]
            at += 1
            if first is not None:
                reject(duplicate(row, first, identity))
                continue
            reason = skip(identity) if skip is not None else None
            if reason is not None:
                reject(Rejection(row, reason, "", identity))
                continue
            if isinstance(checked, tuple):
                too_big = add_line(lane, row, checked[2], checked[3])
                if too_big is not None:
                    reject(too_big)
                continue
            item = provider.to_item(checked, self._job_id, options)
            too_big = add_item(lane, row, identity, item, as_read=True)
            if too_big is not None:
                reject(too_big)
            elif self._accept is not None:
                self._accept(item)


@contextmanager
def _collected_less_often() -> Iterator[None]:
    """The garbage collector's youngest generation collected at PLANNING_GC_THRESHOLD, not Python's
    default, for the block; the thresholds found are put back after it, unless changed meanwhile. A
    planning that finds the threshold raised already (another one in this process) leaves it as it is."""
    found = gc.get_threshold()
    if found[0] >= PLANNING_GC_THRESHOLD:
        yield
        return
    gc.set_threshold(PLANNING_GC_THRESHOLD, *found[1:])
    try:
        yield
    finally:
        if gc.get_threshold()[0] == PLANNING_GC_THRESHOLD:
            gc.set_threshold(*found)


def seen_contacts(kept: Sequence[str] = (), get: Get | None = None) -> SeenContacts:
    """An empty duplicate check, or the one a checkpoint kept under the names `kept` (fetched by `get`).

    fanout.dedup, and numpy with it (45-83 ms measured here), is imported here, at a split's start, not at
    the splitter's cold start."""
    from fanout.dedup import SeenContacts

    return SeenContacts.restore(kept, get) if get is not None else SeenContacts()


def tolerated_percent(
    options: Mapping[str, str], default: float = DEFAULT_TOLERATED_INVALID_PERCENT
) -> float:
    """The invalid share (percent) the file may have: its option tolerated-invalid-percent, else `default`."""
    value = options.get("tolerated-invalid-percent")
    return float(value) if value else default


def split_problem(
    *, read: int, rejected: int, lost: str | None, tolerated: float, rejected_at: str, skipped: int = 0
) -> str | None:
    """Why a file whose rows were all read and planned must fail with nothing sent, or None when it goes.

    `lost`: the first reading error that left rows unread; `rejected_at`: where the rejected rows are
    listed (results/<job>/rejected.csv); `skipped`: rejected rows that are not invalid (contacts only-new
    skips as sent before). The splitter and `fanout validate` both decide here.
    """
    if lost is not None:
        # Rows went unread (gzip or a JSON array cut off) or were swallowed by a quote never closed: the
        # counts cannot cover the file, and sending part of it would enrol people twice once the complete
        # file comes.
        return f"{lost}; nothing was sent: drop the complete, corrected file again"
    if read == 0:
        return "the file has no data rows"
    invalid = rejected - skipped
    share = 100.0 * invalid / read
    if share > tolerated:
        return (
            f"{invalid} of {read} rows ({share:.1f}%) are invalid, more than the {tolerated:g}% tolerated;"
            f" nothing was sent. Fix the rows listed in {rejected_at} and drop the file again, or set the"
            " file option tolerated-invalid-percent"
        )
    return None


@dataclass(frozen=True, slots=True)
class Plan:
    """What sending a file takes: its chunks, the provider calls they make, and how long those take.

    `seconds` is None unless the destination can tell: a provider with a `plan_seconds(calls)` method (a
    quota-limited one, say) fills it in.
    """

    chunks: int
    provider_calls: int
    seconds: float | None = None


def plan_of(provider: Provider, chunks: Sequence[StagedChunk]) -> Plan:
    """The plan of staged `chunks`: a batch provider takes one call a chunk, a one-item provider one call
    a row, a whole-file provider one call for the file."""
    if provider.whole_file:
        calls = 1 if chunks else 0
    elif provider.limits.max_items == 1:
        calls = sum(chunk.rows for chunk in chunks)
    else:
        calls = len(chunks)
    estimate = getattr(provider, "plan_seconds", None)
    return Plan(len(chunks), calls, estimate(calls) if callable(estimate) else None)
