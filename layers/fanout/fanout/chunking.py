"""Cutting validated rows into provider-sized chunks, staged in S3 as they fill.

Limits come from the provider module (one place); sizes are measured on the serialised items exactly as
the sender will send them (`encode_body`, i.e. `compact_json`), so a chunk never exceeds a body limit. The
same text goes into the staged line: each row is serialised once.

Chunks are packed into staged objects of about STAGED_OBJECT_BYTES, each chunk one byte range of one (its
`byte_range`, which the sender reads): one PutObject a chunk was about a quarter of the split's CPU
(issue 15), and a file of 1M contacts for Mateo is 2,000 chunks in some 90 objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from fanout.background import Background
from fanout.ids import chunk_id
from fanout.models import Rejection, StagedRow, compact_json, compact_row_json, staged_line
from fanout.providers.base import Provider
from fanout.staging import byte_range, packed_chunks_key, put_bytes

STAGED_OBJECT_BYTES = 4 * 1024 * 1024  # a staged object is cut at the first chunk that takes it past this


@dataclass(frozen=True, slots=True)
class StagedChunk:
    """A chunk written to S3: its id, the object it is in, how many rows it holds, and which bytes of the
    object they are (None: the whole object)."""

    chunk_id: str
    key: str
    rows: int
    byte_range: str | None = None


class ChunkSink(Protocol):
    """Where cut chunks go: packed into S3 objects in the splitter, nowhere for `fanout validate`."""

    def add(self, chunk_id: str, rows: int, data: bytes) -> None: ...

    def finish(self) -> None: ...


class Unstored:
    """A ChunkSink that keeps nothing, for planning without AWS: each chunk is reported as cut."""

    def __init__(self, on_chunk: Callable[[StagedChunk], None]) -> None:
        self._on_chunk = on_chunk

    def add(self, chunk_id: str, rows: int, data: bytes) -> None:
        self._on_chunk(StagedChunk(chunk_id, "", rows))

    def finish(self) -> None:
        return None


class PackedObjects:
    """A ChunkSink that packs chunks, in the order they are cut, into S3 objects of about
    STAGED_OBJECT_BYTES: an object is put once a chunk takes it to that size, and at `finish`. Each of
    its chunks is reported (`on_chunk`) once the object is in S3, with its byte range of it. With
    `background`, the PutObject runs there while the caller reads on."""

    def __init__(
        self,
        bucket: str,
        job_id: str,
        on_chunk: Callable[[StagedChunk], None],
        background: Background | None = None,
    ) -> None:
        self._bucket = bucket
        self._job_id = job_id
        self._on_chunk = on_chunk
        self._background = background
        self._parts: list[bytes] = []
        self._chunks: list[tuple[str, int, int, int]] = []  # (chunk id, rows, start, length)
        self._size = 0

    def add(self, chunk_id: str, rows: int, data: bytes) -> None:
        self._parts.append(data)
        self._chunks.append((chunk_id, rows, self._size, len(data)))
        self._size += len(data)
        if self._size >= STAGED_OBJECT_BYTES:
            self._put()

    def finish(self) -> None:
        self._put()

    def _put(self) -> None:
        if not self._chunks:
            return
        chunks, body = self._chunks, bytearray().join(self._parts)  # sent in one piece: put_bytes
        key = packed_chunks_key(self._job_id, chunks[0][0], chunks[-1][0])
        staged = [
            StagedChunk(cid, key, rows, byte_range(start, length)) for cid, rows, start, length in chunks
        ]
        self._parts, self._chunks, self._size = [], [], 0

        def put() -> None:
            put_bytes(self._bucket, key, body, "application/x-ndjson")
            for chunk in staged:
                self._on_chunk(chunk)

        if self._background is None:
            put()
        else:
            self._background.submit(put)


class _Lane:
    def __init__(self, max_items: int) -> None:
        self.lines: list[str] = []  # the open chunk's staged lines
        self.body_bytes = 0
        self.count = 0  # chunks cut in this lane so far
        self.max_items = max_items  # rows a chunk of this lane may hold


class ChunkPlanner:
    """Accepts staged rows lane by lane and cuts a chunk whenever the next row would break a limit.

    Cut chunks go to `sink`: by default packed into S3 objects of `bucket` (PackedObjects), on the
    `background` thread when given; each is reported (`on_chunk`) once stored. `finish()` waits for all
    of it. Call `close()` when done (also after a failure).
    """

    def __init__(
        self,
        provider: Provider,
        job_id: str,
        bucket: str,
        on_chunk: Callable[[StagedChunk], None],
        sink: ChunkSink | None = None,
        background: Background | None = None,
    ) -> None:
        self._provider = provider
        self._job_id = job_id
        self._background = background
        self._lanes: dict[str, _Lane] = {}
        self._sink = sink or PackedObjects(bucket, job_id, on_chunk, background)
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
        return self.add_line(lane, row, staged_line(row, identity, item_json), len(item_json) + 1)

    def add_line(self, lane: str, row: int, line: str, size: int) -> Rejection | None:
        """`add` for a staged line already written (`staged_line`), whose item takes `size` bytes of a
        request body (its JSON text and the comma between items)."""
        rejected = self.add_lines(lane, ((row, "", line, size),))
        return rejected[0] if rejected else None

    def add_lines(self, lane: str, planned: Iterable[tuple[int, str, str, int]]) -> list[Rejection]:
        """`add_line` for each (row, identity, staged line, size) of `planned`, in order, all of one lane
        (a row plan's batch: one call, not one a row); the rows rejected as too large, in order."""
        max_body = self._max_body
        state = self._lanes.get(lane)
        if state is None:
            state = self._lanes[lane] = _Lane(self._max_items(lane))
        lines, body, max_items = state.lines, state.body_bytes, state.max_items
        rejected: list[Rejection] = []
        for row, _identity, line, size in planned:
            if max_body is not None:
                if size > max_body:
                    rejected.append(self._too_large(row))
                    continue
                full = len(lines) >= max_items or body + size > max_body
            else:
                full = len(lines) >= max_items
            if full:
                state.body_bytes = body
                self._cut(lane, state)
                lines, body = state.lines, 0
            lines.append(line)
            body += size
        state.body_bytes = body
        return rejected

    def _too_large(self, row: int) -> Rejection:
        return Rejection(row, f"row is larger than one {self._provider.destination.value} request may be")

    def _cut(self, lane: str, state: _Lane) -> None:
        if not state.lines:
            return
        state.count += 1
        lines = state.lines
        lines.append("")  # every line ends with a line break
        self._sink.add(chunk_id(lane, state.count), len(lines) - 1, "\n".join(lines).encode("utf-8"))
        state.lines = []
        state.body_bytes = 0

    def lane_counts(self) -> dict[str, int]:
        """Chunks cut in each lane so far (a checkpoint keeps them; call after `finish`)."""
        return {lane: state.count for lane, state in self._lanes.items()}

    def resume_counts(self, counts: dict[str, int]) -> None:
        """Go on numbering each lane's chunks after those a checkpoint recorded."""
        for lane, count in counts.items():
            self._lanes.setdefault(lane, _Lane(self._max_items(lane))).count = count

    def finish(self) -> None:
        """Stage the last, partly filled chunk of every lane (and wait until every chunk is staged)."""
        for lane, state in sorted(self._lanes.items()):
            self._cut(lane, state)
        self._sink.finish()
        if self._background is not None:
            self._background.drain()

    def close(self) -> None:
        """Release the background thread, if any (after `finish`, or after a failure)."""
        if self._background is not None:
            self._background.close()
