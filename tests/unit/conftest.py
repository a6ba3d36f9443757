"""Fixtures for the unit suite: no sockets, moto's in-process AWS, and the stack built from template.yaml.

Unit tests never open a socket: AWS is moto's `mock_aws` (in process), HTTP is `httpx.MockTransport` or
respx. The guard below turns an accidental connection into a clear failure instead of a slow, flaky test.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from functools import cache
from typing import Any

import boto3
import pytest
from moto import mock_aws

from fanout import aws
from fanout.config import SplitterConfig, load
from fanout.settling import JobSettle, SettleRequest, settle_requested
from fanout.store import JobStore
from fanout_local.deploy import deploy_stack
from fanout_local.deployed import DeployedStack
from fanout_local.moto_server import patch_moto

REGION = "eu-west-1"


@pytest.fixture(autouse=True)
def _no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any network connection from a unit test fails loudly."""

    def refuse(self: socket.socket, address: Any, *args: Any) -> None:
        raise RuntimeError(f"unit tests open no sockets (tried to connect to {address!r})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def _forget_layer_clients() -> None:
    """Drop the layer's cached boto3 clients (whichever function of fanout.aws holds the cache)."""
    for function in vars(aws).values():
        if callable(function) and hasattr(function, "cache_clear"):
            function.cache_clear()


def _isolate(monkeypatch: pytest.MonkeyPatch) -> None:
    """No endpoint or profile from the environment reaches boto3: every call stays in moto."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name == "AWS_PROFILE":
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's in-process AWS for one test, with the layer's cached boto3 clients made inside it."""
    _isolate(monkeypatch)
    _forget_layer_clients()
    with mock_aws():
        yield
    _forget_layer_clients()


@cache
def boto(service: str) -> Any:
    """A test-side boto3 client; moto intercepts it whenever a mock is active."""
    return boto3.client(service, region_name=REGION)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def stack() -> Iterator[DeployedStack]:
    """template.yaml deployed as the local stack deploys it (SAM's translator, CloudFormation), in moto's
    in-process AWS, once per module.

    Tests sharing it keep apart by their own keys and job ids (and empty the queues they read).
    """
    with pytest.MonkeyPatch.context() as monkeypatch:
        _isolate(monkeypatch)
        # AWS's managed policies, which the roles SAM makes attach, exist in moto only when loaded.
        monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        _forget_layer_clients()
        with mock_aws():
            patch_moto()
            yield deploy_stack(boto3.session.Session(region_name=REGION), "unit")
        _forget_layer_clients()


@pytest.fixture
def splitter_config(stack: DeployedStack) -> SplitterConfig:
    """The splitter's configuration, read from its resolved environment in the template."""
    return load(SplitterConfig, stack.environment("SplitterFunction"))


def settle_here(store: JobStore, bucket: str, bus: str) -> JobSettle:
    """What a sender's hand-over comes to: the job function settling the job (fanout.settling), here in
    process, with the job function's whole 15 minutes ahead of it."""

    def settle(job_id: str) -> None:
        settle_requested(store, bucket, bus, SettleRequest(job_id), remaining_ms=900_000)

    return settle
