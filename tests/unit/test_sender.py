"""fanout.sender: a Symplify batch is followed to its end (never triggered twice), and a provider's long
Retry-After (Mateo's daily quota) is waited out with follow-up messages that use up no delivery.

The AWS side is moto (resources from template.yaml), the provider an httpx.MockTransport script.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any
from unittest.mock import patch

import httpx
import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from fanout import results, settling
from fanout.config import SenderConfig, load
from fanout.destinations import Destination
from fanout.models import ChunkMessage, ChunkState, Counts, JobStatus, StagedRow
from fanout.observability import metrics
from fanout.pacing import Pacer
from fanout.providers.base import ProviderSecret
from fanout.sender import SQS_MAX_DELAY, SQS_MAX_VISIBILITY, RetryLater, Sender, SenderDeps, dead_letter
from fanout.settling import (
    SETTLE_ROUNDS,
    SettleBusy,
    SettleGaveUp,
    SettleRequest,
    settle_failed,
    settle_requested,
)
from fanout.staging import staged_rows
from fanout.store import Chunk, Claim, DynamoJobStore, Job
from fanout_local.deployed import DeployedStack
from tests.unit.conftest import boto, settle_here

pytestmark = pytest.mark.unit

SECRET = ProviderSecret(base_url="https://provider.test/rest", token="t0ken", customer_id="demo")
JOURNEY = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
FUNCTION = {
    Destination.SYMPLIFY: "SymplifySenderFunction",
    Destination.MATEO: "MateoSenderFunction",
    Destination.MATEO_MESSAGE: "MateoMessageSenderFunction",
    Destination.ALTCRAFT: "AltcraftSenderFunction",
    Destination.WORKSHOP: "WorkshopSenderFunction",
}
DAILY_LIMIT = {
    "code": "rate_limited",
    "message": "daily limit of 10000 requests reached; it resets at 00:00 UTC",
    "hint": "retry after the number of seconds in the Retry-After header",
    "status": 429,
}


class Provider:
    """The provider: answers each request with the next scripted answer for its method."""

    def __init__(self, **answers: list[httpx.Response]) -> None:
        self.answers = {method.upper(): list(queue) for method, queue in answers.items()}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers[request.method].pop(0)

    def count(self, method: str) -> int:
        return sum(r.method == method for r in self.requests)


@pytest.fixture(autouse=True)
def _no_metrics_left() -> Iterator[None]:
    yield
    metrics.clear_metrics()


@pytest.fixture
def config(stack: DeployedStack) -> Callable[..., SenderConfig]:
    """The destination's sender configuration from template.yaml, on a queue of the test's own."""

    def make(destination: Destination, **overrides: Any) -> SenderConfig:
        queue = boto("sqs").create_queue(QueueName=f"unit-sender-{uuid.uuid4().hex[:12]}")["QueueUrl"]
        cfg = load(SenderConfig, stack.environment(FUNCTION[destination]))
        return cfg.model_copy(update={"queue_url": queue, **overrides})

    return make


class Run:
    """One job of one chunk, staged and recorded as the splitter leaves it, and a sender for it."""

    def __init__(
        self,
        cfg: SenderConfig,
        provider: Provider,
        rows: int = 3,
        secret: ProviderSecret = SECRET,
        shared_after: int = 0,
    ) -> None:
        """`shared_after`: the chunk's staged object holds that many rows of another chunk before it, as the
        splitter packs chunks (the chunk is then a byte range of it)."""
        self.cfg = cfg
        self.provider = provider
        self.store = DynamoJobStore(cfg.table_name, cfg.retention_days)
        self.job_id = f"j-{uuid.uuid4().hex[:16]}"
        destination = cfg.destination
        target = {
            Destination.SYMPLIFY: "1001",
            Destination.ALTCRAFT: "12",
            Destination.WORKSHOP: "jrn_welcome",
        }.get(destination, JOURNEY)
        key = f"jobs/{self.job_id}/chunks/c00001.jsonl"
        items: dict[Destination, Callable[[int], Any]] = {
            Destination.SYMPLIFY: lambda n: {"id": f"p{n}", "properties": {}},
            Destination.MATEO: lambda n: {"deduplication_id": f"d{n}", "contact": {}, "context": {}},
            Destination.MATEO_MESSAGE: lambda n: {"id": f"m{n}", "to": [{"handle": f"p{n}@example.com"}]},
            Destination.ALTCRAFT: lambda n: {"data": {"email": f"p{n}@example.com"}},
            Destination.WORKSHOP: lambda n: f"p{n}@example.com",
        }
        staged = [StagedRow(n, f"p{n}@example.com", items[destination](n)) for n in range(1, rows + 1)]
        others = [
            StagedRow(n, f"o{n}@example.com", items[destination](n)) for n in range(1001, 1001 + shared_after)
        ]
        before = "".join(f"{row.to_json()}\n" for row in others).encode()
        mine = "".join(f"{row.to_json()}\n" for row in staged).encode()
        byte_range = f"bytes={len(before)}-{len(before) + len(mine) - 1}" if others else None
        if others:
            key = f"jobs/{self.job_id}/chunks/c00000..c00001.jsonl"
        boto("s3").put_object(Bucket=cfg.bucket_name, Key=key, Body=before + mine)
        envelope = (
            {"downloadUrl": "https://bucket.test/f.ndjson"} if destination is Destination.SYMPLIFY else {}
        )
        self.message = ChunkMessage(
            self.job_id, "c00001", destination, target, key, rows, envelope, byte_range=byte_range
        )
        job = Job(self.job_id, JobStatus.SPLITTING, cfg.bucket_name, "inbox/x.csv", destination.value, target)
        assert self.store.create_job(job, 300)
        chunk = Chunk(self.job_id, "c00001", key, rows, message=self.message.to_json(), byte_range=byte_range)
        self.store.put_chunk(chunk)
        job.status, job.counts, job.chunks_total = JobStatus.SENDING, Counts(read=rows), 1
        self.store.finish_split(job)
        self.http = httpx.Client(transport=httpx.MockTransport(provider))
        self.settle = settle_here(self.store, cfg.bucket_name, cfg.event_bus_name)
        pacer = Pacer(cfg.table_name, destination.value, 0)
        deps = SenderDeps(self.store, lambda: secret, pacer, self.settle, self.http)
        self.sender = Sender(cfg, deps)

    def chunk(self) -> Chunk:
        found = self.store.get_chunk(self.job_id, "c00001")
        assert found is not None
        return found

    def follow_up(self) -> ChunkMessage:
        """The message the sender queued to come back (what SQS would deliver)."""
        return replace(self.message, turn=self.chunk().turn)

    def rows(self) -> list[dict[str, str]]:
        body = boto("s3").get_object(Bucket=self.cfg.bucket_name, Key=f"results/{self.job_id}/rows.csv")
        return list(csv.DictReader(io.StringIO(body["Body"].read().decode("utf-8"))))


def started(batch: str = "b-1") -> httpx.Response:
    return httpx.Response(200, json={"batchId": batch, "status": "STARTED"})


def status(state: str, batch: str = "b-1") -> httpx.Response:
    return httpx.Response(200, json={"batchId": batch, "status": state, "rows": 3})


def queued(cfg: SenderConfig) -> dict[str, str]:
    return boto("sqs").get_queue_attributes(
        QueueUrl=cfg.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"],
    )["Attributes"]


# --- Symplify: a started batch is followed until FINISHED or ERROR --------------------------------------


def test_a_started_batch_is_polled_until_finished_and_only_then_sent(
    config: Callable[..., SenderConfig],
) -> None:
    cfg = config(Destination.SYMPLIFY, batch_poll_seconds=1)
    provider = Provider(post=[started()], get=[status("STARTED"), status("STARTED"), status("FINISHED")])
    run = Run(cfg, provider)

    run.sender.handle(run.message)  # the trigger: accepted, the batch is recorded, a poll is queued
    chunk = run.chunk()
    assert (chunk.state, chunk.batch_id, chunk.sent) == (ChunkState.PENDING, "b-1", 0)
    assert chunk.turn and time.time() - chunk.batch_started < 30
    assert queued(cfg)["ApproximateNumberOfMessagesDelayed"] == "1"  # the poll, 1 s from now
    answer = boto("sqs").receive_message(QueueUrl=cfg.queue_url, WaitTimeSeconds=3)["Messages"][0]
    first_poll = ChunkMessage.from_json(answer["Body"])
    assert (first_poll.chunk_id, first_poll.turn, first_poll.not_before) == ("c00001", chunk.turn, None)

    run.sender.handle(first_poll)  # STARTED: polled again later
    run.sender.handle(first_poll)  # a redelivered copy of an older message: stale, no request
    assert provider.count("GET") == 1
    run.sender.handle(run.follow_up())  # STARTED
    run.sender.handle(run.follow_up())  # FINISHED

    assert (provider.count("POST"), provider.count("GET")) == (1, 3)
    job = run.store.get_job(run.job_id)
    assert job is not None and job.status is JobStatus.COMPLETED
    assert {(r["state"], r["answer"]) for r in run.rows()} == {("sent", "in Symplify batch b-1")}
    assert run.chunk().state is ChunkState.SENT
    get = provider.requests[-1]
    assert (get.url.path, get.headers["X-Carma-Authentication-Token"]) == ("/rest/demo/batches/b-1", "t0ken")


def test_a_batch_that_ends_in_error_fails_its_rows_with_the_reason_and_is_not_triggered_again(
    config: Callable[..., SenderConfig],
) -> None:
    cfg = config(Destination.SYMPLIFY)
    error = httpx.Response(200, json={"batchId": "b-9", "status": "ERROR", "message": "Journey is paused"})
    provider = Provider(post=[started("b-9")], get=[error])
    run = Run(cfg, provider)

    run.sender.handle(run.message)
    run.sender.handle(run.message)  # the trigger's message again: stale now, nothing is sent
    run.sender.handle(run.follow_up())

    assert (provider.count("POST"), provider.count("GET")) == (1, 1)
    job = run.store.get_job(run.job_id)
    assert job is not None and (job.status, job.counts.failed, job.counts.sent) == (JobStatus.FAILED, 3, 0)
    answers = {(r["state"], r["answer"]) for r in run.rows()}
    assert len(answers) == 1
    state, answer = answers.pop()
    assert state == "failed"
    assert answer.startswith("Symplify batch b-9 ended in ERROR: Journey is paused; not started again")
    assert "`fanout redrive`" in answer
    assert run.chunk().state is ChunkState.FAILED  # what `fanout redrive` picks up
    assert run.store.reopen_chunk(run.chunk())  # a redrive: the stored first message triggers anew
    assert run.store.claim_chunk(run.job_id, "c00001", 300) is Claim.CLAIMED
    assert (run.chunk().batch_id, run.chunk().turn) == ("", "")


def test_a_batch_still_running_at_the_wait_limit_ends_uncertain_saying_what_to_check(
    config: Callable[..., SenderConfig],
) -> None:
    cfg = config(Destination.SYMPLIFY, max_batch_wait_seconds=1)
    provider = Provider(post=[started()], get=[status("STARTED")])
    run = Run(cfg, provider)

    run.sender.handle(run.message)
    time.sleep(1.1)
    run.sender.handle(run.follow_up())

    job = run.store.get_job(run.job_id)
    assert job is not None and (job.status, job.counts.uncertain) == (JobStatus.COMPLETED_WITH_ERRORS, 3)
    (answer,) = {r["answer"] for r in run.rows()}
    assert answer.startswith("uncertain: symplify batch b-1 had not finished 1 s after it started")
    assert "--include-uncertain" in answer
    assert provider.count("POST") == 1


def test_a_sender_that_died_after_the_trigger_polls_the_recorded_batch_instead_of_guessing(
    config: Callable[..., SenderConfig],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = config(Destination.SYMPLIFY)
    provider = Provider(post=[started()], get=[status("FINISHED")])
    run = Run(cfg, provider)

    def die(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed")

    monkeypatch.setattr(Sender, "_requeue", die)
    with pytest.raises(RuntimeError):
        run.sender.handle(run.message)  # the batch was recorded, then the instance died
    monkeypatch.undo()
    boto("dynamodb").update_item(  # its lease runs out
        TableName=cfg.table_name,
        Key={"pk": {"S": f"JOB#{run.job_id}"}, "sk": {"S": "CHUNK#c00001"}},
        UpdateExpression="SET lease_until = :zero",
        ExpressionAttributeValues={":zero": {"N": "0"}},
    )
    run.sender.handle(run.message)  # redelivered: claimed after a crash, and the batch is known

    assert (provider.count("POST"), provider.count("GET")) == (1, 1)
    assert {r["state"] for r in run.rows()} == {"sent"}


def test_a_dead_lettered_message_with_a_started_batch_leaves_its_rows_uncertain(
    config: Callable[..., SenderConfig],
) -> None:
    cfg = config(Destination.SYMPLIFY)
    run = Run(cfg, Provider(post=[started()]))
    run.sender.handle(run.message)

    dead_letter(run.store, cfg.bucket_name, run.settle, run.message.to_json(), 6)  # stale: ignored
    assert run.chunk().state is ChunkState.PENDING
    dead_letter(run.store, cfg.bucket_name, run.settle, run.follow_up().to_json(), 6)

    assert run.chunk().state is ChunkState.UNCERTAIN
    (answer,) = {r["answer"] for r in run.rows()}
    assert answer.startswith("uncertain: symplify batch b-1 was started but its status could not be read")


# --- a long Retry-After (Mateo's daily quota) ---------------------------------------------------------


def test_a_daily_quota_is_waited_out_with_a_follow_up_message_not_a_spent_delivery(
    config: Callable[..., SenderConfig],
) -> None:
    cfg = config(Destination.MATEO)
    quota = httpx.Response(429, headers={"Retry-After": "30000"}, json=DAILY_LIMIT)
    provider = Provider(post=[quota, httpx.Response(200, json={"success": True, "queued_count": 3})])
    run = Run(cfg, provider)

    run.sender.handle(run.message, receive_count=4)  # returns: this message is done with, not retried

    assert provider.count("POST") == 1  # no retry inside the invocation
    chunk = run.chunk()
    assert chunk.state is ChunkState.PENDING and chunk.turn
    assert "daily limit of 10000 requests reached" in chunk.last_error
    job = run.store.get_job(run.job_id)
    assert job is not None and job.message.startswith("waiting for mateo's quota until ")
    assert "daily limit" in job.message
    assert queued(cfg)["ApproximateNumberOfMessagesDelayed"] == "1"  # SQS's longest delay, 15 minutes
    follow_up = replace(run.follow_up(), not_before=time.time() + 30000 - SQS_MAX_DELAY)
    with pytest.raises(RetryLater) as early:  # delivered after 15 minutes: rests out the remainder
        run.sender.handle(follow_up)
    assert 29000 - SQS_MAX_DELAY < early.value.delay <= 30000 - SQS_MAX_DELAY
    assert provider.count("POST") == 1

    run.sender.handle(replace(follow_up, not_before=time.time() - 1))  # the quota has reset

    job = run.store.get_job(run.job_id)
    assert job is not None and (job.status, job.counts.sent, job.message) == (JobStatus.COMPLETED, 3, "")


def test_a_wait_longer_than_twelve_hours_is_cut_to_sqs_longest_visibility(
    config: Callable[..., SenderConfig],
) -> None:
    cfg = config(Destination.MATEO)
    quota = httpx.Response(429, headers={"Retry-After": "80000"}, json=DAILY_LIMIT)
    run = Run(cfg, Provider(post=[quota]))

    run.sender.handle(run.message)

    until = re.search(r"until (\S+Z) ", run.chunk().last_error)
    assert until is not None
    resumes = datetime.fromisoformat(until.group(1).replace("Z", "+00:00")).timestamp()
    assert abs(resumes - (time.time() + SQS_MAX_VISIBILITY)) < 60  # 12 hours, then it asks again


def test_a_retry_after_within_the_backoff_cap_still_rests_the_same_message(
    config: Callable[..., SenderConfig],
) -> None:
    cfg = config(Destination.MATEO)
    throttled = httpx.Response(429, headers={"Retry-After": "60"}, json={"message": "slow down"})
    run = Run(cfg, Provider(post=[throttled]))

    with pytest.raises(RetryLater) as later:
        run.sender.handle(run.message)

    assert later.value.delay == 60
    assert run.chunk().turn == "" and queued(cfg)["ApproximateNumberOfMessagesDelayed"] == "0"


def test_a_claim_names_the_live_message(config: Callable[..., SenderConfig]) -> None:
    cfg = config(Destination.MATEO)
    run = Run(cfg, Provider())
    store = run.store
    assert store.claim_chunk(run.job_id, "c00001", 300, "t-1") is Claim.STALE  # no follow-up exists
    assert store.claim_chunk(run.job_id, "c00001", 300) is Claim.CLAIMED
    store.release_chunk(run.job_id, "c00001", "waiting", turn="t-1")
    assert store.claim_chunk(run.job_id, "c00001", 300) is Claim.STALE
    assert store.claim_chunk(run.job_id, "c00001", 300, "t-2") is Claim.STALE
    assert store.claim_chunk(run.job_id, "c00001", 300, "t-1") is Claim.CLAIMED
    assert store.claim_chunk(run.job_id, "c00001", 300, "t-1") is Claim.BUSY


# --- answers that do not prove nothing happened, at providers that do not de-duplicate --------------


MESSAGE_SENT = {"message": {"id": "m", "status": "sent"}, "conversation": {}, "recipients": [], "actions": []}


@pytest.mark.parametrize("lost", [httpx.Response(502), httpx.Response(500), httpx.Response(409)], ids=str)
def test_a_mateo_message_whose_answer_is_ambiguous_is_uncertain_and_never_sent_again(
    config: Callable[..., SenderConfig], lost: httpx.Response
) -> None:
    cfg = config(Destination.MATEO_MESSAGE)
    ok = httpx.Response(200, json=MESSAGE_SENT)
    provider = Provider(post=[ok, lost, ok, ok, ok])
    run = Run(cfg, provider)

    run.sender.handle(run.message)

    assert provider.count("POST") == 3  # one call a row; the ambiguous one is not repeated
    assert [(r["row"], r["state"]) for r in run.rows()] == [("1", "sent"), ("2", "uncertain"), ("3", "sent")]
    job = run.store.get_job(run.job_id)
    assert job is not None and job.status is JobStatus.COMPLETED_WITH_ERRORS


@pytest.mark.parametrize("destination", [Destination.ALTCRAFT, Destination.SYMPLIFY])
@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_at_a_provider_that_does_not_deduplicate_leaves_the_chunk_uncertain_after_one_call(
    config: Callable[..., SenderConfig], destination: Destination, status: int
) -> None:
    # A provider that records the batch and then answers 500 must not get it again (nor 15 times).
    cfg = config(destination)
    provider = Provider(post=[httpx.Response(status)] * 5)
    run = Run(cfg, provider)

    run.sender.handle(run.message)

    assert provider.count("POST") == 1
    assert run.chunk().state is ChunkState.UNCERTAIN
    assert {r["state"] for r in run.rows()} == {"uncertain"}


def test_a_chunk_packed_with_others_and_refused_as_too_large_is_split_into_objects_of_its_own(
    config: Callable[..., SenderConfig],
) -> None:
    cfg = config(Destination.ALTCRAFT)
    run = Run(cfg, Provider(post=[httpx.Response(413)]), rows=4, shared_after=3)
    shared = boto("s3").get_object(Bucket=cfg.bucket_name, Key=run.message.key)["Body"].read()

    run.sender.handle(run.message)

    # the halves hold this chunk's rows only, each in an object of its own; the packed object is untouched
    halves = [run.store.get_chunk(run.job_id, f"c00001-{n}") for n in (1, 2)]
    assert all(half is not None and half.key != run.message.key for half in halves)
    assert [
        [row.row for row in staged_rows(cfg.bucket_name, half.key, half.byte_range)]
        for half in halves
        if half is not None
    ] == [[1, 2], [3, 4]]
    assert boto("s3").get_object(Bucket=cfg.bucket_name, Key=run.message.key)["Body"].read() == shared


def test_a_workshop_answer_it_cannot_read_is_resent_and_then_read_not_failed_unknown(
    config: Callable[..., SenderConfig],
) -> None:
    # Workshop de-duplicates (already_enrolled), so an answer of the wrong shape is simply sent again.
    cfg = config(Destination.WORKSHOP)
    fine = {"enrolled_count": 2, "not_enrolled": {"already_enrolled": ["p3@example.com"]}}
    provider = Provider(post=[httpx.Response(200, json=[]), httpx.Response(200, json=fine)])
    run = Run(cfg, provider)

    run.sender.handle(run.message)

    assert provider.count("POST") == 2
    assert [r["state"] for r in run.rows()] == ["sent", "sent", "sent"]


def test_a_symplify_trigger_answered_with_html_is_uncertain_not_sent(
    config: Callable[..., SenderConfig],
) -> None:
    cfg = config(Destination.SYMPLIFY)
    provider = Provider(post=[httpx.Response(200, text="<html>Welcome</html>")] * 3)
    run = Run(cfg, provider)

    run.sender.handle(run.message)

    assert provider.count("POST") == 1
    assert {r["state"] for r in run.rows()} == {"uncertain"}


def test_a_symplify_secret_without_customer_id_fails_the_job_at_once_naming_the_secret(
    config: Callable[..., SenderConfig],
) -> None:
    cfg = config(Destination.SYMPLIFY)
    provider = Provider(post=[started()])
    run = Run(cfg, provider, secret=ProviderSecret(base_url="https://provider.test/rest", token="t0ken"))

    run.sender.handle(run.message)

    assert provider.requests == []  # never `/rest//batchtrigger/v2`
    job = run.store.get_job(run.job_id)
    assert job is not None and job.status is JobStatus.FAILED
    (answer,) = {r["answer"] for r in run.rows()}
    assert f"the symplify secret {cfg.secret_name} has no customer_id" in answer


def test_after_a_crash_a_message_chunk_keeps_the_answers_saved_and_leaves_only_the_rest_uncertain(
    config: Callable[..., SenderConfig],
) -> None:
    from fanout.models import RowResult, RowState
    from fanout.sender import save_progress

    cfg = config(Destination.MATEO_MESSAGE)
    provider = Provider(post=[])
    run = Run(cfg, provider)
    save_progress(
        cfg.bucket_name, run.message, [RowResult(1, "p1@example.com", RowState.SENT, "message m1 sent")]
    )
    assert run.store.claim_chunk(run.job_id, "c00001", 1) is Claim.CLAIMED  # a sender that then died
    time.sleep(1.1)

    run.sender.handle(run.message)

    assert provider.requests == []  # Mateo messages do not de-duplicate: nothing resent
    assert [(r["row"], r["state"]) for r in run.rows()] == [
        ("1", "sent"),
        ("2", "uncertain"),
        ("3", "uncertain"),
    ]


def test_a_throttling_429_with_retry_after_is_not_read_as_a_spent_day(
    config: Callable[..., SenderConfig],
) -> None:
    # Mateo's headers show room left (remaining > 0), but the 429 says how long to wait: throttling.
    cfg = config(Destination.MATEO)
    throttled = httpx.Response(
        429, headers={"Retry-After": "30", "ratelimit-limit": "1000", "ratelimit-remaining": "990"}
    )
    provider = Provider(post=[throttled])
    run = Run(cfg, provider)

    with pytest.raises(RetryLater) as later:
        run.sender.handle(run.message)

    assert later.value.delay == 30
    job = run.store.get_job(run.job_id)
    assert job is not None and "daily quota" not in job.message


# --- a chunk whose rows all got one answer: settled in one write, no result file -------------------------


def test_a_chunk_whose_rows_all_got_one_answer_writes_no_result_file_yet_reports_every_row(
    config: Callable[..., SenderConfig],
) -> None:
    # Mateo answers a batch as a whole: 2,000 chunks of a million-row file were 2,000 S3 PUTs (and 2,000
    # GETs at the job's settle) of text its staged rows and one answer already give.
    cfg = config(Destination.MATEO)
    provider = Provider(post=[httpx.Response(202, json={"success": True, "queued_count": 3})])
    run = Run(cfg, provider, shared_after=2)  # a byte range of a staged object packed with another chunk

    run.sender.handle(run.message)

    listed = boto("s3").list_objects_v2(Bucket=cfg.bucket_name, Prefix=f"jobs/{run.job_id}/results/")
    assert listed.get("KeyCount") == 0
    assert run.chunk().answer == "queued (batch queued_count=3)"
    assert [(r["row"], r["identity"], r["state"], r["answer"]) for r in run.rows()] == [
        (str(n), f"p{n}@example.com", "sent", "queued (batch queued_count=3)") for n in (1, 2, 3)
    ]


def test_a_chunk_settled_with_one_answer_then_redriven_reports_its_new_answers_row_by_row(
    config: Callable[..., SenderConfig],
) -> None:
    cfg = config(Destination.WORKSHOP)
    mixed = {"enrolled_count": 2, "not_enrolled": {"unsubscribed": ["p2@example.com"]}}
    provider = Provider(
        post=[
            httpx.Response(403, json={"error": "forbidden"}),  # every row failed alike
            httpx.Response(200, json=mixed),
        ]
    )
    run = Run(cfg, provider)
    run.sender.handle(run.message)
    assert {r["state"] for r in run.rows()} == {"failed"} and run.chunk().answer

    assert run.store.reopen_chunk(run.chunk())  # what `fanout redrive` does, then the stored message again
    assert run.chunk().answer is None
    run.sender.handle(run.message)

    assert [(r["row"], r["state"]) for r in run.rows()] == [("1", "sent"), ("2", "failed"), ("3", "sent")]


# --- a job's settle runs in the job function, never in the sender of its last chunk ------------------------


def mateo_run(config: Callable[..., SenderConfig]) -> tuple[Run, list[str]]:
    """A one-chunk Mateo job whose sender hands its settle to a list (the job function's requests)."""
    cfg = config(Destination.MATEO)
    run = Run(cfg, Provider(post=[httpx.Response(202, json={"success": True, "queued_count": 3})]))
    asked: list[str] = []
    run.sender = Sender(cfg, replace(run.sender._deps, settle=asked.append))
    return run, asked


def last_chunk_settled(config: Callable[..., SenderConfig]) -> Run:
    """A one-chunk Mateo job whose only chunk has been sent and settled: the job waits for its settle."""
    run, _ = mateo_run(config)
    run.sender.handle(run.message)
    return run


def job_function(run: Run, request: SettleRequest, remaining_ms: int = 900_000) -> Job | None:
    """The job function's settle of `request`, here in process, with `remaining_ms` of its invocation."""
    return settle_requested(run.store, run.cfg.bucket_name, run.cfg.event_bus_name, request, remaining_ms)


def test_the_sender_of_a_jobs_last_chunk_hands_the_settle_over_and_writes_no_rows_csv(
    config: Callable[..., SenderConfig],
) -> None:
    # A sender has 60 s and a third of a vCPU; a job's settle some 5 s a million rows on a whole core: a job
    # of a few million rows could not settle in its last chunk's sender.
    run, asked = mateo_run(config)

    run.sender.handle(run.message)

    assert asked == [run.job_id]
    job = run.store.get_job(run.job_id)
    assert job is not None and job.status is JobStatus.SENDING and job.chunks_settled == 1
    listed = boto("s3").list_objects_v2(Bucket=run.cfg.bucket_name, Prefix=f"results/{run.job_id}/")
    assert listed.get("KeyCount") == 0
    settled = job_function(run, SettleRequest(run.job_id))
    assert settled is not None and settled.status is JobStatus.COMPLETED
    assert [r["state"] for r in run.rows()] == ["sent"] * 3


def test_a_redelivered_last_chunk_of_an_unsettled_job_asks_for_the_settle_again(
    config: Callable[..., SenderConfig],
) -> None:
    run, asked = mateo_run(config)
    run.sender.handle(run.message)  # the request is lost: no settle ran

    run.sender.handle(run.message)  # SQS delivers the chunk's message again

    assert asked == [run.job_id, run.job_id]
    assert run.provider.count("POST") == 1  # the chunk is not sent again


def test_a_settle_request_while_another_invocation_settles_the_job_fails_so_lambda_tries_it_again(
    config: Callable[..., SenderConfig],
) -> None:
    run = last_chunk_settled(config)
    assert run.store.begin_settling(run.job_id, 600)  # another invocation settles it, its lease live

    with pytest.raises(SettleBusy):
        job_function(run, SettleRequest(run.job_id))


def test_a_settle_whose_invocation_died_is_taken_over_once_its_lease_ends_with_that_invocation(
    config: Callable[..., SenderConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease is the settling invocation's remaining time (and a margin): a settle that timed out or
    crashed does not hold the job past the end its invocation had."""
    run = last_chunk_settled(config)
    request = SettleRequest(run.job_id)
    monkeypatch.setattr(settling, "LEASE_MARGIN_SECONDS", 1)

    def dies(*args: Any, **kwargs: Any) -> None:
        raise MemoryError("Runtime exited")

    with patch.object(results, "write_rows_file", dies), pytest.raises(MemoryError):
        job_function(run, request, remaining_ms=1_000)  # its lease: 1 s + 1 s
    with pytest.raises(SettleBusy):  # Lambda's next try, at once: the lease still holds
        job_function(run, request)
    time.sleep(2.2)

    settled = job_function(run, request)

    assert settled is not None and settled.status is JobStatus.COMPLETED
    assert [r["state"] for r in run.rows()] == ["sent"] * 3


def test_a_settle_request_whose_tries_are_spent_is_asked_again_until_its_rounds_are_spent(
    config: Callable[..., SenderConfig],
) -> None:
    run = last_chunk_settled(config)
    again: list[tuple[str, int]] = []

    def hand_over(job_id: str, round_: int) -> None:
        again.append((job_id, round_))

    settle_failed(run.store, hand_over, SettleRequest(run.job_id, round=2), "Task timed out (3 attempts)")
    assert again == [(run.job_id, 3)]
    last = SettleRequest(run.job_id, round=SETTLE_ROUNDS - 1)
    with pytest.raises(SettleGaveUp, match=rf"then `fanout settle {run.job_id}`"):
        settle_failed(run.store, hand_over, last, "Task timed out")
    job_function(run, SettleRequest(run.job_id))
    settle_failed(run.store, hand_over, last, "late")
    assert again == [(run.job_id, 3)]  # a settled job is never asked for again


def test_the_dead_letter_function_asks_again_for_a_settle_whose_tries_are_spent(
    config: Callable[..., SenderConfig], stack: DeployedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lambda's on-failure record of a settle request (three tries failed) reaches DeadLetterFunction
    through SplitterFailureQueue: it asks the job function again, a round further, and does not take it
    for a failed split."""
    run = last_chunk_settled(config)
    for name, value in stack.environment("DeadLetterFunction").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delitem(sys.modules, "fanout.entrypoints.dead_letter", raising=False)
    entry = importlib.import_module("fanout.entrypoints.dead_letter")
    asked: list[tuple[str, int]] = []
    monkeypatch.setattr(entry, "HAND_OVER", lambda job_id, round_=0: asked.append((job_id, round_)))
    monkeypatch.setattr(entry, "STORE", run.store)
    record = {
        "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": SettleRequest(run.job_id, round=1).payload(),
        "responsePayload": {"errorMessage": f"job {run.job_id} is being settled by another invocation"},
    }

    entry.record_handler(SQSRecord({"body": json.dumps(record), "attributes": {}, "messageId": "m-1"}))

    assert asked == [(run.job_id, 2)]
    job = run.store.get_job(run.job_id)
    assert job is not None and job.status is JobStatus.SENDING  # not failed as a split would be
