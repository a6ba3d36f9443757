"""rows.csv: chunk results stored in its form, merged in file order with the rejected rows; reading them
ahead of the merge keeps the order, stays bounded, and surfaces failures."""

from __future__ import annotations

import csv
import io
import json
import threading
import time

import pytest

from fanout.config import SplitterConfig
from fanout.models import JobStatus, RowResult, RowState
from fanout.results import read_ahead, rows_csv_text, spreadsheet_safe, write_rows_file
from fanout.sent_contacts import contact_hash
from fanout.staging import (
    chunk_result_key,
    rejected_jsonl_key,
    result_key,
)
from fanout.store import Chunk, ChunkState, Job
from tests.unit.conftest import boto

pytestmark = pytest.mark.unit


def test_results_come_back_in_chunk_order_however_the_reads_finish() -> None:
    def fetch(n: int) -> int:
        time.sleep(0.001 * (n % 5))  # later chunks often arrive first
        return n * 10

    assert list(read_ahead(range(60), fetch, 8)) == [n * 10 for n in range(60)]


def test_no_more_than_the_window_is_read_at_once() -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def fetch(n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.005)
        with lock:
            running -= 1
        return n

    assert list(read_ahead(range(40), fetch, 4)) == list(range(40))
    assert 1 < most <= 4  # reads overlap, within the window


def test_a_failed_read_fails_the_merge() -> None:
    def fetch(n: int) -> int:
        if n == 7:
            raise OSError("S3 read failed")
        return n

    with pytest.raises(OSError, match="S3 read failed"):
        list(read_ahead(range(20), fetch, 4))


def test_a_rows_csv_line_survives_commas_quotes_newlines_and_formulas() -> None:
    results = [
        RowResult(3, "ada@example.com", RowState.FAILED, 'not_found: "ada", see\nline two'),
        RowResult(4, "=HYPERLINK(1)", RowState.SENT, "+46 70-123 45 67"),
    ]
    fields = list(csv.reader(io.StringIO(rows_csv_text(results))))
    assert fields == [
        ["3", "ada@example.com", "failed", 'not_found: "ada", see\nline two'],
        ["4", "'=HYPERLINK(1)", "sent", "+46 70-123 45 67"],  # a formula is text; a phone number stays
    ]


def test_rows_csv_merges_every_kind_of_chunk_with_the_rejected_rows_in_file_order(
    splitter_config: SplitterConfig,
) -> None:
    bucket, job_id = splitter_config.bucket_name, "j-rowsfile0000001"
    s3 = boto("s3")
    job = Job(job_id, JobStatus.SENDING, bucket, "inbox/x.csv", "mateo", "t", message="")
    answered = [
        RowResult(1, "a@x.io", RowState.SENT, "queued"),
        RowResult(4, "d@x.io", RowState.SENT, "queued"),
    ]
    s3.put_object(Bucket=bucket, Key=chunk_result_key(job_id, "c00001"), Body=rows_csv_text(answered))
    refused = [RowResult(5, "e@x.io", RowState.FAILED, "not_found")]
    s3.put_object(Bucket=bucket, Key=chunk_result_key(job_id, "c00002"), Body=rows_csv_text(refused))
    # Never answered: its staged rows end failed with the chunk's last error.
    staged = json.dumps({"row": 7, "identity": "g@x.io", "item": {}})
    s3.put_object(Bucket=bucket, Key=f"jobs/{job_id}/chunks/c00003.jsonl", Body=staged + "\n")
    rejected = "\n".join(json.dumps({"row": r, "reason": "bad email"}) for r in (2, 3, 6)) + "\n"
    s3.put_object(Bucket=bucket, Key=rejected_jsonl_key(job_id), Body=rejected)
    chunks = [
        Chunk(job_id, "c00001", "k1", 2, ChunkState.SENT),
        Chunk(job_id, "c00002", "k2", 1, ChunkState.FAILED),
        Chunk(
            job_id,
            "c00003",
            f"jobs/{job_id}/chunks/c00003.jsonl",
            1,
            ChunkState.FAILED,
            last_error="HTTP 503",
        ),
    ]

    write_rows_file(bucket, job, chunks)

    body = s3.get_object(Bucket=bucket, Key=result_key(job_id, "rows.csv"))["Body"].read().decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [(r["row"], r["state"], r["answer"]) for r in rows] == [
        ("1", "sent", "queued"),
        ("2", "rejected", "bad email"),
        ("3", "rejected", "bad email"),
        ("4", "sent", "queued"),
        ("5", "failed", "not_found"),
        ("6", "rejected", "bad email"),
        ("7", "failed", "HTTP 503"),
    ]


def test_rows_csv_is_each_rows_own_csv_form_whatever_its_answer_holds(
    splitter_config: SplitterConfig,
) -> None:
    """Chunk results are merged as written: plain chunks, and chunks with quotes, newlines, carriage
    returns and Unicode line separators in answers, come out byte for byte as rows_csv_text wrote them."""
    bucket, job_id = splitter_config.bucket_name, "j-rowsfile0000002"
    s3 = boto("s3")
    job = Job(job_id, JobStatus.SENDING, bucket, "inbox/x.csv", "mateo", "t", message="")
    plain = [RowResult(r, f"p{r}@x.io", RowState.SENT, "accepted (batch 7)") for r in (1, 2, 3)]
    odd = [
        RowResult(4, "=1+1", RowState.FAILED, 'said "no", then\nthen\rquit'),
        RowResult(5, "q@x.io", RowState.SENT, "line\u2028sep\x85next\x1cfs"),
        RowResult(6, "r@x.io", RowState.UNCERTAIN, ""),
    ]
    chunks = []
    for number, results in enumerate((plain, odd), start=1):
        chunk_id = f"c0000{number}"
        s3.put_object(Bucket=bucket, Key=chunk_result_key(job_id, chunk_id), Body=rows_csv_text(results))
        chunks.append(Chunk(job_id, chunk_id, f"k{number}", len(results), ChunkState.SENT))

    sent = write_rows_file(bucket, job, chunks)

    body = s3.get_object(Bucket=bucket, Key=result_key(job_id, "rows.csv"))["Body"].read().decode()
    everything = sorted(plain + odd, key=lambda r: r.row)
    assert body == "row,identity,state,answer\n" + rows_csv_text(everything)
    assert sorted(sent) == sorted(
        contact_hash(spreadsheet_safe(r.identity)) for r in everything if r.state is not RowState.FAILED
    )
