"""`python -m bench` (`make bench`): every benchmark, a table, and bench/out/results.json.

    python -m bench                    # the full run (1,000,000-row files; under 10 minutes on 2 cores)
    python -m bench --quick            # 100,000-row files, shorter pacing: a couple of minutes
    python -m bench --only throughput --only memory
    python -m bench --only throughput --profile   # also cProfile each split (bench/out/*.prof)

Benchmarks: throughput (1), memory (2), continued, end_to_end (3), pacing (4), cold_start (5), cost (6),
segments (7). The data is
generated into bench/out/data on first use; figures that machine speed would decide are ratios to a
reference measured in the same run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from rich.console import Console

from bench.coldstart import cold_start
from bench.endtoend import cost, end_to_end
from bench.pacing import pacing
from bench.report import BenchResult, markdown, show, write
from bench.segments import segments
from bench.session import Session
from bench.throughput import continued, memory, throughput

BENCHMARKS: dict[str, Callable[[Session], BenchResult]] = {
    "throughput": throughput,
    "memory": memory,
    "continued": continued,
    "segments": segments,
    "end_to_end": end_to_end,
    "cost": cost,
    "pacing": pacing,
    "cold_start": cold_start,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller files and shorter runs")
    parser.add_argument(
        "--only", action="append", choices=list(BENCHMARKS), metavar="NAME", help="run only NAME (repeatable)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the splits (slows them)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks in order, print the table, write results.json; 0 even if a target is
    missed (the table says which), 1 if a benchmark could not run."""
    args = _parser().parse_args(argv)
    session = Session(quick=args.quick, profile=args.profile)
    console = Console(width=max(160, Console().width))
    chosen = [name for name in BENCHMARKS if not args.only or name in args.only]
    started = time.time()
    results: list[BenchResult] = []
    failed: dict[str, str] = {}
    for name in chosen:
        console.print(f"[bold]{name}[/bold] ...")
        began = time.time()
        try:
            results.append(BENCHMARKS[name](session))
        except Exception as exc:  # report and go on: one broken benchmark should not hide the others
            failed[name] = f"{type(exc).__name__}: {exc}"
            console.print(f"[red]{name} failed:[/red] {failed[name]}")
        console.print(f"  {name}: {time.time() - began:.1f} s")
    elapsed = time.time() - started
    show(results, console)
    meta = {
        "command": shlex.join(["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])]),
        "started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "seconds": round(elapsed, 1),
        "quick": args.quick,
        "failed": failed,
    }
    out = session.out / "results.json"
    write(out, results, meta)
    (session.out / "results.md").write_text(markdown(results))
    console.print(f"{elapsed:.0f} s in all; wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
