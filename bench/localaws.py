"""A moto server of the benchmarks' own, with template.yaml deployed into it as the local stack deploys it
(SAM's translator, CloudFormation), IAM not enforced.

The splitter benchmarks run the splitter in process against it, exactly as the Lambda would run against
AWS: only `AWS_ENDPOINT_URL` differs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from fanout_local.deploy import deploy_stack
from fanout_local.deployed import DeployedStack
from fanout_local.stack import free_port

# moto accepts any keys while IAM is not enforced, as here.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}

REGION = "eu-west-1"


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"moto did not listen on 127.0.0.1:{port} within {timeout} s")


@contextmanager
def moto_server(log: Path) -> Iterator[str]:
    """The local stack's moto server (`fanout_local.moto_server`) on a free port for the duration of the
    block; yields its endpoint URL."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "fanout_local.moto_server", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            # the template's roles attach AWS managed policies, which moto loads only when asked
            env={**os.environ, **LOCAL_CREDENTIALS, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"},
        )
    try:
        _wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def aws_env(endpoint: str, region: str = REGION) -> dict[str, str]:
    """The environment that points boto3 (and so the layer's `fanout.aws.client`) at `endpoint`."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": region, **LOCAL_CREDENTIALS}


def clients(endpoint: str, region: str = REGION) -> Callable[[str], Any]:
    """A cached boto3 client factory for `endpoint`."""

    @cache
    def make(service: str) -> Any:
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"mode": "standard", "max_attempts": 5}),
        )

    return make


def create_stack(endpoint: str, stack_name: str = "bench", region: str = REGION) -> DeployedStack:
    """template.yaml deployed on the moto server at `endpoint`."""
    session = boto3.session.Session(
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=region,
    )
    return deploy_stack(session, stack_name, endpoint_url=endpoint)


def upload(endpoint: str, bucket: str, key: str, path: Path, region: str = REGION) -> None:
    """Upload `path` as `key`, streamed in parts (the file never sits whole in this process)."""
    clients(endpoint, region)("s3").upload_file(str(path), bucket, key)
