"""boto3 clients, one per service per container.

boto3 reads `AWS_ENDPOINT_URL` itself, so the same code talks to AWS or to the local moto server.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=20)


@cache
def client(service: str) -> Any:
    """A cached boto3 client for `service` (s3, sqs, dynamodb, events, secretsmanager)."""
    return boto3.client(service, config=_CONFIG)  # type: ignore[call-overload]
