"""The sample events in events/ have the shapes AWS delivers and carry what the handlers read.

Every handler test starts from one of these files, so a sample that drifts from the real shape
(or from the template's names) would let a handler pass here and fail on AWS.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import (
    EventBridgeEvent,
    S3Event,
    S3EventBridgeNotificationEvent,
    SQSEvent,
)

from fanout_local import cfn_yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"

DESTINATIONS = ("mateo", "mateo-message", "symplify", "workshop", "altcraft")
UPLOAD_KEY = re.compile(r"inbox/(?P<destination>[a-z-]+)/(?P<target>[^/]+)/(?P<file>[^/]+)")
JOB_ID = re.compile(r"j-[0-9a-f]{16}")
CHUNK_ID = re.compile(r"c\d{5}")

# Pseudo parameters the samples were made for: stack journey-fanout in eu-west-1.
SAMPLE_STACK = {
    "AWS::StackName": "journey-fanout",
    "AWS::AccountId": "123456789012",
    "AWS::Region": "eu-west-1",
}


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    return event


def sample_bucket_name() -> str:
    """The inbox bucket's name in template.yaml, rendered for the sample stack."""
    template = cfn_yaml.load_template(ROOT / "template.yaml")
    name = template["Resources"]["InboxBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    return re.sub(r"\$\{([^}]+)\}", lambda match: SAMPLE_STACK[match[1]], name)


def test_direct_s3_notification_names_the_uploaded_object() -> None:
    event = S3Event(load_event("s3_object_created.json"))
    record = event.record
    s3_object = record.s3.get_object
    assert record.event_source == "aws:s3"
    assert record.event_name.startswith("ObjectCreated:")
    assert event.bucket_name == sample_bucket_name()
    assert record.s3.bucket.arn == f"arn:aws:s3:::{event.bucket_name}"
    match = UPLOAD_KEY.fullmatch(event.object_key)
    assert match is not None
    assert match["destination"] in DESTINATIONS
    assert s3_object.version_id
    assert s3_object.etag
    assert s3_object.size > 0
    assert s3_object.sequencer


def test_eventbridge_notification_names_the_uploaded_object() -> None:
    raw = load_event("eventbridge_object_created.json")
    event = S3EventBridgeNotificationEvent(raw)
    assert isinstance(event, EventBridgeEvent)
    assert event.source == "aws.s3"
    assert event.detail_type == "Object Created"
    assert event.detail.reason == "PutObject"
    assert event.detail.bucket.name == sample_bucket_name()
    assert event.resources == [f"arn:aws:s3:::{event.detail.bucket.name}"]
    match = UPLOAD_KEY.fullmatch(event.detail.object.key)
    assert match is not None
    assert match["destination"] in DESTINATIONS
    assert event.detail.object.version_id
    assert event.detail.object.etag
    assert event.detail.object.size
    assert event.detail.object.sequencer


def test_both_notifications_describe_the_same_upload() -> None:
    # The splitter takes either path (UseDirectS3Notification), so both samples are one upload.
    direct = S3Event(load_event("s3_object_created.json")).record.s3.get_object
    routed = S3EventBridgeNotificationEvent(load_event("eventbridge_object_created.json")).detail.object
    assert (direct.key, direct.version_id, direct.etag, direct.size, direct.sequencer) == (
        routed.key,
        routed.version_id,
        routed.etag,
        routed.size,
        routed.sequencer,
    )


@pytest.mark.parametrize("destination", DESTINATIONS)
def test_sqs_batch_carries_chunk_messages(destination: str) -> None:
    event = SQSEvent(load_event(f"sqs_{destination.replace('-', '_')}.json"))
    records = list(event.records)
    assert records
    logical = "".join(part.capitalize() for part in destination.split("-"))
    for record in records:
        assert record.event_source == "aws:sqs"
        assert record.message_id
        assert record.receipt_handle
        assert record.aws_region == "eu-west-1"
        assert f":journey-fanout-{logical}Queue-" in record.event_source_arn
        assert int(record.attributes.approximate_receive_count) >= 1
        assert record.attributes.sent_timestamp.isdigit()
        assert record.md5_of_body == hashlib.md5(record.body.encode()).hexdigest()  # noqa: S324 - SQS's own checksum
        assert isinstance(record["messageAttributes"], dict)

        body = record.json_body
        assert JOB_ID.fullmatch(body["job_id"])
        assert CHUNK_ID.fullmatch(body["chunk_id"])
        assert body["destination"] == destination
        assert body["target"]
        assert body["key"].startswith(f"jobs/{body['job_id']}/chunks/{body['chunk_id']}.")
        assert body["rows"] > 0


def test_sqs_message_ids_are_unique_across_samples() -> None:
    ids = [
        record.message_id
        for destination in DESTINATIONS
        for record in SQSEvent(load_event(f"sqs_{destination.replace('-', '_')}.json")).records
    ]
    assert len(ids) == len(set(ids))


def test_symplify_chunk_carries_a_presigned_download_url() -> None:
    [record] = SQSEvent(load_event("sqs_symplify.json")).records
    url = record.json_body["download_url"]
    assert url.startswith(f"https://{sample_bucket_name()}.s3.")
    assert "X-Amz-Expires=" in url
    assert "X-Amz-Signature=" in url
    assert record.json_body["key"].endswith(".ndjson")


@pytest.mark.parametrize(
    ("destination", "target_pattern"),
    [
        ("mateo", r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
        ("mateo-message", r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
        ("workshop", r"jrn_\w+"),
        ("altcraft", r"\d+"),
    ],
)
def test_chunk_target_has_the_destinations_shape(destination: str, target_pattern: str) -> None:
    for record in SQSEvent(load_event(f"sqs_{destination.replace('-', '_')}.json")).records:
        assert re.fullmatch(target_pattern, record.json_body["target"])


def test_every_expected_sample_exists() -> None:
    expected = {"s3_object_created.json", "eventbridge_object_created.json"}
    expected |= {f"sqs_{destination.replace('-', '_')}.json" for destination in DESTINATIONS}
    assert expected <= {path.name for path in EVENTS.glob("*.json")}
