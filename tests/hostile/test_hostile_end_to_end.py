"""The nastiest corpus files end to end: dropped into the local stack's bucket, the EventBridge rule invokes
the splitter, senders call the emulators, and every job settles as the corpus promises. Never a job stuck
half way, never an event or chunk parked in a dead-letter queue; rows.csv holds one line per row read.
"""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from corpus import BY_NAME, Completed, Failed, HostileFile, NoJob, write_corpus

from fanout import ids
from fanout.models import ChunkState, JobStatus
from fanout_local.stack import LocalStack, StackSettings

pytestmark = pytest.mark.integration

NASTIEST = [
    "gzip-truncated-mid",  # half-uploaded: fails, nothing sent, every row it did read accounted for
    "unbalanced-quote",  # a quote swallowing the rest of the file: fails
    "formula-injection",  # formulas sent as data, neutralised in rows.csv
    "nested-objects",  # lists, objects, absurd nesting, 1e999: rejected rows, the rest sent
    "utf16-excel-unicode-text",  # Excel "Unicode text" with the same contact twice
    "key-unicode-and-spaces",  # a key with a space, a plus and an accent
    "folder-placeholder",  # no job at all
]
DEAD_LETTER_QUEUES = [
    "SplitterFailureQueue",
    "MateoDeadLetterQueue",
    "MateoMessageDeadLetterQueue",
    "SymplifyDeadLetterQueue",
    "WorkshopDeadLetterQueue",
    "AltcraftDeadLetterQueue",
]


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(StackSettings(stack_name="hostile", visibility_timeout=2, concurrency=2)) as running:
        yield running


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {case.name: path for case, path in write_corpus(tmp_path_factory.mktemp("corpus"))}


def queue_depth(stack: LocalStack, logical_id: str) -> int:
    url = stack.physical(logical_id)
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def rows_file(stack: LocalStack, job_id: str) -> list[dict[str, str]]:
    body = stack.client("s3").get_object(Bucket=stack.bucket, Key=f"results/{job_id}/rows.csv")["Body"].read()
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"), newline="")))


def drop(stack: LocalStack, case: HostileFile, path: Path) -> tuple[str, str]:
    """Upload the file as a person would; the job id its event makes, and the key."""
    key = case.object_key(uuid.uuid4().hex[:8])
    answer = stack.client("s3").put_object(
        # Each case stands alone: many share their bytes and target, which must not be refused as re-sent.
        Bucket=stack.bucket,
        Key=key,
        Body=path.read_bytes(),
        Metadata={"resend": "true", **case.metadata},
    )
    return ids.job_id(stack.bucket, key, answer.get("VersionId") or answer["ETag"].strip('"')), key


def test_the_nastiest_files_settle_as_promised(stack: LocalStack, files: dict[str, Path]) -> None:
    dropped = {name: drop(stack, BY_NAME[name], files[name]) for name in NASTIEST}
    store = stack.store()

    for name, (job_id, key) in dropped.items():
        case = BY_NAME[name]
        expected = case.expect
        if isinstance(expected, NoJob):
            continue
        job = stack.wait(job_id, timeout=180)  # settles: never stuck splitting or sending
        summary = job.summary()
        assert job.key == key
        assert summary["rows_read"] == sum(
            summary[p] for p in ("rows_sent", "rows_rejected", "rows_failed", "rows_uncertain")
        ), summary
        if isinstance(expected, Failed):
            assert job.status is JobStatus.FAILED, summary
            assert expected.message in job.message
            assert summary["rows_sent"] == summary["rows_uncertain"] == 0
            assert {c.state for c in store.chunks(job_id)} <= {ChunkState.FAILED}
        else:
            assert isinstance(expected, Completed)
            assert job.status is JobStatus.COMPLETED, summary
            assert (summary["rows_read"], summary["rows_rejected"]) == (
                expected.rows_read,
                len(expected.rejected),
            )
            assert {c.state for c in store.chunks(job_id)} <= {ChunkState.SENT, ChunkState.SPLIT}
        if job.counts.read:
            rows = rows_file(stack, job_id)
            assert len(rows) == job.counts.read  # one line per row read, each once
            assert len({r["row"] for r in rows}) == len(rows)
            rejected = {int(r["row"]): r["answer"] for r in rows if r["state"] == "rejected"}
            if expected.rejected is not None:
                assert sorted(rejected) == sorted(expected.rejected), (name, rejected)
                for row, reason in expected.rejected.items():
                    assert reason in rejected[row], (name, row, rejected[row])
            if isinstance(expected, Completed):
                assert {r["state"] for r in rows} <= {"sent", "rejected"}, name
            for line in rows:  # nothing a spreadsheet would run
                assert not line["identity"].startswith(("=", "@")), line

    # The folder placeholder made no job; nothing went to a dead-letter queue, the splitter's included.
    folder_job, _ = dropped["folder-placeholder"]
    time.sleep(3)
    assert store.get_job(folder_job) is None
    assert {q: queue_depth(stack, q) for q in DEAD_LETTER_QUEUES} == dict.fromkeys(DEAD_LETTER_QUEUES, 0)


def test_no_function_outgrew_its_memory_on_the_hostile_files(stack: LocalStack) -> None:
    """Runs after the corpus above: every worker stayed within its function's MemorySize, as it must on
    Lambda (a worker past it is killed, as Lambda kills it)."""
    memory = stack.peak_memory()

    assert memory["SplitterFunction"]["peak_mb"] > 0
    for function, used in memory.items():
        assert used["killed_out_of_memory"] == 0, (function, used)
        assert used["peak_mb"] <= used["limit_mb"], (function, used)
