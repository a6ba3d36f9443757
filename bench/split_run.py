"""One splitter measurement, in a fresh process of its own (so memory peaks never mix):

    python -m bench.split_run SPEC_JSON

SPEC_JSON names the moto endpoint, the splitter's environment, the object to split and the local copy
of its bytes. The process makes the reference pass (a bare `csv.reader`, or `json.loads` per line, over
the same bytes read from the local file), then resets its peak-RSS mark and splits the object exactly as
the Lambda does: `Splitter(config, DynamoJobStore(...)).split(ObjectRef(...))`, from the S3 read to the
last SQS message; then a fresh process makes the reference pass again, and the reference is the mean of
the two. It writes one JSON object to SPEC_JSON's `result` path: timings, peak RSS, the job's counts,
and every AWS call the split made (counted in process, see bench/counting.py).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

READ_BUFFER = 1 << 20


def reference_pass(path: Path, file_format: str) -> int:
    """Rows a bare parser finds in `path`: `csv.reader` (header excluded) or `json.loads` per line."""
    with path.open(encoding="utf-8", newline="", buffering=READ_BUFFER) as text:
        if file_format == "csv":
            reader = csv.reader(text)
            next(reader)
            return sum(1 for _ in reader)
        loads = json.loads
        return sum(1 for line in text if loads(line))


def planning_pass(path: Path, journey: str) -> int:
    """The split's per-row work without AWS, over the local copy: read, validate, de-duplicate, build the
    Mateo item and serialise each chunk's lines (written nowhere): `fanout validate` itself."""
    from fanout_local.operations import validate_file

    found = validate_file(path, f"mateo/{journey}", {})
    if found.rejections or found.problem:
        raise RuntimeError(f"planning rejected {len(found.rejections)} of {found.rows_read} rows")
    return found.rows_read


def reference_in_fresh_process(path: Path, file_format: str) -> tuple[float, float]:
    """`reference_pass` in a new interpreter: its wall-clock and CPU seconds."""
    script = (
        "import json, sys; from pathlib import Path; from bench.split_run import reference_pass, timed;"
        f" _, wall, cpu = timed(lambda: reference_pass(Path({str(path)!r}), {file_format!r}));"
        " print(json.dumps([wall, cpu]))"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    wall, cpu = json.loads(run.stdout)
    return float(wall), float(cpu)


def timed(action: Callable[[], Any]) -> tuple[Any, float, float]:
    """`action()`, the wall-clock seconds it took and the CPU seconds this process spent on it (the
    latter barely moves when other programs load the machine; waiting on moto is not in it)."""
    started, cpu = time.perf_counter(), time.process_time()
    result = action()
    return result, time.perf_counter() - started, time.process_time() - cpu


def _status_kb(field: str) -> int:
    """A `VmRSS`/`VmHWM`-style field of /proc/self/status, in KiB (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux: clear_refs 5); False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class _Continuations:
    """The splitter's self-invocations, run here one after the other, each as if its function's timeout
    were `every` seconds (it checkpoints when a third of that is left: fanout.continuation.stopper)."""

    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []

    def invoke(self, payload: dict[str, Any]) -> None:
        self.pending.append(payload)

    def run(self, splitter: Any, ref: Any, every: float) -> list[Any]:
        from fanout.continuation import Continuation

        def clock() -> Callable[[], int]:
            deadline = time.monotonic() + every
            return lambda: int((deadline - time.monotonic()) * 1000)

        outcomes = splitter.split(ref, clock())
        while self.pending:
            continuation = Continuation.from_event(self.pending.pop(0))
            assert continuation is not None
            outcomes = [splitter.resume(continuation, clock())]
        return list(outcomes)


def split_once(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the measurement `spec` describes; the result as a JSON-ready dict."""
    os.environ.update(spec["environment"])
    from bench.counting import CallCounter
    from fanout.config import SplitterConfig, load
    from fanout.models import ObjectRef
    from fanout.splitter import Splitter
    from fanout.store import DynamoJobStore

    path = Path(spec["path"])
    reference_rows, reference_seconds, reference_cpu = timed(lambda: reference_pass(path, spec["format"]))
    config = load(SplitterConfig)
    every = float(spec.get("continue_every_seconds") or 0)
    invoker = _Continuations() if every else None
    splitter = Splitter(config, DynamoJobStore(config.table_name, config.retention_days), invoker)
    counter = CallCounter().install()
    rss_before = _status_kb("VmRSS")
    peak_reset = reset_peak_rss()
    ref = ObjectRef(spec["bucket"], spec["key"])
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        outcomes, split_seconds, split_cpu = timed(lambda: profiler.runcall(splitter.split, ref))
        profiler.dump_stats(spec["profile"])
    elif invoker is not None:
        outcomes, split_seconds, split_cpu = timed(lambda: invoker.run(splitter, ref, every))
    else:
        outcomes, split_seconds, split_cpu = timed(lambda: splitter.split(ref))
    peak_kb = _status_kb("VmHWM")
    counter.uninstall()
    # The reference again, after the split: this machine's speed drifts by a tenth within minutes, and the
    # split's ratio is to the reference over the same minutes (the mean of the passes before and after it).
    # In a fresh process, as the first pass was: here, after the split, the same pass took 16-18 % longer (two runs).
    after_seconds, after_cpu = reference_in_fresh_process(path, spec["format"])
    reference_passes = [reference_cpu, after_cpu]
    reference_seconds, reference_cpu = (
        (reference_seconds + after_seconds) / 2,
        (reference_cpu + after_cpu) / 2,
    )
    planning_seconds = planning_cpu = None
    if spec.get("planning"):  # after the split: what it leaves in the heap must not count in the split's peak
        import fanout_local.operations  # noqa: F401 - its import (about 0.5 s) is not per-row work

        _, planning_seconds, planning_cpu = timed(lambda: planning_pass(path, spec["journey"]))
    (outcome,) = outcomes
    job = splitter._store.get_job(outcome.job_id)
    return {
        "split_invocations": job.split_invocations if job else 0,
        "format": spec["format"],
        "rows": reference_rows,
        "reference_seconds": reference_seconds,
        "reference_cpu_seconds": reference_cpu,
        "reference_cpu_seconds_passes": reference_passes,
        "planning_seconds": planning_seconds,
        "planning_cpu_seconds": planning_cpu,
        "split_seconds": split_seconds,
        "split_cpu_seconds": split_cpu,
        "load_average": os.getloadavg(),
        "job_id": outcome.job_id,
        "status": outcome.status.value,
        "rows_read": outcome.counts.read,
        "rows_rejected": outcome.counts.rejected,
        "chunks": outcome.chunks,
        "rss_before_kb": rss_before,
        "peak_rss_kb": peak_kb if peak_reset else None,
        "aws": counter.snapshot(),
    }


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    # stdout belongs to the splitter's log lines; the result goes to its own file.
    Path(spec["result"]).write_text(json.dumps(split_once(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
