"""Measure how many requests/s each emulator serves over loopback with keep-alive.

    python -m emulators.loadtest [--seconds 2] [--workers 2]

starts ``python -m emulators`` as a subprocess (so the server has its own interpreter and GIL), then
sends each provider's main request (a valid one-contact enrolment, for Symplify the uploadUrl
request) from ``--workers`` threads, each with its own keep-alive httpx client, and prints one JSON
object: provider -> {"requests_per_second", "requests", "errors", "server_cpu_us_per_request",
"capacity_rps"}. ``requests_per_second`` is wall-clock end to end (the Python client is usually the
bottleneck); ``capacity_rps`` is requests per CPU-second of the server process (Linux only), i.e.
what one emulator serves when it has a core to itself. Uses the default fixture's tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from emulators.base import PROVIDERS, load_fixture

RequestMaker = Callable[[httpx.Client], httpx.Response]


def request_makers(base_urls: dict[str, str]) -> dict[str, RequestMaker]:
    """Provider -> a function sending one valid request with the default fixture's tokens."""
    fixture = load_fixture()
    token = {name: fixture[name]["tokens"][0] for name in PROVIDERS}
    mateo_body = {
        "journey_id": "3c90c3cc-0d44-4b50-8888-8dd25736052a",
        "items": [{"contact": {"email": "load@example.com"}, "context": {}}],
    }
    altcraft_body = {
        "token": token["altcraft"],
        "workflow_id": 12,
        "matching": "email",
        "data": [{"data": {"email": "load@example.com"}}],
    }
    return {
        "mateo": lambda c: c.post(
            f"{base_urls['mateo']}/journey_execution/batch",
            json=mateo_body,
            headers={"Authorization": f"Bearer {token['mateo']}"},
        ),
        "symplify": lambda c: c.post(
            f"{base_urls['symplify']}/demo/batchtrigger/v2",
            json={"entityId": 1001},
            headers={"X-Carma-Authentication-Token": token["symplify"]},
        ),
        "workshop": lambda c: c.post(
            f"{base_urls['workshop']}/journeys/jrn_welcome/enroll",
            json={"contact_email_addresses": ["load@example.com"]},
            headers={"Authorization": f"Bearer {token['workshop']}"},
        ),
        "altcraft": lambda c: c.post(
            f"{base_urls['altcraft']}/workflows/import_and_start_batch", json=altcraft_body
        ),
    }


def measure(make_request: RequestMaker, seconds: float, workers: int) -> dict[str, Any]:
    """Hammer one endpoint for ``seconds`` from ``workers`` threads; counts non-200 answers as errors."""
    counts = [0] * workers
    errors = [0] * workers
    deadline = time.perf_counter() + seconds

    def worker(index: int) -> None:
        with httpx.Client(trust_env=False, timeout=5.0) as client:
            make_request(client)  # open the keep-alive connection before counting
            while time.perf_counter() < deadline:
                if make_request(client).status_code != 200:
                    errors[index] += 1
                counts[index] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        "requests_per_second": round(sum(counts) / elapsed),
        "requests": sum(counts),
        "errors": sum(errors),
    }


def process_cpu_seconds(pid: int) -> float | None:
    """User+system CPU time of a process (Linux /proc), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after the ")" of the command name: fields[11] = utime, fields[12] = stime (in clock ticks)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_server(make_request: RequestMaker, seconds: float, workers: int, pid: int) -> dict[str, Any]:
    """``measure`` plus the server process's CPU cost per request and the capacity that implies.

    ``capacity_rps`` (requests per CPU-second of the server) does not depend on how busy the
    machine is, unlike the wall-clock ``requests_per_second`` that a shared CI box drags down.
    """
    before = process_cpu_seconds(pid)
    result = measure(make_request, seconds, workers)
    after = process_cpu_seconds(pid)
    if before is not None and after is not None and after > before:
        cpu = after - before
        result["server_cpu_us_per_request"] = round(cpu / result["requests"] * 1e6)
        result["capacity_rps"] = round(result["requests"] / cpu)
    return result


def main(argv: list[str] | None = None) -> int:
    """Start the emulators in a subprocess, measure every provider, print JSON."""
    parser = argparse.ArgumentParser(prog="python -m emulators.loadtest")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    process = subprocess.Popen([sys.executable, "-m", "emulators"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        urls = json.loads(process.stdout.readline())
        makers = request_makers({name: urls[name] for name in PROVIDERS})
        results = {
            name: measure_server(makers[name], args.seconds, args.workers, process.pid) for name in PROVIDERS
        }
    finally:
        process.terminate()
        process.wait(10)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
