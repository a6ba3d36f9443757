"""Send only the new contacts: a record per destination and target of who was sent, in S3, read and merged
in one pass; `only-new=true` skips whoever an earlier job sent there (issue 14 item 10)."""

from __future__ import annotations

import csv
import io
import json
import time
import tracemalloc
import uuid
from array import array
from typing import Any

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fanout.config import SplitterConfig
from fanout.destinations import Destination
from fanout.models import ChunkMessage, ChunkState, JobStatus, ObjectRef, RowResult, RowState
from fanout.results import rows_csv_text, settle_job
from fanout.sent_contacts import SentContacts, contact_hash, load, record
from fanout.splitter import Splitter
from fanout.staging import chunk_result_key, result_key
from fanout.store import DynamoJobStore, Settlement

pytestmark = pytest.mark.unit


def aws(service: str) -> Any:
    return boto3.client(service, region_name="eu-west-1")  # type: ignore[call-overload]


def hashes(*identities: str) -> array:
    return array("Q", (contact_hash(i) for i in identities))


def test_the_record_keeps_each_contacts_first_job_and_reads_back_as_written() -> None:
    first = SentContacts().merged("j-first", "2026-11-01", array("Q", sorted(hashes("a@x.io", "b@x.io"))))
    both = first.merged("j-second", "2026-11-02", array("Q", sorted(hashes("b@x.io", "c@x.io"))))
    back = SentContacts.from_bytes(both.to_bytes())

    assert back.who("a@x.io") == ("j-first", "2026-11-01")
    assert back.who("b@x.io") == ("j-first", "2026-11-01")
    assert back.who("c@x.io") == ("j-second", "2026-11-02")
    assert back.who("d@x.io") is None
    assert list(back.hashes) == sorted(back.hashes)


def test_a_contact_a_job_sent_twice_is_recorded_once(splitter_config: SplitterConfig) -> None:
    """The record takes a job's sent contacts as they come (rows.csv order, repeats allowed: a file with
    its duplicate check off), and holds each once, sorted."""
    twice = SentContacts().merged(
        "j-1", "2026-11-01", array("Q", sorted(hashes("a@x.io", "b@x.io", "a@x.io")))
    )
    assert len(twice.hashes) == 2 and list(twice.hashes) == sorted(twice.hashes)
    bucket, target = splitter_config.bucket_name, f"twice-{uuid.uuid4().hex[:6]}"
    record(bucket, "workshop", target, "j-1", "2026-11-01", hashes("c@x.io", "a@x.io", "c@x.io", "b@x.io"))
    record(bucket, "workshop", target, "j-2", "2026-11-02", hashes("b@x.io", "d@x.io", "d@x.io"))
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
    record(bucket, "workshop", target, "j-a", "2026-11-01", hashes("a@x.io"))
    stale, etag = load(bucket, "workshop", target)
    record(bucket, "workshop", target, "j-b", "2026-11-02", hashes("b@x.io"))
    with pytest.raises(Exception, match=r"PreconditionFailed|412"):
        aws("s3").put_object(
            Bucket=bucket, Key=f"state/sent/workshop/{target}.bin", Body=stale.to_bytes(), IfMatch=etag
        )
    record(bucket, "workshop", target, "j-c", "2026-11-03", hashes("c@x.io"))
    known, _ = load(bucket, "workshop", target)

    assert [known.who(i) for i in ("a@x.io", "b@x.io", "c@x.io")] == [
        ("j-a", "2026-11-01"),
        ("j-b", "2026-11-02"),
        ("j-c", "2026-11-03"),
    ]


# Hashes from a small range, so that jobs share contacts and repeat them; the top bit set too (unsigned).
_HASHES = st.lists(st.integers(0, 40) | st.integers(2**64 - 8, 2**64 - 1), max_size=60)


@given(st.lists(_HASHES, min_size=1, max_size=4))
def test_jobs_recorded_one_after_another_hold_each_contact_once_with_its_first_job(
    jobs: list[list[int]],
) -> None:
    """Whatever order and repeats a job's contacts come in, the record holds each contact once, sorted,
    under the first job that sent it (the model: a dict filled job by job)."""
    known = SentContacts()
    first: dict[int, int] = {}
    for index, sent in enumerate(jobs):
        known = known.merged(f"j-{index}", "2026-11-30", array("Q", sent))
        for value in sent:
            first.setdefault(value, index)

    assert list(known.hashes) == sorted(first)
    assert list(known.job_of) == [first[value] for value in sorted(first)]
    assert [job for job, _ in known.jobs] == [f"j-{index}" for index in range(len(jobs))]


def test_a_million_known_contacts_cost_seconds_and_tens_of_mb() -> None:
    million = array("Q", sorted({contact_hash(f"user{n}@example.com") for n in range(1_000_000)}))
    base = SentContacts().merged("j-1", "2026-11-01", million).to_bytes()
    del million
    nightly = array("Q", sorted(hashes(*(f"new{n}@example.com" for n in range(20_000)))))
    tracemalloc.start()
    started = time.process_time()
    known = SentContacts.from_bytes(base)
    merged = known.merged("j-2", "2026-11-02", nightly).to_bytes()
    found = sum(known.who(f"user{n}@example.com") is not None for n in range(0, 1_000_000, 10))
    seconds = time.process_time() - started
    peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()

    assert found == 100_000
    assert len(merged) == len(base) + 20_000 * 12 + len(json.dumps(["j-2", "2026-11-02"])) + 2
    assert peak_mb < 60, peak_mb  # the record (12 MB), its merged copy and the bytes written
    assert seconds < 15, seconds  # loaded 2-core machine with tracemalloc on; about 1 s unloaded


# --- the splitter and the settling job ---------------------------------------------------------------------


def emails(*names: str) -> bytes:
    return ("email\n" + "".join(f"{n}\n" for n in names)).encode()


def test_only_new_skips_who_an_earlier_job_sent_to_the_same_target(splitter_config: SplitterConfig) -> None:
    bucket, target = splitter_config.bucket_name, f"jrn_{uuid.uuid4().hex[:6]}"
    record(
        bucket,
        "workshop",
        target,
        "j-monday0000000001",
        "2026-11-23",
        hashes("ada@example.com", "bob@example.com"),
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
    record(bucket, "workshop", target, "j-monday0000000001", "2026-11-23", hashes("ada@example.com"))
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


def test_a_jobs_record_is_merged_in_about_fifty_bytes_a_contact() -> None:
    """The settling sender merges every contact a job sent: the bytes a contact it holds decide the
    largest job that can settle in its memory (512 MB: 73 B a contact made that about 4M contacts)."""
    count = 200_000
    new = array("Q", range(count * 7919 % 2**61, count * 7919 % 2**61 + count * 3, 3))
    new.reverse()  # a job's contacts come in file order, not sorted
    SentContacts().merged("j-0", "2026-11-01", array("Q", [1]))  # numpy imported before the count
    tracemalloc.start()
    first = SentContacts().merged("j-1", "2026-11-01", new).to_bytes()
    first_peak = tracemalloc.get_traced_memory()[1]
    known = SentContacts.from_bytes(first)
    del first
    more = array("Q", (value + 1 for value in new))  # as many again, none known
    tracemalloc.reset_peak()
    held = tracemalloc.get_traced_memory()[0]
    second = known.merged("j-2", "2026-11-02", more).to_bytes()
    second_peak = tracemalloc.get_traced_memory()[1] - held
    tracemalloc.stop()

    assert len(second) > 2 * count * 12
    assert first_peak / count < 55, f"{first_peak / count:.0f} B a contact for a first record"
    assert second_peak / count < 65, f"{second_peak / count:.0f} B a new contact onto a record as large"
