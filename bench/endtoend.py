"""Benchmarks 3 and 6: a whole file through the local stack to the Mateo emulator, and what it would cost.

The end-to-end run drops the file exactly as a user would (`LocalStack.drop`) and waits until the job is
settled (rows.csv written, final status stored). Every function runs in the measuring shim, so the same
run yields the handlers' durations and their AWS calls for the cost model. Mateo's pacing is switched off
(`RatePerSecondMateo=0`, which pacing.py reads as "no limit") so the figure is the system's own speed,
with two sender workers (`concurrency=2`).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from bench.cost import cost_lines, egress_usage, lambda_usage, per_million_contacts, total_dollars
from bench.counting import Usage
from bench.data import contacts, data_file
from bench.measured_stack import MATEO_FUNCTIONS, Invocation, MeasuredStack, event_source_counter
from bench.phases import CpuSampler, Phase, cores, describe, grouped, phase_figures
from bench.report import BenchResult, Row
from bench.session import JOURNEY, Session
from fanout_local.stack import StackSettings

E2E_TARGET_SECONDS = 60.0
WAIT_LIMIT_SECONDS = 900.0


def _usage_of(invocations: list[Invocation], memory_mb: dict[str, int]) -> dict[str, Usage]:
    """Billable usage per function: its GB-seconds and requests, the AWS calls it made and the bytes it
    sent to the provider."""
    by_function: dict[str, Usage] = {}
    for function in sorted({i.function for i in invocations}):
        mine = [i for i in invocations if i.function == function]
        usage = lambda_usage((i.seconds for i in mine), memory_mb[function])
        usage = usage.add(egress_usage(sum(call[2] for i in mine for call in i.http)))
        for invocation in mine:
            usage = usage.add(
                Usage(**{k: v for k, v in invocation.usage.items() if not k.startswith("lambda")})
            )
        by_function[function] = usage
    return by_function


def _provider_calls(invocations: list[Invocation]) -> list[list[Any]]:
    return sorted((call for i in invocations for call in i.http), key=lambda call: call[0])


def _check_received(counts: dict[str, int], rows: int) -> dict[str, Any]:
    """Did the emulator get every contact of the file exactly once? (identity = lower-cased email)"""
    expected = {str(c["email"]).lower() for c in contacts(rows)}
    return {
        "distinct": len(counts),
        "max_times": max(counts.values(), default=0),
        "missing": len(expected - counts.keys()),
        "unexpected": len(counts.keys() - expected),
        "ok": counts.keys() == expected and all(n == 1 for n in counts.values()),
    }


def _logical(function: str) -> str:
    """`bench-e2e-SplitterFunction-K8WT11OSZZZN` -> `SplitterFunction`."""
    parts = function.split("-")
    return parts[-2] if len(parts) >= 2 else function


def _split_invocations(invocations: list[Invocation], calls: list[list[Any]]) -> list[Invocation]:
    """The splitter function's invocations that split the file: those that began before the first provider
    call (nothing is queued before the whole file is read). The same function settles the job once its
    last chunk has: that invocation begins after the last provider call."""
    first_call = calls[0][0] if calls else float("inf")
    return [i for i in invocations if _logical(i.function) == "SplitterFunction" and i.started < first_call]


def _phases(started: float, split_end: float, calls: list[list[Any]], settled: float) -> list[Phase]:
    """split: drop -> last splitter invocation over (its chunks queued); send: -> last provider call;
    settle: -> the job's final status seen."""
    last_call = calls[-1][0] if calls else split_end
    return [
        Phase("split", started, split_end),
        Phase("send", split_end, max(split_end, last_call)),
        Phase("settle", max(split_end, last_call), settled),
    ]


def _busy(invocations: list[Invocation], phase: Phase) -> float:
    """Seconds the invocations ran within the phase (summed over workers)."""
    return sum(max(0.0, min(i.ended, phase.end) - max(i.started, phase.start)) for i in invocations)


def run_end_to_end(session: Session) -> dict[str, Any]:
    """Drop the large CSV file for Mateo and wait until its job settles (memoised per session)."""
    if session.end_to_end is not None:
        return session.end_to_end
    rows = session.large_rows
    path = data_file(session.data_dir, rows, "csv")
    settings = StackSettings(
        stack_name="bench-e2e",
        parameters={"RatePerSecondMateo": "0"},
        concurrency=2,
        state_dir=session.out / "stack-e2e",
    )
    profile_dir = session.out / "profile-e2e" if session.profile else None
    with MeasuredStack(settings, session.out / "usage-e2e", profile_dir, MATEO_FUNCTIONS) as stack:
        queue = stack.physical("MateoQueue")
        esm = event_source_counter({"mateo": queue}).install()
        sampler = CpuSampler(stack.cpu_seconds).start()
        started = time.time()
        job_id = stack.drop(path, "mateo", JOURNEY)
        job = stack.wait(job_id, timeout=WAIT_LIMIT_SECONDS)
        settled = time.time()
        sampler.stop()
        esm.uninstall()
        received = stack.received("mateo").get("targets", {}).get(JOURNEY, {})
        emulator_requests = int(stack.received("mateo").get("requests", 0))
        invocations = stack.invocations()
        memory = stack.memory_mb()
        cpu = stack.cpu_seconds()
    calls = _provider_calls(invocations)
    splitter = _split_invocations(invocations, calls)
    usage = _usage_of(invocations, memory)
    phases = _phases(started, max((i.ended for i in splitter), default=started), calls, settled)
    senders = [i for i in invocations if _logical(i.function) == "MateoSenderFunction"]
    result = {
        "rows": rows,
        "job_id": job_id,
        "status": job.status.value,
        "counts": job.summary(),
        "seconds": settled - started,
        "split_seconds": sum(i.seconds for i in splitter),
        "phases": {
            phase.name: {
                **phase_figures(phase, grouped(sampler.between(phase.start, phase.end)), cores()),
                "sender_busy_seconds": round(_busy(senders, phase), 2),
            }
            for phase in phases
        },
        "first_call_after_seconds": calls[0][0] - started if calls else None,
        "last_call_after_seconds": calls[-1][0] - started if calls else None,
        "provider_calls": len(calls),
        "provider_statuses": dict(Counter(str(c[1]) for c in calls)),
        "provider_request_bytes": sum(c[2] for c in calls),
        "emulator_requests": emulator_requests,
        "received": _check_received(received, rows),
        "invocations": dict(Counter(i.function for i in invocations)),
        "invocation_errors": sum(1 for i in invocations if i.error),
        "aws_calls": dict(sum((Counter(i.calls) for i in invocations), Counter())),
        "event_source_calls": esm.snapshot()["calls"],
        "usage_by_function": {name: u.to_dict() for name, u in usage.items()},
        "event_source_usage": esm.usage.to_dict(),
        "memory_mb": memory,
        "cpu_seconds_by_process": cpu,
    }
    session.end_to_end = result
    return result


def end_to_end(session: Session) -> BenchResult:
    """Benchmark 3: drop to settled, and every contact received exactly once."""
    run = run_end_to_end(session)
    received = run["received"]
    phases = run["phases"]
    correct = received["ok"] and run["counts"]["rows_sent"] == run["rows"] and run["status"] == "completed"
    rows = [
        Row(
            f"3 end to end, {run['rows']:,} contacts to Mateo",
            f"{run['seconds']:.1f} s drop to settled (split {phases['split']['seconds']:.1f} s, "
            f"send {phases['send']['seconds']:.1f} s, settle {phases['settle']['seconds']:.1f} s; "
            f"last provider call at {run['last_call_after_seconds'] or 0:.1f} s)",
            f"{run['provider_calls']:,} provider calls",
            "",
            f"< {E2E_TARGET_SECONDS:.0f} s",
            run["seconds"] < E2E_TARGET_SECONDS,
        ),
        Row(
            "3 end to end, received once each",
            f"{received['distinct']:,} distinct, max {received['max_times']}x, {received['missing']} missing",
            f"{run['rows']:,} contacts in the file",
            "",
            "all, once",
            correct,
        ),
        *(
            Row(f"3 end to end, {name} phase", describe(name, figures), "CPU-s by process in the phase")
            for name, figures in phases.items()
        ),
    ]
    return BenchResult("end_to_end", rows, run)


def quantity_text(quantity: float) -> str:
    """`12,007` for counts, `0.300` for fractions of a unit (GB of egress)."""
    return f"{quantity:,.0f}" if quantity >= 100 or quantity == int(quantity) else f"{quantity:.3f}"


def price_text(price: float) -> str:
    """`$0.0000133334`, `$0.09`: a unit price without trailing zeros."""
    return "$" + f"{price:.10f}".rstrip("0").rstrip(".")


def total_usage(run: dict[str, Any]) -> Usage:
    """Everything the end-to-end run used: every function's usage plus the event source's SQS calls."""
    usage = Usage(**run["event_source_usage"])
    for figures in run["usage_by_function"].values():
        usage = usage.add(Usage(**figures))
    return usage


def cost(session: Session) -> BenchResult:
    """Benchmark 6: dollars per 1,000,000 contacts to Mateo, from the end-to-end run's own usage."""
    run = run_end_to_end(session)
    scaled = per_million_contacts(total_usage(run), run["counts"]["rows_sent"])
    lines = cost_lines(scaled)
    total = total_dollars(lines)
    data = {
        "usage_per_million": scaled.to_dict(),
        "lines": [
            {
                "item": line.item,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "dollars": line.dollars,
            }
            for line in lines
        ],
        "total_dollars": total,
        "memory_mb": run["memory_mb"],
    }
    rows = [
        Row(
            f"6 cost per 1,000,000 contacts, {line.item}",
            f"${line.dollars:.4f}",
            f"{quantity_text(line.quantity)} x {price_text(line.unit_price)}",
        )
        for line in lines
        if line.quantity
    ]
    rows.append(Row("6 cost per 1,000,000 contacts, total (Mateo)", f"${total:.4f}", "us-east-1 list prices"))
    return BenchResult("cost", rows, data)
