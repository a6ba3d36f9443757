"""What several suites check the same way against a running local stack."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

from fanout_local.stack import EMULATOR_OF, LOCAL_SECRETS, LocalStack

# Deliberately not the product's redaction patterns: these tests check that redaction works.
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
PHONE = re.compile(r"\+\d{7,15}")
TOKENS = tuple(sorted({secret["token"] for secret in LOCAL_SECRETS.values()}))


def leaked_log_lines(log_dir: Path) -> tuple[int, list[str]]:
    """How many function log lines there are, and those holding an email, a phone number or a token."""
    scanned, leaks = 0, []
    for log in sorted(log_dir.glob("*Function.log")):
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            scanned += 1
            if EMAIL.search(line) or PHONE.search(line) or any(token in line for token in TOKENS):
                leaks.append(f"{log.name}: {line[:200]}")
    return scanned, leaks


def rows_csv(stack: LocalStack, job_id: str) -> list[dict[str, str]]:
    """results/<job>/rows.csv, one dict per input row."""
    body = stack.client("s3").get_object(Bucket=stack.bucket, Key=f"results/{job_id}/rows.csv")["Body"].read()
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"))))


def enrolments(stack: LocalStack, destination: str, target: str, prefix: str) -> dict[str, int]:
    """The provider emulator's count per contact of one test file (identities starting `prefix.`)."""
    counts = stack.received(destination).get("targets", {}).get(target, {})
    return {who: n for who, n in counts.items() if who.startswith(prefix + ".")}


def assert_accounted(summary: dict[str, Any]) -> None:
    """Every row read ended in exactly one state."""
    parts = ("rows_sent", "rows_rejected", "rows_failed", "rows_uncertain")
    assert summary["rows_read"] == sum(summary[p] for p in parts), summary


__all__ = ["EMULATOR_OF", "assert_accounted", "enrolments", "leaked_log_lines", "rows_csv"]
