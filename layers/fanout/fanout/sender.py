"""The sender: one staged chunk to its provider, exactly once in effect, its outcome recorded per row.

A chunk moves pending -> in flight (leased) -> sent | failed | uncertain | split by conditional writes.
A redelivered message for a settled chunk does nothing. Where the provider de-duplicates (Mateo,
Workshop) a chunk whose earlier attempt may have reached it is simply sent again; where it does not
(Altcraft, Symplify) such a chunk is marked uncertain and waits for an explicit `fanout redrive`.

Two things make a chunk come back much later, and neither may use up the deliveries that the queue's
maxReceiveCount (5) allows for errors: a provider batch that finishes later (Symplify: the trigger's
batchId is recorded on the chunk and its status polled, never a second trigger) and a provider that asks
for a long wait (a Retry-After beyond the backoff cap: Mateo's daily quota, until 00:00 UTC). Both queue a
follow-up message and let the delivered one go (see `Sender._requeue`).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from fanout.config import SenderConfig
from fanout.models import ChunkMessage, ChunkState, Outcome, RowResult, RowState, StagedRow, Verdict
from fanout.observability import logger, metrics
from fanout.pacing import Pacer
from fanout.providers import provider_for
from fanout.providers.base import Provider, ProviderSecret
from fanout.queueing import send_chunk_messages
from fanout.quotas import QuotaLedger, next_utc_day, quota_for, usage_of, wait_note
from fanout.results import one_answer, rows_csv_text
from fanout.settling import JobSettle
from fanout.staging import (
    S3Writer,
    chunk_key,
    chunk_result_key,
    iter_lines,
    progress_key,
    put_bytes,
    staged_rows,
)
from fanout.store import Chunk, Claim, JobStore, Settlement, iso_utc

if TYPE_CHECKING:
    import httpx

BUSY_RETRY_SECONDS = 30
SQS_MAX_DELAY = 900  # seconds: the longest DelaySeconds SQS takes
SQS_MAX_VISIBILITY = 43200  # seconds: the longest visibility timeout (12 hours), hence the longest wait
FIRST_POLL_SECONDS = 5  # a started batch is first polled after this long, then ever more rarely
BATCH_FAILED_ANSWER = (
    "{detail}; not started again automatically (part of it may have run) — check the journey at"
    " {provider}, then `fanout redrive` starts a new batch"
)
BATCH_UNFINISHED_ANSWER = (
    "uncertain: {provider} batch {batch} had not finished {waited} s after it started (last: {detail});"
    " check the batch's status at {provider} — if its contacts did not enter the journey,"
    " `fanout redrive --include-uncertain` starts a new batch"
)
UNCERTAIN_ANSWER = (
    "uncertain: an earlier attempt may have reached {provider}, which does not de-duplicate;"
    " not resent automatically — check at the provider, then `fanout redrive --include-uncertain`"
)


def record_call_metrics(outcome: Outcome) -> None:
    """Per provider call: its verdict, latency, in-invocation retries and throttling (EMF, per destination)."""
    metrics.add_metric(name=f"ProviderAnswer_{outcome.verdict.value}", unit="Count", value=1)
    metrics.add_metric(name="ProviderLatency", unit="Milliseconds", value=outcome.elapsed_ms)
    metrics.add_metric(name="ProviderRetries", unit="Count", value=max(0, outcome.attempts - 1))
    if outcome.status_code == 429:
        metrics.add_metric(name="ProviderThrottled", unit="Count", value=1)


MAYBE_ANSWER = (
    "uncertain: gave up after repeated transient errors, and an attempt may have reached {provider};"
    " it de-duplicates, so `fanout redrive` is safe"
)


class RetryLater(Exception):
    """The chunk goes back to the queue; `delay` seconds until it is visible again."""

    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(reason)
        self.delay = delay


def backoff_seconds(receive_count: int, retry_after: float | None, cap: int) -> int:
    """How long a chunk rests in the queue before its next delivery: the provider's Retry-After when it
    gave one, else 5 s doubling with each delivery; never more than `cap`."""
    if retry_after is not None:
        return int(min(cap, max(1.0, retry_after)))
    return int(min(cap, 5 * 2 ** max(0, receive_count - 1)))


@dataclass(frozen=True, slots=True)
class SenderDeps:
    """What a sender needs from outside: storage, the provider's secret, pacing and HTTP."""

    store: JobStore
    secret: Callable[[], ProviderSecret]
    pacer: Pacer
    settle: JobSettle  # a job whose last chunk settled here: handed to the job function (fanout.settling)
    http: httpx.Client | None = None
    clock: Callable[[], float] = time.time  # epoch seconds; tests move it (a frozen day, a midnight)


class Sender:
    """Sends chunks of one destination."""

    def __init__(self, config: SenderConfig, deps: SenderDeps) -> None:
        self._cfg = config
        self._deps = deps
        self._provider: Provider = provider_for(config.destination)
        quota = quota_for(config.destination, config.daily_request_quota, config.daily_contact_quota)
        self._ledger = QuotaLedger(config.table_name, quota, deps.clock) if quota is not None else None

    def _now(self) -> float:
        return self._deps.clock()

    def handle(self, message: ChunkMessage, receive_count: int = 1) -> None:
        """Send one chunk; raises RetryLater when it must come back later."""
        rest = 0.0 if message.not_before is None else message.not_before - self._now()
        if rest > 1:  # a wait longer than SQS's longest delay: the rest of it, invisible
            raise RetryLater(
                f"waiting until {iso_utc(message.not_before or 0)}", min(SQS_MAX_VISIBILITY, math.ceil(rest))
            )
        store = self._deps.store
        claim = store.claim_chunk(
            message.job_id, message.chunk_id, self._cfg.chunk_lease_seconds, message.turn
        )
        log = {"job_id": message.job_id, "chunk_id": message.chunk_id, "claim": claim.value}
        if claim is Claim.SETTLED:
            logger.info("chunk already settled: nothing to send", extra=log)
            self._settle_job_if_stuck(message.job_id)
            return
        if claim is Claim.MISSING:
            logger.warning("chunk unknown: dropping the message", extra=log)
            return
        if claim is Claim.STALE:
            logger.info("a later message for this chunk is live: dropping this one", extra=log)
            return
        if claim is Claim.BUSY:
            raise RetryLater(
                "another instance holds this chunk", min(BUSY_RETRY_SECONDS, self._cfg.chunk_lease_seconds)
            )
        if self._provider.follows_batches:
            chunk = store.get_chunk(message.job_id, message.chunk_id)
            if chunk is not None and chunk.batch_id:
                # Started by an earlier delivery (even one that died since): read how it ended, never
                # start a second one.
                self._poll(message, chunk)
                return
        staged = list(staged_rows(self._cfg.bucket_name, message.key, message.byte_range))
        if claim is Claim.CLAIMED_AFTER_CRASH and not self._provider.dedupes:
            answer = UNCERTAIN_ANSWER.format(provider=self._provider.destination.value)
            logger.warning("earlier attempt died mid-call; marking uncertain", extra=log)
            # Rows an earlier delivery saved answers for keep them (one call a row: Mateo messages).
            known = {
                r.row: r
                for r in load_progress(self._cfg.bucket_name, message)
                if r.state is not RowState.UNCERTAIN
            }
            results = [
                known.get(r.row) or RowResult(r.row, r.identity, RowState.UNCERTAIN, answer) for r in staged
            ]
            self._record(message, results, answer)
            return
        self._send(message, staged, receive_count, claim)

    def _send(self, message: ChunkMessage, staged: list[StagedRow], receive_count: int, claim: Claim) -> None:
        # httpx and tenacity load with the first send, not at cold start: the dead-letter function, which
        # imports this module, never sends.
        from fanout.transport import send

        secret = self._deps.secret()
        problem = self._provider.secret_problem(secret)
        if problem is not None:  # no call could succeed: fail the rows now, naming what to fix
            detail = f"the {self._provider.destination.value} secret {self._cfg.secret_name} {problem}; nothing was sent"
            logger.error(
                "provider secret incomplete: chunk failed", extra={"job_id": message.job_id, "detail": detail}
            )
            self._record(
                message, [RowResult(r.row, r.identity, RowState.FAILED, detail) for r in staged], detail
            )
            return
        lane = message.chunk_id[0]
        # Rows an earlier delivery already got answers for (one call per row: Mateo messages) are not sent
        # again; a chunk under a storm still makes progress with every delivery. Only a delivery after one
        # that saved progress (or died, maybe after saving it) reads it: one S3 GET less for most chunks.
        resumed = claim in (Claim.RESUMED, Claim.CLAIMED_AFTER_CRASH)
        progress = load_progress(self._cfg.bucket_name, message) if resumed else []
        results = [r for r in progress if r.state is not RowState.UNCERTAIN]
        # Rows whose last attempt may have reached the provider: resent (it de-duplicates), and reported
        # uncertain rather than failed should the chunk end in the dead-letter queue.
        maybe = {r.row: r for r in progress if r.state is RowState.UNCERTAIN}
        answered = {r.row for r in results}
        todo = [r for r in staged if r.row not in answered]
        calls = list(self._provider.calls(message.target, message.envelope, todo, secret, lane))
        if self._ledger is not None and calls:
            requests, contacts = usage_of(self._provider.destination, len(todo), len(calls))
            if not self._ledger.reserve(requests, contacts):
                self._wait_for_quota(message, "today's quota is planned full", bool(progress))
                return
        for call in calls:
            outcome = send(self._provider, call, http=self._deps.http, pace=self._deps.pacer.acquire)
            record_call_metrics(outcome)
            if self._ledger is not None and self._quota_spent(outcome):
                self._ledger.spend_all()
                if outcome.verdict is Verdict.RETRY and outcome.retry_after is None:
                    # the provider's daily quota refused the call (nothing happened): wait for the next
                    # UTC day with the answers got so far saved, using up no delivery
                    saved = bool(results or maybe or progress)
                    if results or maybe:
                        done = {r.row for r in results}
                        save_progress(
                            self._cfg.bucket_name,
                            message,
                            results + [m for m in maybe.values() if m.row not in done],
                        )
                    self._wait_for_quota(message, outcome.detail, saved)
                    return
            if outcome.verdict is Verdict.STARTED and outcome.batch_id:
                self._follow(message, outcome.batch_id)
                return
            if outcome.verdict in (Verdict.DONE, Verdict.FAILED):
                results.extend(outcome.rows)
            elif outcome.verdict is Verdict.TOO_LARGE:
                self._split(message, staged, outcome)
                return
            elif outcome.verdict is Verdict.RETRY or self._provider.dedupes:
                if outcome.verdict is Verdict.UNCERTAIN:
                    note = (
                        f"{MAYBE_ANSWER.format(provider=self._provider.destination.value)} ({outcome.detail})"
                    )
                    maybe.update(
                        {r.row: RowResult(r.row, r.identity, RowState.UNCERTAIN, note) for r in call.rows}
                    )
                saved = bool(results or maybe)
                if saved:
                    done = {r.row for r in results}
                    save_progress(
                        self._cfg.bucket_name,
                        message,
                        results + [m for m in maybe.values() if m.row not in done],
                    )
                if outcome.retry_after is not None and outcome.retry_after > self._cfg.max_backoff_seconds:
                    self._wait_for_provider(message, outcome.retry_after, outcome.detail, saved)
                    return
                self._deps.store.release_chunk(message.job_id, message.chunk_id, outcome.detail, saved)
                raise RetryLater(
                    outcome.detail,
                    backoff_seconds(receive_count, outcome.retry_after, self._cfg.max_backoff_seconds),
                )
            else:  # uncertain at a provider that does not de-duplicate: never resend on our own
                answer = (
                    f"{UNCERTAIN_ANSWER.format(provider=self._provider.destination.value)} ({outcome.detail})"
                )
                results.extend(RowResult(r.row, r.identity, RowState.UNCERTAIN, answer) for r in call.rows)
        detail = "; ".join(sorted({r.answer for r in results if r.state is not RowState.SENT}))[:500]
        self._record(message, results, detail)

    def _follow(self, message: ChunkMessage, batch_id: str) -> None:
        """The provider started a batch for the chunk: record it on the chunk first (every later delivery
        then polls it, none starts another), then come back to poll its status."""
        log = {"job_id": message.job_id, "chunk_id": message.chunk_id, "batch_id": batch_id}
        if not self._deps.store.record_batch(message.job_id, message.chunk_id, batch_id, self._now()):
            logger.warning(
                "chunk no longer in flight after its batch started; its holder settles it", extra=log
            )
            return
        logger.info("provider batch started: polling its status", extra=log)
        provider = self._provider.destination.value
        self._requeue(message, self._poll_delay(0.0), f"waiting for {provider} batch {batch_id} to finish")

    def _poll(self, message: ChunkMessage, chunk: Chunk) -> None:
        """Read the status of the batch started for the chunk: its rows are sent when it FINISHED, failed
        with the provider's reason when it ended in ERROR (not started again: that is `fanout redrive`),
        uncertain when the status cannot be read or the batch is still running `max_batch_wait_seconds`
        after it started; otherwise poll again later."""
        from fanout.transport import send

        call = self._provider.status_call(message.target, chunk.batch_id, self._deps.secret())
        outcome = send(self._provider, call, attempts=1, http=self._deps.http, pace=self._deps.pacer.acquire)
        record_call_metrics(outcome)
        provider = self._provider.destination.value
        waited = self._now() - chunk.batch_started
        log = {"job_id": message.job_id, "chunk_id": message.chunk_id, "batch_id": chunk.batch_id}
        if outcome.verdict is Verdict.DONE:
            self._settle_all(message, RowState.SENT, outcome.detail)
        elif outcome.verdict is Verdict.FAILED:
            logger.warning("provider batch ended in error", extra={**log, "detail": outcome.detail})
            answer = BATCH_FAILED_ANSWER.format(detail=outcome.detail, provider=provider)
            self._settle_all(message, RowState.FAILED, answer)
        elif outcome.verdict is Verdict.UNCERTAIN:
            answer = (
                f"uncertain: {outcome.detail}; check the batch at {provider}, then"
                " `fanout redrive --include-uncertain` if it did not run"
            )
            self._settle_all(message, RowState.UNCERTAIN, answer)
        elif waited >= self._cfg.max_batch_wait_seconds:
            logger.warning(
                "provider batch still unfinished: giving up waiting", extra={**log, "waited": int(waited)}
            )
            answer = BATCH_UNFINISHED_ANSWER.format(
                provider=provider, batch=chunk.batch_id, waited=int(waited), detail=outcome.detail
            )
            self._settle_all(message, RowState.UNCERTAIN, answer)
        else:
            self._requeue(message, self._poll_delay(waited), f"waiting: {outcome.detail}")

    def _poll_delay(self, waited: float) -> float:
        """Until the next status poll: about as long as the batch has run so far (from 5 s), at most
        `batch_poll_seconds`, and never past the end of the wait."""
        limit = self._cfg.max_batch_wait_seconds
        return max(
            1.0, min(float(self._cfg.batch_poll_seconds), max(FIRST_POLL_SECONDS, waited), limit - waited)
        )

    def _quota_spent(self, outcome: Outcome) -> bool:
        """Whether an answer says today's quota is used up. Its `ratelimit-limit`/`-remaining` headers
        (Mateo's, of the window closest to exhaustion) tell: a 429 whose window still has room (remaining >
        0) was refused by a quota no header shows — the day's contacts; a day-sized window (a limit at
        least the daily request quota) with nothing remaining is the day's requests, on a 429 or on a
        success that used the last of it. A 429 of a full per-second window is only throttling, and one
        with a Retry-After is waited out as it says."""
        if self._ledger is None or outcome.ratelimit is None:
            return False
        limit, remaining = outcome.ratelimit
        day_sized = bool(self._ledger.quota.requests) and limit >= self._ledger.quota.requests
        if outcome.status_code == 429:  # a Retry-After says itself how long to wait: honoured as such
            return outcome.retry_after is None and (remaining > 0 or day_sized)
        return day_sized and remaining == 0

    def _wait_for_quota(self, message: ChunkMessage, reason: str, saved: bool) -> None:
        """Today's quota is used up (or planned full): come back a second into the next UTC day, with a
        follow-up message (no delivery used), and say on the job how long the file still needs."""
        assert self._ledger is not None
        now = self._now()
        until = next_utc_day(now) + 1
        job = self._deps.store.get_job(message.job_id)
        counts = job.counts if job is not None else None
        left = (
            counts.read - counts.sent - counts.rejected - counts.failed - counts.uncertain
            if counts is not None
            else message.rows
        )
        note = wait_note(
            self._provider.destination, self._ledger.quota, until, max(left, message.rows), reason
        )
        logger.warning(
            "provider daily quota used up: waiting for the next UTC day",
            extra={"job_id": message.job_id, "chunk_id": message.chunk_id, "until": iso_utc(until)},
        )
        metrics.add_metric(name="ProviderQuotaWaits", unit="Count", value=1)
        self._requeue(message, until - now, note, saved)
        self._deps.store.note_job(message.job_id, note)

    def _wait_for_provider(self, message: ChunkMessage, retry_after: float, detail: str, saved: bool) -> None:
        """The provider asked for a wait beyond the backoff cap (Mateo's daily quota: until 00:00 UTC).
        Honoured up to SQS's 12-hour visibility limit (a longer one is asked for again then), with a
        follow-up message: no delivery is used up, and no retry is made in the meantime."""
        wait = min(SQS_MAX_VISIBILITY, math.ceil(retry_after))
        until = iso_utc(self._now() + wait)
        provider = self._provider.destination.value
        note = f"waiting for {provider}'s quota until {until} ({detail}); sending resumes by itself then"
        logger.warning(
            "provider quota used up: waiting for it to reset",
            extra={
                "job_id": message.job_id,
                "chunk_id": message.chunk_id,
                "wait_seconds": wait,
                "until": until,
                "detail": detail,
            },
        )
        metrics.add_metric(name="ProviderQuotaWaits", unit="Count", value=1)
        self._requeue(message, wait, note, saved)
        self._deps.store.note_job(message.job_id, note)

    def _requeue(self, message: ChunkMessage, delay: float, note: str, progress_saved: bool = False) -> None:
        """Come back to the chunk in `delay` seconds with a follow-up message, and let the delivered one go.

        Why a new message rather than keeping this one invisible: every delivery of a message counts
        towards the queue's maxReceiveCount (5), and a chunk that polls a batch every half minute or waits
        out a quota over several deliveries would be dead-lettered (failed) while healthy. A follow-up
        starts with a count of 0; only a wait past SQS's 15-minute delay costs it one extra delivery (the
        early one, which rests out the remainder, see `handle`).

        The same guarantees as one message: the follow-up carries a fresh `turn`, and the chunk is released
        naming that turn as its live message, so any other message for the chunk (the delivered one,
        should it come back, or a copy) is stale and dropped at its claim. The follow-up is queued before
        the chunk names it: a crash in between leaves the delivered message live (it comes back and does
        this again), and the orphaned follow-up is dropped as stale. A Symplify batch is recorded on the
        chunk before this, so no message ever triggers it again.
        """
        turn = uuid.uuid4().hex[:16]
        wait = max(1, math.ceil(delay))
        follow_up = replace(
            message, turn=turn, not_before=self._now() + wait if wait > SQS_MAX_DELAY else None
        )
        send_chunk_messages(self._cfg.queue_url, [follow_up], min(SQS_MAX_DELAY, wait))
        self._deps.store.release_chunk(message.job_id, message.chunk_id, note, progress_saved, turn)
        logger.info(
            "chunk queued to come back",
            extra={
                "job_id": message.job_id,
                "chunk_id": message.chunk_id,
                "delay_seconds": wait,
                "reason": note,
            },
        )

    def _settle_all(self, message: ChunkMessage, state: RowState, answer: str) -> None:
        """Every row of the chunk ends `state` with `answer`."""
        rows = list(staged_rows(self._cfg.bucket_name, message.key, message.byte_range))
        results = [RowResult(r.row, r.identity, state, answer) for r in rows]
        self._record(message, results, "" if state is RowState.SENT else answer)

    def _record(self, message: ChunkMessage, results: list[RowResult], error: str) -> None:
        record_results(self._deps.store, self._cfg.bucket_name, self._deps.settle, message, results, error)

    def _settle_job_if_stuck(self, job_id: str) -> None:
        """A redelivery of a settled chunk whose job has not settled (the settle's request was lost, or
        its settle died): ask for it again; the lease lets one settle run at a time."""
        job = self._deps.store.get_job(job_id)
        if job is None or job.status.is_final or job.chunks_settled < job.chunks_total:
            return
        self._deps.settle(job_id)

    def _split(self, message: ChunkMessage, staged: list[StagedRow], outcome: Outcome) -> None:
        """Too large for one call (or holding a row the provider refused whole): two parts, staged and
        queued, replace the chunk — halves, or the row the provider named and the rest."""
        if len(staged) == 1:
            row = staged[0]
            self._record(
                message, [RowResult(row.row, row.identity, RowState.FAILED, outcome.detail)], outcome.detail
            )
            return
        named = [r for r in staged if r.row == outcome.isolate_row]
        if named:  # the provider named the row it refused: that row alone, and the rest
            parts = (named, [r for r in staged if r.row != outcome.isolate_row])
        else:
            middle = len(staged) // 2
            parts = (staged[:middle], staged[middle:])
        halves: list[Chunk] = []
        messages: list[ChunkMessage] = []
        for number, rows in enumerate(parts, start=1):
            chunk_id = f"{message.chunk_id}-{number}"
            key = chunk_key(message.job_id, chunk_id)  # never the packed object it shares with others
            with S3Writer(self._cfg.bucket_name, key) as out:
                for row in rows:
                    out.write_line(row.to_json())
            half = ChunkMessage(
                message.job_id,
                chunk_id,
                message.destination,
                message.target,
                key,
                len(rows),
                message.envelope,
            )
            messages.append(half)
            halves.append(Chunk(message.job_id, chunk_id, key, len(rows), message=half.to_json()))
        self._deps.store.split_chunk(message.job_id, message.chunk_id, halves)
        send_chunk_messages(self._cfg.queue_url, messages)
        logger.info(
            "chunk too large: split in halves",
            extra={"job_id": message.job_id, "chunk_id": message.chunk_id, "sizes": [h.rows for h in halves]},
        )


def load_progress(bucket: str, message: ChunkMessage) -> list[RowResult]:
    """Row results an earlier, interrupted delivery of this chunk recorded."""
    return [
        RowResult.from_json(line)
        for line in iter_lines(bucket, progress_key(message.job_id, message.chunk_id))
    ]


def save_progress(bucket: str, message: ChunkMessage, results: list[RowResult]) -> None:
    with S3Writer(bucket, progress_key(message.job_id, message.chunk_id)) as out:
        for result in results:
            out.write_line(result.to_json())


def record_results(
    store: JobStore,
    bucket: str,
    settle: JobSettle,
    message: ChunkMessage,
    results: list[RowResult],
    error: str,
    state: ChunkState | None = None,
) -> None:
    """Write the chunk's row results, then settle it and add its counts to the job, atomically; settle the
    job (`settle`: the job function does it) when this was its last chunk. `state` overrides the chunk state the results imply.

    Rows that all got one answer (a Mateo batch, a Workshop list, a chunk failed whole) are settled with
    that answer on the chunk's record and no result file: the job's settle reads them from the staged
    chunk, several chunks a read. A million-row Mateo job so makes 2,000 PUTs fewer, and its settle
    some 450 GETs instead of 2,000."""
    sent = sum(r.state is RowState.SENT for r in results)
    failed = sum(r.state is RowState.FAILED for r in results)
    uncertain = sum(r.state is RowState.UNCERTAIN for r in results)
    if state is None:
        # Rows the provider refused in a chunk it took are failed rows of a sent chunk (not redriven).
        state = ChunkState.UNCERTAIN if uncertain else ChunkState.SENT if sent else ChunkState.FAILED
    answer = one_answer(results, state, message.rows)
    if answer is None:  # rows answered differently: each row's answer in a file, rows.csv's form
        text = rows_csv_text(sorted(results, key=lambda r: r.row))
        key = chunk_result_key(message.job_id, message.chunk_id)
        put_bytes(bucket, key, text.encode("utf-8"), "text/csv")
    settlement = Settlement(state, sent=sent, failed=failed, uncertain=uncertain, error=error, answer=answer)
    maybe_last = store.settle_chunk(message.job_id, message.chunk_id, settlement)
    metrics.add_metric(name="RowsSent", unit="Count", value=sent)
    metrics.add_metric(name="RowsFailed", unit="Count", value=failed)
    logger.info(
        "chunk settled",
        extra={
            "job_id": message.job_id,
            "chunk_id": message.chunk_id,
            "state": state.value,
            "sent": sent,
            "failed": failed,
            "uncertain": uncertain,
        },
    )
    if maybe_last:
        settle(message.job_id)


def dead_letter(store: JobStore, bucket: str, settle: JobSettle, body: str, receive_count: int) -> None:
    """A chunk message that exhausted its deliveries: rows answered by earlier deliveries keep their
    answers, the rest are failed; the chunk is failed (so `fanout redrive` sends it again) and the job can
    settle."""
    try:
        message = ChunkMessage.from_json(body)
    except (ValueError, KeyError, json.JSONDecodeError):
        logger.error("dead letter is not a chunk message; dropped", extra={"length": len(body)})
        return
    chunk = next((c for c in store.chunks(message.job_id) if c.chunk_id == message.chunk_id), None)
    if chunk is None or chunk.state.is_settled:
        return
    if (message.turn or "") != chunk.turn:
        logger.info(
            "dead letter superseded by a later message for its chunk; dropped",
            extra={"job_id": message.job_id, "chunk_id": message.chunk_id},
        )
        return
    reason = f"gave up after repeated transient errors; last: {chunk.last_error or 'unknown'}"
    state = RowState.FAILED
    if chunk.batch_id:  # a provider batch was started for it: its rows may well have been sent
        state = RowState.UNCERTAIN
        reason = (
            f"uncertain: {message.destination.value} batch {chunk.batch_id} was started but its status"
            f" could not be read ({reason}); check it at the provider, then"
            " `fanout redrive --include-uncertain` if it did not run"
        )
    results = load_progress(bucket, message)  # answered rows, and rows an attempt may have reached
    answered = {r.row for r in results}
    for row in staged_rows(bucket, message.key, message.byte_range):
        if row.row not in answered:
            results.append(RowResult(row.row, row.identity, state, reason))
    logger.warning(
        "chunk dead-lettered",
        extra={"job_id": message.job_id, "chunk_id": message.chunk_id, "rows": chunk.rows},
    )
    final = ChunkState.FAILED if state is RowState.FAILED else ChunkState.UNCERTAIN
    record_results(store, bucket, settle, message, results, reason, final)
