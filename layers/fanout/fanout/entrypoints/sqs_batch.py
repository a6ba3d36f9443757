"""An SQS batch, record by record, with partial batch failures (Powertools' batch utility).

The utility is imported at the first batch rather than at cold start: it loads every Powertools event
class and asyncio on import, a tenth of an entry point's import time.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch import BatchProcessor
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext


@cache
def processor() -> BatchProcessor:
    """The container's processor, made at the first batch and kept for the next ones."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

    # A batch whose every chunk must come back is reported item by item, not raised: the same retry, and
    # no stack trace in the logs for what is ordinary throttling.
    return BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def process_sqs_batch(
    event: dict[str, Any], record_handler: Callable[[SQSRecord], None], context: LambdaContext
) -> PartialItemFailureResponse:
    """Each record to `record_handler`; the records it raised on come back as `batchItemFailures`."""
    from aws_lambda_powertools.utilities.batch import process_partial_response

    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor(), context=context
    )
