"""Benchmark 5: import time of each Lambda entry point against a bare `import boto3`.

Each import runs in a fresh interpreter (`python -c`), timed around the import statement alone, with the
function's own environment from template.yaml plus what the local stack adds (POWERTOOLS_TRACE_DISABLED,
as `fanout local` runs them); the figure is the median of several runs. Importing an entry point also
runs its cold-start code: configuration validated, clients and the handler's objects built. Each module's
import is also broken down by top-level package (self times from `python -X importtime`).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections import Counter

from bench.localaws import aws_env, create_stack, moto_server
from bench.report import BenchResult, Row
from bench.session import Session
from fanout_local.template import REPO

TARGET_RATIO = 2.0
REFERENCE_MODULE = "boto3"
ENTRY_POINTS: dict[str, str] = {
    "fanout.entrypoints.splitter": "SplitterFunction",
    "fanout.entrypoints.sender": "MateoSenderFunction",
    "fanout.entrypoints.dead_letter": "DeadLetterFunction",
}
_TIMER = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def import_seconds(module: str, environment: dict[str, str]) -> float:
    """Seconds `import module` takes in a fresh interpreter with `environment`."""
    answer = subprocess.run(
        [sys.executable, "-c", _TIMER.format(module=module)],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return float(answer.stdout.strip().splitlines()[-1])


def import_breakdown(module: str, environment: dict[str, str], top: int = 10) -> dict[str, float]:
    """Milliseconds of `import module` per top-level package (self time from `python -X importtime`,
    one fresh run), the largest `top`; what the import spends its time on."""
    answer = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    spent: Counter[str] = Counter()
    for line in answer.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = (part.strip() for part in line.split(":", 1)[1].split("|"))
        spent[name.split(".")[0]] += int(self_us)
    return {package: round(us / 1000, 1) for package, us in spent.most_common(top)}


def median_import(module: str, environment: dict[str, str], runs: int) -> tuple[float, list[float]]:
    """The median of `runs` fresh imports, and every sample."""
    samples = [import_seconds(module, environment) for _ in range(runs)]
    return statistics.median(samples), samples


def function_environments(session: Session) -> dict[str, dict[str, str]]:
    """Each entry point's environment as the local stack gives it (resources made on a moto server)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    with moto_server(session.logs / "moto-coldstart.log") as endpoint:
        stack = create_stack(endpoint)
        return {
            module: {
                **base,
                **stack.environment(logical),
                **aws_env(endpoint),
                "POWERTOOLS_TRACE_DISABLED": "true",
                "AWS_LAMBDA_FUNCTION_NAME": f"bench-{logical}",
            }
            for module, logical in ENTRY_POINTS.items()
        }


def cold_start(session: Session) -> BenchResult:
    """Median import time of each entry point over a bare boto3's, each in a fresh process."""
    runs = 3 if session.quick else 7
    environments = function_environments(session)
    reference_env = next(iter(environments.values()))
    reference, reference_samples = median_import(REFERENCE_MODULE, reference_env, runs)
    result = BenchResult("cold_start", data={"runs": runs, REFERENCE_MODULE: reference_samples})
    for module, environment in environments.items():
        seconds, samples = median_import(module, environment, runs)
        result.data[module] = {"samples": samples, "breakdown_ms": import_breakdown(module, environment)}
        ratio = seconds / reference
        result.rows.append(
            Row(
                f"5 cold start, import {module}",
                f"{seconds * 1000:.0f} ms (median of {runs})",
                f"import boto3 {reference * 1000:.0f} ms",
                f"{ratio:.2f}",
                f"<= {TARGET_RATIO:g}",
                ratio <= TARGET_RATIO,
            )
        )
    result.data["environment_keys"] = json.dumps(sorted(reference_env))
    return result
