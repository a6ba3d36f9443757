"""The README's commands, as pasted, against a fresh stack (issue 14 item 11): `fanout local up` in one
terminal, the `aws s3 cp` line it prints, and the operator commands of "Running it" in another, with the
venv activated in a fresh checkout's root. Each must exit 0."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def sh_blocks(section: str) -> list[str]:
    """The ```sh blocks of a README section, as written."""
    text = (REPO / "README.md").read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```sh\n(.*?)```", text[start : end if end > 0 else None], re.S)


@pytest.fixture
def terminal(tmp_path: Path) -> dict[str, str]:
    """A terminal with the venv activated, in a directory that looks like the repository's root."""
    root = tmp_path / "clone"
    root.mkdir()
    (root / "examples").symlink_to(REPO / "examples")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(BIN.parent)}
    env["FANOUT_STATE_FILE"] = str(tmp_path / "stack.json")
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        env.pop(name, None)
    return {**env, "PWD": str(root)}


@pytest.fixture
def local_up(terminal: dict[str, str]) -> Iterator[list[str]]:
    """`fanout local up` running as the README's first block says; its output lines so far."""
    (up,) = [line.split("#")[0].strip() for line in sh_blocks("Running it")[0].splitlines() if line.strip()]
    assert up == "fanout local up"
    process = subprocess.Popen(
        ["bash", "-c", up],
        cwd=terminal["PWD"],
        env=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    deadline = time.time() + 240
    assert process.stdout is not None
    while time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "Other commands" in line:
            break
    try:
        assert any("Other commands" in line for line in lines), "\n".join(lines)
        yield lines
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run(command: str, terminal: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=terminal["PWD"],
        env=terminal,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_the_readmes_commands_work_as_pasted(local_up: list[str], terminal: dict[str, str]) -> None:
    (try_line,) = [line for line in local_up if line.startswith("Try:")]
    copied = run(try_line.removeprefix("Try:").strip(), terminal)
    assert copied.returncode == 0, copied.stderr

    commands = sh_blocks("Running it")[1]
    done = run(commands, terminal)

    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    fix = (Path(terminal["PWD"]) / "to-fix.csv").read_text().splitlines()
    assert fix[0] == "email,first_name,last_name,phone,city,plan,rejection_reason"
    assert len(fix) == 3  # the sample's broken email and its duplicate


@pytest.mark.slow
def test_the_local_stack_commands_work_as_pasted(terminal: dict[str, str]) -> None:
    """`fanout demo` and the `fanout local run` lines (the one with faults too): each starts its own stack."""
    (commands,) = [block for block in sh_blocks("Running it") if block.startswith("fanout demo")]
    done = run(commands, terminal)

    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
