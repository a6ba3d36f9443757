"""Benchmark 7 (issue 15, item 4): what parallel segments would buy a 10x file, from measured figures.

Parallel segments would cut a large file into byte ranges split by several invocations at once, with the
duplicates across segments removed before anything is queued. Whether that is worth building depends on
how much of a job's time the split is. This benchmark takes:

- the split of the 10x file (the `continued` run: one splitter, continuing past its forced timeout), its
  CPU seconds scaled to the splitter's Lambda share of a vCPU (Lambda gives 1 vCPU at 1,769 MB);
- the cross-segment duplicate check, measured here: SEGMENTS sorted runs of 64-bit contact hashes (one per
  segment, as the splitter's dedup state holds them) merged in one pass, every repeat found;
- each destination's send time for the same rows at the rate and per-call limits the senders obey
  (fanout.sizing PACES, each provider's Limits), and Mateo's documented daily quota;

and reports, per destination, the job's time with one splitter and with SEGMENTS, and the share saved.
"""

from __future__ import annotations

import math
import random
import time
from array import array
from heapq import merge

from bench.data import data_file
from bench.report import BenchResult, Row
from bench.session import Session
from bench.throughput import CONTINUE_EVERY_SECONDS, split_run
from fanout.destinations import Destination
from fanout.providers import provider_for
from fanout.quotas import DOCUMENTED
from fanout.sizing import PACES

SEGMENTS = 8
MB_PER_VCPU = 1769  # AWS Lambda: a function with 1,769 MB has the equivalent of one vCPU
SEGMENT_START_SECONDS = 1.0  # a segment invocation's own start and its S3/DynamoDB bookkeeping
# Build segments when they would start some destination's enrolments this much sooner for a 10x file: a
# nightly export that waits five more minutes is not worth a second split path and a cross-segment merge.
WORTH_IT_SECONDS = 300.0


def hash_runs(rows: int, segments: int = SEGMENTS, seed: int = 15) -> list[array[int]]:
    """`segments` sorted runs of `rows` 64-bit contact hashes in all, one row in a hundred repeating
    another (possibly in another run): the dedup state segments would leave behind."""
    rng = random.Random(seed)
    hashes = [rng.getrandbits(63) for _ in range(rows)]
    for i in range(0, rows, 100):
        hashes[i] = hashes[(i * 7919 + 1) % rows]
    return [array("q", sorted(hashes[s::segments])) for s in range(segments)]


def merge_seconds(runs: list[array[int]]) -> tuple[float, int]:
    """CPU seconds to merge the runs in one pass and count the repeats: the cross-segment step segments
    would add before anything is queued."""
    started = time.process_time()
    repeats = 0
    previous = None
    for value in merge(*runs):
        if value == previous:
            repeats += 1
        previous = value
    return time.process_time() - started, repeats


def send_seconds(destination: Destination, rows: int, bytes_per_row: float) -> tuple[float, int]:
    """(seconds, calls) to send `rows` rows to `destination` at its senders' rate and per-call limits."""
    provider = provider_for(destination)
    limits = provider.limits
    calls = 1 if provider.whole_file else math.ceil(rows / limits.max_items)
    if limits.max_body_bytes:
        per_call = limits.max_body_bytes - limits.envelope_bytes
        calls = max(calls, math.ceil(rows * bytes_per_row / per_call))
    return calls / PACES[destination].rate_per_second, calls


def _days(destination: Destination, rows: int, calls: int) -> int:
    quota = DOCUMENTED.get(destination)
    if quota is None:
        return 0
    return quota.days_for(calls, rows if destination is Destination.MATEO else 0)


def segments(session: Session) -> BenchResult:
    """The job time of a 10x file per destination, one splitter against SEGMENTS, from measured figures."""
    rows = session.huge_rows
    run = split_run(session, rows, "csv", CONTINUE_EVERY_SECONDS)
    share = min(1.0, run["memory_mb"] / MB_PER_VCPU)
    single = run["split_cpu_seconds"] / share
    merge_cpu, repeats = merge_seconds(hash_runs(rows))
    segmented = single / SEGMENTS + SEGMENT_START_SECONDS + merge_cpu / share
    bytes_per_row = data_file(session.data_dir, rows, "csv").stat().st_size / rows
    result = BenchResult("segments")
    result.data = {
        "rows": rows,
        "segments": SEGMENTS,
        "splitter_memory_mb": run["memory_mb"],
        "vcpu_share": share,
        "split_cpu_seconds": run["split_cpu_seconds"],
        "single_split_lambda_seconds": single,
        "merge_cpu_seconds": merge_cpu,
        "merge_repeats_found": repeats,
        "segmented_split_lambda_seconds": segmented,
        "destinations": {},
    }
    result.rows.append(
        Row(
            f"7 split of {rows:,} CSV rows on Lambda ({run['memory_mb']} MB = {share:.2f} vCPU)",
            f"1 splitter {single:.0f} s; {SEGMENTS} segments {segmented:.0f} s",
            f"cross-segment merge {merge_cpu:.1f} s CPU",
            f"{single / segmented:.1f}x",
        )
    )
    best = 0.0
    best_share = 0.0
    for destination in Destination:
        send, calls = send_seconds(destination, rows, bytes_per_row)
        days = _days(destination, rows, calls)
        job_single, job_segmented = single + send, segmented + send
        saved = (job_single - job_segmented) / job_single
        best = max(best, job_single - job_segmented)
        best_share = max(best_share, saved)
        result.data["destinations"][destination.value] = {
            "calls": calls,
            "send_seconds": send,
            "quota_days": days,
            "saved_share": saved,
        }
        quota = f", {days} days of daily quota" if days > 1 else ""
        result.rows.append(
            Row(
                f"7 job of {rows:,} rows to {destination.value}",
                f"{calls:,} calls, {_duration(send)} of sends{quota}",
                f"segments save {_duration(job_single - job_segmented)}",
                f"{saved:.1%}",
            )
        )
    full_vcpu = run["split_cpu_seconds"]
    result.data.update(best_saved_seconds=best, best_saved_share=best_share, one_vcpu_seconds=full_vcpu)
    result.rows.append(
        Row(
            f"7 1 splitter at {MB_PER_VCPU:,} MB (1 vCPU, no code)",
            f"{full_vcpu:.0f} s",
            f"at {run['memory_mb']} MB {single:.0f} s",
            f"{single / max(full_vcpu, 1e-9):.1f}x",
        )
    )
    result.rows.append(
        Row(
            "7 build parallel segments?",
            "yes" if best >= WORTH_IT_SECONDS else "no",
            f"at most {_duration(best)} sooner ({best_share:.0%} of a job)",
            "",
            f"build when >= {_duration(WORTH_IT_SECONDS)} sooner",
        )
    )
    return result


def _duration(seconds: float) -> str:
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"
