"""The cost model: measured usage (bench.counting.Usage) times list prices (bench.prices), per line.

Pure arithmetic, so a unit test can check it: Lambda GB-seconds are billed milliseconds times the
function's configured memory; every other line is a count times its unit price.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from bench import prices
from bench.counting import Usage

MB_PER_GB = 1024
BYTES_PER_GB = 2**30
CONTACTS_PER_QUOTE = 1_000_000


@dataclass(frozen=True, slots=True)
class CostLine:
    """One service's share of a bill: how much of what, at which unit price."""

    item: str
    quantity: float
    unit_price: float

    @property
    def dollars(self) -> float:
        return self.quantity * self.unit_price


def billed_ms(seconds: float) -> int:
    """Lambda bills each invocation's duration rounded up to the next millisecond."""
    return max(1, math.ceil(seconds * 1000 - 1e-9))


def lambda_usage(durations: Iterable[float], memory_mb: int) -> Usage:
    """Requests and GB-seconds of invocations that took `durations` seconds at `memory_mb` MB each."""
    listed = list(durations)
    total_ms = sum(billed_ms(d) for d in listed)
    return Usage(lambda_gb_seconds=total_ms / 1000 * memory_mb / MB_PER_GB, lambda_requests=len(listed))


def egress_usage(request_bytes: int) -> Usage:
    """Data transfer out for `request_bytes` sent to providers."""
    return Usage(egress_gb=request_bytes / BYTES_PER_GB)


def cost_lines(usage: Usage) -> list[CostLine]:
    """The bill for `usage`, one line per priced quantity."""
    return [
        CostLine("Lambda arm64 GB-s", usage.lambda_gb_seconds, prices.LAMBDA_ARM_PER_GB_SECOND),
        CostLine("Lambda requests", usage.lambda_requests, prices.LAMBDA_PER_REQUEST),
        CostLine("SQS requests", usage.sqs_requests, prices.SQS_PER_REQUEST),
        CostLine("S3 PUT-class requests", usage.s3_put_requests, prices.S3_PER_PUT_REQUEST),
        CostLine("S3 GET-class requests", usage.s3_get_requests, prices.S3_PER_GET_REQUEST),
        CostLine("DynamoDB write units", usage.dynamodb_write_units, prices.DYNAMODB_PER_WRITE_UNIT),
        CostLine("DynamoDB read units", usage.dynamodb_read_units, prices.DYNAMODB_PER_READ_UNIT),
        CostLine("EventBridge events", usage.eventbridge_events, prices.EVENTBRIDGE_PER_EVENT),
        CostLine("Secrets Manager calls", usage.secrets_calls, prices.SECRETS_PER_CALL),
        CostLine("Data transfer out, GB", usage.egress_gb, prices.EGRESS_PER_GB),
    ]


def total_dollars(lines: Iterable[CostLine]) -> float:
    return sum(line.dollars for line in lines)


def per_million_contacts(usage: Usage, contacts: int) -> Usage:
    """`usage` of a run that sent `contacts` contacts, scaled to 1,000,000 contacts."""
    if contacts <= 0:
        raise ValueError("a run that sent no contacts says nothing about the cost per contact")
    return usage.scaled(CONTACTS_PER_QUOTE / contacts)
