"""Mateo's daily quotas (issue 13 item 10): a file bigger than a day's quota is planned across UTC days,
`fanout validate` says how many, and the senders wait for the next UTC day — using up no delivery —
whether their own plan or the provider's 429 (with no Retry-After) says the day is spent.

The 60,000-contact run drives the real sender against the Mateo emulator in-process (its documented
daily quotas on), with one frozen clock for both that moves only when every chunk waits: SQS is a list
here, each message delivered when it would be visible, its deliveries counted as SQS counts them.
"""

from __future__ import annotations

import csv
import heapq
import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from emulators.base import load_fixture
from emulators.faults import FaultSettings
from emulators.mateo import DAILY_ENTITY_LIMIT, DAILY_REQUEST_LIMIT, MateoEmulator
from emulators.testing import AppClient, FakeClock
from fanout import sender as sender_module
from fanout.config import SenderConfig, load
from fanout.destinations import Destination
from fanout.models import ChunkMessage, Counts, JobStatus, StagedRow
from fanout.pacing import Pacer
from fanout.providers.base import ProviderSecret
from fanout.quotas import DOCUMENTED, next_utc_day, plan_note, quota_for
from fanout.sender import RetryLater, Sender, SenderDeps, dead_letter
from fanout.staging import S3Writer
from fanout.store import Chunk, DynamoJobStore, Job
from fanout_local import operations
from fanout_local.deployed import DeployedStack
from tests.unit.conftest import settle_here

pytestmark = pytest.mark.unit

JOURNEY = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
MAX_RECEIVES = 5  # the queues' maxReceiveCount (template.yaml)


# --- planning across days -------------------------------------------------------------------------------


def test_the_documented_quotas_are_mateos() -> None:
    assert DOCUMENTED[Destination.MATEO].requests == DAILY_REQUEST_LIMIT == 10_000
    assert DOCUMENTED[Destination.MATEO].contacts == DAILY_ENTITY_LIMIT == 25_000


@pytest.mark.parametrize(
    ("destination", "rows", "calls", "days"),
    [
        (Destination.MATEO, 1_000_000, 2_000, 40),  # the figure: 1,000,000 contacts, 40 days
        (Destination.MATEO, 25_000, 50, None),  # one day's quota exactly: no note
        (Destination.MATEO, 25_001, 51, 2),
        (Destination.MATEO_MESSAGE, 10_001, 10_001, 2),  # messages: 10,000 requests a day
        (Destination.WORKSHOP, 1_000_000, 1_000, None),  # no documented quota
    ],
)
def test_a_file_bigger_than_a_days_quota_is_planned_across_days(
    destination: Destination, rows: int, calls: int, days: int | None
) -> None:
    note = plan_note(destination, rows, calls)
    if days is None:
        assert note is None
    else:
        assert note is not None and note.startswith(f"{days} days at {destination.value}'s daily quota")


def test_a_contracts_quota_replaces_the_documented_one() -> None:
    contract = quota_for(Destination.MATEO, requests=None, contacts=100_000)
    assert contract is not None and (contract.requests, contract.contacts) == (10_000, 100_000)
    note = plan_note(Destination.MATEO, 1_000_000, 2_000, contract)
    assert note is not None and note.startswith("10 days")


def test_the_next_utc_day_starts_at_midnight_utc() -> None:
    now = datetime(2030, 1, 1, 23, 59, 59, tzinfo=UTC).timestamp()
    assert next_utc_day(now) == datetime(2030, 1, 2, tzinfo=UTC).timestamp()


def test_validate_says_how_many_days_a_file_needs_at_mateos_quota(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["email"])
        writer.writerows([f"p{n}@example.com"] for n in range(60_000))
    found = operations.validate_file(path, f"mateo/{JOURNEY}", {})

    assert found.rows_valid == 60_000
    assert found.quota is not None and found.quota.startswith("3 days at mateo's daily quota")
    assert "25,000 contacts and 10,000 requests a UTC day" in found.quota


# --- 60,000 contacts over three emulated days -------------------------------------------------------------


@dataclass(order=True)
class Delivery:
    visible_at: float
    order: int
    message: ChunkMessage = field(compare=False)
    receives: int = field(compare=False, default=0)


class Queue:
    """SQS as the sender meets it: a message is received when visible, each receive counted; a message
    received more than maxReceiveCount times goes to the dead-letter function."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.heap: list[Delivery] = []
        self.counter = itertools.count()
        self.max_receives = 0

    def now(self) -> float:
        return self.clock.now.timestamp()

    def send(self, message: ChunkMessage, delay: float = 0, receives: int = 0) -> None:
        heapq.heappush(self.heap, Delivery(self.now() + delay, next(self.counter), message, receives))

    def receive(self) -> Delivery | None:
        if not self.heap:
            return None
        delivery = heapq.heappop(self.heap)
        if delivery.visible_at > self.now():  # nothing visible before then: time passes
            self.clock.advance(seconds=delivery.visible_at - self.now())
        delivery.receives += 1
        self.max_receives = max(self.max_receives, delivery.receives)
        return delivery


def mateo_http(emulator: MateoEmulator) -> httpx.Client:
    """An httpx client whose every request goes to the emulator app in-process."""
    app = AppClient(emulator.build_app())

    def forward(request: httpx.Request) -> httpx.Response:
        answer = app.request(
            request.method, request.url.path, content=request.content, headers=dict(request.headers)
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return httpx.Client(transport=httpx.MockTransport(forward))


def stage_job(cfg: SenderConfig, store: DynamoJobStore, contacts: int, per_chunk: int) -> list[ChunkMessage]:
    job_id = f"j-{uuid.uuid4().hex[:16]}"
    messages = []
    for number, start in enumerate(range(0, contacts, per_chunk), start=1):
        chunk_id = f"c{number:05d}"
        key = f"jobs/{job_id}/chunks/{chunk_id}.jsonl"
        rows = range(start + 1, min(contacts, start + per_chunk) + 1)
        with S3Writer(cfg.bucket_name, key) as out:
            for n in rows:
                item = {
                    "deduplication_id": f"d-{n}",
                    "contact": {"email": f"p{n}@example.com"},
                    "context": {},
                }
                out.write_line(StagedRow(n, f"p{n}@example.com", item).to_json())
        message = ChunkMessage(job_id, chunk_id, Destination.MATEO, JOURNEY, key, len(rows), {})
        messages.append(message)
    job = Job(job_id, JobStatus.SPLITTING, cfg.bucket_name, "inbox/x.csv", "mateo", JOURNEY)
    assert store.create_job(job, 300)
    for message in messages:
        store.put_chunk(Chunk(job_id, message.chunk_id, message.key, message.rows, message=message.to_json()))
    job.status, job.counts, job.chunks_total = JobStatus.SENDING, Counts(read=contacts), len(messages)
    store.finish_split(job)
    return messages


# Slow (about 21 s for both): marked so the default run stays under ten minutes; CI runs it with the slow
# suites.
@pytest.mark.slow
@pytest.mark.parametrize(
    "contract_contacts",
    [None, 1_000_000],
    ids=["planned-from-the-documented-quota", "told-by-the-providers-429"],
)
def test_sixty_thousand_contacts_go_out_over_three_utc_days_with_no_chunk_dead_lettered(
    stack: DeployedStack, monkeypatch: pytest.MonkeyPatch, contract_contacts: int | None
) -> None:
    # `told-by-the-providers-429`: the sender believes in a bigger quota than Mateo grants, so Mateo's
    # 429 (no Retry-After) is what stops each day; the chunk must still wait for the next day.
    clock = FakeClock(datetime(2030, 1, 1, 8, 0, tzinfo=UTC))
    start = clock.now
    emulator = MateoEmulator(
        load_fixture(),
        FaultSettings(daily_requests=DAILY_REQUEST_LIMIT, daily_entities=DAILY_ENTITY_LIMIT),
        clock,
    )
    queue = Queue(clock)
    monkeypatch.setattr(
        sender_module,
        "send_chunk_messages",
        lambda url, messages, delay=0: [queue.send(m, delay) for m in messages],
    )
    env = stack.environment("MateoSenderFunction")
    if contract_contacts is not None:
        env = {**env, "DAILY_CONTACT_QUOTA": str(contract_contacts)}
    cfg = load(SenderConfig, env)
    store = DynamoJobStore(cfg.table_name, cfg.retention_days)
    secret = ProviderSecret(base_url="http://mateo.test/api/v1", token=load_fixture()["mateo"]["tokens"][0])
    with mateo_http(emulator) as http:
        deps = SenderDeps(
            store,
            lambda: secret,
            Pacer(cfg.table_name, "mateo", 0),
            settle_here(store, cfg.bucket_name, cfg.event_bus_name),
            http,
            clock=lambda: clock.now.timestamp(),
        )
        sender = Sender(cfg, deps)
        messages = stage_job(cfg, store, 60_000, 500)
        job_id = messages[0].job_id
        for message in messages:
            queue.send(message)
        notes: dict[str, str] = {}
        dead = 0
        while (delivery := queue.receive()) is not None:
            if delivery.receives > MAX_RECEIVES:
                dead += 1
                settle = settle_here(store, cfg.bucket_name, cfg.event_bus_name)
                dead_letter(store, cfg.bucket_name, settle, delivery.message.to_json(), delivery.receives)
                continue
            try:
                sender.handle(delivery.message, delivery.receives)
            except RetryLater as later:
                queue.send(delivery.message, later.delay, delivery.receives)
            job = store.get_job(job_id)
            if job is not None and job.message:
                notes.setdefault(clock.now.date().isoformat(), job.message)

    job = store.get_job(job_id)
    assert job is not None
    assert (job.status, job.counts.sent, job.counts.failed, dead) == (JobStatus.COMPLETED, 60_000, 0, 0)
    # A wait of up to a day costs at most two early deliveries (at SQS's 15-minute delay, then its 12-hour
    # visibility limit); the chunk is sent at the third at the latest, leaving two for errors.
    assert queue.max_receives <= 3
    received = emulator.received()["targets"][JOURNEY]
    assert len(received) == 60_000 and set(received.values()) == {1}
    assert clock.now.date() == datetime(2030, 1, 3, tzinfo=UTC).date()  # three UTC days: 1st, 2nd, 3rd
    assert (clock.now - start).days == 1
    first_wait = notes["2030-01-01"]  # what `fanout status` showed on the first day: the wait and the ETA
    assert first_wait.startswith("waiting for mateo's daily quota (")
    assert "until 2030-01-02T00:00:01Z" in first_wait and "35,000 rows to go" in first_wait
    if contract_contacts is None:
        assert "(25,000 contacts and 10,000 requests a UTC day)" in first_wait
        assert "about 2 more day(s), done around 2030-01-03" in first_wait
