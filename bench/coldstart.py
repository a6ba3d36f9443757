"""Benchmark 5: import time of each Lambda entry point against a bare `import boto3`.

Each import runs in a fresh interpreter that sees only what a deployed function sees: layers/fanout, the
layer's requirements (layers/fanout/requirements.txt) and boto3 (the runtime provides it; the venv's
version), installed once into bench/out/lambda-<key>/site-packages (a new key when the requirements,
boto3's version or Python's change). No site-packages of the venv (`python -I -S`, sys.path set
explicitly), so nothing the dev venv adds (rich, click, moto...) is imported along the way. `import boto3`,
the reference, runs in the same isolated interpreter, in rounds with the entry points (a busier machine
slows all alike). The environment is the function's own from template.yaml, plus what the local stack
adds (POWERTOOLS_TRACE_DISABLED, as `fanout local` runs them) and the variables of Lambda's runtime that
imports read (LAMBDA_TASK_ROOT: the X-Ray SDK and Powertools' Tracer behave differently outside Lambda).
The figure is the median of several runs, timed around the import statement alone. Importing an entry
point also runs its cold-start code: configuration validated, the handler's objects built (AWS clients
are made at their first use). Each import is also broken down by top-level package (self times from
`python -X importtime`).

One more row, reported without a target: the sender with tracing on (POWERTOOLS_TRACE_DISABLED unset), as
every function runs in AWS (`Tracing: Active`): the difference is the X-Ray SDK's import and its patching
of botocore and HTTP.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
from collections import Counter
from importlib import metadata
from pathlib import Path

from bench.localaws import aws_env, create_stack, moto_server
from bench.report import BenchResult, Row
from bench.session import Session
from fanout_local.deploy import REPO

TARGET_RATIO = 2.0
REFERENCE_MODULE = "boto3"
ENTRY_POINTS: dict[str, str] = {
    "fanout.entrypoints.splitter": "SplitterFunction",
    "fanout.entrypoints.sender": "MateoSenderFunction",
    "fanout.entrypoints.dead_letter": "DeadLetterFunction",
}
TRACED_MODULE = "fanout.entrypoints.sender"  # the informational row with tracing on
LAYER = REPO / "layers" / "fanout"
REQUIREMENTS = LAYER / "requirements.txt"
# What the Lambda runtime sets in every function (python3.12, on-demand): imports read LAMBDA_TASK_ROOT.
LAMBDA_RUNTIME_ENV = {
    "LAMBDA_TASK_ROOT": "/var/task",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
    "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
}
_TIMER = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def site_key() -> str:
    """What the installed packages depend on: the requirements file, boto3's version and Python's."""
    boto3 = f"boto3=={metadata.version('boto3')}"
    python = f"{sys.implementation.name}-{sys.version_info.major}.{sys.version_info.minor}"
    text = f"{REQUIREMENTS.read_text()}\n{boto3}\n{python}\n"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def lambda_site(session: Session) -> Path:
    """The directory holding what a function can import besides the layer's code: the layer's requirements
    and the runtime's boto3, installed with `pip install --target` on first use and kept for later runs.

    It is named site-packages (bench/out/lambda-<key>/site-packages), which mypy does not descend into.
    """
    root = session.out / f"lambda-{site_key()}"
    site = root / "site-packages"
    if (site / ".complete").exists():
        return site
    partial = root / ".partial"  # renamed into place only once pip has finished
    for stale in session.out.glob("lambda-*"):  # earlier requirements' installs, and an interrupted one
        shutil.rmtree(stale, ignore_errors=True)
    boto3 = f"boto3=={metadata.version('boto3')}"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input"]
    subprocess.run(
        [*pip, "--target", str(partial), "-r", str(REQUIREMENTS), boto3],
        check=True,
        capture_output=True,
        text=True,
    )
    (partial / ".complete").write_text(f"{REQUIREMENTS.read_text()}\n{boto3}\n")
    partial.rename(site)
    return site


def isolated_command(site: Path, code: str, *options: str) -> list[str]:
    """`python -I -S [options] -c code`, with only the layer and `site` ahead of the standard library."""
    prelude = f"import sys; sys.path[:0] = [{str(LAYER)!r}, {str(site)!r}]; "
    return [sys.executable, "-I", "-S", *options, "-c", prelude + code]


def import_seconds(module: str, environment: dict[str, str], site: Path) -> float:
    """Seconds `import module` takes in a fresh, isolated interpreter with `environment`."""
    answer = subprocess.run(
        isolated_command(site, _TIMER.format(module=module)),
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return float(answer.stdout.strip().splitlines()[-1])


def import_breakdown(module: str, environment: dict[str, str], site: Path, top: int = 10) -> dict[str, float]:
    """Milliseconds of `import module` per top-level package (self time from `python -X importtime`,
    one fresh run), the largest `top`; what the import spends its time on."""
    answer = subprocess.run(
        isolated_command(site, f"import {module}", "-X", "importtime"),
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


def interleaved_imports(
    imports: dict[str, tuple[str, dict[str, str]]], site: Path, runs: int
) -> dict[str, list[float]]:
    """`runs` fresh imports of each (module, environment) named in `imports`, taken in rounds (one of each
    per round) so that a machine busier for a while slows every figure alike; every sample by name."""
    samples: dict[str, list[float]] = {name: [] for name in imports}
    for _ in range(runs):
        for name, (module, environment) in imports.items():
            samples[name].append(import_seconds(module, environment, site))
    return samples


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
                **LAMBDA_RUNTIME_ENV,
                "POWERTOOLS_TRACE_DISABLED": "true",
                "AWS_LAMBDA_FUNCTION_NAME": f"bench-{logical}",
            }
            for module, logical in ENTRY_POINTS.items()
        }


def traced(environment: dict[str, str]) -> dict[str, str]:
    """`environment` as in AWS with `Tracing: Active`: POWERTOOLS_TRACE_DISABLED unset."""
    return {k: v for k, v in environment.items() if k != "POWERTOOLS_TRACE_DISABLED"}


def cold_start(session: Session) -> BenchResult:
    """Median import time of each entry point over a bare boto3's, each in a fresh isolated process."""
    runs = 3 if session.quick else 7
    site = lambda_site(session)
    environments = function_environments(session)
    reference_env = next(iter(environments.values()))
    traced_label = f"{TRACED_MODULE} (tracing on)"
    imports = {
        REFERENCE_MODULE: (REFERENCE_MODULE, reference_env),
        **{module: (module, environment) for module, environment in environments.items()},
        traced_label: (TRACED_MODULE, traced(environments[TRACED_MODULE])),
    }
    samples = interleaved_imports(imports, site, runs)
    reference = statistics.median(samples[REFERENCE_MODULE])
    result = BenchResult(
        "cold_start",
        data={
            "runs": runs,
            "site": str(site.relative_to(REPO)),
            REFERENCE_MODULE: samples[REFERENCE_MODULE],
            "reference_breakdown_ms": import_breakdown(REFERENCE_MODULE, reference_env, site),
        },
    )
    for label, (module, environment) in imports.items():
        if label == REFERENCE_MODULE:
            continue
        seconds = statistics.median(samples[label])
        result.data[label] = {
            "samples": samples[label],
            "breakdown_ms": import_breakdown(module, environment, site),
        }
        ratio = seconds / reference
        targeted = label != traced_label
        result.rows.append(
            Row(
                f"5 cold start, import {module}" + ("" if targeted else ", tracing on (X-Ray SDK)"),
                f"{seconds * 1000:.0f} ms (median of {runs})",
                f"import boto3 {reference * 1000:.0f} ms",
                f"{ratio:.2f}",
                f"<= {TARGET_RATIO:g}" if targeted else "",
                ratio <= TARGET_RATIO if targeted else None,
            )
        )
    result.data["environment_keys"] = json.dumps(sorted(reference_env))
    return result
