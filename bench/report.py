"""What every benchmark hands back, the printed table and bench/out/results.json."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: a figure, what it is compared with, and its target."""

    benchmark: str
    measured: str
    reference: str = ""
    ratio: str = ""
    target: str = ""
    met: bool | None = None  # None: no target, reported only


@dataclass(slots=True)
class BenchResult:
    """One benchmark's table rows and its full figures (for results.json)."""

    name: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def cpu_model() -> str:
    """The CPU model /proc/cpuinfo names (platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Where the figures come from: cores, CPU model, Python."""
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
    }


def _met(value: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[value]


def table(results: list[BenchResult]) -> Table:
    """The results as one rich table."""
    out = Table(title="journey-fanout benchmarks")
    for column in ("benchmark", "measured", "reference", "ratio", "target", "met"):
        out.add_column(column, overflow="fold")
    for result in results:
        for row in result.rows:
            out.add_row(row.benchmark, row.measured, row.reference, row.ratio, row.target, _met(row.met))
    return out


def markdown(results: list[BenchResult]) -> str:
    """The same table in Markdown (for the README's Performance section); a missed target in bold."""
    lines = [
        "| benchmark | measured | reference | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        for row in result.rows:
            target = row.target.replace(">=", "≥").replace("<=", "≤")
            met = "**no**" if row.met is False else _met(row.met)
            cells = (row.benchmark, row.measured, row.reference, row.ratio, target, met)
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write(path: Path, results: list[BenchResult], meta: dict[str, Any]) -> None:
    """results.json: the machine, the command, every table row and every figure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        **meta,
        "machine": machine(),
        "table": [asdict(row) for result in results for row in result.rows],
        "results": {result.name: result.data for result in results},
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def show(results: list[BenchResult], console: Console | None = None) -> None:
    (console or Console()).print(table(results))
