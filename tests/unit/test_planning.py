"""fanout.planning.plan_some: rows a batch at a time, and where a split that must stop stops."""

from __future__ import annotations

import gc
import io
from collections.abc import Callable
from typing import ClassVar

import pytest

from fanout.chunking import ChunkPlanner, StagedChunk, Unstored
from fanout.destinations import Destination
from fanout.models import Rejection, Route
from fanout.planning import BATCH_ROWS, Planned, plan_some
from fanout.providers import provider_for
from fanout.providers.base import Limits, Provider
from fanout.providers.mateo import Mateo
from fanout.reading import open_rows

pytestmark = pytest.mark.unit

JOURNEY = "3c90c3cc-0d44-4b50-8888-8dd25736052a"


def plan(
    lines: list[str], provider: Provider, stop: Callable[[], bool] | None = None
) -> tuple[Planned, list[StagedChunk], list[Rejection]]:
    """Plan a CSV file of `lines` for Mateo's journey, its chunks kept and its rejections listed."""
    info, rows = open_rows(io.BytesIO("\n".join(lines).encode()), cells=True)
    chunks: list[StagedChunk] = []
    rejected: list[Rejection] = []
    planner = ChunkPlanner(provider, "j-1", "", chunks.append, sink=Unstored(chunks.append))
    planned = plan_some(
        rows,
        route=Route(Destination.MATEO, JOURNEY),
        provider=provider,
        columns=info.columns,
        job_id="j-1",
        planner=planner,
        reject=rejected.append,
        stop=stop,
        text_rows=True,
    )
    return planned, chunks, rejected


def plan_told_to_stop(
    count: int, stop_asked: list[int]
) -> tuple[Planned, list[StagedChunk], list[Rejection]]:
    """Plan a CSV of `count` rows (every 7th a repeat of the row before) whose stop() always says stop."""
    lines = ["email,first_name"] + [f"user{n - (n % 7 == 0)}@example.com,Åsa" for n in range(1, count + 1)]

    def stop() -> bool:
        stop_asked.append(1)
        return True

    return plan(lines, provider_for(Destination.MATEO), stop)


def test_a_file_read_to_its_end_in_a_short_batch_has_not_stopped_whatever_stop_says() -> None:
    # a split told to hand over after its last rows has nothing left to hand over: no continuation
    asked: list[int] = []
    planned, chunks, rejected = plan_told_to_stop(BATCH_ROWS // 2, asked)

    assert planned == Planned(read=BATCH_ROWS // 2, last_row=BATCH_ROWS // 2, stopped=False)
    assert sum(c.rows for c in chunks) + len(rejected) == BATCH_ROWS // 2
    assert not asked


def test_a_split_stops_after_a_whole_batch_with_every_row_of_it_staged_or_rejected() -> None:
    asked: list[int] = []
    planned, chunks, rejected = plan_told_to_stop(BATCH_ROWS + 10, asked)

    assert planned == Planned(read=BATCH_ROWS, last_row=BATCH_ROWS, stopped=True)
    assert sum(c.rows for c in chunks) + len(rejected) == BATCH_ROWS
    assert len(rejected) == BATCH_ROWS // 7  # the repeats, as duplicates
    assert asked == [1]


class _SmallBodies(Mateo):
    """Mateo with request bodies of 1,000 bytes, so a row with a long name is too large for one."""

    limits: ClassVar[Limits] = Limits(max_items=500, max_body_bytes=1_000)


def test_a_batch_with_duplicates_and_rows_too_large_rejects_them_in_file_order() -> None:
    # rejected.jsonl is merged into rows.csv in row order: a batch's duplicates and rows too large for a
    # request must be rejected as they come in the file, not one kind after the other
    names = ["Åsa", "x" * 2_000, "Åsa", "Åsa", "y" * 2_000, "Åsa"]
    emails = ["a", "b", "a", "c", "d", "c"]
    lines = ["email,first_name"] + [f"{e}@example.com,{n}" for e, n in zip(emails, names, strict=True)]

    _planned, chunks, rejected = plan(lines, _SmallBodies())

    assert [(r.row, r.reason.split()[0]) for r in rejected] == [
        (2, "row"),
        (3, "duplicate"),
        (5, "row"),
        (6, "duplicate"),
    ]
    assert sum(c.rows for c in chunks) == 2


def _collections() -> list[int]:
    """How many times the garbage collector has collected each generation so far."""
    return [generation["collections"] for generation in gc.get_stats()]


def test_planning_rows_leaves_their_memory_to_reference_counting_not_the_garbage_collector() -> None:
    # A row's lists and tuples live until its batch is staged and are freed by reference counting; at
    # Python's default threshold (700) the collector ran 895 times a million rows, 7 or 8 of them over the
    # whole heap, freeing 22 objects in all: a tenth of `fanout validate`'s CPU.
    lines = ["email,phone,first_name,city"] + [
        f"user{n}@example.com,+4670{n:07d},Åsa,Malmö" for n in range(1, 30_001)
    ]
    gc.collect()
    before = _collections()
    planned, chunks, rejected = plan(lines, provider_for(Destination.MATEO))
    after = _collections()
    assert (planned.read, sum(chunk.rows for chunk in chunks), rejected) == (30_000, 30_000, [])
    assert after[0] - before[0] <= 1


def test_planning_puts_back_the_garbage_collectors_thresholds_it_found_even_when_it_fails() -> None:
    found = gc.get_threshold()
    gc.set_threshold(500, 7, 9)
    try:

        def refuse(rejection: Rejection) -> None:
            raise RuntimeError("the rejected rows' file could not be written")

        info, rows = open_rows(io.BytesIO(b"email\nnot an email\n"), cells=True)
        provider = provider_for(Destination.MATEO)
        with pytest.raises(RuntimeError):
            plan_some(
                rows,
                route=Route(Destination.MATEO, JOURNEY),
                provider=provider,
                columns=info.columns,
                job_id="j-1",
                planner=ChunkPlanner(provider, "j-1", "", print, sink=Unstored(print)),
                reject=refuse,
                text_rows=True,
            )
        assert gc.get_threshold() == (500, 7, 9)
    finally:
        gc.set_threshold(*found)
