"""Splitter entry point: an S3 notification or EventBridge "Object Created" event -> jobs."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from fanout.config import SplitterConfig, load
from fanout.observability import logger, metrics, tracer
from fanout.splitter import Splitter, object_refs
from fanout.store import DynamoJobStore

CONFIG = load(SplitterConfig)
SPLITTER = Splitter(CONFIG, DynamoJobStore(CONFIG.table_name, CONFIG.retention_days))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    jobs = []
    for ref in object_refs(event):
        for outcome in SPLITTER.split(ref):
            logger.append_keys(job_id=outcome.job_id)
            metrics.add_metric(name="RowsRead", unit="Count", value=outcome.counts.read)
            metrics.add_metric(name="RowsRejected", unit="Count", value=outcome.counts.rejected)
            jobs.append(
                {"job_id": outcome.job_id, "status": outcome.status.value, "duplicate": outcome.duplicate}
            )
    return {"jobs": jobs}
