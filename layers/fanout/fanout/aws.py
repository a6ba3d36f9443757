"""boto3 clients, one per service (and endpoint) per container.

boto3 reads `AWS_ENDPOINT_URL` itself, so the same code talks to AWS or to the local moto server. The
cache is keyed on the endpoint and region too, so a process that talks to two stacks (a test run) never
reuses a client bound to the other one.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=20)
# S3 refuses SigV2 presigned URLs on buckets created since June 2020; Symplify's download URL needs SigV4.
# The signature leaves the payload out, its integrity is the CRC32 checksum: what botocore does by itself
# over TLS, said here so that the local stack's plain HTTP does the same (otherwise every staged byte is
# SHA-256 hashed for the signature, a cost the split would pay on the local stack only).
_S3_CONFIG = _CONFIG.merge(Config(signature_version="s3v4", s3={"payload_signing_enabled": False}))


def client(service: str) -> Any:
    """A cached boto3 client for `service` (s3, sqs, dynamodb, events, secretsmanager)."""
    return _client(service, os.environ.get("AWS_ENDPOINT_URL"), os.environ.get("AWS_DEFAULT_REGION"))


@cache
def _client(service: str, endpoint: str | None, region: str | None) -> Any:
    return boto3.client(service, config=_S3_CONFIG if service == "s3" else _CONFIG)  # type: ignore[call-overload]
