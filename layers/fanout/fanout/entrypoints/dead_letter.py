"""Dead-letter entry point: chunk messages that exhausted their deliveries become failed chunks, splitter
events whose retries are spent (SplitterFailureQueue) end their jobs failed, and a job's settle request
whose tries are spent is asked again (fanout.settling)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fanout.config import DeadLetterConfig, load
from fanout.entrypoints.sqs_batch import process_sqs_batch
from fanout.observability import logger, metrics, tracer
from fanout.sender import dead_letter
from fanout.settling import HandOver, SettleRequest, settle_failed
from fanout.splitter import fail_unfinished_split, failed_because
from fanout.store import DynamoJobStore

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

CONFIG = load(DeadLetterConfig)
STORE = DynamoJobStore(CONFIG.table_name, CONFIG.retention_days)
HAND_OVER = HandOver(CONFIG.job_function_name)


def _splitter_failure(body: str) -> dict[str, Any] | None:
    """An entry of SplitterFailureQueue (Lambda's destination record, or an event EventBridge could not
    deliver), or None for a chunk message."""
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        return None
    if isinstance(parsed, dict) and ({"requestPayload", "detail-type", "Records"} & parsed.keys()):
        return parsed
    return None


def record_handler(record: SQSRecord) -> None:
    failure = _splitter_failure(record.body)
    if failure is None:
        count = int(record.attributes.approximate_receive_count or 1)
        dead_letter(STORE, CONFIG.bucket_name, HAND_OVER, record.body, count)
        return
    request = SettleRequest.from_event(failure.get("requestPayload") or {})
    if request is not None:
        settle_failed(STORE, HAND_OVER, request, failed_because(failure))
    else:
        fail_unfinished_split(STORE, CONFIG.bucket_name, CONFIG.event_bus_name, failure, HAND_OVER)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_sqs_batch(event, record_handler, context)
