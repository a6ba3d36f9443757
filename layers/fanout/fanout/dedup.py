"""Which contacts a file has had so far: 64-bit hashes, a few bytes a row, for any file size.

A contact is `lane NUL identity`, hashed to 64 bits (XXH3, the same in every process, so the state
survives a checkpoint and a continuation on another machine; a fifth of blake2b's cost a row, and a
keyed or cryptographic hash buys nothing here: a file that collides two of its own contacts only gets
one of them listed as a duplicate). A state kept before the keys were XXH3 has no KEYS_XXH3 among its
names and goes on with blake2b keys, as it began (a split that checkpointed across a deploy). The newest `memory_rows` hashes live in a
dict (hash -> first row). When it fills, it is spilled as a sorted run to a directory (/tmp): 12 bytes a
row (the hash and the row number), with every FENCE-th hash kept in memory to find the page a hash
would be on (read with pread, not mmap: the pages read stay out of the process's memory). A Bloom filter
over the spilled hashes (BLOOM_BITS, 3 probes, made at the first spill) answers "new" for almost every
new contact without touching the runs; only its positives (real duplicates, and new contacts at a rate
of about (1 - e^(-3n/BLOOM_BITS))^3: 1.4 % at 50M rows) are looked up, one page a run, largest run
first (where an earlier contact most likely is). Lookups stay exact and immediate: a duplicate is
rejected the moment it is read, before anything is staged.

Runs are merged, tiered: MERGE_FAN_IN runs of one size class (memory_rows * 8^c hashes) become one run
of the next (a streamed merge, MERGE_BLOCK hashes of each at a time), so a file has at most
MERGE_FAN_IN - 1 runs a class and each row is rewritten once a class it climbs: at the defaults 5 runs
at 10M rows, 14 at 50M and never more than 21 on the way (4 classes). A merged run is a new run under a
new name: a run is never changed once written, so one kept by a checkpoint is never kept again.

Bound (README): memory = the dict (memory_rows * ~110 B: 7 MB at the default 65,536) + the Bloom filter
(BLOOM_BITS / 8 = 64 MiB, from the first spill on) + 8 B a FENCE spilled rows (1.6 MB at 50M rows) +
while spilling or merging a few MB, whatever the file's size past the first spill; /tmp = 12 B a
spilled row (600 MB at 50M rows), and while the largest merge runs its output besides (12 B a row of
it: at most 24 B a row in all, 1.2 GB at 50M rows). The template's splitter has 1,769 MB of memory and
2,048 MB of ephemeral storage.

Two different contacts whose hashes collide (probability ~ n^2 / 2^65: 7e-5 for a 50M-row file) would be
taken for one: the later is rejected as a duplicate (listed, never sent twice), never silently lost.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from operator import and_, itemgetter, lshift, or_, rshift
from pathlib import Path

import xxhash

MEMORY_ROWS = 1 << 16  # hashes held in the dict before a run is spilled (memory is flat from here on)
MERGE_FAN_IN = 8  # runs of one size class merged into one of the next
MERGE_BLOCK = 1 << 13  # hashes read from each run at a time while merging
FENCE = 256  # one in-memory hash per FENCE spilled ones: each lookup reads one 2 KiB page of a run
BLOOM_BITS = 1 << 29  # 64 MiB: ~11 bits a row for 50M rows (1.4 % false positives with 3 probes)
# A checkpoint keeps the filter only once the runs hold this many hashes: below it, making the filter
# again from the runs on restore (about a µs a hash) costs less than moving 64 MiB to S3 and back, and
# a split with a short timeout would spend its every invocation on that.
KEEP_BLOOM_ROWS = 1 << 20
_ROW_BITS = 32  # rows are kept as unsigned 32-bit numbers (array 'I')
_ROW_MASK = (1 << _ROW_BITS) - 1

# Named among a state's kept files when its keys are XXH3 (see the module): an empty file, kept once.
KEYS_XXH3 = "keys-xxh3"
_xxh3 = xxhash.xxh3_64_intdigest
_SIGNED = 1 << 63  # XXH3's unsigned 64 bits, less 2^63: signed, as array('q') stores them, one to one


def _xxh3_keys(contacts: Iterable[str]) -> list[int]:
    """The keys of contacts written `lane NUL identity` (signed, as array('q') stores them); a loop, not a
    call a key (the call would cost a third of the hash)."""
    xxh3, signed = _xxh3, _SIGNED
    return [xxh3(contact.encode()) - signed for contact in contacts]


def _blake2b_keys(contacts: Iterable[str]) -> list[int]:
    """`_xxh3_keys` as a state kept before the keys were XXH3 has them."""
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes
    return [from_bytes(blake2b(c.encode(), digest_size=8).digest(), "big", signed=True) for c in contacts]


def contact_hash(lane: str, identity: str) -> int:
    """The 64-bit key of a contact in a lane."""
    return _xxh3_keys([f"{lane}\0{identity}"])[0]


class _Run:
    """One spilled, sorted run: `hashes` and `rows` files side by side, read a page at a time (pread, not
    mmap: the pages read stay out of the process's memory, which stays flat however large the runs)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._hashes = os.open(base.with_suffix(".h"), os.O_RDONLY)
        self._rows = os.open(base.with_suffix(".r"), os.O_RDONLY)
        self.count = os.fstat(self._hashes).st_size // 8
        fences = array("q")
        with base.with_suffix(".h").open("rb") as handle:
            while chunk := handle.read(FENCE * 8 * 1024):
                page = array("q", chunk)
                fences.extend(page[::FENCE])
        self.fences = fences

    @property
    def seq(self) -> int:
        return int(self.base.name.split("-", 1)[1])

    def find(self, key: int) -> int | None:
        page = bisect_right(self.fences, key) - 1
        if page < 0:
            return None
        start = page * FENCE
        window = array("q", os.pread(self._hashes, FENCE * 8, start * 8))
        at = bisect_left(window, key)
        if at < len(window) and window[at] == key:
            return int(array("I", os.pread(self._rows, 4, (start + at) * 4))[0])
        return None

    def read(self, start: int, count: int) -> tuple[array[int], array[int]]:
        """Hashes and rows `start` to `start + count` (fewer at the end)."""
        return (
            array("q", os.pread(self._hashes, count * 8, start * 8)),
            array("I", os.pread(self._rows, count * 4, start * 4)),
        )

    @staticmethod
    def write(base: Path, keys: list[int], rows: list[int]) -> None:
        base.with_suffix(".h").write_bytes(array("q", keys).tobytes())
        base.with_suffix(".r").write_bytes(array("I", rows).tobytes())

    @staticmethod
    def merge(runs: Sequence[_Run], base: Path) -> None:
        """Write the union of `runs` (no hash is in two of them) as one sorted run at `base`, reading each
        MERGE_BLOCK hashes at a time: memory holds a few blocks, however large the runs."""
        cursors = [_Cursor(run) for run in runs]
        with base.with_suffix(".h").open("wb") as hashes, base.with_suffix(".r").open("wb") as rows:
            while cursors:
                # every hash up to the smallest block end is in the blocks in hand: write them in order
                bound = min(cursor.hashes[-1] for cursor in cursors)
                keys, firsts = array("q"), array("I")
                for cursor in cursors:
                    cut = bisect_right(cursor.hashes, bound, cursor.at)
                    keys += cursor.hashes[cursor.at : cut]
                    firsts += cursor.rows[cursor.at : cut]
                    cursor.at = cut
                # hash and row as one int (hash * 2^32 + row): one sort orders both, in C
                both = sorted(map(or_, map(lshift, keys, repeat(_ROW_BITS)), firsts))
                hashes.write(array("q", map(rshift, both, repeat(_ROW_BITS))))
                rows.write(array("I", map(and_, both, repeat(_ROW_MASK))))
                cursors = [cursor for cursor in cursors if cursor.at < len(cursor.hashes) or cursor.advance()]

    def close(self) -> None:
        os.close(self._hashes)
        os.close(self._rows)

    def remove(self) -> None:
        self.close()
        self.base.with_suffix(".h").unlink()
        self.base.with_suffix(".r").unlink()


class _Cursor:
    """A merge's place in one run: the block in hand and where in it the merge is."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.start = 0  # the next block's first row in the run
        self.hashes, self.rows = array("q"), array("I")
        self.at = 0
        self.advance()

    def advance(self) -> bool:
        """Read the next block; False when the run is done."""
        if self.start >= self.run.count:
            return False
        self.hashes, self.rows = self.run.read(self.start, MERGE_BLOCK)
        self.start += len(self.hashes)
        self.at = 0
        return True


class _Bloom:
    """BLOOM_BITS bits (a power of two), 3 probes: bits 0-28, 21-49 and 35-63 of the hash (for 2^29
    bits). `first_rows` and `add_all` test and set them inline (a call a key costs more than the test)."""

    def __init__(self, bits: bytearray | None = None) -> None:
        self.bits = bits if bits is not None else bytearray(BLOOM_BITS // 8)
        size = len(self.bits) * 8
        if size & (size - 1):
            raise ValueError(f"a Bloom filter of {size} bits: the probes need a power of two")
        self.mask = size - 1

    def add_all(self, keys: Sequence[int]) -> None:
        bits, mask = self.bits, self.mask
        for key in keys:
            p = key & mask
            bits[p >> 3] |= 1 << (p & 7)
            p = key >> 21 & mask
            bits[p >> 3] |= 1 << (p & 7)
            p = key >> 35 & mask
            bits[p >> 3] |= 1 << (p & 7)

    def __contains__(self, key: int) -> bool:
        bits, mask = self.bits, self.mask
        p = key & mask
        if not bits[p >> 3] >> (p & 7) & 1:
            return False
        p = key >> 21 & mask
        if not bits[p >> 3] >> (p & 7) & 1:
            return False
        p = key >> 35 & mask
        return bool(bits[p >> 3] >> (p & 7) & 1)


Put = Callable[[str, Path], None]  # (name, file) -> keep it under that name (S3 in the splitter)
Get = Callable[[str, Path], None]  # (name, file) -> fetch what was kept under that name into the file


class SeenContacts:
    """The duplicate check of one split. `first_rows` answers in order; `snapshot`/`restore` carry the
    state over a checkpoint (runs are immutable: each is kept once)."""

    def __init__(self, directory: str | None = None, memory_rows: int = MEMORY_ROWS) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="seen-", dir=directory))
        self._memory_rows = memory_rows
        self._recent: dict[int, int] = {}
        self._runs: list[_Run] = []  # largest first: the order lookups go in
        self._next_run = 0  # runs are named by a number never used before in this state
        self._bloom: _Bloom | None = None
        self._kept: set[str] = set()  # runs already handed to `put` (immutable, never put again)
        self._snapshots = 0
        # how this state keys a contact: _blake2b_keys once restored from before the keys were XXH3
        self._keys: Callable[[Iterable[str]], list[int]] = _xxh3_keys

    @property
    def size(self) -> int:
        return len(self._recent) + sum(run.count for run in self._runs)

    def first_rows(self, entries: Sequence[tuple[str, str, int]]) -> list[int | None]:
        """For each (lane, identity, row), in order: None when new (and remember it at `row`), else the
        row that had it first."""
        keys = self._keys([f"{lane}\0{identity}" for lane, identity, _ in entries])
        return self._first_rows(keys, map(itemgetter(2), entries))

    def first_rows_in(self, lane: str, identities: Iterable[str], rows: Iterable[int]) -> list[int | None]:
        """`first_rows` for contacts of one lane, their identities and rows given apart (in the same order)."""
        return self._first_rows(self._keys(map(f"{lane}\0".__add__, identities)), rows)

    def _first_rows(self, keys: list[int], rows: Iterable[int]) -> list[int | None]:
        recent = self._recent
        get = recent.get
        answers: list[int | None] = []
        append = answers.append
        bloom = self._bloom
        bits, mask = (bloom.bits, bloom.mask) if bloom is not None else (b"", 0)
        for key, row in zip(keys, rows, strict=True):
            first = get(key)
            if first is None:
                # the Bloom filter's three probes (see _Bloom), inline
                if bloom is not None:
                    p = key & mask
                    if bits[p >> 3] >> (p & 7) & 1:
                        p = key >> 21 & mask
                        if bits[p >> 3] >> (p & 7) & 1:
                            p = key >> 35 & mask
                            if bits[p >> 3] >> (p & 7) & 1:
                                first = self._spilled(key)
                if first is None:
                    recent[key] = row
            append(first)
        if len(recent) >= self._memory_rows:
            self._spill()
        return answers

    def _spilled(self, key: int) -> int | None:
        for run in self._runs:
            found = run.find(key)
            if found is not None:
                return found
        return None

    def _new_base(self) -> Path:
        base = self._dir / f"run-{self._next_run:05d}"
        self._next_run += 1
        return base

    def _spill(self) -> None:
        if not self._recent:
            return
        base = self._new_base()
        recent = self._recent
        keys = sorted(recent)  # a list of the keys only: no tuples
        _Run.write(base, keys, [recent[key] for key in keys])
        if self._bloom is None:
            self._bloom = _Bloom()
        self._bloom.add_all(keys)
        self._runs.append(_Run(base))
        self._recent = {}
        self._merge_full_classes()

    def _size_class(self, run: _Run) -> int:
        return max(0, round(math.log(max(run.count, 1) / self._memory_rows, MERGE_FAN_IN)))

    def _merge_full_classes(self) -> None:
        """Merge the runs of a size class into one, smallest class first, while any class has
        MERGE_FAN_IN runs; the runs merged are removed here (a checkpoint may still hold them: the next
        one no longer names them)."""
        while True:
            classes: dict[int, list[_Run]] = {}
            for run in self._runs:
                classes.setdefault(self._size_class(run), []).append(run)
            full = [runs for _, runs in sorted(classes.items()) if len(runs) >= MERGE_FAN_IN]
            if not full:
                break
            merging = full[0]  # MERGE_FAN_IN runs (more only in a state restored from another policy)
            base = self._new_base()
            _Run.merge(merging, base)
            for run in merging:
                self._runs.remove(run)
                run.remove()
                self._kept.difference_update((run.base.name + ".h", run.base.name + ".r"))
            self._runs.append(_Run(base))
        self._runs.sort(key=lambda run: -run.count)

    def snapshot(self, put: Put) -> list[str]:
        """Keep every run not yet kept, the Bloom filter (once the runs hold KEEP_BLOOM_ROWS hashes;
        `restore` makes it again from smaller runs) and the hashes still in memory (a file of their own:
        a checkpoint does not spill them, so a small file never makes a run or a filter); returns the
        names `restore` needs."""
        self._snapshots += 1
        names: list[str] = []
        if self._keys is _xxh3_keys:
            if KEYS_XXH3 not in self._kept:
                marker = self._dir / KEYS_XXH3
                marker.touch()
                put(KEYS_XXH3, marker)
                marker.unlink()
                self._kept.add(KEYS_XXH3)
            names.append(KEYS_XXH3)
        for run in self._runs:
            for suffix in (".h", ".r"):
                name = run.base.name + suffix
                if name not in self._kept:
                    put(name, run.base.with_suffix(suffix))
                    self._kept.add(name)
                names.append(name)
        if self._bloom is not None and sum(run.count for run in self._runs) >= KEEP_BLOOM_ROWS:
            bloom_file = self._dir / "bloom"
            bloom_file.write_bytes(self._bloom.bits)
            name = f"bloom-{self._snapshots:05d}"
            put(name, bloom_file)
            bloom_file.unlink()
            names.append(name)
        base = self._dir / f"recent-{self._snapshots:05d}"
        keys = sorted(self._recent)
        _Run.write(base, keys, [self._recent[key] for key in keys])
        for suffix in (".h", ".r"):
            put(base.name + suffix, base.with_suffix(suffix))
            base.with_suffix(suffix).unlink()
            names.append(base.name + suffix)
        return names

    @classmethod
    def restore(
        cls, names: Sequence[str], get: Get, directory: str | None = None, memory_rows: int = MEMORY_ROWS
    ) -> SeenContacts:
        seen = cls(directory, memory_rows)
        if KEYS_XXH3 not in names:
            seen._keys = _blake2b_keys
        else:
            seen._kept.add(KEYS_XXH3)
        bases: list[str] = []
        for name in names:
            if name == KEYS_XXH3:  # its name is all it says
                continue
            path = seen._dir / name
            get(name, path)
            if name.startswith("bloom-"):
                seen._bloom = _Bloom(bytearray(path.read_bytes()))
                path.unlink()
                continue
            base = name.rsplit(".", 1)[0]
            if base.startswith("recent-"):
                continue
            seen._kept.add(name)
            if base not in bases:
                bases.append(base)
        seen._runs = sorted((_Run(seen._dir / base) for base in bases), key=lambda run: -run.count)
        seen._next_run = max((run.seq + 1 for run in seen._runs), default=0)
        if seen._runs and seen._bloom is None:
            seen._bloom = _Bloom()
            for run in seen._runs:
                for start in range(0, run.count, MERGE_BLOCK):
                    seen._bloom.add_all(run.read(start, MERGE_BLOCK)[0])
        for base in {n.rsplit(".", 1)[0] for n in names if n.startswith("recent-")}:
            keys = array("q", (seen._dir / f"{base}.h").read_bytes())
            rows = array("I", (seen._dir / f"{base}.r").read_bytes())
            seen._recent.update(zip(keys, rows, strict=True))
            (seen._dir / f"{base}.h").unlink()
            (seen._dir / f"{base}.r").unlink()
        seen._snapshots = max(
            [int(n.split("-", 1)[1].split(".")[0]) for n in names if n.startswith(("recent-", "bloom-"))]
            or [0]
        )
        return seen

    def close(self) -> None:
        for run in self._runs:
            run.close()
        self._runs = []
        shutil.rmtree(self._dir, ignore_errors=True)
