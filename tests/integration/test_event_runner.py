"""The event runner delivers events to local Lambda workers with Lambda's own semantics.

A tiny recorder function (tests/fixtures/functions/recorder) runs in a real `Worker` process and is fed
by `SqsPoller` / `AsyncInvoker` from queues on an in-process moto server. The tests drive `poll_once()`
themselves, so every delivery is one the test asked for.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from fanout_local.lambda_worker import FunctionError, FunctionSpec, Worker
from fanout_local.runner import AsyncInvoker, SqsPoller, SqsSource

pytestmark = pytest.mark.integration

RECORDER = Path(__file__).resolve().parents[1] / "fixtures" / "functions" / "recorder"
REGION = "eu-west-1"
VISIBILITY = 2  # seconds; short so redeliveries come quickly


@dataclass(frozen=True)
class Queue:
    url: str
    arn: str


@dataclass
class Recorder:
    """A worker running the recorder function and the file it records its invocations to."""

    worker: Worker
    file: Path

    def invocations(self) -> list[dict[str, Any]]:
        if not self.file.exists():
            return []
        return [json.loads(line) for line in self.file.read_text().splitlines()]

    def deliveries(self) -> list[tuple[str, dict[str, Any]]]:
        """Every SQS record the function was handed, in order: (messageId, body)."""
        return [
            (record["messageId"], json.loads(record["body"]))
            for call in self.invocations()
            for record in call["event"].get("Records", [])
        ]


@pytest.fixture(scope="module")
def sqs() -> Iterator[Any]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield boto3.client(
        "sqs",
        endpoint_url=f"http://{host}:{port}",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    server.stop()


@pytest.fixture
def make_queue(sqs: Any) -> Callable[..., Queue]:
    """A fresh queue per call, so no test sees another's messages."""

    def make(visibility: int = VISIBILITY, dlq: Queue | None = None, max_receive: int = 2) -> Queue:
        attributes = {"VisibilityTimeout": str(visibility)}
        if dlq is not None:
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": max_receive}
            )
        url = sqs.create_queue(QueueName=f"runner-{uuid.uuid4().hex[:12]}", Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return Queue(url, arn)

    return make


@pytest.fixture
def make_recorder(tmp_path: Path) -> Iterator[Callable[..., Recorder]]:
    """A recorder worker with the given timeout; killed at the end of the test."""
    made: list[Worker] = []

    def make(timeout: int = 5) -> Recorder:
        file = tmp_path / f"invocations-{len(made)}.jsonl"
        spec = FunctionSpec(
            logical_id=f"Recorder{len(made)}",
            name="test-recorder",
            code_dir=RECORDER,
            handler="app.handler",
            timeout=timeout,
            memory=128,
            environment={"RECORDER_FILE": str(file)},
        )
        worker = Worker(spec, tmp_path)
        made.append(worker)
        return Recorder(worker, file)

    yield make
    for worker in made:
        worker.kill()


def poller(
    sqs: Any, queue: Queue, recorder: Recorder, batch_size: int = 10, partial: bool = True
) -> SqsPoller:
    source = SqsSource(queue.url, queue.arn, batch_size, partial_batch=partial, region=REGION)
    # a short poll: each poll_once() the test makes answers at once with what is visible then
    return SqsPoller(sqs, source, recorder.worker, threading.Event(), wait_seconds=0)


def send(sqs: Any, queue: Queue, *bodies: dict[str, Any]) -> list[str]:
    """Send each body as one message; their message ids, in order."""
    return [sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps(b))["MessageId"] for b in bodies]


def counts(sqs: Any, queue: Queue) -> tuple[int, int]:
    """(visible, in flight): a message deleted is in neither."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue.url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def poll_until(poll: SqsPoller, done: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.time() + timeout
    while not done():
        assert time.time() < deadline, "the runner did not get there in time"
        poll.poll_once()


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# -- SQS event source ------------------------------------------------------------------------------------


def test_batches_never_exceed_the_declared_batch_size(sqs: Any, make_queue: Any, make_recorder: Any) -> None:
    queue, recorder = make_queue(), make_recorder()
    ids = send(sqs, queue, *({"n": n} for n in range(8)))
    poll = poller(sqs, queue, recorder, batch_size=3)

    poll_until(poll, lambda: len(recorder.deliveries()) >= 8)

    sizes = [len(call["event"]["Records"]) for call in recorder.invocations()]
    assert max(sizes) == 3, sizes
    assert sorted(message_id for message_id, _ in recorder.deliveries()) == sorted(ids)
    assert counts(sqs, queue) == (0, 0)


def test_successes_are_deleted_and_reported_failures_return_only_after_the_visibility_timeout(
    sqs: Any, make_queue: Any, make_recorder: Any
) -> None:
    queue, recorder = make_queue(), make_recorder()
    ids = send(sqs, queue, {"n": 0}, {"fail": True}, {"n": 2}, {"fail": True}, {"n": 4})
    failed = {ids[1], ids[3]}
    poll = poller(sqs, queue, recorder)

    received_at = time.time()
    assert poll.poll_once() == 5
    assert counts(sqs, queue) == (0, 2)  # the three successes are gone, the two failures in flight
    assert poll.poll_once() == 0  # still invisible

    poll_until(poll, lambda: len(recorder.deliveries()) >= 5 + 2)

    later = recorder.invocations()[1:]
    redelivered = [record for call in later for record in call["event"]["Records"]]
    assert sorted(r["messageId"] for r in redelivered) == sorted(failed)
    assert [r["attributes"]["ApproximateReceiveCount"] for r in redelivered] == ["2", "2"]
    assert min(call["at"] for call in later) - received_at >= VISIBILITY


def test_without_report_batch_item_failures_a_returned_failure_list_is_ignored(
    sqs: Any, make_queue: Any, make_recorder: Any
) -> None:
    queue, recorder = make_queue(), make_recorder()
    send(sqs, queue, {"fail": True}, {"n": 1})

    assert poller(sqs, queue, recorder, partial=False).poll_once() == 2

    assert counts(sqs, queue) == (0, 0)


def test_a_failure_naming_no_message_of_the_batch_fails_the_whole_batch(
    sqs: Any, make_queue: Any, make_recorder: Any
) -> None:
    queue, recorder = make_queue(), make_recorder()
    send(sqs, queue, {"n": 0}, {"bogus": True})
    poll = poller(sqs, queue, recorder)

    assert poll.poll_once() == 2

    assert counts(sqs, queue) == (0, 2)
    assert poll.errors == 1


def test_a_function_error_deletes_nothing_and_the_whole_batch_comes_back(
    sqs: Any, make_queue: Any, make_recorder: Any
) -> None:
    queue, recorder = make_queue(), make_recorder()
    ids = send(sqs, queue, {"n": 0}, {"raise": True}, {"n": 2})
    poll = poller(sqs, queue, recorder)

    assert poll.poll_once() == 3
    assert poll.errors == 1
    assert counts(sqs, queue) == (0, 3)

    poll_until(poll, lambda: len(recorder.deliveries()) >= 3 + 3)
    assert sorted(message_id for message_id, _ in recorder.deliveries()[3:]) == sorted(ids)


def test_a_message_received_max_receive_count_times_lands_in_the_dead_letter_queue(
    sqs: Any, make_queue: Any, make_recorder: Any
) -> None:
    dlq = make_queue()
    queue, recorder = make_queue(visibility=1, dlq=dlq, max_receive=2), make_recorder()
    (message_id,) = send(sqs, queue, {"raise": True, "poison": 1})
    poll = poller(sqs, queue, recorder)

    dead: list[dict[str, Any]] = []

    def in_dlq() -> bool:
        dead.extend(sqs.receive_message(QueueUrl=dlq.url, MaxNumberOfMessages=10).get("Messages", []))
        return bool(dead)

    poll_until(poll, in_dlq)

    assert [(m["MessageId"], json.loads(m["Body"])) for m in dead] == [
        (message_id, {"raise": True, "poison": 1})
    ]
    assert [mid for mid, _ in recorder.deliveries()] == [message_id, message_id]  # maxReceiveCount times
    assert counts(sqs, queue) == (0, 0)


def test_a_function_past_its_timeout_is_stopped_and_its_batch_comes_back(
    sqs: Any, make_queue: Any, make_recorder: Any
) -> None:
    queue, recorder = make_queue(), make_recorder(timeout=1)
    recorder.worker.invoke({"Records": []})  # warm, so the timing below is the invocation's alone
    (message_id,) = send(sqs, queue, {"sleep": 2.5})  # would finish, were it allowed to overrun
    poll = poller(sqs, queue, recorder)

    started = time.time()
    assert poll.poll_once() == 1
    elapsed = time.time() - started

    assert poll.errors == 1
    assert elapsed < 2.5, f"the function ran {elapsed:.1f} s with a 1 s timeout"
    assert not recorder.worker.alive
    assert process_gone(recorder.invocations()[-1]["pid"])
    assert counts(sqs, queue) == (0, 1)
    back = sqs.receive_message(QueueUrl=queue.url, WaitTimeSeconds=VISIBILITY + 2, AttributeNames=["All"])
    assert [m["MessageId"] for m in back["Messages"]] == [message_id]


def test_a_killed_worker_cold_starts_again_on_the_next_invocation(
    sqs: Any, make_queue: Any, make_recorder: Any
) -> None:
    queue, recorder = make_queue(), make_recorder()
    recorder.worker.invoke({"Records": []})
    recorder.worker.invoke({"Records": []})
    first, warm = recorder.invocations()
    assert (first["cold"], warm["cold"], warm["pid"]) == (True, False, first["pid"])

    os.kill(first["pid"], signal.SIGKILL)
    deadline = time.time() + 5
    while recorder.worker.alive:
        assert time.time() < deadline
        time.sleep(0.05)

    send(sqs, queue, {"n": 1})
    assert poller(sqs, queue, recorder).poll_once() == 1

    after = recorder.invocations()[-1]
    assert after["cold"] is True
    assert after["pid"] != first["pid"]
    assert counts(sqs, queue) == (0, 0)  # the new container handled the message


def test_a_crash_mid_batch_loses_no_message(sqs: Any, make_queue: Any, make_recorder: Any) -> None:
    queue, recorder = make_queue(), make_recorder()
    send(sqs, queue, {"n": 0}, {"crash": True})
    poll = poller(sqs, queue, recorder)

    assert poll.poll_once() == 2

    assert poll.errors == 1
    assert not recorder.worker.alive
    assert counts(sqs, queue) == (0, 2)


# -- asynchronous invocation (the splitter) -----------------------------------------------------------------


def async_invoker(sqs: Any, events: Queue, recorder: Recorder, on_failure: Queue, retries: int = 2) -> Any:
    return AsyncInvoker(
        sqs,
        events.url,
        recorder.worker,
        retries,
        on_failure.url,
        threading.Event(),
        retry_delays=(0, 0),
        wait_seconds=0,
    )


def test_async_invocation_retries_then_sends_a_destination_record_to_the_on_failure_queue(
    sqs: Any, make_queue: Any, make_recorder: Any
) -> None:
    events, on_failure = make_queue(visibility=30), make_queue()
    recorder = make_recorder()
    event = {"raise": True, "detail": {"object": {"key": f"inbox/workshop/j/{uuid.uuid4().hex}.csv"}}}
    sqs.send_message(QueueUrl=events.url, MessageBody=json.dumps(event))
    invoker = async_invoker(sqs, events, recorder, on_failure, retries=2)

    # each failure puts the event back on the queue (after Lambda's delay; none here) for the next try
    assert [invoker.poll_once() for _ in range(3)] == [1, 1, 1]

    assert [call["event"] for call in recorder.invocations()] == [event] * 3  # 1 + MaximumRetryAttempts
    (message,) = sqs.receive_message(QueueUrl=on_failure.url, MaxNumberOfMessages=10)["Messages"]
    record = json.loads(message["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestPayload"] == event
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert "asked this function to raise" in record["responsePayload"]["errorMessage"]
    assert counts(sqs, events) == (0, 0)


def test_async_invocation_that_succeeds_runs_once_and_s3_test_events_are_skipped(
    sqs: Any, make_queue: Any, make_recorder: Any
) -> None:
    events, on_failure = make_queue(visibility=30), make_queue()
    recorder = make_recorder()
    event = {"detail": {"object": {"key": "inbox/workshop/j/ok.csv"}}}
    sqs.send_message(QueueUrl=events.url, MessageBody=json.dumps({"Event": "s3:TestEvent"}))
    sqs.send_message(QueueUrl=events.url, MessageBody=json.dumps(event))
    invoker = async_invoker(sqs, events, recorder, on_failure)

    deadline = time.time() + 10
    while counts(sqs, events) != (0, 0):
        assert time.time() < deadline
        invoker.poll_once()

    assert [call["event"] for call in recorder.invocations()] == [event]
    assert "Messages" not in sqs.receive_message(QueueUrl=on_failure.url)


def test_a_function_that_outgrows_its_memory_is_killed_as_lambda_kills_it(make_recorder: Any) -> None:
    recorder = make_recorder(timeout=10)  # MemorySize 128

    with pytest.raises(FunctionError, match="out of memory"):
        recorder.worker.invoke({"hold_mb": 300})

    assert recorder.worker.out_of_memory == 1
    assert recorder.worker.peak_mb > 128
    recorder.worker.invoke({"hold_mb": 10})  # a fresh container takes the next invocation
    assert recorder.worker.out_of_memory == 1


def test_an_idle_poller_long_polls_instead_of_asking_five_times_a_second(
    sqs: Any, make_queue: Any, make_recorder: Any
) -> None:
    """Every receive is a request the serialised moto server handles (and the runner's CPU pays for): an
    empty queue is asked about once per long poll, as Lambda's pollers do, not five times a second; a
    message sent meanwhile is delivered as soon as it arrives."""
    queue, recorder = make_queue(), make_recorder()
    source = SqsSource(queue.url, queue.arn, 10, partial_batch=True, region=REGION)
    receives: list[float] = []
    real = sqs.receive_message

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(sqs, name)

        def receive_message(self, **request: Any) -> Any:
            receives.append(time.monotonic())
            return real(**request)

    stop = threading.Event()
    thread = SqsPoller(Counting(), source, recorder.worker, stop, wait_seconds=1)
    thread.start()
    try:
        time.sleep(2.5)
        assert len(receives) <= 4  # about one a second; short polls with a 0.2 s rest made 12
        send(sqs, queue, {"n": 1})
        poll_until_seen = time.time() + 5
        while not recorder.deliveries():
            assert time.time() < poll_until_seen
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_a_halted_poller_cut_off_in_a_long_poll_ends_without_polling_again(
    make_queue: Any, make_recorder: Any
) -> None:
    """A stopping stack does not wait out 20 s long polls: a poller says it is only waiting (nothing in
    flight); when moto stops under it, its poll fails and the halted poller ends without another call,
    which could otherwise reach a later stack's moto on the same port."""
    queue, recorder = make_queue(), make_recorder()
    source = SqsSource(queue.url, queue.arn, 10, partial_batch=True, region=REGION)
    in_poll, cut = threading.Event(), threading.Event()
    waits: list[int] = []

    class CutOff:
        def receive_message(self, **request: Any) -> Any:
            waits.append(request["WaitTimeSeconds"])
            in_poll.set()
            cut.wait(10)
            raise ConnectionResetError("moto stopped")

    stop = threading.Event()
    thread = SqsPoller(object(), source, recorder.worker, stop, poll_sqs=CutOff())
    thread.start()
    try:
        assert in_poll.wait(5)
        assert thread.waiting
        stop.set()
        cut.set()
        thread.join(timeout=2)
        assert not thread.is_alive()
    finally:
        stop.set()
        cut.set()
    assert waits == [20]  # one long poll of SQS's longest wait, and no call after it failed
    assert not thread.waiting
