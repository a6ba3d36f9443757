"""Which contacts a file has had so far: 64-bit hashes, a few bytes a row, for any file size.

A contact is `lane NUL identity`, hashed to 64 bits (XXH3, the same in every process, so the state
survives a checkpoint and a continuation on another machine; a fifth of blake2b's cost a row, and a
keyed or cryptographic hash buys nothing here: a file that collides two of its own contacts only gets
one of them listed as a duplicate). A state kept before the keys were XXH3 has no KEYS_XXH3 among its
names and goes on with blake2b keys, as it began (a split that checkpointed across a deploy).

A batch of contacts (planning.BATCH_ROWS) is checked at once, in numpy: the check as a Python loop a
contact cost 3.97 µs a contact, this one 1.76 (`python -m bench.dedup_cost 1000000`, same session). The
newest `memory_rows` hashes live in memory, a sorted array beside the row that had each first. When it
fills, it is spilled as a sorted run to a directory (/tmp): 12 bytes a row (the hash and the row
number), with every FENCE-th hash kept in memory to find the page a hash would be on (read with pread,
not mmap: the pages read stay out of the process's memory). A Bloom filter
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

Bound (README): memory = the newest hashes (memory_rows * 16 B, twice that while a batch is inserted: 2 MB
at the default 65,536) + numpy (19 MiB once imported) + the Bloom filter
(BLOOM_BITS / 8 = 64 MiB, from the first spill on) + 8 B a FENCE spilled rows (1.6 MB at 50M rows) +
while spilling or merging a few MB, whatever the file's size past the first spill; /tmp = 12 B a
spilled row (600 MB at 50M rows), and while the largest merge runs its output besides (12 B a row of
it: at most 24 B a row in all, 1.2 GB at 50M rows). The template's splitter has 1,769 MB of memory and
4,096 MB of ephemeral storage (a job's settle uses it too: sent_contacts.py).

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import itemgetter
from pathlib import Path

import numpy as np
import xxhash
from numpy.typing import NDArray

from fanout.sorted_runs import merged_blocks

MEMORY_ROWS = 1 << 16  # hashes held in memory before a run is spilled (memory is flat from here on)
MERGE_FAN_IN = 8  # runs of one size class merged into one of the next
MERGE_BLOCK = 1 << 13  # hashes read from each run at a time while merging
FENCE = 256  # one in-memory hash per FENCE spilled ones: each lookup reads one 2 KiB page of a run
BLOOM_BITS = 1 << 29  # 64 MiB: ~11 bits a row for 50M rows (1.4 % false positives with 3 probes)
# A checkpoint keeps the filter only once the runs hold this many hashes: below it, making the filter
# again from the runs on restore (about a µs a hash) costs less than moving 64 MiB to S3 and back, and
# a split with a short timeout would spend its every invocation on that.
KEEP_BLOOM_ROWS = 1 << 20

# Named among a state's kept files when its keys are XXH3 (see the module): an empty file, kept once.
KEYS_XXH3 = "keys-xxh3"
Keys = NDArray[np.int64]
Flags = NDArray[np.bool_]
Bytes = NDArray[np.uint8]
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

    def read(self, start: int, count: int) -> tuple[Keys, NDArray[np.uint32]]:
        """Hashes and rows `start` to `start + count` (fewer at the end)."""
        return (
            np.frombuffer(os.pread(self._hashes, count * 8, start * 8), dtype=np.int64),
            np.frombuffer(os.pread(self._rows, count * 4, start * 4), dtype=np.uint32),
        )

    @staticmethod
    def write(base: Path, keys: Keys, rows: Keys) -> None:
        base.with_suffix(".h").write_bytes(keys.astype(np.int64, copy=False).tobytes())
        base.with_suffix(".r").write_bytes(rows.astype(np.uint32, copy=False).tobytes())

    @staticmethod
    def merge(runs: Sequence[_Run], base: Path) -> None:
        """Write the union of `runs` (no hash is in two of them) as one sorted run at `base`, reading each
        MERGE_BLOCK hashes at a time: memory holds a few blocks, however large the runs."""
        with base.with_suffix(".h").open("wb") as hashes, base.with_suffix(".r").open("wb") as rows:
            for keys, firsts in merged_blocks([run.blocks(MERGE_BLOCK) for run in runs]):
                hashes.write(keys.tobytes())
                rows.write(firsts.tobytes())

    def blocks(self, size: int) -> Iterator[tuple[Keys, NDArray[np.uint32]]]:
        """The run's hashes and rows in order, `size` at a time."""
        for start in range(0, self.count, size):
            yield self.read(start, size)

    def close(self) -> None:
        os.close(self._hashes)
        os.close(self._rows)

    def remove(self) -> None:
        self.close()
        self.base.with_suffix(".h").unlink()
        self.base.with_suffix(".r").unlink()


class _Bloom:
    """BLOOM_BITS bits (a power of two), 3 probes: bits 0-28, 21-49 and 35-63 of the hash (for 2^29
    bits), tested and set for a whole array of keys at once."""

    def __init__(self, bits: Bytes | None = None) -> None:
        self.bits: Bytes = bits if bits is not None else np.zeros(BLOOM_BITS // 8, np.uint8)
        size = len(self.bits) * 8
        if size & (size - 1):
            raise ValueError(f"a Bloom filter of {size} bits: the probes need a power of two")
        self.mask = size - 1

    def _probes(self, keys: Keys) -> list[Keys]:
        mask = self.mask
        return [keys & mask, keys >> 21 & mask, keys >> 35 & mask]

    def add_all(self, keys: Keys | Sequence[int]) -> None:
        bits = self.bits
        for p in self._probes(np.asarray(keys, dtype=np.int64)):
            at, bit = p >> 3, np.left_shift(np.uint8(1), (p & 7).astype(np.uint8))
            while len(at):  # two probes of one byte: one assignment wins, so set the other again
                bits[at] |= bit
                unset = bits[at] & bit == 0
                at, bit = at[unset], bit[unset]

    def may_hold(self, keys: Keys) -> Flags:
        """For each key: False when it was certainly never added."""
        held = np.ones(len(keys), dtype=bool)
        for p in self._probes(keys):
            held &= (self.bits[p >> 3] >> (p & 7) & 1).astype(bool)
        return held

    def __contains__(self, key: int) -> bool:
        return bool(self.may_hold(np.array([key], dtype=np.int64))[0])


Put = Callable[[str, Path], None]  # (name, file) -> keep it under that name (S3 in the splitter)
Get = Callable[[str, Path], None]  # (name, file) -> fetch what was kept under that name into the file


class SeenContacts:
    """The duplicate check of one split. `first_rows` answers in order; `snapshot`/`restore` carry the
    state over a checkpoint (runs are immutable: each is kept once)."""

    def __init__(self, directory: str | None = None, memory_rows: int = MEMORY_ROWS) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="seen-", dir=directory))
        self._memory_rows = memory_rows
        # the newest hashes, sorted, and the row that had each first (side by side)
        self._recent_keys: Keys = np.empty(0, np.int64)
        self._recent_rows: Keys = np.empty(0, np.int64)
        self._runs: list[_Run] = []  # largest first: the order lookups go in
        self._next_run = 0  # runs are named by a number never used before in this state
        self._bloom: _Bloom | None = None
        self._kept: set[str] = set()  # runs already handed to `put` (immutable, never put again)
        self._snapshots = 0
        # how this state keys a contact: _blake2b_keys once restored from before the keys were XXH3
        self._keys: Callable[[Iterable[str]], list[int]] = _xxh3_keys

    @property
    def size(self) -> int:
        return len(self._recent_keys) + sum(run.count for run in self._runs)

    def first_rows(self, entries: Sequence[tuple[str, str, int]]) -> list[int | None]:
        """For each (lane, identity, row), in order: None when new (and remember it at `row`), else the
        row that had it first."""
        keys = self._keys([f"{lane}\0{identity}" for lane, identity, _ in entries])
        return self._first_rows(keys, map(itemgetter(2), entries))

    def first_rows_in(self, lane: str, identities: Iterable[str], rows: Iterable[int]) -> list[int | None]:
        """`first_rows` for contacts of one lane, their identities and rows given apart (in the same order)."""
        return self._first_rows(self._keys(map(f"{lane}\0".__add__, identities)), rows)

    def _first_rows(self, keys: list[int], rows: Iterable[int]) -> list[int | None]:
        """The batch at once: its distinct keys looked up in memory (a sorted array), in the Bloom filter
        and, for its positives only, in the runs; the new ones inserted in memory, each at its first row."""
        batch = np.array(keys, dtype=np.int64)
        at = np.fromiter(rows, dtype=np.int64)
        if len(at) != len(batch):
            raise ValueError(f"{len(batch)} contacts but {len(at)} rows")
        if not len(batch):
            return []
        distinct, first, inverse = np.unique(batch, return_index=True, return_inverse=True)
        recent_keys, recent_rows = self._recent_keys, self._recent_rows
        place = np.searchsorted(recent_keys, distinct)
        found = np.full(len(distinct), -1, dtype=np.int64)  # the row that had each key before this batch
        if len(recent_keys):
            near = np.minimum(place, len(recent_keys) - 1)
            hit = recent_keys[near] == distinct
            found[hit] = recent_rows[near[hit]]
        if self._bloom is not None:
            for i in np.flatnonzero((found < 0) & self._bloom.may_hold(distinct)).tolist():
                spilled = self._spilled(int(distinct[i]))
                if spilled is not None:
                    found[i] = spilled
        new = found < 0
        self._recent_keys = np.insert(recent_keys, place[new], distinct[new])
        self._recent_rows = np.insert(recent_rows, place[new], at[first[new]])
        # each row's answer: its key's earlier row, else (a repeat within the batch) the batch's first
        # row of it, else None (the first row of a new key)
        firsts = np.where(new, at[first], found)[inverse]
        repeats = np.flatnonzero(~new[inverse] | (first[inverse] != np.arange(len(batch))))
        answers: list[int | None] = [None] * len(batch)
        for i, row in zip(repeats.tolist(), firsts[repeats].tolist(), strict=True):
            answers[i] = row
        if len(self._recent_keys) >= self._memory_rows:
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
        if not len(self._recent_keys):
            return
        base = self._new_base()
        _Run.write(base, self._recent_keys, self._recent_rows)  # sorted already
        if self._bloom is None:
            self._bloom = _Bloom()
        self._bloom.add_all(self._recent_keys)
        self._runs.append(_Run(base))
        self._recent_keys, self._recent_rows = np.empty(0, np.int64), np.empty(0, np.int64)
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
        _Run.write(base, self._recent_keys, self._recent_rows)
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
                seen._bloom = _Bloom(np.fromfile(path, dtype=np.uint8))  # read once, not copied
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
        recent = sorted({n.rsplit(".", 1)[0] for n in names if n.startswith("recent-")})
        if recent:
            keys = np.concatenate([np.fromfile(seen._dir / f"{base}.h", dtype=np.int64) for base in recent])
            rows = np.concatenate([np.fromfile(seen._dir / f"{base}.r", dtype=np.uint32) for base in recent])
            order = np.argsort(keys, kind="stable")
            seen._recent_keys, seen._recent_rows = keys[order], rows[order].astype(np.int64)
            for base in recent:
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
