"""The `fanout` command as a user runs it: a subprocess of the installed console script.

`local run` and `demo` start their own local stack each, so these tests need no fixture, only time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FANOUT = Path(sys.executable).parent / "fanout"
DESTINATIONS = ["mateo", "mateo-message", "symplify", "workshop", "altcraft"]


def fanout(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run the command; past `timeout`, kill it with the stack it started (moto, emulators, workers)."""
    with subprocess.Popen(
        [str(FANOUT), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def one_line(text: str) -> str:
    """Error text without whatever box or wrapping the terminal library added."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def assert_accounted(report: dict[str, Any]) -> None:
    states = ("sent", "rejected", "failed", "uncertain", "planned")
    assert report["rows_read"] == sum(report[f"rows_{state}"] for state in states), report


def test_local_run_prints_a_summary_whose_counts_add_up_and_match_what_the_provider_got() -> None:
    result = fanout(
        "local", "run", "examples/contacts.csv", "--to", "altcraft/12", "--json",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # one JSON object and nothing else on stdout
    assert report["job_id"].startswith("j-")
    assert report["status"] == "completed"
    assert (report["destination"], report["target"]) == ("altcraft", "12")
    assert_accounted(report)
    assert report["rows_sent"] > 0
    assert report["rows_rejected"] > 0  # the sample holds a broken email and a duplicate
    assert report["chunks_total"] >= 1
    assert report["received"]["altcraft"]["contacts"] == report["rows_sent"]
    assert report["received"]["altcraft"]["max_per_contact"] == 1
    # Deployed as AWS deploys it: IAM enforced, nothing denied, every function within its memory.
    assert report["aws"]["iam_enforced"] is True
    assert report["aws"]["access_denied"] == 0
    memory = report["aws"]["memory"]
    assert memory["SplitterFunction"]["peak_mb"] > 0 and memory["AltcraftSenderFunction"]["peak_mb"] > 0
    for function, used in memory.items():
        assert used["peak_mb"] <= used["limit_mb"] and used["killed_out_of_memory"] == 0, function


# Slow (about 25 s on two cores): marked so the default run stays under ten minutes; CI runs it
# with the slow suites.
@pytest.mark.slow
def test_a_failed_job_exits_non_zero_and_says_why(tmp_path: Path) -> None:
    bad = tmp_path / "all-bad.csv"
    bad.write_text("email,first_name\nnot-an-email,A\nalso bad,B\n@nope,C\n", encoding="utf-8")

    result = fanout("local", "run", str(bad), "--to", "workshop/jrn_welcome", "--json")

    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "failed"
    assert (report["rows_read"], report["rows_rejected"], report["rows_sent"]) == (3, 3, 0)
    assert "invalid" in report["message"]
    assert report["received"]["workshop"]["contacts"] == 0


@pytest.mark.parametrize(
    ("to", "says"),
    [
        ("nowhere/1", "unknown destination 'nowhere': use one of " + ", ".join(DESTINATIONS)),
        ("workshop", "give the target too: --to DESTINATION/TARGET"),
        ("workshop/", "give the target too: --to DESTINATION/TARGET"),
    ],
)
def test_a_bad_to_is_a_usage_error_that_says_what_to_write(to: str, says: str) -> None:
    result = fanout("local", "run", "examples/contacts.csv", "--to", to, timeout=30)

    assert result.returncode == 2
    assert says in one_line(result.stderr)
    assert result.stdout == ""


def test_local_run_help_shows_an_example() -> None:
    result = fanout("local", "run", "--help", timeout=30)

    assert result.returncode == 0
    assert "Example: fanout local run examples/contacts.csv --to workshop/jrn_welcome" in result.stdout


def test_top_level_help_shows_how_to_run_a_file() -> None:
    result = fanout("--help", timeout=30)

    assert result.returncode == 0
    assert "fanout local run FILE --to mateo/<journey>" in result.stdout


def test_top_level_help_lists_each_command_on_its_own_line() -> None:
    lines = [line.strip() for line in fanout("--help", timeout=30).stdout.splitlines()]

    assert any(line.startswith("fanout demo ") for line in lines)
    assert any(line.startswith("fanout local run FILE --to mateo/<journey> ") for line in lines)
    assert any(line.startswith("fanout local up ") for line in lines)


# Each of the next two starts a local stack of its own in a subprocess (about a minute each): slow, so the
# default run stays under ten minutes on two cores; CI runs them with the slow suites.
@pytest.mark.slow
def test_demo_json_prints_one_completed_job_per_destination() -> None:
    result = fanout("demo", "--json", timeout=120)

    assert result.returncode == 0, result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [r["destination"] for r in reports] == DESTINATIONS
    for report in reports:
        assert report["status"] == "completed", report
        assert_accounted(report)
        assert report["received"][report["destination"]]["contacts"] == report["rows_sent"] > 0


@pytest.mark.slow
def test_a_split_past_its_timeout_continues_and_every_row_ends_once(tmp_path: Path) -> None:
    """The splitter's timeout cut to 1 s: the split checkpoints and invokes itself (Lambda's own
    InvokeFunction, IAM-checked), and the job is what one long split would have made. (At 2 s, 200,000
    Workshop rows came to fit one invocation once CSV rows took the row plan.)"""
    big = tmp_path / "continued.csv"
    rows = 300_000
    lines = ["email,first_name"] + [f"cont{n}@example.com,F{n}" for n in range(rows)]
    lines += ["cont7@example.com,duplicate", "not-an-email,bad"]
    big.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = fanout(
        "local",
        "run",
        str(big),
        "--to",
        "workshop/jrn_welcome",
        "--json",
        "--splitter-timeout",
        "1",
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["split_invocations"] > 1, report
    assert (report["rows_read"], report["rows_sent"], report["rows_rejected"]) == (rows + 2, rows, 2)
    assert report["received"]["workshop"]["contacts"] == rows
    assert report["received"]["workshop"]["max_per_contact"] == 1
    assert report["aws"]["access_denied"] == 0
