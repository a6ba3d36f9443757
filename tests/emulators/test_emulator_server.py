"""``python -m emulators`` and ``start_emulators``: start-up, URLs, port file, options, throughput."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulators.base import PROVIDERS
from emulators.loadtest import measure_server, request_makers
from emulators.server import EmulatorSet, start_emulators
from emulators.testing import AdminClient

pytestmark = pytest.mark.integration

# Required: every emulator serves >= 1,000 requests/s. Asserted on the server's CPU cost per request
# (capacity_rps), which a busy shared machine does not distort the way it distorts wall-clock rates.
MIN_CAPACITY_RPS = float(os.environ.get("EMULATOR_MIN_CAPACITY_RPS", "1000"))


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``python -m emulators`` with options, as the local stack runs it."""
    port_file = tmp_path_factory.mktemp("emulators") / "ports.json"
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulators",
            "--faults",
            "mateo:5xx=0.5,latency_ms=1",
            "--seed",
            "99",
            "--rate-limit",
            "altcraft=1000",
            "--documented-limits",
            "--daily-limit",
            "mateo=20000",
            "--port-file",
            str(port_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    startup = time.monotonic() - started
    info = {"process": process, "line": line, "startup": startup, "port_file": port_file}
    yield info
    if process.poll() is None:
        process.kill()
        process.wait(5)


def test_cli_prints_one_json_line_quickly(cli: dict[str, Any]) -> None:
    urls = json.loads(cli["line"])
    assert set(urls) == {*PROVIDERS, "admin"}
    assert urls["mateo"].endswith("/api/v1")
    assert urls["symplify"].endswith("/rest")
    assert urls["workshop"].endswith("/api/v1")
    assert urls["altcraft"].endswith("/api/v1.1")
    for name in PROVIDERS:
        assert urls[name].startswith(urls["admin"][name] + "/")
        assert urls["admin"][name].startswith("http://127.0.0.1:")
    # whole process start-up (interpreter + imports + four servers); typically ~0.3 s
    print(f"emulator CLI start-up: {cli['startup']:.3f}s")
    assert cli["startup"] < 3.0
    deadline = time.monotonic() + 2
    while not cli["port_file"].exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cli["port_file"].read_text().strip() == cli["line"].strip()


def test_cli_options_reach_the_emulators(cli: dict[str, Any]) -> None:
    urls = json.loads(cli["line"])
    admin = AdminClient(urls["admin"])
    try:
        mateo = admin.faults("mateo")
        assert (mateo.p_5xx, mateo.latency_ms, mateo.seed) == (0.5, 1, 99)
        # --documented-limits, then --daily-limit raising the requests only
        assert (mateo.rate_limit, mateo.daily_requests, mateo.daily_entities) == (2, 20_000, 25_000)
        assert (admin.faults("symplify").daily_requests, admin.faults("symplify").rate_limit) == (0, 0)
        assert admin.faults("altcraft").rate_limit == 1000
        assert admin.faults("workshop").p_5xx == 0
        assert admin.faults("workshop").seed == 99
        for name in PROVIDERS:
            assert admin.health(name) == {"status": "ok", "provider": name}
    finally:
        admin.close()


def test_throughput_with_keep_alive(cli: dict[str, Any]) -> None:
    urls = json.loads(cli["line"])
    admin = AdminClient(urls["admin"])
    admin.set_faults("mateo", "")
    admin.set_faults("altcraft", "")
    admin.close()
    makers = request_makers({name: urls[name] for name in PROVIDERS})
    pid = cli["process"].pid
    results = {name: measure_server(makers[name], seconds=0.5, workers=2, pid=pid) for name in PROVIDERS}
    print("emulator throughput:", json.dumps(results))
    for name, result in results.items():
        assert result["errors"] == 0, name
        assert result["requests"] > 0, name
        if "capacity_rps" not in result:
            pytest.skip("no /proc: server CPU time unavailable")
        assert result["capacity_rps"] >= MIN_CAPACITY_RPS, (name, result)


def test_cli_stops_cleanly_on_sigterm(cli: dict[str, Any]) -> None:
    process = cli["process"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(5) == 0
    assert not cli["port_file"].exists()
    assert "Traceback" not in process.stderr.read()


def test_cli_rejects_bad_fault_strings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emulators", "--faults", "5xx=0.1,explode=1"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown fault setting 'explode'" in result.stderr
    assert result.stdout == ""


def test_start_emulators_validates_names_and_ports(emulators: EmulatorSet) -> None:
    with pytest.raises(ValueError, match="unknown provider"):
        start_emulators(ports={"mailchimp": 0})
    with pytest.raises(OSError, match="in use"):
        start_emulators(ports={"mateo": emulators.ports["mateo"]})


def test_start_emulators_with_fixture_dict_or_file(tmp_path: Path) -> None:
    fixture = {"workshop": {"tokens": ["t"], "journeys": {"j": {"state": "on"}}}}
    fixture_file = tmp_path / "fixture.json"
    fixture_file.write_text(json.dumps(fixture))
    for source in (fixture, fixture_file):
        with start_emulators(fixture=source) as emulator_set:
            response = httpx.post(
                f"{emulator_set.base_urls['workshop']}/journeys/j/enroll",
                json={"contact_email_addresses": ["a@x.io"]},
                headers={"Authorization": "Bearer t"},
                trust_env=False,
            )
            assert response.json()["enrolled_count"] == 1
            assert json.loads(emulator_set.to_json()) == emulator_set.urls()
