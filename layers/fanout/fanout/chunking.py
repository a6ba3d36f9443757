"""Cutting validated rows into provider-sized chunks, staged in S3 as they fill.

Limits come from the provider module (one place); sizes are measured on the serialised items exactly as
the sender will send them (`encode_body`), so a chunk never exceeds a body limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from fanout.ids import chunk_id
from fanout.models import Rejection, StagedRow
from fanout.providers.base import Provider, encoded_size
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


class ChunkPlanner:
    """Accepts staged rows lane by lane and cuts a chunk whenever the next row would break a limit."""

    def __init__(
        self,
        provider: Provider,
        job_id: str,
        bucket: str,
        on_chunk: Callable[[StagedChunk], None],
        open_writer: Callable[[str], LineWriter] | None = None,
    ) -> None:
        self._provider = provider
        self._job_id = job_id
        self._bucket = bucket
        self._on_chunk = on_chunk
        self._lanes: dict[str, _Lane] = {}
        self._open: Callable[[str], LineWriter] = open_writer or (lambda key: S3Writer(bucket, key))
        limits = provider.limits
        self._max_body = (limits.max_body_bytes - limits.envelope_bytes) if limits.max_body_bytes else None

    def _max_items(self, lane: str) -> int:
        """Rows per chunk: a lane's own limit, else rows per SQS message when each row is its own call
        (mateo-message), else what one provider call may carry."""
        per_lane: dict[str, int] = getattr(self._provider, "lane_limits", {})
        return per_lane.get(lane, self._provider.rows_per_message or self._provider.limits.max_items)

    def add(self, lane: str, row: StagedRow) -> Rejection | None:
        """Stage `row`; a Rejection when the row alone is larger than one provider call may carry."""
        size = encoded_size(row.item) + 1  # the comma between items
        if self._max_body is not None and size > self._max_body:
            return Rejection(
                row.row, f"row is larger than one {self._provider.destination.value} request may be"
            )
        state = self._lanes.setdefault(lane, _Lane())
        full = state.rows >= self._max_items(lane) or (
            self._max_body is not None and state.body_bytes + size > self._max_body
        )
        if full:
            self._cut(lane, state)
        if state.writer is None:
            state.count += 1
            state.writer = self._open(chunk_key(self._job_id, chunk_id(lane, state.count)))
        state.writer.write_line(row.to_json())
        state.rows += 1
        state.body_bytes += size
        return None

    def _cut(self, lane: str, state: _Lane) -> None:
        if state.writer is None:
            return
        state.writer.close()
        self._on_chunk(StagedChunk(chunk_id(lane, state.count), state.writer.key, state.rows))
        state.writer = None
        state.rows = 0
        state.body_bytes = 0

    def finish(self) -> None:
        """Stage the last, partly filled chunk of every lane."""
        for lane, state in sorted(self._lanes.items()):
            self._cut(lane, state)
