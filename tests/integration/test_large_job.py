"""A job whose settle takes longer than a sender may run: it settles all the same, in the job function.

A sender runs at most 60 s (a third of a vCPU on AWS, at 512 MB), and a job's settle, which writes
rows.csv and adds the job's contacts to the record of who was sent, takes some 5 s a million rows on a
whole core here. When the sender of the last chunk settled the job itself, a job whose settle outlasted
the sender's timeout never settled: each redelivery of that chunk settled again and timed out again. The
sender's timeout is cut here to 2 s (as an operator would, UpdateFunctionConfiguration) so that a job of
600,000 rows, whose settle takes some 3 s by the bench's rate (not timed here), stands for a job of tens of millions on AWS.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fanout_local.stack import LocalStack, StackSettings
from tests.support import assert_accounted

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOURNEY = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
ROWS = 600_000
SENDER_TIMEOUT_SECONDS = 2


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    settings = StackSettings(
        stack_name="large",
        concurrency=2,
        parameters={"RatePerSecondMateo": "0"},  # unpaced, as the bench runs it: the system's own speed
        function_timeouts={"MateoSenderFunction": SENDER_TIMEOUT_SECONDS},
    )
    with LocalStack(settings) as running:
        yield running


def emails(path: Path, rows: int) -> Path:
    with path.open("w", encoding="utf-8") as out:
        out.write("email\n")
        out.writelines(f"large.{n}@example.com\n" for n in range(rows))
    return path


def test_a_job_whose_settle_outlasts_a_senders_timeout_settles_in_the_job_function(
    stack: LocalStack, tmp_path: Path
) -> None:
    job = stack.wait(stack.drop(emails(tmp_path / "large.csv", ROWS), "mateo", JOURNEY), timeout=600)

    summary = job.summary()
    assert (summary["status"], summary["rows_sent"]) == ("completed", ROWS), summary
    assert_accounted(summary)
    body = stack.client("s3").get_object(Bucket=stack.bucket, Key=f"results/{job.job_id}/rows.csv")["Body"]
    assert sum(1 for _ in body.iter_lines()) == ROWS + 1
    received = stack.received("mateo").get("targets", {}).get(JOURNEY, {})
    assert len(received) == ROWS and set(received.values()) == {1}  # each contact once
