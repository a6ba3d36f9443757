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

pytestmark = pytest.mark.integration

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


@pytest.fixture(scope="module")
def slow_splitter_stack() -> Iterator[LocalStack]:
    settings = StackSettings(
        stack_name="slowsplit",
        function_timeouts={"SplitterFunction": 1},
        async_retry_delays=(1, 1),
    )
    with LocalStack(settings) as running:
        yield running


def test_a_split_that_times_out_three_times_fails_its_job_with_a_message(
    slow_splitter_stack: LocalStack, tmp_path: Path
) -> None:
    big = tmp_path / "big.csv"
    big.write_text("email\n" + "".join(f"user{n}@example.com\n" for n in range(400_000)))

    job_id = slow_splitter_stack.drop(big, "workshop", WORKSHOP_TARGET)
    job = slow_splitter_stack.wait(job_id, timeout=120)

    assert job.status.value == "failed"
    assert "could not be split" in job.message and "drop the file again" in job.message
    assert job.counts.sent == 0
    assert slow_splitter_stack.received("workshop").get("targets", {}).get(WORKSHOP_TARGET) is None
