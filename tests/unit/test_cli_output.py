"""What the operator CLI prints where (issue 14 item 12): errors on stderr (JSON with --json), nothing but
the answer on stdout, a bogus --status refused, and no sending rate for a job that sent nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress, TextColumn
from typer.testing import CliRunner

from fanout.models import Counts, JobStatus
from fanout.store import Job
from fanout_local import cli
from fanout_local.cli import app

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _no_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FANOUT_STATE_FILE", str(tmp_path / "no-stack.json"))


def test_jobs_with_a_bogus_status_is_an_error_naming_the_statuses() -> None:
    result = CliRunner().invoke(app, ["jobs", "--status", "bogus"])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert "--status 'bogus' is not a job status; use one of splitting, sending" in " ".join(
        result.stderr.split()
    )


def test_an_error_goes_to_stderr_and_with_json_as_json() -> None:
    plain = CliRunner().invoke(app, ["status", "j-0123456789abcdef"])
    as_json = CliRunner().invoke(app, ["status", "j-0123456789abcdef", "--json"])

    assert (plain.exit_code, as_json.exit_code) == (2, 2)
    assert plain.stdout == "" and as_json.stdout == ""
    assert "fanout local up" in plain.stderr
    assert "fanout local up" in json.loads(as_json.stderr)["error"]


def test_submit_prints_nothing_on_stdout_when_it_fails(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("email\nada@example.com\n")
    result = CliRunner().invoke(
        app, ["submit", str(path), "--to", "workshop/jrn_welcome", "-o", "colour=blue"]
    )

    assert result.exit_code == 2
    assert result.stdout == ""
    assert "unknown file option(s) colour" in result.stderr


def shown_rate(counts: Counts) -> str:
    job = Job("j-0123456789abcdef", JobStatus.SENDING, "b", "k", "workshop", "t", counts=counts)
    with Progress(
        TextColumn("{task.fields[rate]}"), console=Console(width=120, file=open("/dev/null", "w"))
    ) as progress:
        task = progress.add_task("x", total=None, chunks="", rate="")
        cli._show(progress, task, job, time.time() - 2)
        return str(progress.tasks[0].fields["rate"])


def test_watch_shows_no_rate_for_a_job_that_sent_nothing() -> None:
    assert shown_rate(Counts(read=6, rejected=2, failed=4)) == ""
    assert shown_rate(Counts(read=6, sent=4, rejected=2)).endswith("rows/s")
