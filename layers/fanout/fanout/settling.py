"""Where a job settles: in the job function (the splitter's: 15 minutes, one vCPU, 4 GB of /tmp), never in
the function whose chunk happened to settle last. A sender has 60 s and 512 MB (a third of a vCPU on
AWS), and a job's settle reads every row's result and writes rows.csv: some 5 s a million rows on a whole
core, so a job of a few million rows could not settle in a sender, and its last chunk's redeliveries would
try again until they ran out.

A sender or the dead-letter function that settles a job's last chunk hands the settle over: an
asynchronous invoke of the job function with

    {"settle": {"job_id": "j-...", "round": 0}}

The job function settles it under a lease that ends with its own invocation, so a settle that timed out
never holds the job past its death. A request that finds the job settling under another's live lease fails
(`SettleBusy`): Lambda tries it again after a minute and after two more, and once those are spent the
dead-letter function, which takes the job function's failed events, asks again with the next round. A job
already settled ends the chain; the last of SETTLE_ROUNDS rounds ends it with an error in the log and
the request left in the failure queue, whose alarm fires (`fanout settle JOB` asks again by hand).
Several requests for one job (two last chunks at once, a redelivery) settle it once: the lease decides,
and the later ones find it final.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from fanout.continuation import LambdaInvoker
from fanout.models import JobStatus
from fanout.observability import logger
from fanout.results import settle_job
from fanout.store import Job, JobStore

# Rounds of Lambda's three tries each (some 3 minutes a round): far past the longest lease, 15 minutes.
SETTLE_ROUNDS = 8
LEASE_MARGIN_SECONDS = 5  # past the invocation's own end: the lease never ends while it may still write

JobSettle = Callable[[str], None]  # settle the job whose chunks have all settled (or have it settled)


class SettleBusy(RuntimeError):
    """The job is being settled under another invocation's live lease: fail, so this one is tried again."""


class SettleGaveUp(RuntimeError):
    """A job still unsettled after SETTLE_ROUNDS rounds of requests: it needs a person."""


@dataclass(frozen=True, slots=True)
class SettleRequest:
    job_id: str
    round: int = 0

    def payload(self) -> dict[str, Any]:
        return {"settle": asdict(self)}

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> SettleRequest | None:
        body = event.get("settle")
        if not isinstance(body, dict):
            return None
        return cls(str(body["job_id"]), int(body.get("round", 0)))


class HandOver:
    """A JobSettle for the functions that must not settle a job themselves: it asks the job function."""

    def __init__(self, job_function: str) -> None:
        self._invoker = LambdaInvoker(job_function)

    def __call__(self, job_id: str, round_: int = 0) -> None:
        self._invoker.invoke(SettleRequest(job_id, round_).payload())
        logger.info("job settle handed to the job function", extra={"job_id": job_id, "round": round_})


def settle_requested(
    store: JobStore, bucket: str, bus: str, request: SettleRequest, remaining_ms: int
) -> Job | None:
    """Settle the requested job here, under a lease that ends with this invocation (`remaining_ms`).
    None when there is nothing to do (settled already, or chunks still open: the last one asks again);
    SettleBusy while another invocation holds it."""
    lease = math.ceil(remaining_ms / 1000) + LEASE_MARGIN_SECONDS
    settled = settle_job(store, bucket, bus, request.job_id, lease)
    if settled is not None:
        return settled
    job = store.get_job(request.job_id)
    if job is not None and job.status is JobStatus.SETTLING:
        raise SettleBusy(
            f"job {request.job_id} is being settled by another invocation (round {request.round})"
        )
    return None


# Asks the job function to settle a job, at a round: HandOver.
AskAgain = Callable[[str, int], None]


def settle_failed(store: JobStore, hand_over: AskAgain, request: SettleRequest, why: str) -> None:
    """A settle request whose tries are spent (from the job function's failure queue): ask again, with the
    next round, unless the job has settled meanwhile. Once the rounds are spent, SettleGaveUp: the entry
    stays in the failure queue (its alarm fires) and is looked at again each time it comes back, until
    the job is settled by hand (`fanout settle JOB`)."""
    job = store.get_job(request.job_id)
    if job is None or job.status.is_final:
        return
    if request.round + 1 >= SETTLE_ROUNDS:
        logger.error("job not settled", extra={"job_id": request.job_id, "rounds": SETTLE_ROUNDS})
        raise SettleGaveUp(
            f"job {request.job_id} could not be settled in {SETTLE_ROUNDS} rounds of tries ({why}); every"
            f" chunk is settled: fix the cause, then `fanout settle {request.job_id}`"
        )
    hand_over(request.job_id, request.round + 1)
