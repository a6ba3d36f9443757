"""A function's cold start does only what it must: importing an entry point validates its configuration and
builds its handler, but makes no AWS client (each is made at its first use), loads the X-Ray SDK only when
Powertools would trace, and leaves libraries the function does not need yet unloaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from fanout.destinations import Destination
from fanout.observability import NoTracer, tracing
from fanout_local.deploy import REPO

pytestmark = pytest.mark.unit

WATCHED = ("aws_xray_sdk", "httpx", "tenacity", "yaml", "phonenumbers", "numpy", "xxhash")
_PROBE = """
import json, sys
import {module}
from fanout import aws, observability
print(json.dumps({{
    "loaded": sorted({{m.split(".")[0] for m in sys.modules}} & set({watched!r})),
    "clients": aws._client.cache_info().currsize,
    "tracer": type(observability.tracer).__name__,
}}))
"""


def _environment(tracing_on: bool) -> dict[str, str]:
    """Every function's variables (dummy values: nothing is called), as in Lambda."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(
        {
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_LAMBDA_FUNCTION_NAME": "cold-start-probe",
            "LAMBDA_TASK_ROOT": "/var/task",
            "TABLE_NAME": "jobs",
            "BUCKET_NAME": "bucket",
            "EVENT_BUS_NAME": "bus",
            "DESTINATION": "mateo",
            "QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/chunks",
            "SECRET_NAME": "mateo",
            "JOB_FUNCTION_NAME": "job-function",
            **{
                f"QUEUE_URL_{d.env_suffix}": f"https://sqs.eu-west-1.amazonaws.com/123456789012/{d.value}"
                for d in Destination
            },
        }
    )
    if not tracing_on:
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    return env


def _cold_start(module: str, tracing_on: bool = False) -> dict[str, Any]:
    """What importing `module` in a fresh interpreter loaded and made."""
    answer = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module, watched=WATCHED)],
        env=_environment(tracing_on),
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    result: dict[str, Any] = json.loads(answer.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    "module", ["fanout.entrypoints.splitter", "fanout.entrypoints.sender", "fanout.entrypoints.dead_letter"]
)
def test_an_entry_point_imports_without_clients_x_ray_or_libraries_it_does_not_need_yet(module: str) -> None:
    assert _cold_start(module) == {"loaded": [], "clients": 0, "tracer": "NoTracer"}


def test_with_tracing_on_the_handler_is_traced_by_powertools() -> None:
    seen = _cold_start("fanout.entrypoints.sender", tracing_on=True)
    assert seen["tracer"] == "Tracer"
    assert "aws_xray_sdk" in seen["loaded"]
    assert seen["clients"] == 0


def test_tracing_follows_powertools_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POWERTOOLS_TRACE_DISABLED", "AWS_SAM_LOCAL", "AWS_CHALICE_CLI_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("LAMBDA_TASK_ROOT", raising=False)
    assert not tracing()  # outside Lambda
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    assert tracing()
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    assert not tracing()
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "false")
    assert tracing()
    monkeypatch.setenv("AWS_SAM_LOCAL", "true")
    assert not tracing()


def test_the_stand_in_tracer_leaves_a_handler_as_it_is() -> None:
    def handler(event: dict[str, object], context: object) -> dict[str, object]:
        return {"event": event}

    tracer = NoTracer()
    assert tracer.capture_lambda_handler(handler) is handler
    assert tracer.capture_lambda_handler(capture_response=False)(handler) is handler
    assert tracer.capture_method(handler) is handler
