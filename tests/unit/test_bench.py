"""The benchmark's own arithmetic and data: the cost model and the generated contacts (never timings)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from bench import prices
from bench.cost import billed_ms, cost_lines, egress_usage, lambda_usage, per_million_contacts, total_dollars
from bench.counting import CallCounter, Usage, item_size
from bench.data import HEADER, contacts, write_file
from fanout.fields import normalise_email, normalise_phone

pytestmark = pytest.mark.unit


def test_lambda_bills_each_invocation_rounded_up_to_the_millisecond_times_its_memory() -> None:
    usage = lambda_usage([0.0001, 1.0004, 0.25], memory_mb=512)
    assert [billed_ms(s) for s in (0.0001, 1.0004, 0.25)] == [1, 1001, 250]
    assert usage.lambda_requests == 3
    assert usage.lambda_gb_seconds == pytest.approx((1 + 1001 + 250) / 1000 * 0.5)


def test_every_cost_line_is_quantity_times_its_list_price() -> None:
    usage = Usage(
        lambda_gb_seconds=100.0,
        lambda_requests=1000,
        sqs_requests=2000,
        s3_put_requests=4000,
        s3_get_requests=3000,
        dynamodb_write_units=10_000.0,
        dynamodb_read_units=5000.0,
        eventbridge_events=1,
        secrets_calls=20,
        egress_gb=0.5,
    )
    lines = {line.item: line.dollars for line in cost_lines(usage)}
    assert lines["Lambda arm64 GB-s"] == pytest.approx(100 * prices.LAMBDA_ARM_PER_GB_SECOND)
    assert lines["Lambda requests"] == pytest.approx(1000 * 0.20 / 1e6)
    assert lines["SQS requests"] == pytest.approx(2000 * 0.40 / 1e6)
    assert lines["S3 PUT-class requests"] == pytest.approx(4000 * 0.005 / 1000)
    assert lines["S3 GET-class requests"] == pytest.approx(3000 * 0.0004 / 1000)
    assert lines["DynamoDB write units"] == pytest.approx(10_000 * 0.625 / 1e6)
    assert lines["DynamoDB read units"] == pytest.approx(5000 * 0.125 / 1e6)
    assert lines["EventBridge events"] == pytest.approx(1 / 1e6)
    assert lines["Secrets Manager calls"] == pytest.approx(20 * 0.05 / 10_000)
    assert lines["Data transfer out, GB"] == pytest.approx(0.5 * 0.09)
    assert total_dollars(cost_lines(usage)) == pytest.approx(sum(lines.values()))


def test_egress_counts_request_bytes_in_gigabytes_of_two_to_the_thirty() -> None:
    assert egress_usage(3 * 2**30).egress_gb == pytest.approx(3.0)


def test_usage_of_a_smaller_run_scales_to_a_million_contacts() -> None:
    scaled = per_million_contacts(Usage(sqs_requests=20, lambda_gb_seconds=1.5), contacts=100_000)
    assert (scaled.sqs_requests, scaled.lambda_gb_seconds) == (200, pytest.approx(15.0))
    with pytest.raises(ValueError, match="no contacts"):
        per_million_contacts(Usage(), contacts=0)


def test_calls_become_billing_units() -> None:
    counter = CallCounter()
    small = {"pk": {"S": "JOB#j-1"}, "sk": {"S": "JOB"}}
    large = {**small, "message": {"S": "x" * 1500}}
    counter.observe("dynamodb", "PutItem", {"Item": small}, {})
    counter.observe("dynamodb", "PutItem", {"Item": large}, {})
    counter.observe("dynamodb", "TransactWriteItems", {"TransactItems": [{}, {}]}, {})
    counter.observe("dynamodb", "GetItem", {"ConsistentRead": True}, {"Item": small})
    counter.observe("dynamodb", "GetItem", {}, {"Item": small})
    counter.observe("sqs", "SendMessageBatch", {"Entries": [{"MessageBody": "x" * 70_000}]}, {})
    counter.observe("s3", "PutObject", {}, {})
    counter.observe("s3", "HeadObject", {}, {})
    counter.observe("events", "PutEvents", {"Entries": [{}, {}]}, {})
    usage = counter.usage
    assert item_size(small) == len("pk") + len("JOB#j-1") + len("sk") + len("JOB")
    assert usage.dynamodb_write_units == 1 + 2 + 4
    assert usage.dynamodb_read_units == 1 + 0.5
    assert (usage.sqs_requests, usage.s3_put_requests, usage.s3_get_requests) == (2, 1, 1)
    assert usage.eventbridge_events == 2
    assert counter.snapshot()["calls"]["dynamodb:PutItem"] == 2


def test_generated_contacts_are_distinct_valid_and_shaped_like_the_header() -> None:
    rows = list(contacts(2000))
    assert all(tuple(row) == HEADER for row in rows)
    emails = [normalise_email(str(row["email"])) for row in rows]
    phones = [normalise_phone(str(row["phone"]), None) for row in rows]
    assert None not in emails and None not in phones
    assert len(set(emails)) == len(set(phones)) == 2000
    assert rows == list(contacts(2000)), "the same seed makes the same file"


@pytest.mark.parametrize("file_format", ["csv", "ndjson"])
def test_both_formats_hold_the_same_rows(tmp_path: Path, file_format: str) -> None:
    path = write_file(tmp_path / f"c.{file_format}", 50, file_format)
    text = path.read_text(encoding="utf-8")
    if file_format == "csv":
        read = [dict(row) for row in csv.DictReader(io.StringIO(text))]
        expected = [{k: str(v) for k, v in row.items()} for row in contacts(50)]
    else:
        read = [json.loads(line) for line in text.splitlines()]
        expected = list(contacts(50))
    assert read == expected


def test_a_refused_call_is_counted_as_billed() -> None:
    import boto3
    from botocore.stub import Stubber

    s3 = boto3.client("s3", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    counter = CallCounter().install()
    try:
        with Stubber(s3) as stub:
            stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
            stub.add_response("put_object", {}, {"Bucket": "b", "Key": "k", "Body": b"x"})
            with pytest.raises(s3.exceptions.NoSuchKey):
                s3.get_object(Bucket="b", Key="missing")
            s3.put_object(Bucket="b", Key="k", Body=b"x")
    finally:
        counter.uninstall()
    assert counter.snapshot()["calls"] == {"s3:GetObject": 1, "s3:PutObject": 1}
    assert (counter.usage.s3_get_requests, counter.usage.s3_put_requests) == (1, 1)


def test_segments_send_time_follows_each_providers_per_call_limits_and_rate() -> None:
    from bench.segments import send_seconds
    from fanout.destinations import Destination

    # Mateo: 500 items a call at 2 calls/s; Symplify: one call for the whole file; Altcraft: 10 MB a call
    assert send_seconds(Destination.MATEO, 10_000, 100.0) == (10.0, 20)
    assert send_seconds(Destination.SYMPLIFY, 10_000_000, 100.0) == (1.0, 1)
    assert send_seconds(Destination.ALTCRAFT, 1_000_000, 100.0) == (20.0, 100)  # 10,000 profiles a call
    assert send_seconds(Destination.ALTCRAFT, 10_000, 3_000.0)[1] == 3  # 30 MB: 10 MB a call, not 1


def test_segments_merge_finds_every_repeat_across_segments() -> None:
    from bench.segments import hash_runs, merge_seconds

    runs = hash_runs(10_000, segments=4)
    everything = [value for run in runs for value in run]
    _, repeats = merge_seconds(runs)
    assert repeats == len(everything) - len(set(everything)) > 90
