"""Fixtures for the integration suite: one local stack per session, started only when a test asks for it.

Multiprocessing spawns the Lambda workers, so nothing here starts at import time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fanout_local.stack import LocalStack, StackSettings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """The whole local system (moto server, emulators, event runner), with 2 s visibility timeouts so
    redeliveries come quickly and the sample files' deliberately bad rows tolerated."""
    settings = StackSettings(visibility_timeout=2, parameters={"ToleratedInvalidPercent": "50"})
    with LocalStack(settings) as stack:
        yield stack
