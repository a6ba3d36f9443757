"""Queueing chunk messages: one SQS message per staged chunk, on its destination's queue.

The splitter queues a job's chunks; a sender queues the halves of a chunk too large to send, and a chunk's
follow-up message when it must come back later (a batch to poll, a quota to wait out). It lives apart
from both so that a sender's cold start does not import the splitter (reading, validation, phonenumbers).
"""

from __future__ import annotations

from functools import partial

from fanout.aws import client
from fanout.background import Background
from fanout.models import ChunkMessage

SQS_BATCH = 10  # entries per SendMessageBatch, SQS's maximum
# SendMessageBatch calls in flight at once: SQS answers each in about 10-20 ms, so a 10M-row file's 2,000
# calls take 2-4 s in flight together instead of 20-40 s one after another.
SEND_THREADS = 8


def send_chunk_messages(queue_url: str, messages: list[ChunkMessage], delay_seconds: int = 0) -> None:
    """One SQS message per chunk, ten per SendMessageBatch (SEND_THREADS calls at a time), each delivered
    `delay_seconds` from now (at most SQS's 900); raises if SQS refuses any."""
    sqs = client("sqs")

    def send(batch: list[ChunkMessage]) -> None:
        entries = [
            {"Id": str(i), "MessageBody": m.to_json(), "DelaySeconds": delay_seconds}
            for i, m in enumerate(batch)
        ]
        answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if answer.get("Failed"):
            raise RuntimeError(f"SQS refused {len(answer['Failed'])} chunk messages")

    batches = [messages[start : start + SQS_BATCH] for start in range(0, len(messages), SQS_BATCH)]
    if len(batches) <= 1:  # a sender's follow-up or halves: no threads for one call
        for batch in batches:
            send(batch)
        return
    calls = Background(depth=2 * SEND_THREADS, workers=min(SEND_THREADS, len(batches)), name="queueing")
    try:
        for batch in batches:
            calls.submit(partial(send, batch))
        calls.drain()
    finally:
        calls.close()
