"""An idle local stack costs next to nothing: its pollers long-poll, as Lambda's do.

Two dozen pollers (two per event source, one per asynchronously invoked function) wait on queues that
mostly stay empty. Asking each once a second cost the runner and moto a sixth of a core between them
when nothing happened, CPU that a job on the same two cores then lacked.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from botocore.client import BaseClient

from fanout_local.stack import LocalStack

pytestmark = pytest.mark.integration


def test_an_idle_stack_asks_each_empty_queue_once_a_long_poll(
    local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_answers: Counter[str] = Counter()
    original = BaseClient._make_api_call  # type: ignore[attr-defined]

    def counted(client: Any, operation: str, params: dict[str, Any]) -> Any:
        answer = original(client, operation, params)
        if operation == "ReceiveMessage" and not answer.get("Messages"):
            empty_answers[threading.current_thread().name] += 1
        return answer

    monkeypatch.setattr(BaseClient, "_make_api_call", counted)
    time.sleep(3)
    monkeypatch.undo()

    # A poll started before the window may end in it: one empty answer a poller at most, not three.
    assert max(empty_answers.values(), default=0) <= 1, empty_answers
