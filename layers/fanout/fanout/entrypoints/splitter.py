"""Splitter entry point: an S3 notification or EventBridge "Object Created" event -> jobs; or a split's
own continuation (fanout.continuation), when a file takes longer than one invocation; or a job's settle,
handed over by the sender that settled its last chunk (fanout.settling): this is the job function."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from fanout.config import SplitterConfig, load
from fanout.continuation import Continuation, invoker_from_environment, object_from_event
from fanout.models import JobStatus
from fanout.observability import logger, metrics, tracer
from fanout.settling import SettleRequest, settle_requested
from fanout.splitter import SplitOutcome, Splitter, object_refs
from fanout.store import DynamoJobStore

CONFIG = load(SplitterConfig)
STORE = DynamoJobStore(CONFIG.table_name, CONFIG.retention_days)
# A split that must continue invokes this very function (Lambda sets AWS_LAMBDA_FUNCTION_NAME).
SPLITTER = Splitter(CONFIG, STORE, invoker_from_environment(os.environ))


def outcomes(event: dict[str, Any], context: LambdaContext) -> list[SplitOutcome]:
    """What the event asks for: a continuation, the remaining routes of a file, or new objects."""
    remaining = context.get_remaining_time_in_millis
    continuation = Continuation.from_event(event)
    if continuation is not None:
        return [SPLITTER.resume(continuation, remaining)]
    handed = object_from_event(event)
    if handed is not None:
        ref, route_from = handed
        return SPLITTER.split(ref, remaining, route_from)
    return [outcome for ref in object_refs(event) for outcome in SPLITTER.split(ref, remaining)]


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = SettleRequest.from_event(event)
    if request is not None:  # the job function: a job's settle, handed over by the chunk that settled last
        logger.append_keys(job_id=request.job_id)
        remaining = context.get_remaining_time_in_millis()
        job = settle_requested(STORE, CONFIG.bucket_name, CONFIG.event_bus_name, request, remaining)
        return {"settled": None if job is None else {"job_id": job.job_id, "status": job.status.value}}
    jobs = []
    for outcome in outcomes(event, context):
        logger.append_keys(job_id=outcome.job_id)
        if outcome.status is not JobStatus.SPLITTING and not outcome.duplicate:  # counted once, at the end
            metrics.add_metric(name="RowsRead", unit="Count", value=outcome.counts.read)
            metrics.add_metric(name="RowsRejected", unit="Count", value=outcome.counts.rejected)
        jobs.append(
            {"job_id": outcome.job_id, "status": outcome.status.value, "duplicate": outcome.duplicate}
        )
    return {"jobs": jobs}
