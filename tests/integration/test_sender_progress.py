"""A chunk sent one row per call (Mateo messages) keeps the answers of an interrupted delivery: the next
delivery sends only what is still unanswered.

On the session's local stack: production-like chunk leases (a delivery is never taken over while it
works), 2-second visibility timeouts so redeliveries come quickly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fanout_local.stack import LocalStack
from tests.support import enrolments, rows_csv

# Slow (about 30 s on two cores): marked so the default run stays under ten minutes; CI runs it with the
# slow suites.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHANNEL = "3c90c3cc-0d44-4b50-8888-8dd25736052a"


def messages_csv(tmp_path: Path, name: str, count: int) -> Path:
    lines = ["email,subject,text", *(f"{name}.{i}@example.com,Welcome,Hello {i}" for i in range(count))]
    path = tmp_path / f"{name}.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def performed(stack: LocalStack) -> int:
    """Requests Mateo answered itself (not an injected fault)."""
    received = stack.received("mateo")
    return int(received["requests"]) - int(received["faulted"])


def test_messages_answered_before_a_retry_are_not_sent_again(local_stack: LocalStack, tmp_path: Path) -> None:
    # One chunk of 19 messages; each delivery sends until a 429 sends the chunk back to the queue (a 429
    # proves the message was not sent; a 5xx would leave it uncertain: Mateo messages do not de-duplicate)
    # three times in a row, more than a sender retries inside an invocation.
    local_stack.set_faults("mateo", {"429": 0.5, "retry_after": 1, "seed": 4})
    try:
        before = performed(local_stack)
        path = messages_csv(tmp_path, "resumed-messages", 19)
        job = local_stack.wait(
            local_stack.drop(path, "mateo-message", CHANNEL, {"subject": "Hello"}), timeout=240
        )
    finally:
        local_stack.set_faults("mateo", {})
    assert job.status.value == "completed", (
        job.summary(),
        {r["answer"][:200] for r in rows_csv(local_stack, job.job_id)},
    )
    (chunk,) = local_stack.store().chunks(job.job_id)
    assert chunk.attempts > 1  # the faults did send the chunk back to the queue
    # Each message reached Mateo once: one answered by an earlier delivery was not sent again.
    assert performed(local_stack) - before == 19
    got = enrolments(local_stack, "mateo", CHANNEL, "resumed-messages")
    assert len(got) == 19 and set(got.values()) == {1}
