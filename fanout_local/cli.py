"""`fanout`: run journey-fanout on this machine, and operate a deployed or local stack.

\b
    fanout demo                                   the sample files through every destination
    fanout local run FILE --to mateo/<journey>    one file through the local stack, its summary
    fanout local up                               the local stack, until Ctrl-C
    fanout submit FILE --to workshop/<journey>    drop a file into a stack; prints the job id
    fanout watch JOB                              a progress bar until the job settles
    fanout status JOB | fanout jobs --since 1d    one job, or recent jobs
    fanout report JOB --rejected                  per-row results, ready to fix and drop again
    fanout redrive JOB                            send the failed chunks again
    fanout settle JOB                             settle a job whose settle failed on every try
    fanout validate FILE --to altcraft/12         read and validate a file with no AWS at all
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fanout.destinations import Destination
from fanout.store import Job
from fanout_local import operations
from fanout_local.aws_faults import parse_fault_rates
from fanout_local.stack import EMULATOR_OF, LocalStack, StackSettings

app = typer.Typer(help=__doc__, no_args_is_help=True, rich_markup_mode=None)


@app.callback()
def _main() -> None:
    # SIGTERM unwinds like Ctrl-C, so a stopped `fanout local run` or `demo` stops its servers too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


local = typer.Typer(help="The embedded local stack: moto (AWS), the provider emulators and the event runner.")
app.add_typer(local, name="local")
# A pipe or CI log has no width; give tables room rather than 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=160)
errors = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=160)

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
AwsFaultsOption = Annotated[
    str,
    typer.Option(
        "--aws-faults",
        help="AWS's own errors for a share of the functions' calls, e.g. \"dynamodb=0.1,s3=0.05,sqs=0.05\"",
    ),
]
RateOption = Annotated[
    list[str] | None, typer.Option("--rate-limit", help="Emulator limit, e.g. mateo=2 (requests/s)")
]
DailyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--daily-limit", help="Emulator daily quota, e.g. mateo=10000/25000 (requests/contacts a UTC day)"
    ),
]
DocumentedOption = Annotated[
    bool,
    typer.Option(
        "--documented-limits",
        help="Mateo's documented limits: 2 requests/s, 10,000 requests and 25,000 contacts a UTC day",
    ),
]


def emulator_limits(
    documented: bool, daily_limit: list[str] | None, rate_limit: list[str] | None
) -> dict[str, dict[str, Any]]:
    """The limits to set on each emulator: Mateo's documented ones when asked, then --rate-limit and
    --daily-limit over them (a missing half of REQUESTS/CONTACTS leaves that quota as it is)."""
    from emulators import mateo

    limits: dict[str, dict[str, Any]] = {}
    if documented:
        limits["mateo"] = {
            "rate_limit": float(mateo.RATE_LIMIT_PER_SECOND),
            "daily_requests": mateo.DAILY_REQUEST_LIMIT,
            "daily_entities": mateo.DAILY_ENTITY_LIMIT,
        }
    for name, value in parse_pairs(rate_limit, "--rate-limit").items():
        limits.setdefault(name, {})["rate_limit"] = float(value)
    for name, value in parse_pairs(daily_limit, "--daily-limit").items():
        requests, _, contacts = value.partition("/")
        try:
            quota = {k: int(v) for k, v in (("daily_requests", requests), ("daily_entities", contacts)) if v}
        except ValueError:
            raise typer.BadParameter(
                f"--daily-limit {name}={value}: use REQUESTS[/CONTACTS], whole numbers"
            ) from None
        limits.setdefault(name, {}).update(quota)
    return limits


def apply_limits(stack: LocalStack, limits: dict[str, dict[str, Any]]) -> None:
    """Set `limits` on the running emulators, keeping each one's other fault settings."""
    import httpx

    for name, values in limits.items():
        emulator = EMULATOR_OF.get(name, name)  # mateo-message is served by the mateo emulator
        url = f"{stack.emulator_admin(emulator)}/_emulator/faults"
        stack.set_faults(emulator, {**httpx.get(url, timeout=10).json(), **values})


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


def settings_for(
    faults: str, seed: int | None, rate_limit: list[str] | None, aws_faults: str = "", **extra: Any
) -> StackSettings:
    rates = {k: float(v) for k, v in parse_pairs(rate_limit, "--rate-limit").items()}
    try:
        parse_fault_rates(aws_faults)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--aws-faults") from None
    return StackSettings(faults=faults, seed=seed, rate_limits=rates, aws_faults=aws_faults, **extra)


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
    summary["aws"] = stack.aws_report()
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
    aws_faults: AwsFaultsOption = "",
    splitter_timeout: Annotated[
        int | None,
        typer.Option(
            "--splitter-timeout",
            help="The splitter's timeout in seconds (the template's is 900): a small file then needs several"
            " continuations, as a huge one does",
        ),
    ] = None,
    daily_limit: DailyOption = None,
    documented_limits: DocumentedOption = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the job to settle")] = 600,
) -> None:
    """Drop FILE under inbox/DESTINATION/TARGET/ on a fresh local stack and wait until the job settles.

    Example: fanout local run examples/contacts.csv --to workshop/jrn_welcome

    Exits 0 when the job completed (with or without rejected rows), 1 when it failed.
    """
    destination, target = parse_to(to)
    limits = emulator_limits(documented_limits, daily_limit, rate_limit)
    timeouts = {"SplitterFunction": splitter_timeout} if splitter_timeout else {}
    settings = settings_for(
        faults, seed, rate_limit, aws_faults, function_timeouts=timeouts, provider_quotas=documented_limits
    )
    with LocalStack(settings) as stack:
        apply_limits(stack, limits)
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
def local_up(
    faults: FaultsOption = "",
    seed: SeedOption = None,
    rate_limit: RateOption = None,
    aws_faults: AwsFaultsOption = "",
    daily_limit: DailyOption = None,
    documented_limits: DocumentedOption = False,
) -> None:
    """Start the local stack and keep it running until Ctrl-C; prints how to reach it.

    Example: fanout local up --faults "5xx=0.1" --aws-faults "dynamodb=0.1" --seed 7
    """
    limits = emulator_limits(documented_limits, daily_limit, rate_limit)
    with LocalStack(
        settings_for(faults, seed, rate_limit, aws_faults, provider_quotas=documented_limits)
    ) as stack:
        apply_limits(stack, limits)
        operator = stack.aws_env()
        credentials = {k: operator[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        operations.write_local_state(stack.endpoint, stack.settings.region, stack.outputs(), credentials)
        console.print(f"AWS endpoint:  {stack.endpoint}   (export AWS_ENDPOINT_URL={stack.endpoint})")
        console.print(f"Inbox bucket:  {stack.bucket}")
        for name, url in stack.emulators.items():
            if name != "admin":
                console.print(f"{name:>9}:     {url}")
        console.print(f"Logs:          {stack.log_dir}")
        # One line, never wrapped, so it can be pasted as it is (from the repository's root).
        print(
            f"Try:  AWS_ACCESS_KEY_ID={credentials['AWS_ACCESS_KEY_ID']} "
            f"AWS_SECRET_ACCESS_KEY={credentials['AWS_SECRET_ACCESS_KEY']} AWS_DEFAULT_REGION=eu-west-1 "
            f"aws --endpoint-url {stack.endpoint} s3 cp examples/contacts.csv "
            f"s3://{stack.bucket}/inbox/workshop/jrn_welcome/contacts.csv",
            flush=True,
        )
        console.print("Ctrl-C stops it.")
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        console.print(
            "Other commands (fanout submit, watch, status, jobs, report, redrive) use it meanwhile."
        )
        try:
            with contextlib.suppress(KeyboardInterrupt):
                stopped.wait()
        finally:
            operations.clear_local_state()


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


# -- operating a stack (deployed, or the one `fanout local up` runs) ----------------------------------------

StackOption = Annotated[
    str | None, typer.Option("--stack", help="Deployed stack name (default: the running local stack)")
]
EndpointOption = Annotated[
    str | None,
    typer.Option("--endpoint", help="AWS endpoint URL (default: AWS_ENDPOINT_URL, or the local stack's)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON instead of a table")]


def _fail(message: str, as_json: bool = False) -> typer.Exit:
    """An operator error: on stderr (JSON with --json), exit status 2."""
    if as_json:
        print(json.dumps({"error": message}, ensure_ascii=False), file=sys.stderr)
    else:
        errors.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def _connect(stack: str | None, endpoint: str | None, as_json: bool = False) -> operations.StackRef:
    try:
        return operations.connect(stack, endpoint)
    except operations.OperatorError as exc:
        raise _fail(str(exc), as_json) from None


def _job(ref: operations.StackRef, job_id: str, as_json: bool = False) -> Job:
    try:
        return operations.get_job(ref, job_id)
    except operations.OperatorError as exc:
        raise _fail(str(exc), as_json) from None


def jobs_table(jobs: list[Job]) -> Table:
    table = Table(title="jobs")
    for column in (
        "job",
        "created",
        "status",
        "destination",
        "target",
        "read",
        "sent",
        "rejected",
        "failed",
        "uncertain",
        "chunks",
    ):
        table.add_column(column)
    for job in jobs:
        c = job.counts
        table.add_row(
            job.job_id, job.created_at, job.status.value, job.destination, job.target, str(c.read), str(c.sent),
            str(c.rejected), str(c.failed), str(c.uncertain), f"{job.chunks_settled}/{job.chunks_total}",
        )  # fmt: skip
    return table


@app.command()
def submit(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV, NDJSON or JSON file")
    ],
    to: Annotated[str, typer.Option("--to", help="DESTINATION/TARGET")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and plan, send nothing")] = False,
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="File option name=value")] = None,
    stack: StackOption = None,
    endpoint: EndpointOption = None,
) -> None:
    """Upload FILE to the right inbox key with its options, and print the job id it starts.

    Example: fanout submit contacts.csv --to workshop/jrn_welcome -o phone-region=SE
    """
    options = parse_pairs(option, "--option")
    try:  # a wrong destination or option is refused before any stack is looked for
        operations.parse_destination(to)
        operations.check_options(options)
    except operations.OperatorError as exc:
        raise _fail(str(exc)) from None
    ref = _connect(stack, endpoint)
    try:
        job_id = operations.submit(ref, file, to, options, dry_run)
    except operations.OperatorError as exc:
        raise _fail(str(exc)) from None
    print(job_id)  # the job id alone on stdout: job=$(fanout submit ...)


@app.command()
def status(
    job_id: str, as_json: JsonOption = False, stack: StackOption = None, endpoint: EndpointOption = None
) -> None:
    """One job's status and counts.

    Example: fanout status j-0123456789abcdef --json
    """
    job = _job(_connect(stack, endpoint, as_json), job_id, as_json)
    if as_json:
        print(json.dumps(job.summary()))
    else:
        console.print(jobs_table([job]))
        if job.message:
            console.print(job.message)


@app.command("jobs")
def jobs_command(
    since: Annotated[str | None, typer.Option(help="Only jobs created within, e.g. 1d, 12h")] = None,
    status_filter: Annotated[
        str | None, typer.Option("--status", help="Only jobs with this status, e.g. failed")
    ] = None,
    as_json: JsonOption = False,
    stack: StackOption = None,
    endpoint: EndpointOption = None,
) -> None:
    """Recent jobs, newest first.

    Example: fanout jobs --since 1d --status failed
    """
    try:
        window = operations.parse_since(since) if since else None
        wanted = operations.parse_status(status_filter) if status_filter else None
    except operations.OperatorError as exc:
        raise _fail(str(exc), as_json) from None
    ref = _connect(stack, endpoint, as_json)
    found = operations.list_jobs(ref, window, wanted)
    if as_json:
        for job in found:
            print(json.dumps(job.summary()))
    else:
        console.print(jobs_table(found))


@app.command()
def watch(
    job_id: str,
    interval: Annotated[float, typer.Option(help="Seconds between polls")] = 1.0,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds")] = 3600,
    stack: StackOption = None,
    endpoint: EndpointOption = None,
) -> None:
    """A live progress bar until the job settles, then its summary; exits 1 if the job failed.

    Example: fanout watch j-0123456789abcdef
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    ref = _connect(stack, endpoint)
    deadline = time.time() + timeout
    job = _wait_for_start(ref, job_id, min(deadline, time.time() + START_GRACE_SECONDS))
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
        TextColumn("{task.fields[chunks]}"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
    )  # fmt: skip
    started = time.time()
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(job_id, total=None, chunks="", rate="")
        while not job.status.is_final and time.time() < deadline:
            _show(progress, task, job, started)
            time.sleep(interval)
            job = _job(ref, job_id)
        _show(progress, task, job, started)
    console.print(jobs_table([job]))
    if job.message:
        console.print(job.message)
    if not job.status.is_final:
        raise _fail(f"job {job_id} still {job.status.value} after {timeout:g} s")
    raise typer.Exit(1 if job.status.value == "failed" else 0)


START_GRACE_SECONDS = 120  # a just-submitted file has no job until the splitter picks it up


def _wait_for_start(ref: operations.StackRef, job_id: str, until: float) -> Job:
    """The job, once the splitter has created it; a clear error when it never appears."""
    store = ref.store()
    with console.status(f"waiting for the splitter to pick up {job_id} ..."):
        while True:
            job = store.get_job(job_id)
            if job is not None:
                return job
            if time.time() > until:
                raise _fail(
                    f"no job {job_id} appeared: check the job id, or the splitter's logs and failure queue"
                )
            time.sleep(0.5)


def _show(progress: Any, task: Any, job: Job, started: float) -> None:
    c = job.counts
    done = c.sent + c.rejected + c.failed + c.uncertain + c.planned
    # The sending rate: rows the provider took. A job that sent nothing shows none (no rows/s).
    rate = f"{c.sent / max(0.001, time.time() - started):,.0f} rows/s" if c.sent else ""
    progress.update(
        task,
        total=c.read or None,
        completed=done,
        description=f"{job.job_id} {job.status.value}",
        chunks=f"chunks {job.chunks_settled}/{job.chunks_total}",
        rate=rate,
    )


@app.command()
def report(
    job_id: str,
    rejected: Annotated[
        bool,
        typer.Option(
            "--rejected",
            help="Only the rejected rows, as in the file under its header, with a rejection_reason column",
        ),
    ] = False,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed and uncertain rows")] = False,
    output_format: Annotated[str, typer.Option("--format", help="csv or json (one object a line)")] = "csv",
    stack: StackOption = None,
    endpoint: EndpointOption = None,
) -> None:
    """The job's per-row results, ready to fix and drop again.

    Example: fanout report j-0123456789abcdef --rejected --format csv > to-fix.csv
    """
    if output_format not in {"csv", "json"}:
        raise _fail("--format is csv or json")
    ref = _connect(stack, endpoint)
    job = _job(ref, job_id)
    try:
        if rejected:
            rows = list(operations.rejected_rows(ref, job))
        else:
            states = {"failed", "uncertain"} if failed else None
            rows = list(operations.report_rows(ref, job, states))
    except operations.OperatorError as exc:
        raise _fail(str(exc)) from None
    if output_format == "json":
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return
    if rows:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


@app.command()
def redrive(
    job_id: str,
    include_uncertain: Annotated[
        bool,
        typer.Option(
            "--include-uncertain", help="Also resend uncertain chunks (check at the provider first)"
        ),
    ] = False,
    stack: StackOption = None,
    endpoint: EndpointOption = None,
) -> None:
    """Send again exactly the failed (and, when asked, uncertain) chunks of a settled job.

    Example: fanout redrive j-0123456789abcdef && fanout watch j-0123456789abcdef
    """
    ref = _connect(stack, endpoint)
    try:
        result = operations.redrive(ref, job_id, include_uncertain)
    except operations.OperatorError as exc:
        raise _fail(str(exc)) from None
    console.print(
        f"redriven: {result.chunks} chunks, {result.rows} rows; `fanout watch {job_id}` follows them"
    )


@app.command()
def settle(job_id: str, stack: StackOption = None, endpoint: EndpointOption = None) -> None:
    """Settle a job whose every chunk has settled but which has not: its settle failed on every try (the
    failure queue's alarm says so), and the cause is fixed. The job function settles it.

    Example: fanout settle j-0123456789abcdef && fanout watch j-0123456789abcdef
    """
    ref = _connect(stack, endpoint)
    try:
        operations.settle(ref, job_id)
    except operations.OperatorError as exc:
        raise _fail(str(exc)) from None
    console.print(f"asked the job function to settle {job_id}; `fanout watch {job_id}` follows it")


@app.command()
def validate(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV, NDJSON or JSON file")
    ],
    to: Annotated[str, typer.Option("--to", help="DESTINATION/TARGET")],
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="File option name=value")] = None,
    as_json: JsonOption = False,
) -> None:
    """Read and validate FILE as the splitter would, with no AWS: what would be sent, every rejected row.

    Example: fanout validate contacts.csv --to altcraft/12 -o matching=phone -o phone-region=SE
    """
    try:
        found = operations.validate_file(file, to, parse_pairs(option, "--option"))
    except operations.OperatorError as exc:
        raise _fail(str(exc), as_json) from None
    summary = validation_summary(found)
    if found.quota:
        summary["quota"] = found.quota
    if as_json:
        rejected = [dataclasses.asdict(r) for r in found.rejections]
        print(json.dumps({**summary, "rejected": rejected}, ensure_ascii=False))
    else:
        if found.problem:
            console.print(f"verdict: the job would FAIL, nothing would be sent: {found.problem}")
        else:
            plan = summary["plan"]
            console.print(
                f"verdict: the job would send {found.rows_valid} rows in {plan['chunks']} chunks"
                f" ({plan['provider_calls']} provider calls)"
            )
        for name in ("format", "encoding", "compressed", "rows_read", "rows_valid", "rows_rejected"):
            console.print(f"{name:>14}: {summary[name]}")
        for header, target in summary["columns"].items():
            console.print(f"{'column':>14}: {header} -> {target}")
        if found.rejections:
            table = Table(title="rejected rows")
            for column in ("row", "column", "value", "reason"):
                table.add_column(column)
            for r in found.rejections:
                table.add_row(str(r.row), r.column, r.value, r.reason)
            console.print(table)
    raise typer.Exit(1 if found.problem else 0)


TRAVELS_AS_DATA = "travels as data"


def validation_summary(found: operations.Validation) -> dict[str, Any]:
    """What `fanout validate --json` prints (less the rejected rows): the verdict the job would get, the
    counts, each header's field, and the plan."""
    info = found.info
    return {
        "verdict": "fail" if found.problem else "send",
        "problem": found.problem,
        "format": info.format if info else None,
        "encoding": info.encoding if info else None,
        "compressed": info.compressed if info else None,
        "rows_read": found.rows_read,
        "rows_valid": found.rows_valid,
        "rows_rejected": len(found.rejections),
        "columns": {header: name or TRAVELS_AS_DATA for header, name in found.columns.items()},
        "chunks": found.plan.chunks,
        "plan": dataclasses.asdict(found.plan),
    }


if __name__ == "__main__":
    app()
