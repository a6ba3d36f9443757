"""Cutting validated rows into provider-sized chunks, staged in S3 as they fill.

Limits come from the provider module (one place); sizes are measured on the serialised items exactly as
the sender will send them (`encode_body`, i.e. `compact_json`), so a chunk never exceeds a body limit. The
same text goes into the staged line: each row is serialised once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from fanout.ids import chunk_id
from fanout.models import Rejection, StagedRow, compact_json, compact_row_json, staged_line
from fanout.providers.base import Provider
from fanout.staging import S3Writer, chunk_key


@dataclass(frozen=True, slots=True)
class StagedChunk:
    """A chunk written to S3: its id, key and how many rows it holds."""

    chunk_id: str
    key: str
    rows: int


class LineWriter(Protocol):
    """Where a chunk's lines go: S3 in the splitter, nowhere for `fanout validate`."""

    key: str

    def write_line(self, text: str) -> None: ...

    def close(self) -> None: ...


class CountingWriter:
    """A LineWriter that keeps nothing: for planning without AWS."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.lines = 0

    def write_line(self, text: str) -> None:
        self.lines += 1

    def close(self) -> None:
        return None


class _Lane:
    def __init__(self) -> None:
        self.writer: LineWriter | None = None
        self.rows = 0
        self.body_bytes = 0
        self.count = 0  # chunks cut in this lane so far


class Background:
    """Staging work (closing a chunk's S3 object) on a few threads while the caller reads on: the network
    waits of S3 overlap with parsing, and with each other, instead of adding to it.

    At most `depth` pieces of work wait, so memory stays bounded (a few chunks). A failure is raised to
    the caller at its next `submit` or at `drain`, and cancels what has not started. Work may finish in
    any order (a chunk's `on_chunk` too): the splitter orders chunks by id when it records them.
    """

    def __init__(self, depth: int = 6, workers: int = 3) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="staging")
        self._pending: deque[Future[None]] = deque()
        self._depth = depth

    def submit(self, work: Callable[[], None]) -> None:
        self._pending.append(self._pool.submit(work))
        while self._pending and (len(self._pending) > self._depth or self._pending[0].done()):
            self._settle(self._pending.popleft())

    def drain(self) -> None:
        """Wait for all submitted work; raise its first failure."""
        while self._pending:
            self._settle(self._pending.popleft())

    def close(self) -> None:
        """Stop the thread; work not started is dropped (after a failure nothing more is wanted)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _settle(self, future: Future[None]) -> None:
        try:
            future.result()
        except BaseException:
            self.close()
            raise


class ChunkPlanner:
    """Accepts staged rows lane by lane and cuts a chunk whenever the next row would break a limit.

    With `background`, a full chunk is closed and reported (`on_chunk`) on a background thread;
    `finish()` waits for all of it. Call `close()` when done (also after a failure).
    """

    def __init__(
        self,
        provider: Provider,
        job_id: str,
        bucket: str,
        on_chunk: Callable[[StagedChunk], None],
        open_writer: Callable[[str], LineWriter] | None = None,
        background: Background | None = None,
    ) -> None:
        self._provider = provider
        self._job_id = job_id
        self._bucket = bucket
        self._on_chunk = on_chunk
        self._background = background
        self._lanes: dict[str, _Lane] = {}
        self._open: Callable[[str], LineWriter] = open_writer or (lambda key: S3Writer(bucket, key))
        limits = provider.limits
        self._max_body = (limits.max_body_bytes - limits.envelope_bytes) if limits.max_body_bytes else None
        self._lane_limits: dict[str, int] = getattr(provider, "lane_limits", {})
        self._default_items = provider.rows_per_message or limits.max_items

    def _max_items(self, lane: str) -> int:
        """Rows per chunk: a lane's own limit, else rows per SQS message when each row is its own call
        (mateo-message), else what one provider call may carry."""
        return self._lane_limits.get(lane, self._default_items)

    def add(self, lane: str, row: StagedRow, as_read: bool = False) -> Rejection | None:
        """Stage `row`; a Rejection when the row alone is larger than one provider call may carry.
        `as_read`: its item holds no plain float (a provider's item of rows as read: see
        `compact_row_json`), so the faster encoder writes it."""
        return self.add_item(lane, row.row, row.identity, row.item, as_read)

    def add_item(
        self, lane: str, row: int, identity: str, item: Any, as_read: bool = False
    ) -> Rejection | None:
        """`add` for the parts of a StagedRow (the splitter's row loop makes none)."""
        # the item exactly as the sender's request will carry it
        item_json = compact_row_json(item) if as_read else compact_json(item)
        size = len(item_json) + 1  # the comma between items
        if self._max_body is not None and size > self._max_body:
            return Rejection(row, f"row is larger than one {self._provider.destination.value} request may be")
        state = self._lanes.get(lane)
        if state is None:
            state = self._lanes[lane] = _Lane()
        if state.rows >= self._max_items(lane) or (
            self._max_body is not None and state.body_bytes + size > self._max_body
        ):
            self._cut(lane, state)
        if state.writer is None:
            state.count += 1
            state.writer = self._open(chunk_key(self._job_id, chunk_id(lane, state.count)))
        state.writer.write_line(staged_line(row, identity, item_json))
        state.rows += 1
        state.body_bytes += size
        return None

    def _cut(self, lane: str, state: _Lane) -> None:
        if state.writer is None:
            return
        writer = state.writer
        chunk = StagedChunk(chunk_id(lane, state.count), writer.key, state.rows)
        state.writer = None
        state.rows = 0
        state.body_bytes = 0
        if self._background is None:
            self._stage(writer, chunk)
        else:
            self._background.submit(lambda: self._stage(writer, chunk))

    def _stage(self, writer: LineWriter, chunk: StagedChunk) -> None:
        writer.close()
        self._on_chunk(chunk)

    def lane_counts(self) -> dict[str, int]:
        """Chunks cut in each lane so far (a checkpoint keeps them; call after `finish`)."""
        return {lane: state.count for lane, state in self._lanes.items()}

    def resume_counts(self, counts: dict[str, int]) -> None:
        """Go on numbering each lane's chunks after those a checkpoint recorded."""
        for lane, count in counts.items():
            self._lanes.setdefault(lane, _Lane()).count = count

    def finish(self) -> None:
        """Stage the last, partly filled chunk of every lane (and wait until every chunk is staged)."""
        for lane, state in sorted(self._lanes.items()):
            self._cut(lane, state)
        if self._background is not None:
            self._background.drain()

    def close(self) -> None:
        """Release the background thread, if any (after `finish`, or after a failure)."""
        if self._background is not None:
            self._background.close()
