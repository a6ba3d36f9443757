"""Who was sent where: per destination and target, the 64-bit hashes of the contacts jobs have sent (or
may have: uncertain rows count), with the job and date of the first, in one S3 object. The file option
`only-new=true` skips a contact found there ("already sent to DEST/TARGET by job J on DATE"), so a team
that exports its whole segment every night enrols only the people who joined since.

The object (`state/sent/<destination>/<target>.bin`): MAGIC, a 4-byte length and a JSON list of
[job_id, date] pairs, then N sorted unsigned 64-bit hashes, then N 32-bit indexes into that list, all
little-endian. A million contacts take 12 MB; a lookup is a binary search over the hashes as they lie in
memory (no Python object per contact).

Recording a job's contacts takes memory and time that do not grow with the job or the record: at the
settle, the job's hashes are gathered in sorted runs spilled to a directory (`NewContacts`, /tmp: 8 bytes
a contact sent), and the record is read from S3 as two streams (its hashes and its indexes, each a ranged
GET of the version read), merged with the runs a block at a time (sorted_runs.py) into a file beside them
(12 bytes a contact of the new record, and 4 more while its indexes wait to follow the hashes), and put
back from that file only if no other job wrote in between (S3 If-Match / If-None-Match), else merged
again. Bound (README): memory RUN_HASHES hashes while they are spilled, then MERGE_HASHES in hand (15 MB
at most for the merge, tracemalloc, for 1M contacts onto 1M as for 10M onto 10M), whatever the sizes;
/tmp 8 B a contact of the job + 16 B a contact of the new record (1.2 GB for a 50M-contact job onto an
empty record). One PutObject takes up to 5 GB: a record of some 400M contacts.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import shutil
import struct
import tempfile
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from fanout.aws import client
from fanout.staging import byte_range

if TYPE_CHECKING:  # sorted_runs imports numpy: kept out of the cold start of every function importing this
    from fanout.sorted_runs import Block  # here (hashes, job indexes)

MAGIC = b"FANOUT-SENT-1\n"
PREFIX = "state/sent/"
RECORD_ATTEMPTS = 8
RUN_HASHES = 1 << 20  # a job's hashes held before a sorted run is spilled: 8 MB
MERGE_HASHES = 1 << 20  # hashes in hand across the merge's sources (12 B each, with their indexes)
MIN_BLOCK = 1 << 13  # the fewest a source reads at a time, however many runs a job made
HEAD_BYTES = 64 * 1024  # the first read of a record: its header (the jobs' names) fits, for ~1,500 jobs
COPY_BYTES = 1 << 20
# S3's answers to a read or write conditional on an ETag that is no longer the object's.
_CHANGED = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})


def contact_hash(identity: str) -> int:
    """The 64-bit hash a contact is known by (its identity at the destination)."""
    return int.from_bytes(hashlib.blake2b(identity.encode(), digest_size=8).digest(), "little")


def state_key(destination: str, target: str) -> str:
    return f"{PREFIX}{destination}/{target}.bin"


@dataclass
class SentContacts:
    """The contacts sent to one destination and target (empty when none yet)."""

    jobs: list[tuple[str, str]] = field(default_factory=list)  # (job_id, date) by index
    hashes: array = field(default_factory=lambda: array("Q"))
    job_of: array = field(default_factory=lambda: array("I"))

    def who(self, identity: str) -> tuple[str, str] | None:
        """(job_id, date) of the job that first sent `identity`, or None: a binary search over the hashes
        as they lie in memory (a memoryview: no Python object per contact)."""
        value = contact_hash(identity)
        view = memoryview(self.hashes)
        at = bisect.bisect_left(view, value)
        if at < len(view) and view[at] == value:
            return self.jobs[self.job_of[at]]
        return None


def load(bucket: str, destination: str, target: str) -> tuple[SentContacts, str | None]:
    """The contacts sent to destination/target, and the object's ETag (None: none sent yet): read a block
    at a time into the arrays `who` searches, so the record is held once (12 B a contact), never also as
    the bytes read. A record written meanwhile by a job's settle is read again."""

    def read() -> tuple[SentContacts, str | None]:
        stored = _StoredRecord.open(bucket, state_key(destination, target))
        known = SentContacts(stored.jobs)
        for hashes, job_of in stored.blocks(MERGE_HASHES):
            known.hashes.frombytes(memoryview(hashes.astype("=u8", copy=False)).cast("B"))
            known.job_of.frombytes(memoryview(job_of.astype("=u4", copy=False)).cast("B"))
        return known, stored.etag

    return _while_it_changes(read, f"could not read {destination}/{target}'s record of contacts sent")


def record(bucket: str, destination: str, target: str, job_id: str, date: str, new: NewContacts) -> None:
    """Add the contacts a job sent (`new`) to destination/target's record: each keeps the first job that
    sent it. Read, merge, write only if the object is still the one read; another job's write in between
    means read and merge again."""
    if not new:
        return
    key = state_key(destination, target)
    _while_it_changes(
        lambda: _record_once(client("s3"), _StoredRecord.open(bucket, key), (job_id, date), new),
        f"could not record the contacts of {job_id} in {destination}/{target}",
    )


def _while_it_changes[T](attempt: Callable[[], T], failure: str) -> T:
    """`attempt()`, again while the record changes under it (a read or write conditional on the ETag it
    opened answers PreconditionFailed), RECORD_ATTEMPTS times at most."""
    for _ in range(RECORD_ATTEMPTS):
        try:
            return attempt()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") not in _CHANGED:
                raise
    raise RuntimeError(f"{failure}: it kept changing")


def _record_once(s3: Any, old: _StoredRecord, job: tuple[str, str], new: NewContacts) -> None:
    """Merge `new` under `job` into the record `old` and put it back, if it is still the one opened (a
    ClientError PreconditionFailed when not, from the read of its contacts or from the write)."""
    condition = {"IfMatch": old.etag} if old.etag else {"IfNoneMatch": "*"}
    with tempfile.TemporaryDirectory(prefix="sent-") as directory:
        merged = Path(directory) / "record.bin"
        _write_merged([*old.jobs, job], old.blocks, new, merged)
        with merged.open("rb") as body:
            s3.put_object(Bucket=old.bucket, Key=old.key, Body=body, **condition)


class NewContacts:
    """The hashes of the contacts a job sent, gathered at its settle in any order, repeats allowed: held
    RUN_HASHES at a time, each full batch spilled sorted and once each to a file of `directory` (a new
    temporary one by default), so memory stays flat however many the job sent. Close it (or use it as a
    context manager) to remove the files."""

    def __init__(self, directory: str | None = None, run_hashes: int = RUN_HASHES) -> None:
        self._own = tempfile.TemporaryDirectory(prefix="sent-runs-") if directory is None else None
        self._dir = Path(directory if directory is not None else self._own.name)  # type: ignore[union-attr]
        self._run_hashes = run_hashes
        self._held = array("Q")
        self._runs: list[Path] = []
        self.count = 0  # hashes added, repeats included

    def add(self, hashes: array) -> None:
        """Take `hashes` (array 'Q'); a full batch is spilled."""
        self._held.extend(hashes)
        self.count += len(hashes)
        if len(self._held) >= self._run_hashes:
            self._spill()

    def __bool__(self) -> bool:
        return self.count > 0

    def runs(self) -> list[Path]:
        """The sorted runs, everything added so far in them."""
        self._spill()
        return list(self._runs)

    def _spill(self) -> None:
        if not self._held:
            return
        import numpy

        from fanout.sorted_runs import first_of_each

        held = numpy.frombuffer(self._held, dtype=numpy.uint64)  # the array's own memory: no copy
        held.sort()
        path = self._dir / f"run-{len(self._runs):05d}.bin"
        held[first_of_each(held)].astype("<u8", copy=False).tofile(path)
        self._runs.append(path)
        del held
        self._held = array("Q")

    def close(self) -> None:
        for path in self._runs:
            path.unlink(missing_ok=True)
        self._runs.clear()
        if self._own is not None:
            self._own.cleanup()

    def __enter__(self) -> NewContacts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _StoredRecord:
    """A destination's record as stored: its jobs, and where its hashes and indexes lie in the object
    (read as streams, never whole). An absent record has no etag and no contacts."""

    bucket: str
    key: str
    etag: str | None = None
    jobs: list[tuple[str, str]] = field(default_factory=list)
    start: int = 0  # the first hash's byte
    count: int = 0

    @classmethod
    def open(cls, bucket: str, key: str) -> _StoredRecord:
        s3 = client("s3")
        try:
            head = s3.get_object(Bucket=bucket, Key=key, Range=byte_range(0, HEAD_BYTES))
        except s3.exceptions.NoSuchKey:
            return cls(bucket, key)
        etag, data = str(head["ETag"]), head["Body"].read()
        total = int(str(head["ContentRange"]).rpartition("/")[2])
        if not data.startswith(MAGIC):
            raise ValueError(f"{key} is not a sent-contacts file")
        (size,) = struct.unpack_from("<I", data, len(MAGIC))
        start = len(MAGIC) + 4 + size
        if start > len(data):
            data = s3.get_object(Bucket=bucket, Key=key, Range=byte_range(0, start), IfMatch=etag)[
                "Body"
            ].read()
        jobs = [(str(j), str(d)) for j, d in json.loads(data[len(MAGIC) + 4 : start])]
        return cls(bucket, key, etag, jobs, start, (total - start) // 12)

    def blocks(self, size: int) -> Iterator[Block]:
        """(hashes, job indexes) in order, `size` at a time: two ranged GETs of the version opened."""
        if not self.count:
            return
        import numpy

        s3 = client("s3")

        def stream(first: int, length: int) -> Any:
            ranged = byte_range(first, length)
            return s3.get_object(Bucket=self.bucket, Key=self.key, Range=ranged, IfMatch=self.etag)["Body"]

        hashes = stream(self.start, 8 * self.count)
        indexes = stream(self.start + 8 * self.count, 4 * self.count)
        try:
            for first in range(0, self.count, size):
                many = min(size, self.count - first)
                yield (
                    numpy.frombuffer(_read_exactly(hashes, 8 * many), dtype="<u8"),
                    numpy.frombuffer(_read_exactly(indexes, 4 * many), dtype="<u4"),
                )
        finally:
            hashes.close()
            indexes.close()


def _read_exactly(body: Any, size: int) -> bytes:
    parts, left = [], size
    while left:
        part = body.read(left)
        if not part:
            raise ValueError(f"the sent-contacts record ended {left} bytes early")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _run_blocks(path: Path, index: int, size: int) -> Iterator[Block]:
    """A run's hashes `size` at a time, each with the job index `index`."""
    import numpy

    with path.open("rb") as handle:
        while chunk := handle.read(8 * size):
            keys = numpy.frombuffer(chunk, dtype="<u8")
            yield keys, numpy.full(len(keys), index, dtype="<u4")


def _write_merged(
    jobs: list[tuple[str, str]], old: Callable[[int], Iterator[Block]], new: NewContacts, path: Path
) -> None:
    """A record: the contacts of `old` (a reader of its (hashes, job indexes) blocks, given a block size)
    and `new`'s under the last of `jobs` (those `old` holds keep their job), written to `path`: the
    header, then the hashes as they are merged, then the indexes, kept meanwhile in a file beside it."""
    from fanout.sorted_runs import merged_blocks

    runs = new.runs()
    size = max(MIN_BLOCK, MERGE_HASHES // (len(runs) + 1))
    sources = [old(size), *(_run_blocks(run, len(jobs) - 1, size) for run in runs)]
    names = json.dumps(jobs).encode()
    indexes = path.with_suffix(".indexes")
    with path.open("wb") as out, indexes.open("wb") as side:
        out.write(MAGIC + struct.pack("<I", len(names)) + names)
        for keys, job_of in merged_blocks(sources):
            out.write(keys.astype("<u8", copy=False).tobytes())
            side.write(job_of.astype("<u4", copy=False).tobytes())
        side.close()
        with indexes.open("rb") as written:
            shutil.copyfileobj(written, out, COPY_BYTES)
    indexes.unlink()


class OnlyNew:
    """The splitter's filter for `only-new=true`: a contact an earlier job sent to the same destination and
    target is skipped with the reason; `skipped` counts them (they are not invalid rows)."""

    def __init__(self, known: SentContacts, destination: str, target: str) -> None:
        self._known = known
        self._where = f"{destination}/{target}"
        self.skipped = 0

    @classmethod
    def load(cls, bucket: str, destination: str, target: str) -> OnlyNew:
        return cls(load(bucket, destination, target)[0], destination, target)

    def __call__(self, identity: str) -> str | None:
        """Why the contact `identity` is skipped, or None when it is new here."""
        first = self._known.who(identity)
        if first is None:
            return None
        self.skipped += 1
        return f"already sent to {self._where} by job {first[0]} on {first[1]}"
