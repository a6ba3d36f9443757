"""Fixtures for the hostile-file suites: the unit suite's moto stack (built from template.yaml), reused.

tests/unit/conftest.py is loaded under its own name and its fixtures re-exported, so the corpus runs on
exactly the stack the unit suite builds. Its socket guard is not re-exported as it is: the end-to-end part
here needs sockets, so the guard below applies to every test except the integration ones.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fanout.config import SplitterConfig, load
from fanout.splitter import Splitter
from fanout.store import DynamoJobStore
from fanout_local.deployed import DeployedStack

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # corpus.py, for the test modules and `python tests/hostile/corpus.py`
    sys.path.insert(0, str(HERE))


def _load_unit_conftest() -> ModuleType:
    name = "fanout_unit_conftest"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE.parent / "unit" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_unit = _load_unit_conftest()
stack = _unit.stack
splitter_config = _unit.splitter_config
boto = _unit.boto


@pytest.fixture(autouse=True)
def _no_sockets_outside_integration(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """As in the unit suite: a network connection from a non-integration test fails loudly."""
    if request.node.get_closest_marker("integration") is not None:
        return

    def refuse(self: socket.socket, address: Any, *args: Any) -> None:
        raise RuntimeError(f"unit tests open no sockets (tried to connect to {address!r})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture(scope="module")
def module_config(stack: DeployedStack) -> SplitterConfig:
    """The splitter's configuration, once per module (hypothesis examples share it)."""
    return load(SplitterConfig, stack.environment("SplitterFunction"))


@pytest.fixture(scope="module")
def module_store(module_config: SplitterConfig) -> DynamoJobStore:
    return DynamoJobStore(module_config.table_name, module_config.retention_days)


@pytest.fixture(scope="module")
def module_splitter(module_config: SplitterConfig, module_store: DynamoJobStore) -> Splitter:
    """A splitter on the module's stack, shared by every example of a hypothesis test."""
    return Splitter(module_config, module_store)
