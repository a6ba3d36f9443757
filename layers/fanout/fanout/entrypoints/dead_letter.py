"""Dead-letter entry point: chunk messages that exhausted their deliveries become failed chunks."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from fanout.config import DeadLetterConfig, load
from fanout.observability import logger, metrics, tracer
from fanout.sender import dead_letter
from fanout.store import DynamoJobStore

CONFIG = load(DeadLetterConfig)
STORE = DynamoJobStore(CONFIG.table_name, CONFIG.retention_days)
# A batch whose every chunk must come back is reported item by item, not raised: the same retry, and no
# stack trace in the logs for what is ordinary throttling.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord) -> None:
    count = int(record.attributes.approximate_receive_count or 1)
    dead_letter(STORE, CONFIG.bucket_name, CONFIG.event_bus_name, record.body, count)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
