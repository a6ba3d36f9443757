"""Queueing a split's chunk messages: every message once, several SendMessageBatch calls in flight at once
(a 10M-row file has 20,000 chunks: 2,000 calls, 20-40 s one after another on AWS), and a refusal
raised."""

from __future__ import annotations

from typing import Any

import pytest

from fanout import queueing
from fanout.destinations import Destination
from fanout.models import ChunkMessage
from tests.far_calls import FarCalls

pytestmark = pytest.mark.unit

JOURNEY = "3c90c3cc-0d44-4b50-8888-8dd25736052a"


def _messages(count: int) -> list[ChunkMessage]:
    return [
        ChunkMessage("j-1", f"c{n:05d}", Destination.MATEO, JOURNEY, "jobs/j-1/staged/00001", 500)
        for n in range(1, count + 1)
    ]


class _SlowQueue(FarCalls):
    """SendMessageBatch far away; refuses the chunks in `refuse`."""

    def __init__(self, seconds: float, refuse: set[str] | None = None) -> None:
        super().__init__(seconds)
        self.refuse = refuse or set()
        self.bodies: list[str] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        with self.call():
            self.bodies += [e["MessageBody"] for e in Entries]
        failed = [
            {"Id": e["Id"]}
            for e in Entries
            if ChunkMessage.from_json(e["MessageBody"]).chunk_id in self.refuse
        ]
        return {"Successful": [], "Failed": failed} if failed else {"Successful": []}


def test_a_split_s_messages_go_out_once_each_several_calls_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = _SlowQueue(0.05)
    monkeypatch.setattr(queueing, "client", lambda service: queue)
    messages = _messages(205)  # 21 calls
    queueing.send_chunk_messages("https://sqs.example/chunks", messages)
    assert sorted(queue.bodies) == sorted(m.to_json() for m in messages)
    assert queue.most_in_flight > 1


def test_a_refused_message_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = _SlowQueue(0.01, refuse={"c00042"})
    monkeypatch.setattr(queueing, "client", lambda service: queue)
    with pytest.raises(RuntimeError, match="SQS refused 1 chunk messages"):
        queueing.send_chunk_messages("https://sqs.example/chunks", _messages(120))
