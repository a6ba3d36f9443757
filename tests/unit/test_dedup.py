"""The duplicate check: exact answers whether the contacts are in memory or spilled, a few bytes a row,
and a state that survives a checkpoint."""

from __future__ import annotations

import hashlib
import math
import random
import shutil
import tracemalloc
from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fanout import dedup
from fanout.dedup import SeenContacts

pytestmark = pytest.mark.unit


@pytest.fixture
def seen(tmp_path: Path) -> Iterator[SeenContacts]:
    contacts = SeenContacts(str(tmp_path))
    yield contacts
    contacts.close()


def test_a_later_duplicate_points_at_the_first_row(seen: SeenContacts) -> None:
    assert seen.first_rows([("c", "ada@example.com", 3), ("c", "bob@example.com", 4)]) == [None, None]
    assert seen.first_rows([("c", "ada@example.com", 9), ("c", "ada@example.com", 12)]) == [3, 3]


def test_the_same_address_as_a_contact_and_as_a_list_is_not_a_duplicate(seen: SeenContacts) -> None:
    answers = seen.first_rows(
        [("c", "team@company.com", 1), ("l", "team@company.com", 2), ("l", "team@company.com", 6)]
    )
    assert answers == [None, None, 2]
    assert seen.first_rows([("c", "team@company.com", 7)]) == [1]


def _reference(entries: list[tuple[str, str, int]]) -> list[int | None]:
    first: dict[tuple[str, str], int] = {}
    answers: list[int | None] = []
    for lane, identity, row in entries:
        answers.append(first.get((lane, identity)))
        first.setdefault((lane, identity), row)
    return answers


def _entries(count: int, distinct: int, seed: int) -> list[tuple[str, str, int]]:
    rng = random.Random(seed)
    return [
        (rng.choice("cl"), f"person{rng.randrange(distinct)}@example.com", row) for row in range(1, count + 1)
    ]


@pytest.mark.parametrize("memory_rows", [7, 100, 10_000])
def test_answers_are_exact_when_contacts_are_spilled_to_runs(tmp_path: Path, memory_rows: int) -> None:
    entries = _entries(6_000, 2_500, memory_rows)
    contacts = SeenContacts(str(tmp_path), memory_rows=memory_rows)
    try:
        answers: list[int | None] = []
        for start in range(0, len(entries), 256):
            answers += contacts.first_rows(entries[start : start + 256])
        spilled = len(list(tmp_path.rglob("run-*.h")))
    finally:
        contacts.close()
    assert answers == _reference(entries)
    assert (spilled > 0) == (memory_rows < 6_000)
    assert not any(tmp_path.iterdir())  # nothing left behind


@settings(max_examples=300, deadline=None)
@given(
    contacts=st.lists(st.tuples(st.sampled_from("cl"), st.integers(0, 40)), max_size=300),
    cuts=st.lists(st.integers(1, 300), max_size=12),
    memory_rows=st.integers(1, 60),
)
def test_a_batch_is_answered_as_contact_after_contact(
    tmp_path_factory: pytest.TempPathFactory,
    contacts: list[tuple[str, int]],
    cuts: list[int],
    memory_rows: int,
) -> None:
    # batches of any size, repeats within a batch and across batches, in memory and spilled (one row's
    # contact may be new, in this batch already, in memory or in a run): the answers are the loop's
    entries = [(lane, f"p{n}@example.com", row) for row, (lane, n) in enumerate(contacts, start=1)]
    seen = SeenContacts(str(tmp_path_factory.mktemp("seen")), memory_rows=memory_rows)
    answers: list[int | None] = []
    try:
        start = 0
        for end in [*sorted(set(cuts)), len(entries)]:
            answers += seen.first_rows(entries[start:end])
            start = max(start, end)
    finally:
        seen.close()
    assert answers == _reference(entries)


def test_state_survives_a_snapshot_and_a_restore_elsewhere(tmp_path: Path) -> None:
    entries = _entries(5_000, 2_000, 1)
    kept = tmp_path / "kept"  # stands in for S3
    kept.mkdir()
    puts: list[str] = []

    def put(name: str, path: Path) -> None:
        puts.append(name)
        shutil.copy(path, kept / name)

    def get(name: str, path: Path) -> None:
        shutil.copy(kept / name, path)

    first = SeenContacts(str(tmp_path), memory_rows=500)
    answers = first.first_rows(entries[:1_800])
    names = first.snapshot(put)
    first.first_rows(entries[1_800:2_000])
    names_again = first.snapshot(put)
    first.close()
    # a run already kept is never put again; the second snapshot still names the first one's runs
    runs = [name for name in puts if name.startswith("run-")]
    assert runs and len(runs) == len(set(runs))
    assert {n for n in names if n.startswith("run-")} <= set(names_again)

    resumed = SeenContacts.restore(names, get, str(tmp_path), memory_rows=500)
    assert resumed.size == 1_800 - len([a for a in answers if a is not None])  # runs and memory both back
    try:
        answers += resumed.first_rows(entries[1_800:])
    finally:
        resumed.close()
    assert answers == _reference(entries)


def test_a_contact_costs_a_few_bytes_once_spilled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedup, "BLOOM_BITS", 1 << 20)
    contacts = SeenContacts(str(tmp_path), memory_rows=20_000)
    rows = 200_000
    tracemalloc.start()
    try:
        for start in range(1, rows + 1, 256):
            contacts.first_rows([("c", f"c{row}@example.com", row) for row in range(start, start + 256)])
        contacts.first_rows([("c", "flush@example.com", rows + 1000)])
        current, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    on_disk = sum(f.stat().st_size for f in tmp_path.rglob("run-*") if f.is_file())
    try:
        assert contacts.first_rows([("c", "c1@example.com", rows + 2000)]) == [1]
    finally:
        contacts.close()
    # the dict holds at most 20,000 (~2.2 MB); the 180,000+ spilled cost 12 B each on disk, ~0 in memory
    assert current < 20_000 * 130 + (1 << 20) // 8 + 1_000_000
    assert on_disk <= 12 * rows


def test_a_checkpoint_of_a_small_file_keeps_no_run_and_no_filter(tmp_path: Path) -> None:
    puts: list[str] = []
    seen = SeenContacts(str(tmp_path))
    try:
        seen.first_rows([("c", f"u{n}@x.se", n) for n in range(1, 1_000)])
        names = seen.snapshot(lambda name, path: puts.append(name))
    finally:
        seen.close()
    assert names == puts and all(name.startswith("recent-") or name == dedup.KEYS_XXH3 for name in names)


def _new_contacts(seen: SeenContacts, first: int, last: int) -> None:
    """Rows first..last, each a new contact, in batches of 256 as planning calls it."""
    for start in range(first, last + 1, 256):
        seen.first_rows(
            [("c", f"c{row}@example.com", row) for row in range(start, min(start + 256, last + 1))]
        )


def test_memory_stays_flat_once_the_first_run_is_spilled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the default filter and a dict of 65,536, measured where the dict has just been spilled (2 and 4 runs'
    # worth of contacts, merges in between): what the structure holds must not grow with the file
    monkeypatch.setattr(dedup, "MERGE_FAN_IN", 2, raising=False)
    memory_rows = 1 << 16
    seen = SeenContacts(str(tmp_path), memory_rows=memory_rows)
    tracemalloc.start()
    try:
        _new_contacts(seen, 1, 131_072)
        after_small, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        _new_contacts(seen, 131_073, 262_144)
        after_large, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    try:
        assert seen.first_rows([("c", "c7@example.com", 600_000), ("c", "c262144@example.com", 1)]) == [
            7,
            262_144,
        ]
    finally:
        seen.close()
    assert after_large - after_small < 2 << 20
    # the filter, a full dict (~110 B a contact) and a spill's or a merge's few MB, whatever the rows
    assert peak < dedup.BLOOM_BITS // 8 + memory_rows * 130 + (8 << 20)


def test_runs_are_merged_so_a_lookup_reads_few_pages(tmp_path: Path) -> None:
    entries = _entries(60_000, 40_000, 3)
    seen = SeenContacts(str(tmp_path), memory_rows=256)
    try:
        answers: list[int | None] = []
        for start in range(0, len(entries), 256):
            answers += seen.first_rows(entries[start : start + 256])
        runs = [f for f in tmp_path.rglob("run-*.h")]
        spilled = sum(f.stat().st_size for f in runs) // 8
        on_disk = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    finally:
        seen.close()
    assert answers == _reference(entries)
    spills = spilled // 256
    assert spills > 2 * dedup.MERGE_FAN_IN  # enough for merges of merged runs
    # at most MERGE_FAN_IN - 1 runs of each size class, and nothing of the merged runs left behind
    assert len(runs) <= (dedup.MERGE_FAN_IN - 1) * math.ceil(math.log(spills, dedup.MERGE_FAN_IN))
    assert on_disk == 12 * spilled


def test_a_merged_run_is_kept_under_a_new_name_and_either_checkpoint_restores(tmp_path: Path) -> None:
    entries = _entries(12_000, 6_000, 5)
    kept = tmp_path / "kept"  # stands in for S3: nothing kept is ever deleted or replaced
    kept.mkdir()
    puts: list[str] = []

    def put(name: str, path: Path) -> None:
        assert name not in puts or not name.startswith("run-")
        puts.append(name)
        shutil.copy(path, kept / name)

    def get(name: str, path: Path) -> None:
        shutil.copy(kept / name, path)

    first = SeenContacts(str(tmp_path), memory_rows=100)
    answers: list[int | None] = []
    for start in range(0, 256 * 30, 256):
        if start == 256 * 5:
            early = first.snapshot(put)
        answers += first.first_rows(entries[start : start + 256])
    late = first.snapshot(put)
    first.close()
    early_runs = {n for n in early if n.startswith("run-")}
    late_runs = {n for n in late if n.startswith("run-")}
    assert early_runs - late_runs  # runs kept early were merged away since...
    assert late_runs - early_runs  # ...into runs of new names
    for names, done in ((early, 256 * 5), (late, 256 * 30)):
        resumed = SeenContacts.restore(names, get, str(tmp_path), memory_rows=100)
        try:
            rest = [
                a for s in range(done, len(entries), 256) for a in resumed.first_rows(entries[s : s + 256])
            ]
        finally:
            resumed.close()
        assert answers[:done] + rest == _reference(entries)


def test_the_filter_sets_the_bits_earlier_versions_set(tmp_path: Path) -> None:
    # a checkpoint written before a deploy is restored after it: its filter must still mean the same
    bits = 1 << 20
    bloom = dedup._Bloom(np.zeros(bits // 8, np.uint8))
    # and keys 0-7, whose first probes all set bits of one byte at once
    keys = [dedup.contact_hash("c", f"k{n}@x.se") for n in range(50)] + list(range(8))
    bloom.add_all(keys)
    expected = bytearray(bits // 8)
    for key in keys:
        u = key & ((1 << 64) - 1)
        for p in (u % bits, (u >> 21) % bits, (u >> 35) % bits):
            expected[p >> 3] |= 1 << (p & 7)
    assert bytes(bloom.bits) == bytes(expected)
    assert all(key in bloom for key in keys)


@pytest.mark.parametrize("keep_bloom_rows", [0, 1 << 20])
def test_the_filter_is_kept_or_made_again_from_the_runs_and_answers_stay_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_bloom_rows: int
) -> None:
    # a small state's filter is not worth 64 MiB to S3 and back: restore makes it from the runs
    monkeypatch.setattr(dedup, "KEEP_BLOOM_ROWS", keep_bloom_rows)
    entries = _entries(8_000, 3_000, 11)
    kept: dict[str, bytes] = {}
    first = SeenContacts(str(tmp_path), memory_rows=300)
    answers = [a for s in range(0, 4_096, 256) for a in first.first_rows(entries[s : s + 256])]
    names = first.snapshot(lambda name, path: kept.__setitem__(name, path.read_bytes()))
    first.close()
    assert any(name.startswith("bloom-") for name in names) == (keep_bloom_rows == 0)
    resumed = SeenContacts.restore(names, lambda name, path: path.write_bytes(kept[name]), str(tmp_path), 300)
    try:
        answers += [a for s in range(4_096, 8_000, 256) for a in resumed.first_rows(entries[s : s + 256])]
    finally:
        resumed.close()
    assert answers == _reference(entries)


def _blake2b_key(lane: str, identity: str) -> int:
    """The key of a contact as every state kept before the keys became xxh3 has it (written out here, so
    the test keeps the old meaning whatever dedup.py does now)."""
    digest = hashlib.blake2b(f"{lane}\0{identity}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def test_a_checkpoint_kept_before_the_keys_changed_still_finds_its_duplicates(tmp_path: Path) -> None:
    # a split that checkpointed on the code before a deploy continues on the code after it: a contact it
    # had read must still be found, in the spilled run and in the hashes kept from memory, or it is sent twice
    spilled = {_blake2b_key("c", f"run{n}@example.com"): n for n in range(1, 301)}
    recent = {_blake2b_key("c", f"mem{n}@example.com"): 300 + n for n in range(1, 51)}
    kept = tmp_path / "kept"
    kept.mkdir()
    for base, state in (("run-00000", spilled), ("recent-00001", recent)):
        keys = sorted(state)
        (kept / f"{base}.h").write_bytes(array("q", keys).tobytes())
        (kept / f"{base}.r").write_bytes(array("I", [state[k] for k in keys]).tobytes())
    names = ["run-00000.h", "run-00000.r", "recent-00001.h", "recent-00001.r"]
    resumed = SeenContacts.restore(
        names, lambda name, path: shutil.copy(kept / name, path), str(tmp_path), 100
    )
    try:
        answers = resumed.first_rows(
            [("c", "run7@example.com", 400), ("c", "mem3@example.com", 401), ("c", "new@example.com", 402)]
        )
        again = resumed.first_rows([("c", "new@example.com", 403)])
        # and the state it goes on to keep (beside what is kept already) still restores, with the same meaning
        names = resumed.snapshot(lambda name, path: shutil.copy(path, kept / name))
    finally:
        resumed.close()
    assert answers == [7, 303, None]
    assert again == [402]
    restored = SeenContacts.restore(names, lambda name, path: shutil.copy(kept / name, path), str(tmp_path))
    try:
        assert restored.first_rows([("c", "run9@example.com", 500), ("c", "new@example.com", 501)]) == [
            9,
            402,
        ]
    finally:
        restored.close()


def test_a_new_state_keeps_its_key_scheme_with_it(tmp_path: Path) -> None:
    kept: dict[str, bytes] = {}
    first = SeenContacts(str(tmp_path), memory_rows=50)
    first.first_rows([("c", f"p{n}@example.com", n) for n in range(1, 201)])
    names = first.snapshot(lambda name, path: kept.__setitem__(name, path.read_bytes()))
    first.close()
    resumed = SeenContacts.restore(names, lambda name, path: path.write_bytes(kept[name]), str(tmp_path), 50)
    try:
        assert resumed.first_rows([("c", "p120@example.com", 300), ("c", "p7@example.com", 301)]) == [120, 7]
    finally:
        resumed.close()


def test_a_restored_filter_is_read_into_memory_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a continuation restores the kept 64 MiB filter: held twice on the way in (the file's bytes, then a
    # copy), its restore peaked at twice the filter
    monkeypatch.setattr(dedup, "BLOOM_BITS", 1 << 26)  # 8 MiB
    monkeypatch.setattr(dedup, "KEEP_BLOOM_ROWS", 0)
    kept: dict[str, bytes] = {}
    first = SeenContacts(str(tmp_path), memory_rows=100)
    _new_contacts(first, 1, 1_000)
    names = first.snapshot(lambda name, path: kept.__setitem__(name, path.read_bytes()))
    first.close()
    assert any(name.startswith("bloom-") for name in names)
    tracemalloc.start()
    try:
        resumed = SeenContacts.restore(names, lambda name, path: path.write_bytes(kept[name]), str(tmp_path))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    try:
        assert resumed.first_rows([("c", "c7@example.com", 2_000)]) == [7]
    finally:
        resumed.close()
    # the filter once, and a run's index read a block (2 MiB) at a time beside it
    assert peak < (1 << 26) // 8 + (3 << 20)
