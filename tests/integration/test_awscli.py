"""The local stack answers the real AWS CLI: `aws s3 cp` into the inbox is all a user needs to start a job."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fanout import ids
from fanout_local.stack import LocalStack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
AWS = Path(sys.executable).parent / "aws"
# examples/contacts.csv: 22 distinct valid contacts (" Alan@Example.COM " trimmed and lower-cased);
# "not-an-email" is rejected, and Ada's second row is a duplicate.
SAMPLE = [
    line.split(",")[0].strip().lower()
    for line in (REPO / "examples/contacts.csv").read_text().splitlines()[1:]
]
VALID_CONTACTS = {email for email in SAMPLE if "@" in email}


def aws(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    """The AWS CLI, pointed at the local stack by the environment alone, with the operator's keys that
    `fanout local up` prints (IAM is enforced), as a user would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(stack.aws_env())
    return subprocess.run(
        [str(AWS), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


def test_aws_s3_cp_into_the_inbox_enrols_each_valid_contact_once_with_a_result_per_row(
    local_stack: LocalStack,
) -> None:
    key = "inbox/workshop/jrn_welcome/contacts.csv"

    copied = aws(local_stack, "s3", "cp", "examples/contacts.csv", f"s3://{local_stack.bucket}/{key}")

    assert copied.returncode == 0, copied.stderr
    head = local_stack.client("s3").head_object(Bucket=local_stack.bucket, Key=key)
    job = local_stack.wait(ids.job_id(local_stack.bucket, key, head["VersionId"]), timeout=60).summary()
    assert job["status"] == "completed", job
    assert len(VALID_CONTACTS) == 22
    assert (job["rows_read"], job["rows_sent"], job["rows_rejected"]) == (24, 22, 2)
    enrolled = local_stack.received("workshop")["targets"]["jrn_welcome"]
    assert {email: enrolled.get(email) for email in VALID_CONTACTS} == dict.fromkeys(VALID_CONTACTS, 1)
    assert not any("not-an-email" in email for email in enrolled)

    rows = aws(local_stack, "s3", "cp", f"s3://{local_stack.bucket}/results/{job['job_id']}/rows.csv", "-")
    assert rows.returncode == 0, rows.stderr
    states = [row["state"] for row in csv.DictReader(io.StringIO(rows.stdout))]
    assert sorted(states) == ["rejected"] * 2 + ["sent"] * 22


def test_keys_that_iam_does_not_know_are_refused(local_stack: LocalStack) -> None:
    env = {**local_stack.aws_env(), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    denied = subprocess.run(
        [str(AWS), "s3", "ls", f"s3://{local_stack.bucket}/"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert denied.returncode != 0
    assert "InvalidAccessKeyId" in denied.stderr or "InvalidToken" in denied.stderr or "403" in denied.stderr
