"""IAM is enforced on the local stack as on AWS: each function runs under its own execution role, and a
call its policy does not allow is denied, so a missing or too-broad permission shows up here, not after
`sam deploy`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fanout_local import cfn_yaml
from fanout_local.deploy import TEMPLATE
from fanout_local.stack import LocalStack, StackSettings

# Slow (about 80 s on two cores, mostly deploying its two stacks): marked so the default run stays under
# ten minutes; CI runs it with the slow suites.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORKSHOP_TARGET = "jrn_welcome"


def _without_splitter_send_to(queue_logical_id: str) -> dict[str, Any]:
    """template.yaml with the one statement that lets the splitter queue chunks on `queue_logical_id`
    removed (the mutation)."""
    template = cfn_yaml.load_template(TEMPLATE)
    policies = template["Resources"]["SplitterFunction"]["Properties"]["Policies"]
    kept = [
        p
        for p in policies
        if p != {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": [queue_logical_id, "QueueName"]}}}
    ]
    assert len(kept) == len(policies) - 1, "the mutation found no statement to remove"
    template["Resources"]["SplitterFunction"]["Properties"]["Policies"] = kept
    return template


@pytest.fixture(scope="module")
def mutated_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    folder = tmp_path_factory.mktemp("mutated")
    path = folder / "template.json"
    path.write_text(json.dumps(_without_splitter_send_to("WorkshopQueue")))
    settings = StackSettings(
        stack_name="mutated",
        template=path,
        parameters={"ToleratedInvalidPercent": "50"},
        async_retry_delays=(1, 1),
    )
    with LocalStack(settings) as running:
        yield running


def test_a_permission_removed_from_one_policy_is_denied_as_aws_would(mutated_stack: LocalStack) -> None:
    job_id = mutated_stack.drop(Path("examples/contacts.csv"), "workshop", WORKSHOP_TARGET)

    mutated_stack.wait_for(lambda: mutated_stack.aws_stats()["access_denied"] > 0, timeout=60)

    stats = mutated_stack.aws_stats()
    assert stats["iam_enforced"] is True
    assert set(stats["access_denied_by_action"]) <= {"sqs:SendMessageBatch", "sqs:SendMessage"}
    assert mutated_stack.received("workshop").get("targets", {}).get(WORKSHOP_TARGET) is None
    job = mutated_stack.store().get_job(job_id)
    assert job is None or job.status.value != "completed"


def test_the_other_destinations_are_untouched_by_the_mutation(mutated_stack: LocalStack) -> None:
    job_id = mutated_stack.drop(
        Path("examples/contacts.csv"), "mateo", "3c90c3cc-0d44-4b50-8888-8dd25736052a"
    )

    job = mutated_stack.wait(job_id, timeout=90)

    assert job.status.value == "completed", job.summary()


# -- a split whose retries are spent ends its job, not left splitting ------------------------------------


def _splitter_cannot_stage() -> dict[str, Any]:
    """template.yaml whose splitter may read the dropped file but not write staged chunks: every attempt
    at a split fails the same way, as a persistent fault would."""
    template = cfn_yaml.load_template(TEMPLATE)
    policies = template["Resources"]["SplitterFunction"]["Properties"]["Policies"]
    (statement,) = [
        s
        for p in policies
        for s in p.get("Statement", [])
        if s.get("Sid") == "ReadDroppedFilesAndWriteStagedChunks"
    ]
    statement["Action"] = [a for a in statement["Action"] if a != "s3:PutObject"]
    return template


@pytest.fixture(scope="module")
def failing_splitter_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    path = tmp_path_factory.mktemp("cannot-stage") / "template.json"
    path.write_text(json.dumps(_splitter_cannot_stage()))
    settings = StackSettings(stack_name="failsplit", template=path, async_retry_delays=(1, 1))
    with LocalStack(settings) as running:
        yield running


def test_a_split_whose_retries_are_spent_fails_its_job_with_a_message(
    failing_splitter_stack: LocalStack, tmp_path: Path
) -> None:
    """Three attempts fail (Lambda's retries of the event), the event reaches SplitterFailureQueue, and
    the dead-letter function ends the job failed, with a message, instead of leaving it splitting."""
    file = tmp_path / "contacts.csv"
    file.write_text("email\n" + "".join(f"user{n}@example.com\n" for n in range(50)))

    job_id = failing_splitter_stack.drop(file, "workshop", WORKSHOP_TARGET)
    job = failing_splitter_stack.wait(job_id, timeout=120)

    assert job.status.value == "failed"
    assert "could not be split" in job.message and "drop the file again" in job.message
    assert job.counts.sent == 0
    assert failing_splitter_stack.received("workshop").get("targets", {}).get(WORKSHOP_TARGET) is None
