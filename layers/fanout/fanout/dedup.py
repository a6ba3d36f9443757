"""Which contacts a file has had so far: 64-bit hashes, a few bytes a row, for any file size.

A contact is `lane NUL identity`, hashed to 64 bits (blake2b, the same in every process, so the state
survives a checkpoint and a continuation on another machine). The newest `memory_rows` hashes live in a
dict (hash -> first row). When it fills, it is spilled as a sorted run to a directory (/tmp): 12 bytes a
row (the hash and the row number), with every FENCE-th hash kept in memory to find the page a hash
would be on (read with pread: the process's memory stays flat however large the runs grow). A Bloom filter over the spilled hashes (BLOOM_BITS, 3 probes) answers "new" for
almost every new contact without touching the runs; only its positives (real duplicates and ~1.5 % of new
contacts at 50M rows) are looked up, one page per run. Nothing is ever merged: lookups stay exact and
immediate, so a duplicate is rejected the moment it is read, before anything is staged.

Bound (README): memory = memory_rows * ~110 B (110 MB at the default 1M) + the Bloom filter (64 MB, made
at the first spill) + 1/FENCE of the hashes (~2 MB at 50M rows), measured 242 MiB peak RSS at 10M rows;
/tmp = 12 B a spilled row (600 MB at 50M rows). The template's splitter has 1,769 MB and 2,048 MB of
ephemeral storage.

Two different contacts whose hashes collide (probability ~ n^2 / 2^65: 7e-5 for a 50M-row file) would be
taken for one: the later is rejected as a duplicate (listed, never sent twice), never silently lost.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from pathlib import Path

MEMORY_ROWS = 1_000_000  # hashes held in the dict before a run is spilled
FENCE = 256  # one in-memory hash per FENCE spilled ones: each lookup reads one 2 KiB page of a run
BLOOM_BITS = 1 << 29  # 64 MiB: ~11 bits a row for 50M rows (1.5 % false positives with 3 probes)
_MASK64 = (1 << 64) - 1


def contact_hash(lane: str, identity: str) -> int:
    """The 64-bit key of a contact in a lane (signed, as array('q') stores it)."""
    digest = hashlib.blake2b(f"{lane}\0{identity}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


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

    @staticmethod
    def write(base: Path, keys: list[int], rows: list[int]) -> None:
        base.with_suffix(".h").write_bytes(array("q", keys).tobytes())
        base.with_suffix(".r").write_bytes(array("I", rows).tobytes())

    def close(self) -> None:
        os.close(self._hashes)
        os.close(self._rows)


class _Bloom:
    def __init__(self, bits: bytearray | None = None) -> None:
        self.bits = bits if bits is not None else bytearray(BLOOM_BITS // 8)

    def add(self, key: int) -> None:
        u = key & _MASK64
        bits = self.bits
        for p in (u % BLOOM_BITS, (u >> 21) % BLOOM_BITS, (u >> 35) % BLOOM_BITS):
            bits[p >> 3] |= 1 << (p & 7)

    def __contains__(self, key: int) -> bool:
        u = key & _MASK64
        bits = self.bits
        p = u % BLOOM_BITS
        if not bits[p >> 3] & (1 << (p & 7)):
            return False
        p = (u >> 21) % BLOOM_BITS
        if not bits[p >> 3] & (1 << (p & 7)):
            return False
        p = (u >> 35) % BLOOM_BITS
        return bool(bits[p >> 3] & (1 << (p & 7)))


Put = Callable[[str, Path], None]  # (name, file) -> keep it under that name (S3 in the splitter)
Get = Callable[[str, Path], None]  # (name, file) -> fetch what was kept under that name into the file


class SeenContacts:
    """The duplicate check of one split. `first_rows` answers in order; `snapshot`/`restore` carry the
    state over a checkpoint (runs are immutable: each is kept once)."""

    def __init__(self, directory: str | None = None, memory_rows: int = MEMORY_ROWS) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="seen-", dir=directory))
        self._memory_rows = memory_rows
        self._recent: dict[int, int] = {}
        self._runs: list[_Run] = []
        self._bloom: _Bloom | None = None
        self._kept: set[str] = set()  # runs already handed to `put` (immutable, never put again)
        self._snapshots = 0

    @property
    def size(self) -> int:
        return len(self._recent) + sum(run.count for run in self._runs)

    def first_rows(self, entries: Sequence[tuple[str, str, int]]) -> list[int | None]:
        """For each (lane, identity, row), in order: None when new (and remember it at `row`), else the
        row that had it first."""
        recent = self._recent
        answers: list[int | None] = []
        append = answers.append
        bloom = self._bloom
        for lane, identity, row in entries:
            key = contact_hash(lane, identity)
            first = recent.get(key)
            if first is None and bloom is not None and key in bloom:
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

    def _spill(self) -> None:
        if not self._recent:
            return
        base = self._dir / f"run-{len(self._runs):05d}"
        recent = self._recent
        keys = sorted(recent)  # a list of the keys only: a few MB more while spilling, no tuples
        _Run.write(base, keys, [recent[key] for key in keys])
        if self._bloom is None:
            self._bloom = _Bloom()
        add = self._bloom.add
        for key in keys:
            add(key)
        self._runs.append(_Run(base))
        self._recent = {}

    def snapshot(self, put: Put) -> list[str]:
        """Keep every run not yet kept, the Bloom filter (once there are runs) and the hashes still in
        memory (a file of their own: a checkpoint does not spill them, so a small file never makes a
        run or a filter); returns the names `restore` needs."""
        self._snapshots += 1
        names: list[str] = []
        for run in self._runs:
            for suffix in (".h", ".r"):
                name = run.base.name + suffix
                if name not in self._kept:
                    put(name, run.base.with_suffix(suffix))
                    self._kept.add(name)
                names.append(name)
        if self._bloom is not None:
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
        bases: list[str] = []
        for name in names:
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
        seen._runs = [_Run(seen._dir / base) for base in bases]
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
