"""Queueing chunk messages: one SQS message per staged chunk, on its destination's queue.

The splitter queues a job's chunks; a sender queues the halves of a chunk too large to send, and a chunk's
follow-up message when it must come back later (a batch to poll, a quota to wait out). It lives apart
from both so that a sender's cold start does not import the splitter (reading, validation, phonenumbers).
"""

from __future__ import annotations

from functools import partial

from fanout.aws import client
from fanout.background import in_flight
from fanout.models import ChunkMessage

SQS_BATCH = 10  # entries per SendMessageBatch, SQS's maximum


def send_chunk_messages(queue_url: str, messages: list[ChunkMessage], delay_seconds: int = 0) -> None:
    """One SQS message per chunk, ten per SendMessageBatch (several calls at a time: `in_flight`), each
    delivered `delay_seconds` from now (at most SQS's 900); raises if SQS refuses any."""
    sqs = client("sqs")

    def send(batch: list[ChunkMessage]) -> None:
        entries = [
            {"Id": str(i), "MessageBody": m.to_json(), "DelaySeconds": delay_seconds}
            for i, m in enumerate(batch)
        ]
        answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if answer.get("Failed"):
            raise RuntimeError(f"SQS refused {len(answer['Failed'])} chunk messages")

    batches = (messages[start : start + SQS_BATCH] for start in range(0, len(messages), SQS_BATCH))
    in_flight((partial(send, batch) for batch in batches), "queueing")
