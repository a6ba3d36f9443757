"""Send only the new contacts: a record per destination and target of who was sent, in S3, read and merged
in one pass; `only-new=true` skips whoever an earlier job sent there (issue 14 item 10)."""

from __future__ import annotations

import csv
import io
import time
import tracemalloc
import uuid
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import boto3
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fanout import sent_contacts
from fanout.config import SplitterConfig
from fanout.destinations import Destination
from fanout.models import ChunkMessage, ChunkState, JobStatus, ObjectRef, RowResult, RowState
from fanout.results import rows_csv_text, settle_job
from fanout.sent_contacts import RUN_HASHES, NewContacts, contact_hash, load, record
from fanout.splitter import Splitter
from fanout.staging import chunk_result_key, result_key
from fanout.store import DynamoJobStore, Settlement

pytestmark = pytest.mark.unit


def aws(service: str) -> Any:
    return boto3.client(service, region_name="eu-west-1")  # type: ignore[call-overload]


def hashes(*identities: str) -> array:
    return array("Q", (contact_hash(i) for i in identities))


def sent(values: Iterable[int], run_hashes: int = RUN_HASHES) -> NewContacts:
    """A job's contacts as its settle gathers them (`run_hashes` a run)."""
    gathered = NewContacts(run_hashes=run_hashes)
    gathered.add(array("Q", values))
    return gathered


def record_job(bucket: str, target: str, job: str, date: str, values: Iterable[int]) -> None:
    with sent(values) as gathered:
        record(bucket, "workshop", target, job, date, gathered)


def test_the_record_keeps_each_contacts_first_job_and_reads_back_as_written(
    splitter_config: SplitterConfig,
) -> None:
    bucket, target = splitter_config.bucket_name, f"first-{uuid.uuid4().hex[:6]}"
    record_job(bucket, target, "j-first", "2026-11-01", hashes("a@x.io", "b@x.io"))
    record_job(bucket, target, "j-second", "2026-11-02", hashes("b@x.io", "c@x.io"))
    back, _ = load(bucket, "workshop", target)

    assert back.who("a@x.io") == ("j-first", "2026-11-01")
    assert back.who("b@x.io") == ("j-first", "2026-11-01")
    assert back.who("c@x.io") == ("j-second", "2026-11-02")
    assert back.who("d@x.io") is None
    assert list(back.hashes) == sorted(back.hashes)


def test_a_contact_a_job_sent_twice_is_recorded_once(splitter_config: SplitterConfig) -> None:
    """The record takes a job's sent contacts as they come (rows.csv order, repeats allowed: a file with
    its duplicate check off), and holds each once, sorted."""
    bucket, target = splitter_config.bucket_name, f"twice-{uuid.uuid4().hex[:6]}"
    record_job(bucket, target, "j-1", "2026-11-01", hashes("c@x.io", "a@x.io", "c@x.io", "b@x.io"))
    record_job(bucket, target, "j-2", "2026-11-02", hashes("b@x.io", "d@x.io", "d@x.io"))
    known, _ = load(bucket, "workshop", target)

    assert len(known.hashes) == 4 and list(known.hashes) == sorted(known.hashes)
    assert [known.who(i) for i in ("a@x.io", "b@x.io", "c@x.io", "d@x.io")] == [
        ("j-1", "2026-11-01"),
        ("j-1", "2026-11-01"),
        ("j-1", "2026-11-01"),
        ("j-2", "2026-11-02"),
    ]


def test_two_jobs_recording_at_once_both_land(splitter_config: SplitterConfig) -> None:
    """Each write is conditional on the object read: a write in between makes the other merge again."""
    bucket, target = splitter_config.bucket_name, f"race-{uuid.uuid4().hex[:6]}"
    key = f"state/sent/workshop/{target}.bin"
    record_job(bucket, target, "j-a", "2026-11-01", hashes("a@x.io"))
    stale = aws("s3").get_object(Bucket=bucket, Key=key)
    record_job(bucket, target, "j-b", "2026-11-02", hashes("b@x.io"))
    with pytest.raises(Exception, match=r"PreconditionFailed|412"):
        aws("s3").put_object(Bucket=bucket, Key=key, Body=stale["Body"].read(), IfMatch=stale["ETag"])
    record_job(bucket, target, "j-c", "2026-11-03", hashes("c@x.io"))
    known, _ = load(bucket, "workshop", target)

    assert [known.who(i) for i in ("a@x.io", "b@x.io", "c@x.io")] == [
        ("j-a", "2026-11-01"),
        ("j-b", "2026-11-02"),
        ("j-c", "2026-11-03"),
    ]


def test_a_record_changed_between_its_read_and_its_write_is_merged_again(
    splitter_config: SplitterConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another job's record lands while this one merges: the write is refused (If-Match), and the merge
    is made again from the new record, so neither job's contacts are lost."""
    bucket, target = splitter_config.bucket_name, f"between-{uuid.uuid4().hex[:6]}"
    record_job(bucket, target, "j-a", "2026-11-01", hashes("a@x.io"))
    merge = sent_contacts._write_merged
    interleaved: list[str] = []

    def meanwhile(*args: Any) -> None:
        if not interleaved:
            interleaved.append("j-b")
            record_job(bucket, target, "j-b", "2026-11-02", hashes("b@x.io"))
        merge(*args)

    monkeypatch.setattr(sent_contacts, "_write_merged", meanwhile)
    record_job(bucket, target, "j-c", "2026-11-03", hashes("c@x.io", "b@x.io"))
    known, _ = load(bucket, "workshop", target)

    assert interleaved == ["j-b"]
    assert [known.who(i) for i in ("a@x.io", "b@x.io", "c@x.io")] == [
        ("j-a", "2026-11-01"),
        ("j-b", "2026-11-02"),
        ("j-c", "2026-11-03"),
    ]


# Hashes from a small range, so that jobs share contacts and repeat them; the top bit set too (unsigned).
_HASHES = st.lists(st.integers(0, 40) | st.integers(2**64 - 8, 2**64 - 1), max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(jobs=st.lists(_HASHES, min_size=1, max_size=4), run_hashes=st.integers(1, 8), block=st.integers(1, 9))
def test_jobs_recorded_one_after_another_hold_each_contact_once_with_its_first_job(
    splitter_config: SplitterConfig, jobs: list[list[int]], run_hashes: int, block: int
) -> None:
    """Whatever order and repeats a job's contacts come in, however many runs they spill to and however
    the merge cuts its blocks, the record holds each contact once, sorted, under the first job that sent
    it (the model: a dict filled job by job)."""
    bucket, target = splitter_config.bucket_name, f"model-{uuid.uuid4().hex[:8]}"
    first: dict[int, int] = {}
    recorded: list[str] = []  # a job that sent no one is not named
    with patch.object(sent_contacts, "MIN_BLOCK", block), patch.object(sent_contacts, "MERGE_HASHES", block):
        for index, values in enumerate(jobs):
            with sent(values, run_hashes) as gathered:
                record(bucket, "workshop", target, f"j-{index}", "2026-11-30", gathered)
            if values:
                recorded.append(f"j-{index}")
            for value in values:
                first.setdefault(value, len(recorded) - 1)
    known, _ = load(bucket, "workshop", target)

    assert list(known.hashes) == sorted(first)
    assert list(known.job_of) == [first[value] for value in sorted(first)]
    assert [job for job, _ in known.jobs] == recorded


def test_a_million_known_contacts_cost_seconds(splitter_config: SplitterConfig) -> None:
    bucket, target = splitter_config.bucket_name, f"million-{uuid.uuid4().hex[:6]}"
    record_job(
        bucket, target, "j-1", "2026-11-01", (contact_hash(f"user{n}@example.com") for n in range(1_000_000))
    )
    started = time.process_time()
    record_job(bucket, target, "j-2", "2026-11-02", hashes(*(f"new{n}@example.com" for n in range(20_000))))
    known, _ = load(bucket, "workshop", target)
    found = sum(known.who(f"user{n}@example.com") is not None for n in range(0, 1_000_000, 10))
    seconds = time.process_time() - started

    assert found == 100_000
    assert len(known.hashes) == 1_020_000
    assert known.who("new19999@example.com") == ("j-2", "2026-11-02")
    assert seconds < 15, seconds  # loaded 2-core machine; about 1 s unloaded


# --- the splitter and the settling job ---------------------------------------------------------------------


def emails(*names: str) -> bytes:
    return ("email\n" + "".join(f"{n}\n" for n in names)).encode()


def test_only_new_skips_who_an_earlier_job_sent_to_the_same_target(splitter_config: SplitterConfig) -> None:
    bucket, target = splitter_config.bucket_name, f"jrn_{uuid.uuid4().hex[:6]}"
    record_job(
        bucket, target, "j-monday0000000001", "2026-11-23", hashes("ada@example.com", "bob@example.com")
    )
    store = DynamoJobStore(splitter_config.table_name)
    splitter = Splitter(splitter_config, store)
    key = f"inbox/workshop/{target}/tuesday.csv"
    body = emails("ada@example.com", "bob@example.com", "cleo@example.com")
    aws("s3").put_object(Bucket=bucket, Key=key, Body=body, Metadata={"only-new": "true"})

    (outcome,) = splitter.split(ObjectRef(bucket, key))

    assert outcome.status is JobStatus.SENDING  # 2 of 3 skipped is not 67% invalid
    rejected = list(
        csv.DictReader(
            io.StringIO(
                aws("s3")
                .get_object(Bucket=bucket, Key=result_key(outcome.job_id, "rejected.csv"))["Body"]
                .read()
                .decode()
            )
        )
    )
    assert [(r["row"], r["reason"]) for r in rejected] == [
        ("1", f"already sent to workshop/{target} by job j-monday0000000001 on 2026-11-23"),
        ("2", f"already sent to workshop/{target} by job j-monday0000000001 on 2026-11-23"),
    ]
    (message,) = _queued(splitter_config)
    assert message.rows == 1


def test_without_only_new_everyone_is_sent(splitter_config: SplitterConfig) -> None:
    bucket, target = splitter_config.bucket_name, f"jrn_{uuid.uuid4().hex[:6]}"
    record_job(bucket, target, "j-monday0000000001", "2026-11-23", hashes("ada@example.com"))
    key = f"inbox/workshop/{target}/tuesday.csv"
    aws("s3").put_object(Bucket=bucket, Key=key, Body=emails("ada@example.com", "cleo@example.com"))
    (outcome,) = Splitter(splitter_config, DynamoJobStore(splitter_config.table_name)).split(
        ObjectRef(bucket, key)
    )

    assert outcome.counts.rejected == 0
    assert [m.rows for m in _queued(splitter_config)] == [2]


def test_a_settling_job_records_whom_it_sent_for_the_next_only_new(splitter_config: SplitterConfig) -> None:
    bucket, target = splitter_config.bucket_name, f"jrn_{uuid.uuid4().hex[:6]}"
    store = DynamoJobStore(splitter_config.table_name)
    key = f"inbox/workshop/{target}/monday.csv"
    aws("s3").put_object(
        Bucket=bucket, Key=key, Body=emails("ada@example.com", "bob@example.com", "cleo@example.com")
    )
    (outcome,) = Splitter(splitter_config, store).split(ObjectRef(bucket, key))
    (message,) = _queued(splitter_config)
    answers = [
        RowResult(1, "ada@example.com", RowState.SENT, "enrolled"),
        RowResult(2, "bob@example.com", RowState.FAILED, "bounced"),
        RowResult(3, "cleo@example.com", RowState.UNCERTAIN, "timeout"),
    ]
    aws("s3").put_object(
        Bucket=bucket, Key=chunk_result_key(outcome.job_id, message.chunk_id), Body=rows_csv_text(answers)
    )
    store.settle_chunk(
        outcome.job_id, message.chunk_id, Settlement(ChunkState.SENT, sent=1, failed=1, uncertain=1)
    )

    settled = settle_job(store, bucket, splitter_config.event_bus_name, outcome.job_id)
    known, _ = load(bucket, "workshop", target)

    assert settled is not None
    assert known.who("ada@example.com") == (outcome.job_id, settled.created_at[:10])
    assert known.who("cleo@example.com") is not None  # uncertain: it may have been sent
    assert known.who("bob@example.com") is None  # failed: never sent, the next file may send it


def _queued(config: SplitterConfig) -> list[ChunkMessage]:
    url = config.queue_url(Destination.WORKSHOP)
    found = []
    while messages := aws("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for m in messages:
            found.append(ChunkMessage.from_json(m["Body"]))
            aws("sqs").delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return found


def _merge_peak(old_count: int, new_count: int, directory: Path) -> float:
    """Bytes traced at most while a job of `new_count` contacts is merged onto a record of `old_count`
    (the record's blocks read from a file, as the settle reads them from S3)."""
    old = np.arange(old_count, dtype="<u8") * 7 + 3
    stored = directory / f"old-{old_count}.bin"
    old.tofile(stored)
    indexes = np.zeros(old_count, dtype="<u4")
    del old

    def blocks(size: int) -> Iterator[tuple[Any, Any]]:
        with stored.open("rb") as handle:
            for first in range(0, old_count, size):
                keys = np.frombuffer(handle.read(8 * size), dtype="<u8")
                yield keys, indexes[first : first + len(keys)]

    values = array("Q", range(new_count * 7 + 5, 0, -5))[:new_count]  # in file order, half known
    with NewContacts(run_hashes=1 << 16) as gathered:
        tracemalloc.start()
        for first in range(0, new_count, 10_000):  # as the settle adds them, a flush of rows.csv at a time
            gathered.add(values[first : first + 10_000])
        del values
        sent_contacts._write_merged(
            [("j-1", "2026-11-01"), ("j-2", "2026-11-02")], blocks, gathered, directory / "m"
        )
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    merged = (directory / "m").read_bytes()
    assert len(merged) > 12 * old_count
    return peak


def test_a_jobs_record_is_merged_in_memory_that_does_not_grow_with_the_job(tmp_path: Path) -> None:
    """The settle merges every contact a job sent into the destination's record: the memory that takes
    decides the largest job that can settle (held in memory, 57 B a contact: about 6M contacts in the
    senders' 512 MB). Spilled and streamed, ten times the contacts take no more memory."""
    with patch.object(sent_contacts, "MERGE_HASHES", 1 << 16):
        small = _merge_peak(100_000, 100_000, tmp_path)
        large = _merge_peak(1_000_000, 1_000_000, tmp_path)

    assert large < 1.5 * small + 2e6, f"{small / 1e6:.1f} MB for 100k contacts, {large / 1e6:.1f} MB for 1M"
    assert large < 12e6, f"{large / 1e6:.1f} MB to merge 1M contacts onto 1M"  # in memory: 57 MB


def test_a_record_rewritten_while_only_new_reads_it_is_read_again_whole(
    splitter_config: SplitterConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The splitter reads the record a block at a time from the version it opened; a job's settle that
    writes it in between makes that read fail (If-Match), and the record is read again, new job and all."""
    bucket, target = splitter_config.bucket_name, f"reread-{uuid.uuid4().hex[:6]}"
    record_job(bucket, target, "j-a", "2026-11-01", hashes("a@x.io"))
    opened = sent_contacts._StoredRecord.open
    rewrites: list[str] = []

    def open_then_rewrite(bucket: str, key: str) -> Any:
        stored = opened(bucket, key)
        if not rewrites:
            rewrites.append("j-b")
            record_job(bucket, target, "j-b", "2026-11-02", hashes("b@x.io"))
        return stored

    monkeypatch.setattr(sent_contacts._StoredRecord, "open", staticmethod(open_then_rewrite))
    known, etag = load(bucket, "workshop", target)

    assert rewrites == ["j-b"]
    assert [known.who(i) for i in ("a@x.io", "b@x.io")] == [("j-a", "2026-11-01"), ("j-b", "2026-11-02")]
    assert etag == aws("s3").head_object(Bucket=bucket, Key=f"state/sent/workshop/{target}.bin")["ETag"]
