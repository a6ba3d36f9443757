"""From raw rows to staged chunks for one route: validate, de-duplicate, map to the provider's item,
chunk. The splitter runs it against S3; `fanout validate` runs it on a local file with no AWS at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fanout.chunking import ChunkPlanner
from fanout.dedup import SeenContacts
from fanout.models import Contact, Rejection, Route, StagedRow
from fanout.providers.base import Provider
from fanout.reading import RawRow
from fanout.validation import RowValidator, duplicate

BATCH_ROWS = 256  # rows validated before their duplicate check runs as one call


@dataclass(frozen=True, slots=True)
class Planned:
    """What `plan_some` did: rows read, the number of the last one, and whether it stopped early."""

    read: int
    last_row: int
    stopped: bool


def plan_rows(rows: Iterable[RawRow], **kwargs: Any) -> int:
    """Plan every row (see `plan_some`); how many rows were read."""
    return plan_some(rows, **kwargs).read


def plan_some(
    rows: Iterable[RawRow],
    *,
    route: Route,
    provider: Provider,
    columns: list[str],
    job_id: str,
    planner: ChunkPlanner,
    reject: Callable[[Rejection], None],
    accept: Callable[[Any], None] | None = None,
    progress: Callable[[int], None] | None = None,
    progress_every: int = 10_000,
    seen: SeenContacts | None = None,
    stop: Callable[[], bool] | None = None,
    text_rows: bool = False,
) -> Planned:
    """Plan rows; each ends either staged in a chunk (and passed to `accept`) or rejected.

    `text_rows`: every row's fields are `columns`, in order, all text (a CSV file): validated faster.
    `stop()` is asked after each batch: when True, planning ends there, at a chunk boundary (every open
    chunk is cut and staged), and `Planned.stopped` says rows may remain (a split that must continue).

    `progress(rows_read)` is called every `progress_every` rows (the splitter renews its lease there).
    Returns how many rows were read. Memory stays flat: rows stream through (a batch of BATCH_ROWS at a
    time, handled in file order), chunks go to the planner's writers as they fill, and the duplicate
    check spills to disk. `seen`: the duplicate state to go on with (a continued split), kept open.
    """
    validator = RowValidator(route, provider, columns, text_rows)
    own_seen = seen is None
    seen = seen if seen is not None else SeenContacts()
    batch: list[Contact | Rejection] = []

    def stage_batch() -> None:
        contacts = [c for c in batch if not isinstance(c, Rejection)]
        lanes = [provider.lane(c) for c in contacts]
        firsts = iter(
            seen.first_rows([(lane, c.identity, c.row) for lane, c in zip(lanes, contacts, strict=True)])
        )
        lane_of = iter(lanes)
        for checked in batch:
            if isinstance(checked, Rejection):
                reject(checked)
                continue
            lane, first = next(lane_of), next(firsts)
            if first is not None:
                reject(duplicate(checked.row, first, checked.identity))
                continue
            item = provider.to_item(checked, job_id, route.options)
            too_big = planner.add(lane, StagedRow(checked.row, checked.identity, item))
            if too_big is not None:
                reject(too_big)
            elif accept is not None:
                accept(item)
        batch.clear()

    read = last = 0
    stopped = False
    try:
        for raw in rows:
            read += 1
            last = raw.number
            if progress is not None and read % progress_every == 0:
                progress(read)
            batch.append(validator.validate(raw))
            if len(batch) >= BATCH_ROWS:
                stage_batch()
                if stop is not None and stop():
                    stopped = True
                    break
        stage_batch()
        planner.finish()
    finally:
        planner.close()
        if own_seen:
            seen.close()
    return Planned(read, last, stopped)
