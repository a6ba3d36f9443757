"""fanout.store on the table template.yaml defines: every state change is a conditional write, so a
duplicate event, a redelivered message or two instances at once can never act twice."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from fanout.config import SplitterConfig
from fanout.models import ChunkState, Counts, JobStatus
from fanout.store import Chunk, Claim, DynamoJobStore, Job, Settlement
from tests.far_calls import FarCalls

pytestmark = pytest.mark.unit

LEASE = 300
LAPSED = -5  # a lease that ran out five seconds ago: its holder died


@pytest.fixture
def store(splitter_config: SplitterConfig) -> DynamoJobStore:
    return DynamoJobStore(splitter_config.table_name, splitter_config.retention_days)


@pytest.fixture
def job_id() -> str:
    """A job id of this test's own: the table is shared by the module's tests."""
    return f"j-{uuid.uuid4().hex[:16]}"


def new_job(job_id: str) -> Job:
    return Job(
        job_id=job_id,
        status=JobStatus.SPLITTING,
        bucket="unit-inbox",
        key="inbox/mateo/3c90c3cc-0d44-4b50-8888-8dd25736052a/contacts.csv",
        destination="mateo",
        target="3c90c3cc-0d44-4b50-8888-8dd25736052a",
        version="v1",
        options={"phone-region": "SE"},
    )


def sending_job(store: DynamoJobStore, chunk_rows: list[int], job_id: str) -> Job:
    """A split job with its chunks staged and queued: status sending."""
    job = new_job(job_id)
    assert store.create_job(job, LEASE)
    for number, rows in enumerate(chunk_rows, 1):
        store.put_chunk(
            Chunk(job.job_id, f"c{number:05d}", f"jobs/{job.job_id}/chunks/c{number:05d}.jsonl", rows)
        )
    job.status = JobStatus.SENDING
    job.counts = Counts(read=sum(chunk_rows) + 1, rejected=1)
    job.chunks_total = len(chunk_rows)
    store.finish_split(job)
    return job


def chunk(store: DynamoJobStore, job_id: str, chunk_id: str) -> Chunk:
    (found,) = [c for c in store.chunks(job_id) if c.chunk_id == chunk_id]
    return found


# --- jobs ---------------------------------------------------------------------------------------------


def test_creating_a_job_twice_makes_one_job(store: DynamoJobStore, job_id: str) -> None:
    assert store.create_job(new_job(job_id), LEASE) is True
    assert store.create_job(new_job(job_id), LEASE) is False
    assert [job.job_id for job in store.list_jobs(limit=1000)].count(job_id) == 1


def test_a_stored_job_reads_back_as_it_was_written(store: DynamoJobStore, job_id: str) -> None:
    job = new_job(job_id)
    store.create_job(job, LEASE)
    found = store.get_job(job.job_id)

    assert found is not None
    assert (found.status, found.key, found.target, found.version, found.options) == (
        JobStatus.SPLITTING,
        job.key,
        job.target,
        "v1",
        {"phone-region": "SE"},
    )


def test_a_split_that_died_can_be_redone_but_a_live_one_cannot(store: DynamoJobStore, job_id: str) -> None:
    dead, live = f"{job_id}-dead", f"{job_id}-live"
    assert store.create_job(new_job(dead), LAPSED)
    assert store.create_job(new_job(live), LEASE)

    assert store.create_job(new_job(dead), LEASE) is True
    assert store.create_job(new_job(live), LEASE) is False


def test_a_finished_split_is_never_redone_even_after_its_lease(store: DynamoJobStore, job_id: str) -> None:
    job = new_job(job_id)
    store.create_job(job, LAPSED)
    job.status = JobStatus.SENDING
    store.finish_split(job)

    assert store.create_job(new_job(job_id), LEASE) is False


def test_finish_split_stores_the_counts_and_the_plan(store: DynamoJobStore, job_id: str) -> None:
    job = sending_job(store, [500, 200], job_id)
    found = store.get_job(job.job_id)

    assert found is not None
    assert (found.status, found.counts, found.chunks_total, found.chunks_settled) == (
        JobStatus.SENDING,
        Counts(read=701, rejected=1),
        2,
        0,
    )


def test_an_unknown_job_is_none(store: DynamoJobStore) -> None:
    assert store.get_job("j-nope") is None


# --- chunks: claim, release, settle -------------------------------------------------------------------


def test_a_pending_chunk_is_claimed_once_and_then_busy(store: DynamoJobStore, job_id: str) -> None:
    job = sending_job(store, [10], job_id)

    assert store.claim_chunk(job.job_id, "c00001", LEASE) is Claim.CLAIMED
    assert store.claim_chunk(job.job_id, "c00001", LEASE) is Claim.BUSY
    found = chunk(store, job.job_id, "c00001")
    assert (found.state, found.attempts) == (ChunkState.IN_FLIGHT, 1)


def test_a_chunk_whose_holder_died_is_claimed_after_crash(store: DynamoJobStore, job_id: str) -> None:
    job = sending_job(store, [10], job_id)
    store.claim_chunk(job.job_id, "c00001", LAPSED)

    assert store.claim_chunk(job.job_id, "c00001", LEASE) is Claim.CLAIMED_AFTER_CRASH
    assert chunk(store, job.job_id, "c00001").attempts == 2


def test_a_settled_chunk_claims_as_settled_so_nothing_is_sent_again(
    store: DynamoJobStore, job_id: str
) -> None:
    job = sending_job(store, [10], job_id)
    store.claim_chunk(job.job_id, "c00001", LEASE)
    store.settle_chunk(job.job_id, "c00001", Settlement(ChunkState.SENT, sent=10))

    assert store.claim_chunk(job.job_id, "c00001", LEASE) is Claim.SETTLED
    assert store.claim_chunk(job.job_id, "c00001", LAPSED) is Claim.SETTLED


def test_an_unknown_chunk_claims_as_missing(store: DynamoJobStore, job_id: str) -> None:
    job = sending_job(store, [10], job_id)
    assert store.claim_chunk(job.job_id, "c00099", LEASE) is Claim.MISSING


def test_a_released_chunk_is_claimed_afresh_with_its_error_kept(store: DynamoJobStore, job_id: str) -> None:
    job = sending_job(store, [10], job_id)
    store.claim_chunk(job.job_id, "c00001", LEASE)
    store.release_chunk(job.job_id, "c00001", "HTTP 429: slow down")

    released = chunk(store, job.job_id, "c00001")
    assert (released.state, released.last_error) == (ChunkState.PENDING, "HTTP 429: slow down")
    assert store.claim_chunk(job.job_id, "c00001", LEASE) is Claim.CLAIMED


def test_a_chunk_released_with_saved_progress_is_resumed_by_every_later_claim(
    store: DynamoJobStore, job_id: str
) -> None:
    job = sending_job(store, [10], job_id)
    store.claim_chunk(job.job_id, "c00001", LEASE)
    store.release_chunk(job.job_id, "c00001", "HTTP 503", progress_saved=True)
    assert store.claim_chunk(job.job_id, "c00001", LEASE) is Claim.RESUMED

    # A later delivery that saved nothing new does not hide the earlier answers.
    store.release_chunk(job.job_id, "c00001", "HTTP 503 again")
    assert store.claim_chunk(job.job_id, "c00001", LEASE) is Claim.RESUMED


def test_releasing_a_settled_chunk_leaves_it_settled(store: DynamoJobStore, job_id: str) -> None:
    job = sending_job(store, [10], job_id)
    store.claim_chunk(job.job_id, "c00001", LEASE)
    store.settle_chunk(job.job_id, "c00001", Settlement(ChunkState.SENT, sent=10))
    store.release_chunk(job.job_id, "c00001", "late release")

    assert chunk(store, job.job_id, "c00001").state is ChunkState.SENT


def test_staging_a_chunk_again_does_not_reset_it(store: DynamoJobStore, job_id: str) -> None:
    job = sending_job(store, [10], job_id)
    store.claim_chunk(job.job_id, "c00001", LEASE)
    store.settle_chunk(job.job_id, "c00001", Settlement(ChunkState.SENT, sent=10))
    store.put_chunk(Chunk(job.job_id, "c00001", f"jobs/{job.job_id}/chunks/c00001.jsonl", 10))

    assert chunk(store, job.job_id, "c00001").state is ChunkState.SENT


def test_settling_a_chunk_twice_adds_its_counts_once(store: DynamoJobStore, job_id: str) -> None:
    job = sending_job(store, [10, 5], job_id)
    store.claim_chunk(job.job_id, "c00001", LEASE)
    settlement = Settlement(ChunkState.SENT, sent=8, failed=2, error="2 not_found")

    store.settle_chunk(job.job_id, "c00001", settlement)
    store.settle_chunk(job.job_id, "c00001", settlement)

    found = store.get_job(job.job_id)
    assert found is not None and (found.counts.sent, found.counts.failed, found.chunks_settled) == (8, 2, 1)
    assert chunk(store, job.job_id, "c00001").last_error == "2 not_found"


def test_a_second_settlement_cannot_change_the_first(store: DynamoJobStore, job_id: str) -> None:
    job = sending_job(store, [10], job_id)
    store.claim_chunk(job.job_id, "c00001", LEASE)
    store.settle_chunk(job.job_id, "c00001", Settlement(ChunkState.SENT, sent=10))
    store.settle_chunk(job.job_id, "c00001", Settlement(ChunkState.FAILED, failed=10))

    assert chunk(store, job.job_id, "c00001").state is ChunkState.SENT
    after = store.get_job(job.job_id)
    assert after is not None and (after.counts.sent, after.counts.failed) == (10, 0)


def test_a_pending_chunk_can_be_settled_by_the_dead_letter_path(store: DynamoJobStore, job_id: str) -> None:
    job = sending_job(store, [7], job_id)
    last = store.settle_chunk(job.job_id, "c00001", Settlement(ChunkState.FAILED, failed=7, error="gave up"))

    after = store.get_job(job.job_id)
    assert last is True and after is not None and (after.counts.failed, after.chunks_settled) == (7, 1)
    assert store.claim_chunk(job.job_id, "c00001", LEASE) is Claim.SETTLED


def test_a_too_large_chunk_is_replaced_by_its_halves(store: DynamoJobStore, job_id: str) -> None:
    job = sending_job(store, [10], job_id)
    store.claim_chunk(job.job_id, "c00001", LEASE)
    halves = [
        Chunk(job.job_id, "c00001-1", f"jobs/{job.job_id}/chunks/c00001-1.jsonl", 5),
        Chunk(job.job_id, "c00001-2", f"jobs/{job.job_id}/chunks/c00001-2.jsonl", 5),
    ]
    store.split_chunk(job.job_id, "c00001", halves)

    states = {c.chunk_id: c.state for c in store.chunks(job.job_id)}
    found = store.get_job(job.job_id)
    assert states == {
        "c00001": ChunkState.SPLIT,
        "c00001-1": ChunkState.PENDING,
        "c00001-2": ChunkState.PENDING,
    }
    assert found is not None and (found.chunks_total, found.chunks_settled) == (3, 1)
    assert store.claim_chunk(job.job_id, "c00001", LEASE) is Claim.SETTLED


# --- settling the job ---------------------------------------------------------------------------------


class _Counting:
    """The store's DynamoDB client, counting the calls made through it by operation."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._real, name)

        def call(**kwargs: Any) -> Any:
            self.calls.append(name)
            return method(**kwargs)

        return call


def settle(store: DynamoJobStore, job_id: str, chunk_id: str, rows: int) -> bool:
    store.claim_chunk(job_id, chunk_id, LEASE)
    return store.settle_chunk(job_id, chunk_id, Settlement(ChunkState.SENT, sent=rows))


def test_only_the_last_chunk_settled_says_the_job_may_be_done(store: DynamoJobStore, job_id: str) -> None:
    job = sending_job(store, [10, 5, 3], job_id)

    answers = [settle(store, job.job_id, f"c{n:05d}", rows) for n, rows in ((2, 5), (1, 10), (3, 3))]

    assert answers == [False, False, True]
    found = store.get_job(job.job_id)
    assert found is not None and (found.counts.sent, found.chunks_settled, found.chunks_total) == (18, 3, 3)


def test_a_chunk_that_is_not_the_last_settles_in_one_call(store: DynamoJobStore, job_id: str) -> None:
    # the job is not read back after each chunk: a million-row Mateo job settles 2,000 of them
    job = sending_job(store, [10, 5], job_id)
    store.claim_chunk(job.job_id, "c00001", LEASE)
    counting = _Counting(store._db._db)

    last = DynamoJobStore(store._table, db=counting).settle_chunk(
        job.job_id, "c00001", Settlement(ChunkState.SENT, sent=10)
    )

    assert last is False
    assert counting.calls == ["transact_write_items"]


def test_the_halves_of_a_split_chunk_are_waited_for(store: DynamoJobStore, job_id: str) -> None:
    job = sending_job(store, [10, 5], job_id)
    store.claim_chunk(job.job_id, "c00001", LEASE)
    halves = [
        Chunk(job.job_id, f"c00001-{n}", f"jobs/{job.job_id}/chunks/c00001-{n}.jsonl", 5) for n in (1, 2)
    ]
    store.split_chunk(job.job_id, "c00001", halves)

    answers = [settle(store, job.job_id, chunk_id, 5) for chunk_id in ("c00002", "c00001-1", "c00001-2")]

    assert answers == [False, False, True]


def test_a_redriven_chunk_is_the_last_again(store: DynamoJobStore, job_id: str) -> None:
    job = sending_job(store, [10, 5], job_id)
    settle(store, job.job_id, "c00001", 10)
    store.claim_chunk(job.job_id, "c00002", LEASE)
    store.settle_chunk(job.job_id, "c00002", Settlement(ChunkState.FAILED, failed=5))
    store.finish_job(job.job_id, JobStatus.COMPLETED_WITH_ERRORS)
    assert store.reopen_chunk(chunk(store, job.job_id, "c00002"))

    assert settle(store, job.job_id, "c00002", 5) is True
    found = store.get_job(job.job_id)
    assert found is not None and (found.counts.sent, found.counts.failed, found.chunks_settled) == (15, 0, 2)


def test_a_job_stored_before_the_last_chunk_mark_still_settles_once(
    store: DynamoJobStore, job_id: str
) -> None:
    # a job split by an earlier version has no mark of its last chunk: each settlement says "maybe"
    # (begin_settling decides), and each chunk's counts are added once
    job = sending_job(store, [10, 5], job_id)
    store._db.update_item(
        TableName=store._table,
        Key={"pk": {"S": f"JOB#{job.job_id}"}, "sk": {"S": "JOB"}},
        UpdateExpression="REMOVE chunks_last",
    )

    answers = [settle(store, job.job_id, "c00001", 10), settle(store, job.job_id, "c00002", 5)]

    assert answers == [True, True]
    assert store.begin_settling(job.job_id, LEASE) is True
    found = store.get_job(job.job_id)
    assert found is not None and (found.counts.sent, found.chunks_settled) == (15, 2)


def test_a_chunk_settled_by_someone_else_leaves_the_decision_to_begin_settling(
    store: DynamoJobStore, job_id: str
) -> None:
    job = sending_job(store, [10, 5], job_id)
    settle(store, job.job_id, "c00001", 10)

    again = store.settle_chunk(job.job_id, "c00001", Settlement(ChunkState.SENT, sent=10))

    assert again is True  # maybe: a crash may have come between its settlement and the job's
    assert store.begin_settling(job.job_id, LEASE) is False  # c00002 is still open


def test_begin_settling_waits_for_the_last_chunk(store: DynamoJobStore, job_id: str) -> None:
    job = sending_job(store, [10, 5], job_id)
    store.claim_chunk(job.job_id, "c00001", LEASE)
    store.settle_chunk(job.job_id, "c00001", Settlement(ChunkState.SENT, sent=10))

    assert store.begin_settling(job.job_id, LEASE) is False


def test_begin_settling_is_true_for_exactly_one_caller(store: DynamoJobStore, job_id: str) -> None:
    job = sending_job(store, [10, 5], job_id)
    for chunk_id, rows in (("c00001", 10), ("c00002", 5)):
        store.claim_chunk(job.job_id, chunk_id, LEASE)
        store.settle_chunk(job.job_id, chunk_id, Settlement(ChunkState.SENT, sent=rows))

    answers = [store.begin_settling(job.job_id, LEASE) for _ in range(5)]

    assert answers.count(True) == 1
    found = store.get_job(job.job_id)
    assert found is not None and found.status is JobStatus.SETTLING


def test_a_settler_that_died_lets_the_next_caller_finish(store: DynamoJobStore, job_id: str) -> None:
    job = sending_job(store, [10], job_id)
    store.settle_chunk(job.job_id, "c00001", Settlement(ChunkState.SENT, sent=10))

    assert store.begin_settling(job.job_id, LAPSED) is True
    assert store.begin_settling(job.job_id, LEASE) is True
    assert store.begin_settling(job.job_id, LEASE) is False


def test_a_finished_job_is_never_settled_again(store: DynamoJobStore, job_id: str) -> None:
    job = sending_job(store, [10], job_id)
    store.settle_chunk(job.job_id, "c00001", Settlement(ChunkState.SENT, sent=10))
    assert store.begin_settling(job.job_id, LAPSED)
    store.finish_job(job.job_id, JobStatus.COMPLETED, "all sent")

    found = store.get_job(job.job_id)
    assert found is not None and (found.status, found.message) == (JobStatus.COMPLETED, "all sent")
    assert found.finished_at
    assert store.begin_settling(job.job_id, LEASE) is False


def test_jobs_are_listed_newest_first(store: DynamoJobStore, job_id: str) -> None:
    older, newer = f"{job_id}-older", f"{job_id}-newer"
    for name, created in ((older, "2020-03-01T10:00:00.000Z"), (newer, "2020-03-03T10:00:00.000Z")):
        job = new_job(name)
        job.created_at = created
        store.create_job(job, LEASE)

    listed = [job.job_id for job in store.list_jobs(limit=1000)]
    assert [name for name in listed if name.startswith(job_id)] == [newer, older]


# -- what AWS answers under load: only a failed condition means "someone else already did it" ----------


def _cancelled(*reasons: str) -> ClientError:
    """A TransactionCanceledException as DynamoDB sends it, one reason per item of the transaction."""
    return ClientError(
        {
            "Error": {
                "Code": "TransactionCanceledException",
                "Message": f"Transaction cancelled [{', '.join(reasons)}]",
            },
            "CancellationReasons": [{"Code": reason} for reason in reasons],
        },
        "TransactWriteItems",
    )


class _Busy:
    """The store's DynamoDB client, answering the first `times` calls of `operation` with `error`."""

    def __init__(self, real: Any, operation: str, error: ClientError, times: int = 1) -> None:
        self._real, self._operation, self._error, self.left = real, operation, error, times

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._real, name)
        if name != self._operation:
            return method

        def call(**kwargs: Any) -> Any:
            if self.left > 0:
                self.left -= 1
                raise self._error
            return method(**kwargs)

        return call


@pytest.mark.parametrize(
    "error",
    [
        _cancelled("None", "TransactionConflict"),
        _cancelled("ThrottlingError", "None"),
        ClientError({"Error": {"Code": "TransactionConflictException", "Message": "ongoing"}}, "UpdateItem"),
    ],
    ids=["transaction-conflict", "throttled-item", "conflict-exception"],
)
def test_a_settlement_that_met_a_conflict_is_retried_not_taken_as_done(
    store: DynamoJobStore, job_id: str, error: ClientError
) -> None:
    job = sending_job(store, [10], job_id)
    store.claim_chunk(job.job_id, "c00001", LEASE)
    busy = DynamoJobStore(store._table, db=_Busy(store._db, "transact_write_items", error))

    last = busy.settle_chunk(job.job_id, "c00001", Settlement(ChunkState.SENT, sent=10))

    assert chunk(store, job.job_id, "c00001").state is ChunkState.SENT
    assert last is True  # so the job settles: nothing left open
    settled = store.get_job(job.job_id)
    assert settled is not None and settled.counts.sent == 10
    assert settled.chunks_settled == settled.chunks_total == 1


def test_a_failed_condition_in_a_transaction_still_means_settled_by_someone_else(
    store: DynamoJobStore, job_id: str
) -> None:
    job = sending_job(store, [10], job_id)
    store.claim_chunk(job.job_id, "c00001", LEASE)
    store.settle_chunk(job.job_id, "c00001", Settlement(ChunkState.SENT, sent=10))

    store.settle_chunk(job.job_id, "c00001", Settlement(ChunkState.FAILED, failed=10))

    again = store.get_job(job.job_id)
    assert again is not None and again.counts.sent == 10 and again.counts.failed == 0


def test_conflicts_that_never_clear_are_raised_so_the_message_comes_back(
    store: DynamoJobStore, job_id: str
) -> None:
    job = sending_job(store, [10], job_id)
    store.claim_chunk(job.job_id, "c00001", LEASE)
    busy = DynamoJobStore(
        store._table, db=_Busy(store._db, "transact_write_items", _cancelled("TransactionConflict"), times=99)
    )

    with pytest.raises(ClientError):
        busy.settle_chunk(job.job_id, "c00001", Settlement(ChunkState.SENT, sent=10))
    assert chunk(store, job.job_id, "c00001").state is ChunkState.IN_FLIGHT


def test_recording_a_splits_chunks_removes_the_records_an_interrupted_invocation_left(
    store: DynamoJobStore, job_id: str
) -> None:
    # an earlier invocation recorded 60 chunks (over a megabyte: DynamoDB answers the query in pages) and
    # died; the split that finished cut the file into 10 chunks, with byte ranges of a packed object
    key = f"jobs/{job_id}/chunks/c00001..c00010.jsonl"
    store.replace_chunks(
        Chunk(job_id, f"c{n:05d}", f"jobs/{job_id}/chunks/c{n:05d}.jsonl", 9, message="m" * 20_000)
        for n in range(1, 61)
    )
    kept = [
        Chunk(job_id, f"c{n:05d}", key, 9, byte_range=f"bytes={n * 100}-{n * 100 + 99}") for n in range(1, 11)
    ]
    store.replace_chunks(iter(kept))

    gone = store.prune_chunks(job_id, {c.chunk_id for c in kept})

    assert gone == 50
    found = store.chunks(job_id)
    assert [(c.chunk_id, c.key, c.byte_range) for c in found] == [
        (c.chunk_id, key, c.byte_range) for c in kept
    ]


class _SlowBatchWrites(FarCalls):
    """BatchWriteItem far away."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.items: list[dict[str, Any]] = []

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:  # noqa: N803
        with self.call():
            for requests in RequestItems.values():
                self.items += [r["PutRequest"]["Item"] for r in requests]
        return {}


def test_a_splits_chunks_are_recorded_several_calls_at_a_time(job_id: str) -> None:
    # a 10M-row file has 20,000 chunks: 800 BatchWriteItem calls, 10-20 s one after another on AWS
    db = _SlowBatchWrites(0.05)
    store = DynamoJobStore("jobs", db=db)
    store.replace_chunks(
        Chunk(job_id, f"c{n:05d}", f"jobs/{job_id}/staged/00001", 500, byte_range=f"bytes={n}-{n}")
        for n in range(1, 501)  # 20 calls
    )
    assert sorted(item["chunk_id"]["S"] for item in db.items) == [f"c{n:05d}" for n in range(1, 501)]
    assert db.most_in_flight > 1
