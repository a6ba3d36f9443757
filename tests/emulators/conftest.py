"""Fixtures for the emulator suite: one running EmulatorSet for the package (stopped after its last test),
reset around every test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from emulators.base import PROVIDERS, load_fixture
from emulators.server import EmulatorSet, start_emulators
from emulators.testing import AdminClient

BUCKET = "emulator-test-contacts"


@pytest.fixture(scope="package")
def emulators() -> Iterator[EmulatorSet]:
    """All four emulators on free ports with the default fixture."""
    with start_emulators() as emulator_set:
        yield emulator_set


@pytest.fixture(scope="package")
def http() -> Iterator[httpx.Client]:
    """A keep-alive client that ignores proxy settings from the environment."""
    with httpx.Client(trust_env=False, timeout=httpx.Timeout(3.0)) as client:
        yield client


@pytest.fixture(scope="package")
def tokens() -> dict[str, str]:
    """Provider -> the first token of the default fixture."""
    fixture = load_fixture()
    return {name: fixture[name]["tokens"][0] for name in PROVIDERS}


@pytest.fixture
def admin(emulators: EmulatorSet, http: httpx.Client) -> Iterator[AdminClient]:
    """Admin client; every emulator starts the test reset and fault-free, and ends it fault-free."""
    client = AdminClient(emulators.admin_urls, http)
    for provider in PROVIDERS:
        client.set_faults(provider, "")
    client.reset()
    yield client
    for provider in PROVIDERS:
        client.set_faults(provider, "")


@pytest.fixture
def urls(emulators: EmulatorSet, admin: AdminClient) -> dict[str, str]:
    """Base URLs per provider (requesting it also resets the emulators)."""
    return emulators.base_urls


@pytest.fixture(scope="package")
def moto_s3() -> Iterator[Any]:
    """A moto S3 server on a free loopback port and a SigV4 boto3 client bound to it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{host}:{port}",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(signature_version="s3v4"),
    )
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    yield client
    server.stop()


@pytest.fixture
def presign(moto_s3: Any) -> Callable[..., str]:
    """Upload bytes to moto S3 and return a presigned (SigV4) GET URL for them."""

    def make(body: bytes, expires_in: int = 3600) -> str:
        key = f"contacts/{uuid.uuid4().hex}.ndjson"
        moto_s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        return moto_s3.generate_presigned_url(
            "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=expires_in
        )

    return make
