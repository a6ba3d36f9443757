"""Fixtures for the integration suite: one local stack for the package, started only when a test asks for it
and stopped when the package's last test is done: its pollers must not outlive it (the unit suite that runs
next patches botocore in process, and the pollers' retries would draw on the global `random` under its
Hypothesis tests).

Multiprocessing spawns the Lambda workers, so nothing here starts at import time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fanout_local.stack import LocalStack, StackSettings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def local_stack() -> Iterator[LocalStack]:
    """The whole local system (moto server, emulators, event runner), with 2 s visibility timeouts so
    redeliveries come quickly and the sample files' deliberately bad rows tolerated."""
    settings = StackSettings(visibility_timeout=2, parameters={"ToleratedInvalidPercent": "50"})
    with LocalStack(settings) as stack:
        yield stack
