"""The event runner: delivers events to the local Lambda workers with Lambda's own semantics.

- SQS event sources (as template.yaml declares them): batches of the declared size; on success the batch
  is deleted, except the `batchItemFailures` the function reports; a failed invocation deletes nothing.
  Undeleted messages come back after the queue's visibility timeout, and SQS itself (moto) moves a
  message past maxReceiveCount to the dead-letter queue.
- The splitter's asynchronous invocation: the EventBridge rule (or the direct S3 notification) delivers
  to a local queue standing in for Lambda's internal one; a failed event is retried as many times as
  EventInvokeConfig says, then sent to its on-failure destination as Lambda's destination record.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fanout_local.lambda_worker import FunctionError, Worker

# Long polls of SQS's longest wait, as Lambda's pollers make them: an empty queue costs one request every
# 20 s per poller. moto gives its lock back while a long poll waits (moto_server.waits_unlocked), and a
# message sent meanwhile is received at once. At 1 s, the two dozen pollers of a stack, most of them on
# queues that stay empty, cost a sixth of a core between them when idle (runner and moto, 3.2 CPU-s in
# 20 s, /proc; 0.55 at 20 s), CPU the 1M-contact benchmark's job lacked on the two cores it shares with
# them. A stopped stack does not wait for a poller in a long poll (`LongPolling.waiting`): it ends when
# moto stops.
POLL_WAIT_SECONDS = 20


class LongPolling:
    """A queue-polling thread's long poll, and what it tells `LocalStack.stop`: whether it only waits in
    one (nothing of its own in flight, so nothing to wait for) or is handling what it received.

    `poll_sqs` makes the long polls (default: the thread's own client). The stack's does not retry: a poll
    cut short by a stopping moto fails at once, and the halted thread ends rather than calling again,
    perhaps on a port a later stack's moto has taken."""

    waiting = False
    _poll_sqs: Any = None

    def _long_poll(self, **params: Any) -> list[dict[str, Any]]:
        """The messages of one ReceiveMessage call; `waiting` while it is made."""
        self.waiting = True
        try:
            messages: list[dict[str, Any]] = self._poll_sqs.receive_message(**params).get("Messages", [])
        finally:
            self.waiting = False
        return messages


@dataclass(frozen=True)
class SqsSource:
    """One SQS event source mapping of the template."""

    queue_url: str
    queue_arn: str
    batch_size: int
    partial_batch: bool
    region: str


def sqs_record(message: dict[str, Any], source: SqsSource) -> dict[str, Any]:
    """An SQS message as Lambda hands it to a function."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": source.queue_arn,
        "awsRegion": source.region,
    }


class SqsPoller(LongPolling, threading.Thread):
    """Polls one queue for one worker (one unit of the mapping's maximum concurrency)."""

    def __init__(
        self,
        sqs: Any,
        source: SqsSource,
        worker: Worker,
        stop: threading.Event,
        wait_seconds: int = POLL_WAIT_SECONDS,
        *,
        poll_sqs: Any = None,
    ) -> None:
        super().__init__(daemon=True, name=f"poll-{worker.spec.logical_id}")
        self._sqs = sqs
        self._poll_sqs = poll_sqs or sqs
        self._source = source
        self._worker = worker
        self._halt = stop
        self._wait = wait_seconds
        self.invocations = 0
        self.errors = 0

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.poll_once()
            except Exception:  # keep polling through moto hiccups, as Lambda's poller does
                self.errors += 1
                self._halt.wait(0.5)

    def poll_once(self) -> int:
        """Receive one batch and invoke the function with it; returns how many messages it held."""
        messages = self._long_poll(
            QueueUrl=self._source.queue_url,
            MaxNumberOfMessages=min(10, self._source.batch_size),
            WaitTimeSeconds=self._wait,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        if not messages:
            return 0
        event = {"Records": [sqs_record(m, self._source) for m in messages]}
        self.invocations += 1
        try:
            result = self._worker.invoke(event)
        except FunctionError:
            self.errors += 1
            return len(messages)  # nothing deleted: the whole batch comes back after the visibility timeout
        failed: set[Any] = set()
        if self._source.partial_batch and isinstance(result, dict):
            failed = {
                f.get("itemIdentifier") if isinstance(f, dict) else None
                for f in result.get("batchItemFailures") or []
            }
            if not failed <= {m["MessageId"] for m in messages}:
                # Lambda fails the whole batch when a reported identifier (empty, missing, or unknown)
                # names no message of it: deleting the rest could lose messages the function never handled.
                self.errors += 1
                return len(messages)
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(done[start : start + 10])
            ]
            self._sqs.delete_message_batch(QueueUrl=self._source.queue_url, Entries=entries)
        return len(messages)


LAMBDA_ASYNC_RETRY_DELAYS = (60, 120)  # seconds Lambda waits before its two retries of an async event
ATTEMPT = "fanout-local-attempt"  # message attribute: which attempt a queued event is


class AsyncInvoker(LongPolling, threading.Thread):
    """Lambda's asynchronous invocation of the splitter, fed by its local event queue.

    A failed event is not retried on the spot: it goes back on the queue with a delay (Lambda's own
    one and two minutes by default), so other events are handled meanwhile, as on AWS; after the
    last retry it goes to the on-failure destination as Lambda's destination record.
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        worker: Worker,
        retries: int,
        on_failure_url: str | None,
        stop: threading.Event,
        retry_delays: tuple[int, ...] = LAMBDA_ASYNC_RETRY_DELAYS,
        wait_seconds: int = POLL_WAIT_SECONDS,
        *,
        poll_sqs: Any = None,
    ) -> None:
        super().__init__(daemon=True, name=f"async-{worker.spec.logical_id}")
        self._sqs = sqs
        self._poll_sqs = poll_sqs or sqs
        self._queue = queue_url
        self._worker = worker
        self._retries = retries
        self._on_failure = on_failure_url
        self._halt = stop
        self._delays = retry_delays
        self._wait = wait_seconds
        self.invocations = 0
        self.failures = 0

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.poll_once()
            except Exception:
                self._halt.wait(0.5)

    def poll_once(self) -> int:
        messages = self._long_poll(
            QueueUrl=self._queue,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self._wait,
            MessageAttributeNames=[ATTEMPT],
        )
        for message in messages:
            attempt = int(message.get("MessageAttributes", {}).get(ATTEMPT, {}).get("StringValue", "1"))
            try:
                event = json.loads(message["Body"])
            except json.JSONDecodeError:
                event = {"unreadable": message["Body"][:1000]}  # Lambda would fail it; so do we, below
            if event.get("Event") != "s3:TestEvent":
                self._invoke(event, message["Body"], attempt)
            self._sqs.delete_message(QueueUrl=self._queue, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def _invoke(self, event: dict[str, Any], body: str, attempt: int) -> None:
        self.invocations += 1
        try:
            self._worker.invoke(event)
            return
        except FunctionError as exc:
            error = str(exc)
        if attempt <= self._retries:
            delay = self._delays[min(attempt - 1, len(self._delays) - 1)] if self._delays else 0
            self._sqs.send_message(
                QueueUrl=self._queue,
                MessageBody=body,
                DelaySeconds=min(900, delay),
                MessageAttributes={ATTEMPT: {"DataType": "Number", "StringValue": str(attempt + 1)}},
            )
            return
        self.failures += 1
        if self._on_failure:
            self._sqs.send_message(
                QueueUrl=self._on_failure, MessageBody=json.dumps(self._record(event, attempt, error))
            )

    def _record(self, event: dict[str, Any], attempts: int, error: str) -> dict[str, Any]:
        """Lambda's on-failure destination record."""
        return {
            "version": "1.0",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self._worker.spec.function_arn,
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": {"errorMessage": error[:1000]},
        }
