"""Benchmark 4: the senders against a Mateo emulator that allows R requests/s.

The emulator enforces R per sliding second and answers 429 above it; the stack is told the same limit
(`RatePerSecondMateo=R`, pacing.py's DynamoDB slots shared by both sender workers). The file holds enough
500-contact chunks for about `seconds` of calls. The achieved rate is measured on the accepted calls the
senders made (first to last), and every 429 is counted twice: by the senders (the answer's status and the
emulator's `x-emulator-fault: rate_limit` header) and by the emulator (requests it saw minus accepted).
"""

from __future__ import annotations

import math
from typing import Any

from bench.data import data_file
from bench.measured_stack import MATEO_FUNCTIONS, MeasuredStack
from bench.report import BenchResult, Row
from bench.session import JOURNEY, Session
from fanout_local.stack import StackSettings

RATE_TARGET_SHARE = 0.9
MATEO_ITEMS_PER_CALL = 500
FULL_RATES = (2.0, 10.0)  # Mateo's documented limit, and a faster one
QUICK_RATES = (2.0,)


def achieved_rate(times: list[float]) -> float:
    """Calls per second between the first and the last of `times` (sorted or not)."""
    if len(times) < 2:
        return 0.0
    span = max(times) - min(times)
    return (len(times) - 1) / span if span > 0 else float("inf")


def paced_run(session: Session, rate: float, seconds: float) -> dict[str, Any]:
    """Send ~`rate * seconds` calls' worth of contacts at a Mateo emulator limited to `rate` per second."""
    calls = math.ceil(rate * seconds) + 1
    rows = calls * MATEO_ITEMS_PER_CALL
    path = data_file(session.data_dir, rows, "csv")
    settings = StackSettings(
        stack_name="bench-pacing",
        rate_limits={"mateo": rate},
        parameters={"RatePerSecondMateo": f"{rate:g}"},
        concurrency=2,
        state_dir=session.out / f"stack-pacing-{rate:g}",
    )
    with MeasuredStack(settings, session.out / f"usage-pacing-{rate:g}", functions=MATEO_FUNCTIONS) as stack:
        job = stack.wait(stack.drop(path, "mateo", JOURNEY), timeout=60 + 4 * seconds)
        emulator = stack.received("mateo")
        records = [call for invocation in stack.invocations() for call in invocation.http]
    accepted = [call[0] for call in records if 200 <= call[1] < 300]
    refused = [call for call in records if call[1] == 429]
    rate_faults = [call for call in records if call[3] == "rate_limit"]
    achieved = achieved_rate(accepted)
    return {
        "rate_limit": rate,
        "rows": rows,
        "status": job.status.value,
        "rows_sent": job.counts.sent,
        "calls_accepted": len(accepted),
        "calls_refused_429": len(refused),
        "rate_limit_fault_headers": len(rate_faults),
        "emulator_requests": int(emulator.get("requests", 0)),
        "emulator_refused": int(emulator.get("requests", 0)) - len(accepted),
        "span_seconds": (max(accepted) - min(accepted)) if accepted else 0.0,
        "achieved_rate": achieved,
        "share_of_limit": achieved / rate,
    }


def pacing(session: Session) -> BenchResult:
    """Achieved rate and 429s for each tested limit."""
    seconds = 10.0 if session.quick else 25.0
    result = BenchResult("pacing")
    for rate in QUICK_RATES if session.quick else FULL_RATES:
        run = paced_run(session, rate, seconds)
        result.data[f"{rate:g}"] = run
        met = (
            run["share_of_limit"] >= RATE_TARGET_SHARE
            and run["calls_refused_429"] == 0
            and run["emulator_refused"] == 0
            and run["rows_sent"] == run["rows"]
        )
        result.rows.append(
            Row(
                f"4 pacing, Mateo limited to {rate:g}/s",
                f"{run['achieved_rate']:.2f} calls/s over {run['span_seconds']:.1f} s, "
                f"{run['emulator_refused']} x 429",
                f"limit {rate:g}/s",
                f"{run['share_of_limit']:.3f}",
                f">= {RATE_TARGET_SHARE}, no 429",
                met,
            )
        )
    return result
