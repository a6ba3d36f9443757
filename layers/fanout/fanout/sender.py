"""The sender: one staged chunk to its provider, exactly once in effect, its outcome recorded per row.

A chunk moves pending -> in flight (leased) -> sent | failed | uncertain | split by conditional writes.
A redelivered message for a settled chunk does nothing. Where the provider de-duplicates (Mateo,
Workshop) a chunk whose earlier attempt may have reached it is simply sent again; where it does not
(Altcraft, Symplify) such a chunk is marked uncertain and waits for an explicit `fanout redrive`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from fanout.config import SenderConfig
from fanout.models import ChunkMessage, ChunkState, Outcome, RowResult, RowState, StagedRow, Verdict
from fanout.observability import logger, metrics
from fanout.pacing import Pacer
from fanout.providers import provider_for
from fanout.providers.base import Provider, ProviderSecret
from fanout.queueing import send_chunk_messages
from fanout.results import settle_job
from fanout.staging import S3Writer, chunk_result_key, iter_lines, progress_key, read_lines
from fanout.store import Chunk, Claim, JobStore, Settlement
from fanout.transport import send

BUSY_RETRY_SECONDS = 30
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
    http: httpx.Client | None = None


class Sender:
    """Sends chunks of one destination."""

    def __init__(self, config: SenderConfig, deps: SenderDeps) -> None:
        self._cfg = config
        self._deps = deps
        self._provider: Provider = provider_for(config.destination)

    def handle(self, message: ChunkMessage, receive_count: int = 1) -> None:
        """Send one chunk; raises RetryLater when it must come back later."""
        store = self._deps.store
        claim = store.claim_chunk(message.job_id, message.chunk_id, self._cfg.chunk_lease_seconds)
        log = {"job_id": message.job_id, "chunk_id": message.chunk_id, "claim": claim.value}
        if claim is Claim.SETTLED:
            logger.info("chunk already settled: nothing to send", extra=log)
            self._settle_job_if_stuck(message.job_id)
            return
        if claim is Claim.MISSING:
            logger.warning("chunk unknown: dropping the message", extra=log)
            return
        if claim is Claim.BUSY:
            raise RetryLater(
                "another instance holds this chunk", min(BUSY_RETRY_SECONDS, self._cfg.chunk_lease_seconds)
            )
        staged = [StagedRow.from_json(line) for line in read_lines(self._cfg.bucket_name, message.key)]
        if claim is Claim.CLAIMED_AFTER_CRASH and not self._provider.dedupes:
            answer = UNCERTAIN_ANSWER.format(provider=self._provider.destination.value)
            logger.warning("earlier attempt died mid-call; marking uncertain", extra=log)
            self._record(
                message, [RowResult(r.row, r.identity, RowState.UNCERTAIN, answer) for r in staged], answer
            )
            return
        self._send(message, staged, receive_count)

    def _send(self, message: ChunkMessage, staged: list[StagedRow], receive_count: int) -> None:
        secret = self._deps.secret()
        lane = message.chunk_id[0]
        # Rows an earlier delivery already got answers for (one call per row: Mateo messages) are not sent
        # again; a chunk under a storm still makes progress with every delivery.
        progress = load_progress(self._cfg.bucket_name, message)
        results = [r for r in progress if r.state is not RowState.UNCERTAIN]
        # Rows whose last attempt may have reached the provider: resent (it de-duplicates), and reported
        # uncertain rather than failed should the chunk end in the dead-letter queue.
        maybe = {r.row: r for r in progress if r.state is RowState.UNCERTAIN}
        answered = {r.row for r in results}
        todo = [r for r in staged if r.row not in answered]
        for call in self._provider.calls(message.target, message.envelope, todo, secret, lane):
            outcome = send(self._provider, call, http=self._deps.http, pace=self._deps.pacer.acquire)
            record_call_metrics(outcome)
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
                if results or maybe:
                    done = {r.row for r in results}
                    save_progress(
                        self._cfg.bucket_name,
                        message,
                        results + [m for m in maybe.values() if m.row not in done],
                    )
                self._deps.store.release_chunk(message.job_id, message.chunk_id, outcome.detail)
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

    def _record(self, message: ChunkMessage, results: list[RowResult], error: str) -> None:
        record_results(
            self._deps.store, self._cfg.bucket_name, self._cfg.event_bus_name, message, results, error
        )

    def _settle_job_if_stuck(self, job_id: str) -> None:
        """A redelivery after a crash mid-settle: finish the job, or come back when the lease lapses."""
        job = self._deps.store.get_job(job_id)
        if job is None or job.status.is_final or job.chunks_settled < job.chunks_total:
            return
        if settle_job(self._deps.store, self._cfg.bucket_name, self._cfg.event_bus_name, job_id) is None:
            refreshed = self._deps.store.get_job(job_id)
            if refreshed is not None and not refreshed.status.is_final:
                raise RetryLater("the job is being settled by another instance", BUSY_RETRY_SECONDS)

    def _split(self, message: ChunkMessage, staged: list[StagedRow], outcome: Outcome) -> None:
        """Too large for one call: two halves, staged and queued, replace the chunk."""
        if len(staged) == 1:
            row = staged[0]
            self._record(
                message, [RowResult(row.row, row.identity, RowState.FAILED, outcome.detail)], outcome.detail
            )
            return
        middle = len(staged) // 2
        halves: list[Chunk] = []
        messages: list[ChunkMessage] = []
        for number, rows in enumerate((staged[:middle], staged[middle:]), start=1):
            chunk_id = f"{message.chunk_id}-{number}"
            key = message.key.replace(f"{message.chunk_id}.jsonl", f"{chunk_id}.jsonl")
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
    bus: str,
    message: ChunkMessage,
    results: list[RowResult],
    error: str,
    state: ChunkState | None = None,
) -> None:
    """Write the chunk's row results, then settle it and add its counts to the job, atomically; settle the
    job when this was its last chunk. `state` overrides the chunk state the results imply."""
    with S3Writer(bucket, chunk_result_key(message.job_id, message.chunk_id)) as out:
        for result in sorted(results, key=lambda r: r.row):
            out.write_line(result.to_json())
    sent = sum(r.state is RowState.SENT for r in results)
    failed = sum(r.state is RowState.FAILED for r in results)
    uncertain = sum(r.state is RowState.UNCERTAIN for r in results)
    if state is None:
        # Rows the provider refused in a chunk it took are failed rows of a sent chunk (not redriven).
        state = ChunkState.UNCERTAIN if uncertain else ChunkState.SENT if sent else ChunkState.FAILED
    settlement = Settlement(state, sent=sent, failed=failed, uncertain=uncertain, error=error)
    job = store.settle_chunk(message.job_id, message.chunk_id, settlement)
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
    if job.chunks_settled >= job.chunks_total:
        settle_job(store, bucket, bus, message.job_id)


def dead_letter(store: JobStore, bucket: str, bus: str, body: str, receive_count: int) -> None:
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
    reason = f"gave up after repeated transient errors; last: {chunk.last_error or 'unknown'}"
    results = load_progress(bucket, message)  # answered rows, and rows an attempt may have reached
    answered = {r.row for r in results}
    for line in iter_lines(bucket, message.key):
        row = StagedRow.from_json(line)
        if row.row not in answered:
            results.append(RowResult(row.row, row.identity, RowState.FAILED, reason))
    logger.warning(
        "chunk dead-lettered",
        extra={"job_id": message.job_id, "chunk_id": message.chunk_id, "rows": chunk.rows},
    )
    record_results(store, bucket, bus, message, results, reason, ChunkState.FAILED)
