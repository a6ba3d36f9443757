"""`fanout`: run journey-fanout on this machine (and, later, operate a deployed stack).

fanout demo                                   the sample files through every destination
fanout local run FILE --to mateo/<journey>    one file through the local stack, its summary
fanout local up                               the local stack, until Ctrl-C
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from fanout.destinations import Destination
from fanout.store import Job
from rich.console import Console
from rich.table import Table

from fanout_local.stack import LocalStack, StackSettings

app = typer.Typer(help=__doc__, no_args_is_help=True, rich_markup_mode=None)
local = typer.Typer(help="The embedded local stack: moto (AWS), the provider emulators and the event runner.")
app.add_typer(local, name="local")
# A pipe or CI log has no width; give tables room rather than 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=160)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# What `fanout demo` sends: (destination, target in the emulators' demo fixture, file, file options).
# The sample files hold deliberately bad rows (to show rejections), more than the default 10 % tolerated.
DEMO_TOLERANCE = {"tolerated-invalid-percent": "50"}
DEMO: list[tuple[str, str, str, dict[str, str]]] = [
    ("mateo", "6f1a7c2e-5b8d-4c3e-9a1f-2b7d8e9f0a1b", "contacts.csv", DEMO_TOLERANCE),
    ("mateo-message", "3c90c3cc-0d44-4b50-8888-8dd25736052a", "messages.csv", DEMO_TOLERANCE),
    ("symplify", "1001", "contacts.ndjson", DEMO_TOLERANCE),
    ("workshop", "jrn_welcome", "contacts.csv", DEMO_TOLERANCE),
    ("altcraft", "12", "contacts.csv", {"matching": "email", **DEMO_TOLERANCE}),
]

FaultsOption = Annotated[
    str, typer.Option(help='Emulator faults, e.g. "5xx=0.2,429=0.05,timeout=0.02,lost_response=0.02"')
]
SeedOption = Annotated[int | None, typer.Option(help="Seed that makes the faults repeatable")]
RateOption = Annotated[
    list[str] | None, typer.Option("--rate-limit", help="Emulator limit, e.g. mateo=2 (requests/s)")
]


def parse_to(value: str) -> tuple[str, str]:
    """`mateo/<journey>` -> ("mateo", "<journey>"), with a clear error for anything else."""
    destination, _, target = value.partition("/")
    known = ", ".join(d.value for d in Destination)
    if destination not in {d.value for d in Destination}:
        raise typer.BadParameter(
            f"unknown destination '{destination}': use one of {known}", param_hint="--to"
        )
    if not target:
        raise typer.BadParameter("give the target too: --to DESTINATION/TARGET", param_hint="--to")
    return destination, target


def parse_pairs(values: list[str] | None, what: str) -> dict[str, str]:
    pairs = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} must look like name=value, not '{value}'")
        pairs[key.strip()] = val.strip()
    return pairs


def settings_for(faults: str, seed: int | None, rate_limit: list[str] | None, **extra: Any) -> StackSettings:
    rates = {k: float(v) for k, v in parse_pairs(rate_limit, "--rate-limit").items()}
    return StackSettings(faults=faults, seed=seed, rate_limits=rates, **extra)


def delivery(stack: LocalStack, destination: str, target: str) -> dict[str, int]:
    """What the emulator got for `target`: distinct contacts, enrolments in all, the most for one contact."""
    counts = stack.received(destination).get("targets", {}).get(target, {})
    return {
        "contacts": len(counts),
        "enrolments": sum(counts.values()),
        "max_per_contact": max(counts.values(), default=0),
    }


def job_report(stack: LocalStack, job: Job) -> dict[str, Any]:
    summary = job.summary()
    summary["results"] = f"s3://{stack.bucket}/results/{job.job_id}/rows.csv"
    summary["received"] = (
        {job.destination: delivery(stack, job.destination, job.target)} if job.destination else {}
    )
    return summary


def summary_table(reports: list[dict[str, Any]]) -> Table:
    table = Table(title="journey-fanout results")
    for column in (
        "destination",
        "target",
        "job",
        "status",
        "read",
        "sent",
        "rejected",
        "failed",
        "uncertain",
        "provider got",
    ):
        table.add_column(
            column,
            justify="right" if column in {"read", "sent", "rejected", "failed", "uncertain"} else "left",
        )
    for r in reports:
        got = r.get("received", {}).get(r["destination"], {})
        table.add_row(
            r["destination"],
            r["target"],
            r["job_id"],
            r["status"],
            str(r["rows_read"]),
            str(r["rows_sent"]),
            str(r["rows_rejected"]),
            str(r["rows_failed"]),
            str(r["rows_uncertain"]),
            f"{got.get('contacts', 0)} contacts, max {got.get('max_per_contact', 0)}x" if got else "-",
        )
    return table


@local.command("run")
def local_run(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV, NDJSON or JSON file")
    ],
    to: Annotated[
        str, typer.Option("--to", help="DESTINATION/TARGET, e.g. mateo/3c90c3cc-0d44-4b50-8888-8dd25736052a")
    ],
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="File option name=value (S3 metadata)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table")] = False,
    faults: FaultsOption = "",
    seed: SeedOption = None,
    rate_limit: RateOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the job to settle")] = 600,
) -> None:
    """Drop FILE under inbox/DESTINATION/TARGET/ on a fresh local stack and wait until the job settles.

    Example: fanout local run examples/contacts.csv --to workshop/jrn_welcome

    Exits 0 when the job completed (with or without rejected rows), 1 when it failed.
    """
    destination, target = parse_to(to)
    with LocalStack(settings_for(faults, seed, rate_limit)) as stack:
        job_id = stack.drop(file, destination, target, parse_pairs(option, "--option"))
        job = stack.wait(job_id, timeout)
        report = job_report(stack, job)
    if as_json:
        print(json.dumps(report))
    else:
        console.print(summary_table([report]))
        if job.message:
            console.print(job.message)
    raise typer.Exit(1 if report["status"] == "failed" else 0)


@local.command("up")
def local_up(faults: FaultsOption = "", seed: SeedOption = None, rate_limit: RateOption = None) -> None:
    """Start the local stack and keep it running until Ctrl-C; prints how to reach it.

    Example: fanout local up --faults "5xx=0.1" --seed 7
    """
    with LocalStack(settings_for(faults, seed, rate_limit)) as stack:
        console.print(f"AWS endpoint:  {stack.endpoint}   (export AWS_ENDPOINT_URL={stack.endpoint})")
        console.print(f"Inbox bucket:  {stack.bucket}")
        for name, url in stack.emulators.items():
            if name != "admin":
                console.print(f"{name:>9}:     {url}")
        console.print(f"Logs:          {stack.log_dir}")
        console.print(
            "Try:  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=eu-west-1 "
            f"aws --endpoint-url {stack.endpoint} s3 cp examples/contacts.csv "
            f"s3://{stack.bucket}/inbox/workshop/jrn_welcome/contacts.csv"
        )
        console.print("Ctrl-C stops it.")
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()


@app.command()
def demo(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per job")] = False) -> None:
    """The sample files in examples/ through every destination on a fresh local stack, one table.

    Example: fanout demo
    """
    reports = []
    with LocalStack(StackSettings()) as stack:
        jobs = [
            stack.drop(EXAMPLES / name, destination, target, options, name=f"demo-{name}")
            for destination, target, name, options in DEMO
        ]
        for job_id in jobs:
            reports.append(job_report(stack, stack.wait(job_id, 300)))
        if as_json:
            for report in reports:
                print(json.dumps(report))
        else:
            console.print(summary_table(reports))
            console.print(
                f"Per-row results: s3://{stack.bucket}/results/<job>/rows.csv (local stack, gone at exit)"
            )
    failed = [r for r in reports if r["status"] == "failed"]
    raise typer.Exit(1 if failed else 0)


if __name__ == "__main__":
    app()
