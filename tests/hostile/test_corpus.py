"""Every hostile corpus file through `Splitter.split` on the stack template.yaml defines (moto, in process).

Each must end as its corpus entry promises: a failed job with one clear message and nothing sent, or a job
that goes on with exactly the bad rows rejected (with reasons a person can act on) and every other row
staged once; never an exception out of the splitter, which on Lambda would be a retry loop. The same event
delivered twice makes one job.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from corpus import CORPUS, Completed, Failed, HostileFile, NoJob

from fanout.config import SplitterConfig
from fanout.destinations import Destination
from fanout.models import ChunkMessage, JobStatus, StagedRow
from fanout.results import write_rows_file
from fanout.splitter import SplitOutcome, Splitter, object_refs
from fanout.staging import result_key
from fanout.store import DynamoJobStore, Job

pytestmark = pytest.mark.unit

# What a spreadsheet would run: a cell starting like a formula that is not a plain number.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?[\d\s().-]*")


@cache
def aws(service: str) -> Any:
    return boto3.client(service, region_name="eu-west-1")  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture
def store(splitter_config: SplitterConfig) -> DynamoJobStore:
    return DynamoJobStore(splitter_config.table_name, splitter_config.retention_days)


@pytest.fixture
def splitter(module_splitter: Splitter, splitter_config: SplitterConfig) -> Splitter:
    for destination in Destination:  # the stack is shared by the module: start with empty queues
        queued(splitter_config, destination)
    return module_splitter


def queued(config: SplitterConfig, destination: Destination) -> list[ChunkMessage]:
    """Every message waiting on the destination's queue (the queue is empty afterwards)."""
    url = config.queue_url(destination)
    found: list[ChunkMessage] = []
    while True:
        answer = aws("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300)
        if not answer.get("Messages"):
            return found
        for message in answer["Messages"]:
            found.append(ChunkMessage.from_json(message["Body"]))
            aws("sqs").delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def s3_event(bucket: str, key: str, put: dict[str, Any], size: int) -> dict[str, Any]:
    """The direct S3 notification for one upload; its key URL-encoded as S3 writes it."""
    obj = {"key": quote_plus(key, safe="/"), "size": size, "eTag": put["ETag"].strip('"')}
    if put.get("VersionId"):
        obj["versionId"] = put["VersionId"]
    return {
        "Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket}, "object": obj}}]
    }


def eventbridge_event(bucket: str, key: str, put: dict[str, Any], size: int) -> dict[str, Any]:
    """The EventBridge "Object Created" event for the same upload; its key as it is, not URL-encoded."""
    obj = {"key": key, "size": size, "etag": put["ETag"].strip('"')}
    if put.get("VersionId"):
        obj["version-id"] = put["VersionId"]
    return {
        "detail-type": "Object Created",
        "source": "aws.s3",
        "detail": {"bucket": {"name": bucket}, "object": obj},
    }


def read_text(bucket: str, key: str) -> str:
    return str(aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8"))


def csv_rows(bucket: str, key: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(read_text(bucket, key), newline="")))


def strict_json(line: bytes) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in a staged chunk: no provider takes it as JSON")

    return json.loads(line, parse_constant=refuse)


def staged_rows(store: DynamoJobStore, bucket: str, job_id: str) -> list[StagedRow]:
    rows = []
    for chunk in store.chunks(job_id):
        ranged = {"Range": chunk.byte_range} if chunk.byte_range else {}  # packed with other chunks
        body = aws("s3").get_object(Bucket=bucket, Key=chunk.key, **ranged)["Body"].read()
        lines = [line for line in body.splitlines() if line]
        assert len(lines) == chunk.rows, chunk
        rows += [StagedRow.from_json(json.dumps(strict_json(line))) for line in lines]
    return rows


def strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def assert_spreadsheet_safe(rows: list[dict[str, str]], where: str) -> None:
    for row in rows:
        for cell in row.values():
            if cell[:1] in _FORMULA_START:
                assert _NUMBER.fullmatch(cell), f"{where} would run {cell!r} as a formula"


def assert_rejected(rejected: dict[int, str], expected: dict[int, str]) -> None:
    assert sorted(rejected) == sorted(expected), rejected
    for row, reason in expected.items():
        assert reason in rejected[row], (row, rejected[row])


def split_event(splitter: Splitter, event: dict[str, Any]) -> list[SplitOutcome]:
    return [outcome for ref in object_refs(event) for outcome in splitter.split(ref)]


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.name, marks=(pytest.mark.slow,) if c.slow else ()) for c in CORPUS]
)
def test_hostile_file_ends_as_promised(
    case: HostileFile,
    splitter: Splitter,
    splitter_config: SplitterConfig,
    store: DynamoJobStore,
    corpus_dir: Path,
) -> None:
    path = corpus_dir / case.file_name
    path.write_bytes(case.build())
    body = path.read_bytes()
    expected = case.expect
    bucket = splitter_config.bucket_name
    key = case.object_key(uuid.uuid4().hex[:8])
    # Each case stands alone: many share their bytes and target, which must not be refused as re-sent.
    metadata = {"resend": "true", **case.metadata}
    put = aws("s3").put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)
    event = s3_event(bucket, key, put, len(body))

    outcomes = split_event(splitter, event)  # never raises: on Lambda that would be a retry loop
    again = split_event(splitter, event)  # the same event delivered twice
    # ... and announced by EventBridge as well (both are configured during a switch-over)
    again += split_event(splitter, eventbridge_event(bucket, key, put, len(body)))
    messages = [m for d in Destination for m in queued(splitter_config, d)]

    if isinstance(expected, NoJob):
        assert (outcomes, again, messages) == ([], [], [])
        return
    (outcome,) = outcomes
    assert [(o.job_id, o.duplicate) for o in again] == [(outcome.job_id, True)] * 2
    job = store.get_job(outcome.job_id)
    assert job is not None and job.key == key
    assert (job.status, job.message) == (outcome.status, outcome.message)
    staged = staged_rows(store, bucket, job.job_id)
    rejected_csv = csv_rows(bucket, result_key(job.job_id, "rejected.csv")) if job.counts.read else []
    rejected = {int(r["row"]): r["reason"] for r in rejected_csv}
    assert_spreadsheet_safe(rejected_csv, "rejected.csv")

    # Every row read ends exactly once: rejected (with a reason) or staged in one chunk.
    assert len(rejected) == len(rejected_csv) == job.counts.rejected
    assert all(reason.strip() and "\n" not in reason for reason in rejected.values())
    staged_numbers = [row.row for row in staged]
    assert len(set(staged_numbers)) == len(staged_numbers)
    assert not set(staged_numbers) & set(rejected)
    assert job.counts.read == len(staged) + len(rejected)

    if isinstance(expected, Failed):
        assert outcome.status is JobStatus.FAILED, outcome
        assert expected.message in outcome.message
        assert "\n" not in outcome.message and "Traceback" not in outcome.message
        assert messages == []
        summary = json.loads(read_text(bucket, result_key(job.job_id, "summary.json")))
        assert (summary["status"], summary["message"]) == ("failed", outcome.message)
        if expected.rows_read is not None:
            assert job.counts.read == expected.rows_read
        if expected.rejected is not None:
            assert_rejected(rejected, dict(expected.rejected))
        if job.counts.read:  # rows were read: rows.csv gives each its line, every one not sent
            assert_rows_file(bucket, job, staged_numbers, rejected)
        return

    assert isinstance(expected, Completed)
    assert outcome.status in (JobStatus.SENDING, JobStatus.COMPLETED), outcome
    assert outcome.message == ""
    assert job.counts.read == expected.rows_read
    assert_rejected(rejected, dict(expected.rejected))
    assert sorted((m.chunk_id, m.rows) for m in messages) == sorted(
        (c.chunk_id, c.rows) for c in store.chunks(job.job_id)
    )
    assert {m.job_id for m in messages} <= {job.job_id}
    identities = {row.row: row.identity for row in staged}
    for row, identity in expected.identities.items():
        assert identities.get(row) == identity, (row, identities.get(row))
    sent = {text for row in staged for text in strings(row.item)}
    for value in expected.sent_values:  # sent as data, exactly as written
        assert value in sent, value
    # What rows.csv will say once the chunks settle (here: "not sent", nothing having been sent yet).
    write_rows_file(bucket, job, store.chunks(job.job_id))
    assert_rows_file(bucket, job, staged_numbers, rejected)


def assert_rows_file(bucket: str, job: Job, staged: list[int], rejected: dict[int, str]) -> None:
    rows = csv_rows(bucket, result_key(job.job_id, "rows.csv"))
    assert [int(r["row"]) for r in rows] == sorted([*staged, *rejected])
    assert {int(r["row"]): r["answer"] for r in rows if r["state"] == "rejected"} == rejected
    assert_spreadsheet_safe(rows, "rows.csv")


def test_an_event_for_an_object_deleted_before_the_split_fails_its_job_once(
    splitter: Splitter, splitter_config: SplitterConfig, store: DynamoJobStore
) -> None:
    bucket = splitter_config.bucket_name
    key = f"inbox/workshop/jrn_welcome/{uuid.uuid4().hex[:8]} gone+soon.csv"
    put = aws("s3").put_object(Bucket=bucket, Key=key, Body=b"email\nada@example.com\n")
    aws("s3").delete_object(Bucket=bucket, Key=key, VersionId=put["VersionId"])  # the bucket is versioned
    event = s3_event(bucket, key, put, 22)

    (outcome,) = split_event(splitter, event)
    (again,) = split_event(splitter, event)

    assert outcome.status is JobStatus.FAILED
    assert (
        outcome.message
        == f"the object {key} does not exist (deleted before it could be read?); nothing was sent"
    )
    assert (again.job_id, again.duplicate) == (outcome.job_id, True)
    job = store.get_job(outcome.job_id)
    assert job is not None and job.status is JobStatus.FAILED


def test_the_corpus_covers_the_promised_ground() -> None:
    """At least 30 files; each outcome kind present; the big ones behind `slow`."""
    assert len(CORPUS) >= 30
    kinds = {type(case.expect).__name__ for case in CORPUS}
    assert {"Completed", "Failed", "NoJob"} <= kinds
    assert {case.name for case in CORPUS if case.slow} >= {"single-line-50mb", "row-of-50mb"}
