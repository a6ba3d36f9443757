"""Sender entry point: an SQS batch of chunk messages -> provider calls, with partial batch failures.

One module serves every destination; the function's DESTINATION variable picks the provider.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fanout.aws import client
from fanout.config import SenderConfig, load
from fanout.entrypoints.sqs_batch import process_sqs_batch
from fanout.models import ChunkMessage
from fanout.observability import logger, metrics, tracer
from fanout.pacing import Pacer
from fanout.providers.base import ProviderSecret
from fanout.sender import RetryLater, Sender, SenderDeps
from fanout.settling import HandOver
from fanout.store import DynamoJobStore

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

CONFIG = load(SenderConfig)
SECRET_MAX_AGE = 300  # seconds a warm container keeps the provider secret before fetching it again


def provider_secret() -> ProviderSecret:
    """The destination's secret, cached by Powertools parameters; never logged."""
    from aws_lambda_powertools.utilities import parameters  # at the first send, not at cold start

    value = parameters.get_secret(CONFIG.secret_name, transform="json", max_age=SECRET_MAX_AGE)
    return ProviderSecret.model_validate(value)


SENDER = Sender(
    CONFIG,
    SenderDeps(
        store=DynamoJobStore(CONFIG.table_name, CONFIG.retention_days),
        secret=provider_secret,
        pacer=Pacer(CONFIG.table_name, CONFIG.destination.value, CONFIG.rate_per_second),
        settle=HandOver(CONFIG.job_function_name),
    ),
)


def record_handler(record: SQSRecord) -> None:
    message = ChunkMessage.from_json(record.body)
    logger.append_keys(job_id=message.job_id, chunk_id=message.chunk_id)
    try:
        SENDER.handle(message, int(record.attributes.approximate_receive_count or 1))
    except RetryLater as exc:
        client("sqs").change_message_visibility(
            QueueUrl=CONFIG.queue_url, ReceiptHandle=record.receipt_handle, VisibilityTimeout=int(exc.delay)
        )
        logger.info("chunk back to the queue", extra={"delay_seconds": int(exc.delay), "reason": str(exc)})
        raise


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    metrics.add_dimension(name="destination", value=CONFIG.destination.value)
    return process_sqs_batch(event, record_handler, context)
