"""One `python -m bench` run: where its files go, how big it is, and the runs benchmarks share.

The splitter runs feed both the throughput and the memory figures, and the end-to-end run feeds the
cost model, so each is made once per session whichever benchmarks ask for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fanout_local.deploy import REPO

OUT = REPO / "bench" / "out"
JOURNEY = "3c90c3cc-0d44-4b50-8888-8dd25736052a"  # a published journey of the emulators' default fixture


@dataclass(slots=True)
class Session:
    """Settings of this run and the measurements made so far."""

    out: Path = OUT
    quick: bool = False
    profile: bool = False
    split_runs: dict[tuple[int, str, float], dict[str, Any]] = field(default_factory=dict)
    end_to_end: dict[str, Any] | None = None

    @property
    def data_dir(self) -> Path:
        return self.out / "data"

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    @property
    def large_rows(self) -> int:
        """The file size of the throughput, memory and end-to-end figures."""
        return 100_000 if self.quick else 1_000_000

    @property
    def huge_rows(self) -> int:
        """The file ten times larger: the memory figure's second size, the continued split, segments."""
        return 10 * self.large_rows
