"""The splitter on the stack template.yaml defines (moto, in process): a dropped file becomes one job with
provider-sized staged chunks and one queue message each, or fails at once with one clear message and
sends nothing."""

from __future__ import annotations

import copy
import csv
import io
import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit

import boto3
import pytest

from fanout import ids
from fanout.config import SplitterConfig
from fanout.destinations import Destination
from fanout.models import ChunkMessage, ChunkState, JobStatus, ObjectRef, StagedRow
from fanout.splitter import SplitInProgress, SplitOutcome, Splitter, fail_unfinished_split, object_refs
from fanout.staging import chunk_key, packed_chunks_key, result_key, symplify_file_key
from fanout.store import Chunk, DynamoJobStore, Job
from fanout_local.deployed import DeployedStack
from tests.unit.conftest import settle_here

pytestmark = pytest.mark.unit

EVENTS = Path(__file__).resolve().parents[2] / "events"
JOURNEY = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
CHANNEL = "6a1f1d3e-2b7c-4e0a-9d45-1c2b3a4d5e6f"


@cache
def aws(service: str) -> Any:
    return boto3.client(service, region_name="eu-west-1")  # type: ignore[call-overload]


@pytest.fixture
def store(splitter_config: SplitterConfig) -> DynamoJobStore:
    return DynamoJobStore(splitter_config.table_name, splitter_config.retention_days)


@pytest.fixture
def splitter(splitter_config: SplitterConfig, store: DynamoJobStore) -> Splitter:
    for destination in Destination:  # the stack is shared by this module's tests: start with empty queues
        queued(splitter_config, destination)
    return Splitter(splitter_config, store)


class Dropper:
    """Puts files in the stack's bucket under keys of this test's own."""

    def __init__(self, stack: DeployedStack) -> None:
        self.bucket = stack.outputs()["BucketName"]
        self.run = uuid.uuid4().hex[:8]

    def key(self, folder: str, name: str = "contacts.csv") -> str:
        return f"{folder}/{self.run}-{name}"

    def put(self, key: str, body: str | bytes, metadata: dict[str, str] | None = None) -> ObjectRef:
        data = body.encode("utf-8") if isinstance(body, str) else body
        aws("s3").put_object(Bucket=self.bucket, Key=key, Body=data, Metadata=metadata or {})
        return ObjectRef(self.bucket, key)


@pytest.fixture
def drop(stack: DeployedStack) -> Dropper:
    return Dropper(stack)


def split_one(splitter: Splitter, ref: ObjectRef) -> SplitOutcome:
    (outcome,) = splitter.split(ref)
    return outcome


def queued(config: SplitterConfig, destination: Destination) -> list[ChunkMessage]:
    """Every message waiting on the destination's queue (the queue is empty afterwards)."""
    url = config.queue_url(destination)
    found: list[ChunkMessage] = []
    while True:
        answer = aws("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300)
        messages = answer.get("Messages", [])
        if not messages:
            return found
        for message in messages:
            found.append(ChunkMessage.from_json(message["Body"]))
            aws("sqs").delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def all_queued(config: SplitterConfig) -> dict[Destination, list[ChunkMessage]]:
    return {d: queued(config, d) for d in Destination}


def read(bucket: str, key: str, byte_range: str | None = None) -> bytes:
    """An object's bytes, or (a packed chunk's) `byte_range` of them."""
    ranged = {"Range": byte_range} if byte_range else {}
    body: bytes = aws("s3").get_object(Bucket=bucket, Key=key, **ranged)["Body"].read()
    return body


def keys_under(bucket: str, prefix: str) -> list[str]:
    listed = aws("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def contacts_csv(count: int, start: int = 1) -> str:
    lines = ["email,first_name,phone"]
    lines += [f"user{n}@example.com,User {n},+4670{n:07d}" for n in range(start, start + count)]
    return "\n".join(lines) + "\n"


# --- one object, one job ------------------------------------------------------------------------------


def test_duplicate_event_makes_one_job(
    splitter: Splitter, drop: Dropper, splitter_config: SplitterConfig, store: DynamoJobStore
) -> None:
    key = drop.key(f"inbox/mateo/{JOURNEY}", "March contacts.csv")
    put = aws("s3").put_object(Bucket=drop.bucket, Key=key, Body=contacts_csv(3).encode())
    # The same upload, announced by the direct S3 notification and by EventBridge (both sample events).
    direct = json.loads((EVENTS / "s3_object_created.json").read_text())
    bridged = json.loads((EVENTS / "eventbridge_object_created.json").read_text())
    s3_object = direct["Records"][0]["s3"]
    s3_object["bucket"]["name"] = drop.bucket
    s3_object["object"].update(key=quote_plus(key, safe="/"), versionId=put["VersionId"], eTag=put["ETag"])
    bridged["detail"]["bucket"]["name"] = drop.bucket
    bridged["detail"]["object"].update({"key": quote_plus(key, safe="/"), "version-id": put["VersionId"]})
    bridged["detail"]["object"]["etag"] = put["ETag"]
    refs = [*object_refs(direct), *object_refs(bridged), *object_refs(copy.deepcopy(direct))]

    outcomes = [split_one(splitter, ref) for ref in refs]

    assert {ref.key for ref in refs} == {key}
    assert len({o.job_id for o in outcomes}) == 1
    assert [o.duplicate for o in outcomes] == [False, True, True]
    job_id = outcomes[0].job_id
    assert [c.chunk_id for c in store.chunks(job_id)] == ["c00001"]
    assert keys_under(drop.bucket, f"jobs/{job_id}/chunks/") == [
        packed_chunks_key(job_id, "c00001", "c00001")
    ]
    messages = queued(splitter_config, Destination.MATEO)
    assert [(m.job_id, m.chunk_id, m.rows) for m in messages] == [(job_id, "c00001", 3)]


def test_a_new_version_of_the_same_key_is_a_new_job(splitter: Splitter, drop: Dropper) -> None:
    key = drop.key(f"inbox/mateo/{JOURNEY}")
    first = split_one(splitter, drop.put(key, contacts_csv(2)))
    second = split_one(splitter, drop.put(key, contacts_csv(2, start=10)))

    assert first.job_id != second.job_id
    assert not second.duplicate


# --- rejected rows ------------------------------------------------------------------------------------


def test_rejected_row_has_reason(splitter: Splitter, drop: Dropper, store: DynamoJobStore) -> None:
    body = (
        "E-Mail,First Name,Mobile\n"
        "ada@example.com,Ada,+46701234567\n"
        "not-an-email,Bob,+46701234568\n"
        "ADA@example.com,Ada again,+46701234567\n"
        "carl@example.com,Carl,070-123 45 67\n"
        "dana@example.com,Dana,+46701234569\n"
    )
    ref = drop.put(drop.key(f"inbox/mateo/{JOURNEY}"), body, {"tolerated-invalid-percent": "100"})

    outcome = split_one(splitter, ref)
    rejected = list(
        csv.DictReader(io.StringIO(read(drop.bucket, result_key(outcome.job_id, "rejected.csv")).decode()))
    )

    assert rejected[0] == {
        "row": "2",
        "column": "E-Mail",
        "value": "not-an-email",
        "reason": "'not-an-email' is not a valid email address",
    }
    assert (rejected[1]["row"], rejected[1]["reason"]) == ("3", "duplicate of row 1")
    assert (rejected[2]["row"], rejected[2]["column"], rejected[2]["value"]) == (
        "4",
        "Mobile",
        "070-123 45 67",
    )
    assert "phone-region" in rejected[2]["reason"]
    assert len(rejected) == 3
    job = store.get_job(outcome.job_id)
    assert job is not None and (job.counts.read, job.counts.rejected) == (5, 3)
    staged = sum(c.rows for c in store.chunks(outcome.job_id))
    assert staged + job.counts.rejected == job.counts.read


def test_a_rejected_value_that_looks_like_a_formula_cannot_run_in_a_spreadsheet(
    splitter: Splitter, drop: Dropper
) -> None:
    body = 'email\nada@example.com\n"=HYPERLINK(""http://evil.example"")"\n'
    ref = drop.put(drop.key(f"inbox/mateo/{JOURNEY}"), body, {"tolerated-invalid-percent": "100"})
    outcome = split_one(splitter, ref)
    rejected = list(
        csv.reader(io.StringIO(read(drop.bucket, result_key(outcome.job_id, "rejected.csv")).decode()))
    )

    assert rejected[1][0] == "2"
    assert rejected[1][2].startswith("'=")


# --- the invalid-share threshold ----------------------------------------------------------------------


def mostly_valid_csv(valid: int, invalid: int) -> str:
    lines = [f"user{n}@example.com" for n in range(1, valid + 1)] + [f"broken{n}" for n in range(invalid)]
    return "email\n" + "\n".join(lines) + "\n"


def test_too_many_invalid_rows_fail_the_job_and_send_nothing(
    splitter: Splitter, drop: Dropper, splitter_config: SplitterConfig, store: DynamoJobStore
) -> None:
    outcome = split_one(splitter, drop.put(drop.key(f"inbox/mateo/{JOURNEY}"), mostly_valid_csv(8, 2)))

    assert outcome.status is JobStatus.FAILED
    assert outcome.message.startswith(
        "2 of 10 rows (20.0%) are invalid, more than the 10% tolerated; nothing"
    )
    assert f"results/{outcome.job_id}/rejected.csv" in outcome.message
    assert "tolerated-invalid-percent" in outcome.message
    assert all(messages == [] for messages in all_queued(splitter_config).values())
    job = store.get_job(outcome.job_id)
    assert job is not None and job.status is JobStatus.FAILED
    assert {c.state for c in store.chunks(outcome.job_id)} <= {ChunkState.FAILED}
    summary = json.loads(read(drop.bucket, result_key(outcome.job_id, "summary.json")))
    assert (summary["status"], summary["rows_read"], summary["rows_rejected"]) == ("failed", 10, 2)


def test_an_invalid_share_at_the_threshold_still_sends(
    splitter: Splitter, drop: Dropper, splitter_config: SplitterConfig
) -> None:
    outcome = split_one(splitter, drop.put(drop.key(f"inbox/mateo/{JOURNEY}"), mostly_valid_csv(9, 1)))

    assert outcome.status is JobStatus.SENDING
    assert [m.rows for m in queued(splitter_config, Destination.MATEO)] == [9]


def test_a_file_can_tolerate_more_invalid_rows_by_its_metadata(
    splitter: Splitter, drop: Dropper, splitter_config: SplitterConfig
) -> None:
    metadata = {"tolerated-invalid-percent": "25"}
    outcome = split_one(
        splitter, drop.put(drop.key(f"inbox/mateo/{JOURNEY}"), mostly_valid_csv(8, 2), metadata)
    )

    assert outcome.status is JobStatus.SENDING
    assert (outcome.counts.read, outcome.counts.rejected) == (10, 2)
    assert [m.rows for m in queued(splitter_config, Destination.MATEO)] == [8]


# --- dry runs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["metadata", "prefix"])
def test_a_dry_run_plans_and_sends_nothing(
    how: str, splitter: Splitter, drop: Dropper, splitter_config: SplitterConfig, store: DynamoJobStore
) -> None:
    folder = f"inbox/mateo/{JOURNEY}"
    key = drop.key(folder) if how == "metadata" else drop.key(f"dryrun/{folder}")
    metadata = {"dry-run": "true"} if how == "metadata" else {}
    outcome = split_one(splitter, drop.put(key, contacts_csv(1201), metadata))

    assert outcome.status is JobStatus.PLANNED
    assert outcome.message == "dry run: 1201 rows in 3 chunks would be sent"
    assert all(messages == [] for messages in all_queued(splitter_config).values())
    job = store.get_job(outcome.job_id)
    assert job is not None and (job.status, job.dry_run) == (JobStatus.PLANNED, True)


# --- files that cannot go anywhere --------------------------------------------------------------------

XLSX = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00[Content_Types].xml" + b"\x00" * 64
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64


@pytest.mark.parametrize(
    ("folder", "name", "body", "metadata", "message"),
    [
        (
            "inbox/mailchimp/123",
            "contacts.csv",
            "email\nada@example.com\n",
            {},
            "no route for 'mailchimp': use inbox/<destination>/<target>/<file> with a destination of mateo,"
            " mateo-message, symplify, workshop, altcraft, or add a routes-file entry for the prefix inbox/mailchimp/",
        ),
        (
            "inbox/mateo/journey-42",
            "contacts.csv",
            "email\nada@example.com\n",
            {},
            "wrong target for mateo: 'journey-42' is not a journey id: Mateo ids are uuids like"
            " 3c90c3cc-0d44-4b50-8888-8dd25736052a",
        ),
        (
            "inbox/altcraft/twelve",
            "contacts.csv",
            "email\nada@example.com\n",
            {},
            "wrong target for altcraft: 'twelve' is not an Altcraft workflow id: it must be a positive integer"
            " such as 12",
        ),
        (
            f"inbox/mateo/{JOURNEY}",
            "contacts.xlsx",
            XLSX,
            {},
            "this looks like an Excel workbook (XLSX), not CSV or NDJSON; export the contacts as CSV",
        ),
        (
            f"inbox/mateo/{JOURNEY}",
            "contacts.csv",
            PNG,
            {},
            "this looks like a PNG image, not CSV or NDJSON; export the contacts as CSV",
        ),
        (
            f"inbox/mateo/{JOURNEY}",
            "contacts.csv",
            "email\nada@example.com\n",
            {"colour": "blue"},
            "unknown file option(s) colour in the object's metadata; known: ",
        ),
        (
            "inbox/altcraft/12",
            "contacts.csv",
            "email\nada@example.com\n",
            {"matching": "custom", "field-name": "CRM_ID"},
            "matching=custom on field-name 'CRM_ID', but the file has no column 'CRM_ID'",
        ),
        (f"inbox/mateo/{JOURNEY}", "contacts.csv", "email\n", {}, "the file has a header but no data rows"),
    ],
    ids=[
        "unknown-destination",
        "mateo-target",
        "altcraft-target",
        "xlsx",
        "png",
        "option",
        "field-name",
        "no-rows",
    ],
)
def test_a_file_that_cannot_be_sent_fails_its_job_with_one_clear_message(
    folder: str,
    name: str,
    body: str | bytes,
    metadata: dict[str, str],
    message: str,
    splitter: Splitter,
    drop: Dropper,
    splitter_config: SplitterConfig,
    store: DynamoJobStore,
) -> None:
    outcome = split_one(splitter, drop.put(drop.key(folder, name), body, metadata))

    assert outcome.status is JobStatus.FAILED
    assert outcome.message.startswith(message)
    assert "\n" not in outcome.message and "Traceback" not in outcome.message
    job = store.get_job(outcome.job_id)
    assert job is not None and (job.status, job.message) == (JobStatus.FAILED, outcome.message)
    summary = json.loads(read(drop.bucket, result_key(outcome.job_id, "summary.json")))
    assert summary["message"] == outcome.message
    assert all(messages == [] for messages in all_queued(splitter_config).values())


def test_a_failed_file_dropped_again_is_not_failed_twice(splitter: Splitter, drop: Dropper) -> None:
    ref = drop.put(drop.key("inbox/mailchimp/123"), "email\nada@example.com\n")
    first, again = split_one(splitter, ref), split_one(splitter, ref)

    assert (again.job_id, again.duplicate) == (first.job_id, True)


# --- what each destination gets -----------------------------------------------------------------------


def test_mateo_gets_chunks_of_500_and_one_message_each_pointing_at_its_chunk(
    splitter: Splitter, drop: Dropper, splitter_config: SplitterConfig, store: DynamoJobStore
) -> None:
    outcome = split_one(splitter, drop.put(drop.key(f"inbox/mateo/{JOURNEY}"), contacts_csv(1201)))
    messages = sorted(queued(splitter_config, Destination.MATEO), key=lambda m: m.chunk_id)
    chunks = sorted(store.chunks(outcome.job_id), key=lambda c: c.chunk_id)

    assert (outcome.status, outcome.chunks) == (JobStatus.SENDING, 3)
    assert [(c.chunk_id, c.rows, c.state) for c in chunks] == [
        ("c00001", 500, ChunkState.PENDING),
        ("c00002", 500, ChunkState.PENDING),
        ("c00003", 201, ChunkState.PENDING),
    ]
    assert [(m.chunk_id, m.key, m.rows) for m in messages] == [(c.chunk_id, c.key, c.rows) for c in chunks]
    assert {(m.job_id, m.destination, m.target) for m in messages} == {
        (outcome.job_id, Destination.MATEO, JOURNEY)
    }
    staged = [
        StagedRow.from_json(line)
        for m in messages
        for line in read(drop.bucket, m.key, m.byte_range).splitlines()
    ]
    assert [row.row for row in staged] == list(range(1, 1202))
    assert staged[0].identity == "user1@example.com"
    assert set(staged[0].item) == {"deduplication_id", "contact", "context"}
    assert all(queued(splitter_config, d) == [] for d in Destination if d is not Destination.MATEO)


def test_symplify_gets_one_ndjson_file_of_id_and_properties_and_a_presigned_download_url(
    splitter: Splitter, drop: Dropper, splitter_config: SplitterConfig
) -> None:
    body = "id,email,firstname,attributeName\n0,bruce@example.com,Bruce,yes\n1,åsa@example.se,Åsa,no\n2,,Zoë,yes\n"
    outcome = split_one(splitter, drop.put(drop.key("inbox/symplify/1001"), body))
    raw = read(drop.bucket, symplify_file_key(outcome.job_id))
    lines = raw.decode("utf-8").splitlines()
    (message,) = queued(splitter_config, Destination.SYMPLIFY)

    assert not raw.lstrip().startswith(b"[")
    assert "Åsa" in raw.decode("utf-8") and b"\\u00c5" not in raw
    assert [json.loads(line) for line in lines] == [
        {
            "id": "0",
            "properties": {"emailAddress": "bruce@example.com", "firstname": "Bruce", "attributeName": "yes"},
        },
        {
            "id": "1",
            "properties": {"emailAddress": "åsa@example.se", "firstname": "Åsa", "attributeName": "no"},
        },
        {"id": "2", "properties": {"firstname": "Zoë", "attributeName": "yes"}},
    ]
    url = urlsplit(message.envelope["downloadUrl"])
    query = parse_qs(url.query)
    assert url.scheme == "https"
    assert url.path.endswith(symplify_file_key(outcome.job_id))
    assert {"Signature", "X-Amz-Signature"} & set(query)
    assert message.rows == 3


def test_symplifys_download_url_is_signed_with_sigv4_for_the_configured_time(
    splitter: Splitter, drop: Dropper, splitter_config: SplitterConfig
) -> None:
    split_one(splitter, drop.put(drop.key("inbox/symplify/1001"), "id,email\n0,bruce@example.com\n"))
    (message,) = queued(splitter_config, Destination.SYMPLIFY)
    query = parse_qs(urlsplit(message.envelope["downloadUrl"]).query)

    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == [str(splitter_config.presign_expiry_seconds)]


def test_a_mateo_message_chunk_carries_several_rows(
    splitter: Splitter, drop: Dropper, splitter_config: SplitterConfig
) -> None:
    body = "email,text\n" + "".join(f"user{n}@example.com,Hello {n}\n" for n in range(1, 61))
    split_one(splitter, drop.put(drop.key(f"inbox/mateo-message/{CHANNEL}"), body))
    messages = sorted(queued(splitter_config, Destination.MATEO_MESSAGE), key=lambda m: m.chunk_id)

    assert len(messages) < 60
    assert all(m.rows > 1 for m in messages)
    assert sum(m.rows for m in messages) == 60
    first = [
        StagedRow.from_json(line)
        for line in read(drop.bucket, messages[0].key, messages[0].byte_range).splitlines()
    ]
    assert len(first) == messages[0].rows
    assert first[0].item["to"] == [{"handle": "user1@example.com"}]


def test_workshop_contacts_and_lists_travel_in_separate_chunks(
    splitter: Splitter, drop: Dropper, splitter_config: SplitterConfig
) -> None:
    body = "email,list_email\nada@example.com,\n,Team@Company.com\nbob@example.com,\n"
    split_one(splitter, drop.put(drop.key("inbox/workshop/jrn_welcome"), body))
    messages = sorted(queued(splitter_config, Destination.WORKSHOP), key=lambda m: m.chunk_id)

    assert [(m.chunk_id, m.rows) for m in messages] == [("c00001", 2), ("l00001", 1)]
    lists = [
        StagedRow.from_json(line).item
        for line in read(drop.bucket, messages[1].key, messages[1].byte_range).splitlines()
    ]
    assert lists == ["team@company.com"]


def test_altcrafts_message_carries_the_envelope_from_the_files_options(
    splitter: Splitter, drop: Dropper, splitter_config: SplitterConfig
) -> None:
    body = "email,_fname,CRM_ID\nalina@example.com,Alina,00066\nvictor@example.com,Victor,00076\n"
    metadata = {"matching": "custom", "field-name": "CRM_ID"}
    split_one(splitter, drop.put(drop.key("inbox/altcraft/12"), body, metadata))
    (message,) = queued(splitter_config, Destination.ALTCRAFT)

    assert message.envelope == {
        "workflow_id": 12,
        "matching": "custom",
        "format": "json",
        "field_name": "CRM_ID",
    }
    staged = [
        StagedRow.from_json(line) for line in read(drop.bucket, message.key, message.byte_range).splitlines()
    ]
    assert [row.identity for row in staged] == ["00066", "00076"]
    assert staged[0].item == {"data": {"email": "alina@example.com", "_fname": "Alina", "CRM_ID": "00066"}}


def test_a_routes_entry_makes_one_job_per_destination(
    splitter: Splitter, drop: Dropper, splitter_config: SplitterConfig, store: DynamoJobStore
) -> None:
    prefix = f"inbox/vip-{drop.run}/"
    routes = {
        "routes": [
            {
                "prefix": prefix,
                "destinations": [
                    {"destination": "mateo", "target": JOURNEY, "columns": {"Kundnummer": "external_id"}},
                    {"destination": "altcraft", "target": "12"},
                ],
            }
        ]
    }
    aws("s3").put_object(Bucket=drop.bucket, Key=splitter_config.routes_key, Body=json.dumps(routes).encode())
    try:
        body = "Kundnummer,email\nK-1,ada@example.com\nK-2,bob@example.com\n"
        outcomes = splitter.split(drop.put(f"{prefix}weekly.csv", body))
    finally:
        aws("s3").delete_object(Bucket=drop.bucket, Key=splitter_config.routes_key)
    mateo, altcraft = (
        queued(splitter_config, Destination.MATEO),
        queued(splitter_config, Destination.ALTCRAFT),
    )

    assert [o.status for o in outcomes] == [JobStatus.SENDING, JobStatus.SENDING]
    assert len({o.job_id for o in outcomes}) == 2
    assert [(m.job_id, m.rows) for m in mateo] == [(outcomes[0].job_id, 2)]
    assert [(m.job_id, m.rows) for m in altcraft] == [(outcomes[1].job_id, 2)]
    mateo_rows = [
        StagedRow.from_json(line)
        for line in read(drop.bucket, mateo[0].key, mateo[0].byte_range).splitlines()
    ]
    assert mateo_rows[0].item["contact"]["external_id"] == "K-1"


def test_an_event_for_a_file_being_split_comes_back_later_and_a_dead_split_is_redone(
    splitter: Splitter, drop: Dropper, splitter_config: SplitterConfig, store: DynamoJobStore
) -> None:
    key = drop.key(f"inbox/mateo/{JOURNEY}")
    put = aws("s3").put_object(Bucket=drop.bucket, Key=key, Body=contacts_csv(4).encode())
    ref = ObjectRef(drop.bucket, key, put["VersionId"])
    job_id = ids.job_id(drop.bucket, key, put["VersionId"])
    # another invocation holds the split (its lease is live): this event must come back later
    store.create_job(Job(job_id, JobStatus.SPLITTING, drop.bucket, key, "mateo", JOURNEY), lease_seconds=60)
    with pytest.raises(SplitInProgress):
        splitter.split(ref)
    # that invocation died: its lease lapses, and the next delivery splits the file from the start
    store.renew_split_lease(job_id, -1)
    (outcome,) = splitter.split(ref)
    assert (outcome.job_id, outcome.status, outcome.duplicate) == (job_id, JobStatus.SENDING, False)
    assert outcome.counts.read == 4
    assert [(m.job_id, m.rows) for m in queued(splitter_config, Destination.MATEO)] == [(job_id, 4)]


# --- a split whose retries are spent ------------------------------------------------------------------


def _destination_record(ref: ObjectRef, error: str) -> dict[str, Any]:
    """Lambda's on-failure destination record for the splitter's event about `ref`."""
    version = aws("s3").head_object(Bucket=ref.bucket, Key=ref.key)["VersionId"]
    event = {
        "detail-type": "Object Created",
        "source": "aws.s3",
        "detail": {
            "bucket": {"name": ref.bucket},
            "object": {"key": quote_plus(ref.key, safe="/"), "version-id": version},
        },
    }
    return {
        "version": "1.0",
        "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": event,
        "responsePayload": {"errorMessage": error},
    }


def test_a_split_whose_retries_are_spent_fails_its_job_with_a_message(
    drop: Dropper, splitter_config: SplitterConfig, store: DynamoJobStore
) -> None:
    ref = drop.put(drop.key(f"inbox/mateo/{JOURNEY}"), contacts_csv(3))
    version = aws("s3").head_object(Bucket=ref.bucket, Key=ref.key)["VersionId"]
    job = Job(
        job_id=ids.job_id(ref.bucket, ref.key, version, 0),
        status=JobStatus.SPLITTING,
        bucket=ref.bucket,
        key=ref.key,
        version=version,
        destination="mateo",
        target=JOURNEY,
    )
    assert store.create_job(job, 1)  # a split that started, staged one chunk, and then died three times
    store.put_chunk(Chunk(job.job_id, "c00001", chunk_key(job.job_id, "c00001"), 2))

    failed = fail_unfinished_split(
        store,
        splitter_config.bucket_name,
        splitter_config.event_bus_name,
        _destination_record(ref, "Task timed out"),
        settle_here(store, splitter_config.bucket_name, splitter_config.event_bus_name),
    )

    final = store.get_job(job.job_id)
    assert failed == [job.job_id]
    assert final is not None and final.status is JobStatus.FAILED
    assert "Task timed out" in final.message and "drop the file again" in final.message
    assert final.counts.read == final.counts.failed == 2
    assert [c.state for c in store.chunks(job.job_id)] == [ChunkState.FAILED]
    assert queued(splitter_config, Destination.MATEO) == []


def test_a_split_that_never_made_its_job_still_leaves_a_failed_job(
    drop: Dropper, splitter_config: SplitterConfig, store: DynamoJobStore
) -> None:
    ref = drop.put(drop.key(f"inbox/workshop/{JOURNEY}"), contacts_csv(1))

    (job_id,) = fail_unfinished_split(
        store,
        splitter_config.bucket_name,
        splitter_config.event_bus_name,
        _destination_record(ref, "Runtime exited"),
        settle_here(store, splitter_config.bucket_name, splitter_config.event_bus_name),
    )

    job = store.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED and "Runtime exited" in job.message


def test_a_finished_split_is_left_alone_by_a_late_failure_record(
    splitter: Splitter, drop: Dropper, splitter_config: SplitterConfig, store: DynamoJobStore
) -> None:
    # Contacts of its own: the same bytes another test sent to this journey would be refused as re-sent.
    ref = drop.put(drop.key(f"inbox/mateo/{JOURNEY}"), contacts_csv(3, start=int(drop.run, 16) % 10**6 * 10))
    outcome = split_one(splitter, ref)
    queued(splitter_config, Destination.MATEO)

    failed = fail_unfinished_split(
        store,
        splitter_config.bucket_name,
        splitter_config.event_bus_name,
        _destination_record(ref, "late"),
        settle_here(store, splitter_config.bucket_name, splitter_config.event_bus_name),
    )

    assert failed == []
    job = store.get_job(outcome.job_id)
    assert job is not None and job.status is JobStatus.SENDING


# --- file options, one model (issue 14 items 5 and 7) ---------------------------------------------------


def row_sum(summary: dict[str, Any]) -> int:
    return sum(summary[f"rows_{state}"] for state in ("sent", "rejected", "failed", "uncertain", "planned"))


def test_a_dry_run_counts_its_rows_as_planned_and_the_row_sum_holds(
    splitter: Splitter, drop: Dropper, store: DynamoJobStore
) -> None:
    body = "email\nada@example.com\nnot-an-email\nbob@example.com\n"
    metadata = {"dry-run": "on", "tolerated-invalid-percent": "50"}
    outcome = split_one(splitter, drop.put(drop.key("inbox/workshop/jrn_welcome"), body, metadata))
    job = store.get_job(outcome.job_id)

    assert job is not None and job.status is JobStatus.PLANNED
    summary = job.summary()
    assert (summary["rows_read"], summary["rows_planned"], summary["rows_rejected"]) == (3, 2, 1)
    assert row_sum(summary) == summary["rows_read"]
    written = json.loads(read(drop.bucket, result_key(outcome.job_id, "summary.json")))
    assert row_sum(written) == written["rows_read"] == 3


def test_a_routes_entry_dry_run_sends_nothing_and_its_unknown_option_fails_the_job(
    splitter: Splitter, drop: Dropper, splitter_config: SplitterConfig, store: DynamoJobStore
) -> None:
    prefix = f"inbox/ops-{drop.run}/"
    dry = {"prefix": f"{prefix}dry/", "options": {"dry_run": "true"}}
    dry["destinations"] = [{"destination": "workshop", "target": "jrn_welcome"}]
    coloured = {"prefix": f"{prefix}coloured/", "options": {"dry_run": "true", "colour": "blue"}}
    coloured["destinations"] = [{"destination": "workshop", "target": "jrn_welcome"}]
    routes = {"routes": [dry, coloured]}
    aws("s3").put_object(Bucket=drop.bucket, Key=splitter_config.routes_key, Body=json.dumps(routes).encode())
    try:
        body = "email\nada@example.com\nbob@example.com\n"
        (planned,) = splitter.split(drop.put(f"{prefix}dry/a.csv", body))
        (refused,) = splitter.split(drop.put(f"{prefix}coloured/a.csv", body))
    finally:
        aws("s3").delete_object(Bucket=drop.bucket, Key=splitter_config.routes_key)

    assert planned.status is JobStatus.PLANNED
    assert refused.status is JobStatus.FAILED
    assert refused.message.startswith("unknown file option(s) colour in the routes entry for")
    assert "dry-run" in refused.message and "only-new" in refused.message
    assert all(messages == [] for messages in all_queued(splitter_config).values())


def test_skip_triggers_on_by_metadata_reaches_altcraft(
    splitter: Splitter, drop: Dropper, splitter_config: SplitterConfig
) -> None:
    metadata = {"skip-triggers": "on"}
    split_one(splitter, drop.put(drop.key("inbox/altcraft/12"), "email\nada@example.com\n", metadata))
    (message,) = queued(splitter_config, Destination.ALTCRAFT)

    assert message.envelope["skip_triggers"] is True


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        ({"tolerated-invalid-percent": "1_0"}, "tolerated-invalid-percent='1_0' must be a number"),
        ({"postal": "perhaps"}, "postal='perhaps' must be true or false"),
    ],
)
def test_a_bad_option_value_fails_the_job_before_anything_is_sent(
    metadata: dict[str, str],
    fragment: str,
    splitter: Splitter,
    drop: Dropper,
    splitter_config: SplitterConfig,
) -> None:
    outcome = split_one(
        splitter, drop.put(drop.key("inbox/workshop/jrn_welcome"), "email\nada@example.com\n", metadata)
    )

    assert outcome.status is JobStatus.FAILED
    assert fragment in outcome.message and "known options:" in outcome.message
    assert all(messages == [] for messages in all_queued(splitter_config).values())


# --- no contact data in any log line (issue 14 item 6) ---------------------------------------------------


@pytest.fixture
def log_lines() -> Any:
    """Every line the functions' logger writes during the test, as written (JSON, redacted)."""
    import logging

    from fanout.observability import logger

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logger.registered_formatter)
    logging.getLogger(logger.name).addHandler(handler)
    try:
        yield lambda: buffer.getvalue().splitlines()
    finally:
        logging.getLogger(logger.name).removeHandler(handler)


@pytest.mark.parametrize(
    "name", ["0701234567.csv", "иван@пример.рф.csv", "Anna Svensson +46 70 123 45 67.csv"]
)
def test_no_log_line_names_a_contact_from_the_key_or_the_rows(
    name: str, splitter: Splitter, drop: Dropper, log_lines: Any
) -> None:
    failing = "email\nиван@пример.рф\nnot-an-email\n0701234567\n"
    passing = "email,phone\nиван@пример.рф,0701234567\n"
    key = f"inbox/workshop/jrn_welcome/{drop.run}-{name}"
    split_one(splitter, drop.put(key, failing))
    split_one(splitter, drop.put(key.replace("jrn_welcome", "jrn_other"), passing, {"dry-run": "true"}))
    lines = log_lines()

    assert any("job failed at split" in line for line in lines)
    assert any("job settled" in line for line in lines)
    for line in lines:
        assert "иван" not in line and "пример" not in line
        assert "0701234567" not in line and "70 123 45 67" not in line
        assert drop.run not in line  # the key is logged by its hash, never by its name


# --- a file's content is sent once to a destination and target (issue 14 item 4) -------------------------


def test_the_same_bytes_dropped_again_to_the_same_target_are_not_sent_again(
    splitter: Splitter, drop: Dropper, splitter_config: SplitterConfig, store: DynamoJobStore
) -> None:
    body = contacts_csv(3, start=int(drop.run, 16) % 10**6 * 10)
    first = split_one(splitter, drop.put(drop.key("inbox/altcraft/42", "monday.csv"), body))
    queued(splitter_config, Destination.ALTCRAFT)
    again = split_one(splitter, drop.put(drop.key("inbox/altcraft/42", "monday-again.csv"), body))
    job = store.get_job(first.job_id)

    assert first.status is JobStatus.SENDING
    assert again.status is JobStatus.FAILED
    assert job is not None
    assert again.message == (
        f"already sent to altcraft/42 by job {first.job_id} on {job.created_at[:10]}; drop it with"
        " resend=true to send it again"
    )
    assert queued(splitter_config, Destination.ALTCRAFT) == []
    failed = store.get_job(again.job_id)
    assert failed is not None and failed.counts.sent == 0 and failed.counts.failed == 3


def test_the_same_bytes_go_to_another_target_and_again_with_resend(
    splitter: Splitter, drop: Dropper, splitter_config: SplitterConfig
) -> None:
    body = contacts_csv(2, start=5000 + int(drop.run, 16) % 10**6 * 10)
    first = split_one(splitter, drop.put(drop.key("inbox/altcraft/42", "a.csv"), body))
    other = split_one(splitter, drop.put(drop.key("inbox/altcraft/43", "a.csv"), body))
    meant = split_one(splitter, drop.put(drop.key("inbox/altcraft/42", "b.csv"), body, {"resend": "true"}))

    assert [first.status, other.status, meant.status] == [JobStatus.SENDING] * 3
    assert len(queued(splitter_config, Destination.ALTCRAFT)) == 3


def test_two_versions_of_one_key_split_at_once_make_one_send(
    splitter_config: SplitterConfig, drop: Dropper, store: DynamoJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client retrying a PUT that had succeeded: two versions of the same bytes, split concurrently; both
    read the whole file before either decides, and exactly one sends."""
    import threading

    for destination in Destination:
        queued(splitter_config, destination)
    key = drop.key("inbox/altcraft/42", "retried-put.csv")
    body = contacts_csv(4, start=9000 + int(drop.run, 16) % 10**6 * 10)
    versions = [
        aws("s3").put_object(Bucket=drop.bucket, Key=key, Body=body.encode())["VersionId"] for _ in "ab"
    ]
    refs = [ObjectRef(drop.bucket, key, version) for version in versions]
    both_read = threading.Barrier(2, timeout=30)
    claim = DynamoJobStore.claim_file

    def claim_together(self: DynamoJobStore, *args: Any, **kwargs: Any) -> Any:
        both_read.wait()
        return claim(self, *args, **kwargs)

    monkeypatch.setattr(DynamoJobStore, "claim_file", claim_together)
    outcomes: list[SplitOutcome] = []
    threads = [
        threading.Thread(target=lambda r=ref: outcomes.extend(Splitter(splitter_config, store).split(r)))
        for ref in refs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(o.status.value for o in outcomes) == ["failed", "sending"]
    assert len(queued(splitter_config, Destination.ALTCRAFT)) == 1


def sqs_refuses(patch: pytest.MonkeyPatch, error: str) -> None:
    """Every attempt of the splitter to queue chunk messages fails with `error` (SQS past its retries)."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(error)

    patch.setattr("fanout.splitter.send_chunk_messages", refuse)


def test_a_split_stopped_while_queueing_has_its_chunks_queued_by_the_events_retry(
    splitter: Splitter,
    drop: Dropper,
    splitter_config: SplitterConfig,
    store: DynamoJobStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SQS failed past its retries while the chunks were being queued: the job is `sending` with chunks no
    message will ever claim. Lambda retries the event; the retry queues them, and nothing twice matters."""
    ref = drop.put(drop.key(f"inbox/mateo/{JOURNEY}"), contacts_csv(1_200))

    with monkeypatch.context() as broken:
        sqs_refuses(broken, "SQS 500 InternalError (retries spent)")
        with pytest.raises(RuntimeError):
            splitter.split(ref)
    assert queued(splitter_config, Destination.MATEO) == []

    (retried,) = splitter.split(ref)

    messages = queued(splitter_config, Destination.MATEO)
    chunks = store.chunks(retried.job_id)
    assert retried.duplicate
    assert sorted(m.chunk_id for m in messages) == sorted(c.chunk_id for c in chunks)
    assert sum(m.rows for m in messages) == 1_200


def test_a_split_whose_queueing_failed_on_every_attempt_ends_its_job_with_the_unsent_rows_failed(
    splitter: Splitter,
    drop: Dropper,
    splitter_config: SplitterConfig,
    store: DynamoJobStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SQS refused the chunks' messages on the event's every attempt (a permission missing for good): the
    failure record ends the job instead of leaving it `sending`. A chunk a sender holds (its message did go
    out) is left to finish; the others are failed, so a late copy of their message sends nothing."""
    ref = drop.put(
        drop.key(f"inbox/mateo/{JOURNEY}"), contacts_csv(1_200, start=int(drop.run, 16) % 10**6 * 10)
    )

    with monkeypatch.context() as broken:
        sqs_refuses(broken, "SQS 403 AccessDenied")
        for _attempt in range(3):  # Lambda's first attempt and its two retries
            with pytest.raises(RuntimeError):
                splitter.split(ref)
    version = aws("s3").head_object(Bucket=ref.bucket, Key=ref.key)["VersionId"]
    job_id = ids.job_id(ref.bucket, ref.key, version, 0)
    held, *unsent = store.chunks(job_id)
    assert store.claim_chunk(job_id, held.chunk_id, 60).name.startswith("CLAIMED")

    failed = fail_unfinished_split(
        store,
        splitter_config.bucket_name,
        splitter_config.event_bus_name,
        _destination_record(ref, "AccessDenied"),
        settle_here(store, splitter_config.bucket_name, splitter_config.event_bus_name),
    )

    job = store.get_job(job_id)
    assert failed == [job_id]
    assert job is not None and job.status is JobStatus.SENDING  # the held chunk is still being sent
    assert "could not be queued" in job.message and "AccessDenied" in job.message
    states = {c.chunk_id: c.state for c in store.chunks(job_id)}
    assert states.pop(held.chunk_id) is ChunkState.IN_FLIGHT
    assert set(states.values()) == {ChunkState.FAILED}
    assert job.counts.failed == sum(c.rows for c in unsent)
    assert queued(splitter_config, Destination.MATEO) == []
