"""Benchmarks 1 and 2: splitter throughput against a bare parser, and peak memory against file size.

Each split runs in a fresh process (bench/split_run.py) against a fresh moto server with the stack's
resources made from template.yaml: the reference pass and the split read the same bytes in the same
process, and each process's peak RSS belongs to one file size only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench.data import FORMATS, data_file
from bench.localaws import aws_env, create_stack, moto_server, upload
from bench.report import BenchResult, Row
from bench.session import JOURNEY, Session
from fanout_local.deploy import REPO

THROUGHPUT_TARGET = 0.08  # issue 15: over three times the 0.024 measured before it
CONTINUE_EVERY_SECONDS = 10.0  # forced invocation length of the `continued` figure
CPU_TARGET_US = 6.0  # CPU a row of the whole split, AWS calls included
# The same target in `csv.reader` rows: issue 15 set 6 µs on its machine, where `csv.reader` read 1,522,202
# rows a second (0.657 µs a row), so 9.13 of them; on another machine the µs move with its speed, this not
ISSUE_CSV_READER_US = 1e6 / 1_522_202
CPU_TARGET_READER_ROWS = CPU_TARGET_US / ISSUE_CSV_READER_US
PLANNING_TARGET = 0.1  # the per-row code without AWS, beside the bare parser (CPU)
MEMORY_TARGET = 1.1
REFERENCE = {"csv": "csv.reader", "ndjson": "json.loads per line"}


def split_run(
    session: Session, rows: int, file_format: str, continue_every_seconds: float = 0
) -> dict[str, Any]:
    """Split a `rows`-row file of `file_format` once (memoised per session); the run's figures. With
    `continue_every_seconds`, each invocation has that long to live, so the split continues in others."""
    known = session.split_runs.get((rows, file_format, continue_every_seconds))
    if known is not None:
        return known
    path = data_file(session.data_dir, rows, file_format)
    name = f"split-{file_format}-{rows}" + (
        f"-every-{continue_every_seconds:g}s" if continue_every_seconds else ""
    )
    with moto_server(session.logs / f"moto-{name}.log") as endpoint:
        stack = create_stack(endpoint)
        memory_mb = stack.functions["SplitterFunction"].memory
        key = f"inbox/mateo/{JOURNEY}/{path.name}"
        upload(endpoint, stack.bucket, key, path)
        result_path = session.out / f"{name}.json"
        result_path.unlink(missing_ok=True)
        spec = {
            "environment": {
                **stack.environment("SplitterFunction"),
                **aws_env(endpoint),
                "POWERTOOLS_TRACE_DISABLED": "true",
            },
            "bucket": stack.bucket,
            "key": key,
            "path": str(path),
            "format": file_format,
            "result": str(result_path),
            "profile": str(session.out / f"{name}.prof") if session.profile else "",
            "continue_every_seconds": continue_every_seconds,
            # the per-row work without AWS, measured beside the split of the throughput figure
            "planning": rows == session.large_rows and not continue_every_seconds,
            "journey": JOURNEY,
        }
        with (session.logs / f"{name}.log").open("wb") as log:
            subprocess.run(
                [sys.executable, "-m", "bench.split_run", json.dumps(spec)],
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                cwd=REPO,
            )
        result: dict[str, Any] = json.loads(result_path.read_text())
    result["memory_mb"] = memory_mb
    if result["rows_read"] != rows or result["rows_rejected"] or result["rows"] != rows:
        raise RuntimeError(f"{name}: expected {rows} clean rows, got {result}")
    result["rows_per_second"] = rows / result["split_seconds"]
    result["reference_rows_per_second"] = rows / result["reference_seconds"]
    result["ratio"] = result["reference_seconds"] / result["split_seconds"]
    result["cpu_us_per_row"] = 1e6 * result["split_cpu_seconds"] / rows
    result["reference_cpu_us_per_row"] = 1e6 * result["reference_cpu_seconds"] / rows
    if result.get("planning_cpu_seconds"):
        result["planning_cpu_us_per_row"] = 1e6 * result["planning_cpu_seconds"] / rows
        result["planning_ratio"] = result["reference_cpu_seconds"] / result["planning_cpu_seconds"]
    result["profiled"] = session.profile
    session.split_runs[(rows, file_format, continue_every_seconds)] = result
    return result


def continued(session: Session) -> BenchResult:
    """A split of the 10x file forced through continuations: each invocation lives CONTINUE_EVERY seconds."""
    rows = session.huge_rows
    result = BenchResult("continued")
    run = split_run(session, rows, "csv", CONTINUE_EVERY_SECONDS)
    result.data["csv"] = run
    result.rows.append(
        Row(
            f"1 split in invocations of {CONTINUE_EVERY_SECONDS:g} s, {rows:,} CSV rows",
            f"{run['split_invocations']} invocations, {run['rows_per_second']:,.0f} rows/s",
            f"{run['cpu_us_per_row']:.1f} us/row CPU, peak RSS {_mib(run['peak_rss_kb'] or 0):.0f} MiB",
            "",
            "> 1 invocation, every row read once",
            run["split_invocations"] > 1,
        )
    )
    return result


def throughput(session: Session) -> BenchResult:
    """Benchmark 1: rows/s of the whole split (S3 read to last SQS message) over a bare parser's."""
    rows = session.large_rows
    result = BenchResult("throughput")
    for file_format in FORMATS:
        run = split_run(session, rows, file_format)
        result.data[file_format] = run
        # the split's CPU a row in rows of its reference (csv.reader's, for CSV)
        over_reference = run["cpu_us_per_row"] / max(run["reference_cpu_us_per_row"], 1e-9)
        result.rows.append(
            Row(
                f"1 splitter, {rows:,} {file_format.upper()} rows",
                f"{run['rows_per_second']:,.0f} rows/s ({run['split_seconds']:.1f} s)",
                f"{REFERENCE[file_format]} {run['reference_rows_per_second']:,.0f} rows/s",
                f"{run['ratio']:.4f}",
                f">= {THROUGHPUT_TARGET:.2f}",
                run["ratio"] >= THROUGHPUT_TARGET,
            )
        )
        result.rows.append(
            Row(
                f"1 splitter CPU a row, {file_format.upper()}",
                f"{run['cpu_us_per_row']:.1f} us/row",
                f"{REFERENCE[file_format]} {run['reference_cpu_us_per_row']:.2f} us/row",
                f"{over_reference:.1f}x",
                f"<= {CPU_TARGET_US:g} us/row",
                run["cpu_us_per_row"] <= CPU_TARGET_US,
            )
        )
        if file_format == "csv":
            result.rows.append(
                Row(
                    "1 splitter CPU a row, CSV, in csv.reader rows",
                    f"{over_reference:.2f} csv.reader rows",
                    f"{CPU_TARGET_US:g} us at the issue's csv.reader {ISSUE_CSV_READER_US:.3f} us/row",
                    f"= {over_reference * ISSUE_CSV_READER_US:.2f} us there",
                    f"<= {CPU_TARGET_READER_ROWS:.2f} rows",
                    over_reference <= CPU_TARGET_READER_ROWS,
                )
            )
        if run.get("planning_ratio"):
            result.rows.append(
                Row(
                    f"1 per-row code without AWS, {file_format.upper()}",
                    f"{run['planning_cpu_us_per_row']:.1f} us/row",
                    f"{REFERENCE[file_format]} {run['reference_cpu_us_per_row']:.2f} us/row",
                    f"{run['planning_ratio']:.4f}",
                    f">= {PLANNING_TARGET:g}",
                    run["planning_ratio"] >= PLANNING_TARGET,
                )
            )
    return result


def _mib(kib: int) -> float:
    return kib / 1024


def memory(session: Session) -> BenchResult:
    """Benchmark 2: peak RSS of the splitting process for a file 10x larger, as a ratio."""
    result = BenchResult("memory")
    for file_format in FORMATS:
        # NDJSON at 10M rows is 2 GB and five more minutes of the run; its reader is the same byte layer
        small, large = (
            (session.large_rows, session.huge_rows)
            if file_format == "csv"
            else (session.large_rows // 10, session.large_rows)
        )
        low = split_run(session, small, file_format)
        high = split_run(session, large, file_format)
        if not low["peak_rss_kb"] or not high["peak_rss_kb"]:
            raise RuntimeError("peak RSS needs Linux /proc/self/clear_refs")
        ratio = high["peak_rss_kb"] / low["peak_rss_kb"]
        result.data[file_format] = {
            "small_rows": small,
            "large_rows": large,
            "small_peak_rss_kb": low["peak_rss_kb"],
            "large_peak_rss_kb": high["peak_rss_kb"],
            "small_rss_before_split_kb": low["rss_before_kb"],
            "large_rss_before_split_kb": high["rss_before_kb"],
            "ratio": ratio,
        }
        result.rows.append(
            Row(
                f"2 peak RSS of the split, {file_format.upper()} {large:,} rows",
                f"{_mib(high['peak_rss_kb']):.0f} MiB (before split {_mib(high['rss_before_kb']):.0f})",
                f"{small:,} rows: {_mib(low['peak_rss_kb']):.0f} MiB",
                f"{ratio:.3f}",
                f"<= {MEMORY_TARGET}",
                ratio <= MEMORY_TARGET,
            )
        )
    return result
