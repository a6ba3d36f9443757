"""A measuring shim around one local Lambda function (loaded by the local stack's worker in its place).

`bench.endtoend.MeasuredStack` points each function's code at this file; its environment says where the
real handler is. The shim loads the real `app.py` exactly as the worker would, then for each invocation
records, as one JSON line in a file of its own process under BENCH_USAGE_DIR: the handler's duration, every AWS call it made (counted in
process, bench/counting.py) and every provider HTTP call (time, status, request bytes, emulator fault).
Nothing in the function changes; the line is written after the handler returns, outside the timing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.counting import CallCounter
from bench.shim import PROFILE_DIR, REAL_CODE_DIR, REAL_HANDLER, USAGE_DIR

_provider_calls: list[list[Any]] = []


def _load_real_handler() -> Callable[[dict[str, Any], Any], Any]:
    code_dir = Path(os.environ[REAL_CODE_DIR])
    module_name, _, attr = os.environ[REAL_HANDLER].rpartition(".")
    sys.path.insert(0, str(code_dir))
    path = code_dir / f"{module_name}.py"
    spec = importlib.util.spec_from_file_location(f"measured_{code_dir.name}_{module_name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler: Callable[[dict[str, Any], Any], Any] = getattr(module, attr)
    return handler


def _count_http() -> None:
    """Record each provider request this process sends: [unix time, status, request bytes, fault kind]."""
    original = httpx.Client.send

    def send(client: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        started = time.time()
        try:
            response = original(client, request, **kwargs)
        except httpx.HTTPError:
            _provider_calls.append([started, 0, len(request.content), "transport"])
            raise
        fault = response.headers.get("x-emulator-fault", "")
        _provider_calls.append([started, response.status_code, len(request.content), fault])
        return response

    httpx.Client.send = send  # type: ignore[method-assign,assignment]


_USAGE_PATH = (
    Path(os.environ[USAGE_DIR]) / f"{os.environ.get('AWS_LAMBDA_FUNCTION_NAME', 'fn')}-{os.getpid()}.jsonl"
)
_COUNTER = CallCounter().install()
_count_http()
_REAL = _load_real_handler()
_COUNTER.take()  # what the cold start did is not an invocation's


def _profiled() -> tuple[Callable[[dict[str, Any], Any], Any], Callable[[], None]]:
    """The handler to call, and what to do after each invocation (dump the stats when profiling)."""
    directory = os.environ.get(PROFILE_DIR)
    if not directory:
        return _REAL, lambda: None
    import cProfile

    profile = cProfile.Profile()
    path = Path(directory) / f"{_USAGE_PATH.stem}.prof"

    def run(event: dict[str, Any], context: Any) -> Any:
        return profile.runcall(_REAL, event, context)

    def dump() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        profile.dump_stats(path)

    return run, dump


_CALL, _AFTER = _profiled()


def handler(event: dict[str, Any], context: Any) -> Any:
    """The real handler, timed and counted."""
    began = time.time()
    started = time.perf_counter()
    error = ""
    try:
        return _CALL(event, context)
    except Exception as exc:
        error = type(exc).__name__
        raise
    finally:
        seconds = time.perf_counter() - started
        record = {
            "started": began,
            "seconds": seconds,
            "error": error,
            "aws": _COUNTER.take(),
            "http": list(_provider_calls),
        }
        _provider_calls.clear()
        _AFTER()
        _USAGE_PATH.parent.mkdir(parents=True, exist_ok=True)
        with _USAGE_PATH.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
