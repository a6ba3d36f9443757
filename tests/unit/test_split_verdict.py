"""One verdict for a file: `fanout validate` gives the very one the splitter's job gets, and a job that
failed at the split is never sent by a redrive (issue 14 items 1 and 2)."""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from fanout.config import SplitterConfig
from fanout.destinations import Destination
from fanout.models import JobStatus, ObjectRef
from fanout.splitter import Splitter
from fanout.store import DynamoJobStore
from fanout_local import operations
from fanout_local.cli import app
from fanout_local.deployed import DeployedStack

pytestmark = pytest.mark.unit


def aws(service: str) -> Any:
    return boto3.client(service, region_name="eu-west-1")  # type: ignore[call-overload]


def emails(valid: int, invalid: int, tag: str) -> bytes:
    rows = [f"{tag}.{n}@example.com" for n in range(valid)] + [f"not-an-email-{n}" for n in range(invalid)]
    return ("email\n" + "\n".join(rows) + "\n").encode()


FILES: dict[str, tuple[str, dict[str, str], Any]] = {
    # name: (to, options, body(tag))
    "3 of 6 invalid": ("workshop/jrn_welcome", {}, lambda t: emails(3, 3, t)),
    "5000 of 5000 invalid": ("workshop/jrn_welcome", {}, lambda t: emails(0, 5000, t)),
    "1 of 10 invalid, at the threshold": ("workshop/jrn_welcome", {}, lambda t: emails(9, 1, t)),
    "3 of 6 invalid, tolerated": (
        "workshop/jrn_welcome",
        {"tolerated-invalid-percent": "50"},
        lambda t: emails(3, 3, t),
    ),
    "a header and no rows": ("workshop/jrn_welcome", {}, lambda t: b"email\n"),
    "an empty file": ("workshop/jrn_welcome", {}, lambda t: b""),
    "truncated gzip": ("workshop/jrn_welcome", {}, lambda t: gzip.compress(emails(50, 0, t))[:-30]),
    "custom matching without field-name": ("altcraft/12", {"matching": "custom"}, lambda t: emails(2, 0, t)),
    "a valid file": ("altcraft/12", {}, lambda t: emails(4, 0, t)),
}


@pytest.fixture
def splitter(splitter_config: SplitterConfig) -> Splitter:
    return Splitter(splitter_config, DynamoJobStore(splitter_config.table_name))


@pytest.mark.parametrize("name", list(FILES))
def test_validate_gives_the_verdict_the_split_gives(
    name: str, splitter: Splitter, splitter_config: SplitterConfig, tmp_path: Path
) -> None:
    to, options, body = FILES[name]
    data = body(uuid.uuid4().hex[:8])
    path = tmp_path / "contacts.csv"
    path.write_bytes(data)
    key = f"inbox/{to}/{uuid.uuid4().hex[:8]}.csv"
    aws("s3").put_object(Bucket=splitter_config.bucket_name, Key=key, Body=data, Metadata=options)
    (outcome,) = splitter.split(ObjectRef(splitter_config.bucket_name, key))

    found = operations.validate_file(path, to, options)

    assert (found.problem is not None) == (outcome.status is JobStatus.FAILED), (found.problem, outcome)
    if found.problem is not None:
        assert found.problem == outcome.message.replace(outcome.job_id, "<job>")


@pytest.mark.parametrize("name", list(FILES))
def test_validate_exits_non_zero_exactly_when_the_job_would_fail(name: str, tmp_path: Path) -> None:
    to, options, body = FILES[name]
    path = tmp_path / "contacts.csv"
    path.write_bytes(body("v"))
    args = ["validate", str(path), "--to", to, "--json"]
    for option in options.items():
        args += ["-o", "=".join(option)]
    result = CliRunner().invoke(app, args)
    found = json.loads(result.stdout)
    would_fail = operations.validate_file(path, to, options).problem is not None

    assert result.exit_code == (1 if would_fail else 0)
    assert found["verdict"] == ("fail" if would_fail else "send")


def test_validate_json_gives_verdict_counts_column_mapping_and_plan(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("E-Mail,First Name,Plan\nada@example.com,Ada,gold\nnot-an-email,Bob,silver\n")
    result = CliRunner().invoke(
        app, ["validate", str(path), "--to", "altcraft/12", "-o", "tolerated-invalid-percent=50", "--json"]
    )
    found = json.loads(result.stdout)

    assert result.exit_code == 0
    assert found["verdict"] == "send" and found["problem"] is None
    assert (found["rows_read"], found["rows_valid"], found["rows_rejected"]) == (2, 1, 1)
    assert found["columns"] == {"E-Mail": "email", "First Name": "first_name", "Plan": "travels as data"}
    assert found["plan"]["chunks"] == 1 and found["plan"]["provider_calls"] == 1
    assert "seconds" in found["plan"]  # None until the destination says how long its calls take


def test_a_job_that_failed_at_the_split_is_never_redriven(
    splitter: Splitter, splitter_config: SplitterConfig, stack: DeployedStack
) -> None:
    key = f"inbox/workshop/jrn_welcome/{uuid.uuid4().hex[:8]}.csv"
    aws("s3").put_object(Bucket=splitter_config.bucket_name, Key=key, Body=emails(4, 2, "redrive"))
    (outcome,) = splitter.split(ObjectRef(splitter_config.bucket_name, key))
    assert outcome.status is JobStatus.FAILED
    url = splitter_config.queue_url(Destination.WORKSHOP)
    aws("sqs").purge_queue(QueueUrl=url)

    with pytest.raises(operations.OperatorError) as caught:
        operations.redrive(operations.StackRef.from_outputs(stack.outputs()), outcome.job_id)

    assert "failed at the split" in str(caught.value)
    assert "a corrected file" in str(caught.value)
    assert aws("sqs").receive_message(QueueUrl=url).get("Messages", []) == []
    job = DynamoJobStore(splitter_config.table_name).get_job(outcome.job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.counts.sent == 0


# --- fanout report --rejected: the original rows, ready to fix and drop again (issue 14 item 9) --------------


def test_report_rejected_gives_the_original_rows_with_their_header_and_a_reason(
    splitter: Splitter, splitter_config: SplitterConfig, stack: DeployedStack, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    body = (
        f"E-Mail;Vorname;Stadt\n{tag}.a@example.com;Anna;Berlin\nkaputt;Bernd;Köln\n"
        f"{tag}.c@example.com;Clara;Bonn\n{tag}.a@example.com;Anna;Berlin\n"
    )
    key = f"inbox/workshop/jrn_welcome/{tag}.csv"
    aws("s3").put_object(Bucket=splitter_config.bucket_name, Key=key, Body=body.encode())
    (outcome,) = splitter.split(ObjectRef(splitter_config.bucket_name, key))
    ref = operations.StackRef.from_outputs(stack.outputs())
    job = operations.get_job(ref, outcome.job_id)

    rows = list(operations.rejected_rows(ref, job))

    assert rows == [
        {
            "E-Mail": "kaputt",
            "Vorname": "Bernd",
            "Stadt": "Köln",
            "rejection_reason": "'kaputt' is not a valid email address",
        },
        {
            "E-Mail": f"{tag}.a@example.com",
            "Vorname": "Anna",
            "Stadt": "Berlin",
            "rejection_reason": "duplicate of row 1",
        },
    ]
    # Fixed and dropped again as it is, the reason column is not sent anywhere.
    fixed = tmp_path / "fixed.csv"
    fixed.write_text(
        "E-Mail,Vorname,Stadt,rejection_reason\nbernd@example.com,Bernd,Köln,'kaputt' is not valid\n"
    )
    found = operations.validate_file(fixed, "altcraft/12", {})
    assert found.problem is None and found.rows_valid == 1
    assert "rejection_reason" not in found.columns


@pytest.mark.parametrize(
    "to", ["mateo/3c90c3cc-0d44-4b50-8888-8dd25736052a", "workshop/jrn_welcome", "altcraft/12"]
)
def test_a_csv_file_of_valid_rows_rejects_each_repeat_as_a_duplicate_of_its_first_row(
    to: str, tmp_path: Path
) -> None:
    # every row valid: the file's rows all take its row plan, and a contact written again (another case,
    # spaces around it) is still the same contact
    rows = [f"user{n}@example.com,Name{n}" for n in range(1, 601)]
    rows[449] = " USER3@Example.com ,Again"
    rows[599] = "user450@example.com,Once"  # row 450 became USER3: this address is new
    path = tmp_path / "contacts.csv"
    path.write_text("email,first_name\n" + "\n".join(rows) + "\n")

    found = operations.validate_file(path, to, {})

    assert [(r.row, r.reason) for r in found.rejections] == [(450, "duplicate of row 3")]
    assert found.rows_valid == 599
