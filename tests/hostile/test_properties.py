"""Properties of the split over generated files: whatever the rows (valid, invalid, blank, duplicated,
unicode, holding delimiters, quotes and line breaks) and however the file is written (CSV with any
delimiter, encoding, BOM and mix of line endings, NDJSON or a JSON array, gzip or not), every row read ends
exactly once, rejected with its reason or staged under its identity, and a repeated contact is rejected as
"duplicate of row N" naming the row that had it first.

The expected outcome of each row comes from a small model of the rules (a blank email, an address
`fields.normalise_email` refuses, a nested value, a repeat), not from running the splitter's own code path.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fanout import fields
from fanout.config import SplitterConfig
from fanout.models import ObjectRef, StagedRow
from fanout.splitter import Splitter
from fanout.staging import result_key
from fanout.store import DynamoJobStore

pytestmark = pytest.mark.unit

WORKSHOP = "inbox/workshop/jrn_welcome"
HEADER = ["email", "name", "note"]
BLANK = object()  # a blank line in the file: counted in row numbers, never a row

# Encodings as people save them; the bytes to put before the text.
ENCODINGS: dict[str, tuple[str, bytes]] = {
    "utf-8": ("utf-8", b""),
    "utf-8 with BOM": ("utf-8", codecs.BOM_UTF8),
    "utf-16 (Excel Unicode text)": ("utf-16-le", codecs.BOM_UTF16_LE),
    "utf-16-be": ("utf-16-be", codecs.BOM_UTF16_BE),
    "cp1252": ("cp1252", b""),
}
# cp1252 text that can never read as valid UTF-8 (no bytes 0x80-0xBF, so no UTF-8 continuation bytes):
# the reader decides cp1252 from the bytes, and must decide it for the expected values to hold.
_CP1252_CHARS = (
    "".join(chr(c) for c in range(0x20, 0x7F)) + "\t\r\n" + "".join(chr(c) for c in range(0xC0, 0x100))
)
_ANY_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")

VALID = ["ada@example.com", "bo@example.se", "åsa@exämple.se", "zoë@example.com", "carl+tag@example.org"]
INVALID = [
    "bob@",
    "no-at-sign",
    "a@b",
    "x@@example.com",
    "a b@example.com",
    "@example.com",
    "a..b@example.com",
]

PROPERTY = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@cache
def aws(service: str) -> Any:
    return boto3.client(service, region_name="eu-west-1")  # type: ignore[call-overload]


@dataclass(frozen=True)
class Expected:
    """What must become of one row: staged under `identity`, or rejected with `reason` in its reason."""

    row: int
    identity: str | None = None
    reason: str | None = None
    exact: bool = False  # the reason must be exactly `reason` (duplicates)


def _text(value: object) -> str | None:
    """A cell as the validator sees it: trimmed text; None for a list or object."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return None
    return str(value).strip()


def expected_rows(records: list[Any], *, csv_file: bool) -> list[Expected]:
    """The model: each record's row number (blank lines count) and outcome."""
    first: dict[str, int] = {}
    out = []
    for number, record in enumerate(records, 1):
        if record is BLANK:
            continue
        if csv_file and all(cell == "" for cell in record.values()):
            continue  # a line of delimiters only: a blank record to a spreadsheet
        if record is None:  # a broken NDJSON line
            out.append(Expected(number, reason=f"line {number} is not valid JSON"))
            continue
        text = _text(record["email"])
        if text is None:
            out.append(Expected(number, reason="email must be a single value, not a list or object"))
        elif not text:
            out.append(Expected(number, reason="no email (or list_email) to enroll"))
        elif (email := fields.normalise_email(text)) is None:
            out.append(Expected(number, reason="is not a valid email address"))
        elif email in first:
            out.append(Expected(number, reason=f"duplicate of row {first[email]}", exact=True))
        else:
            first[email] = number
            out.append(Expected(number, identity=email))
    return out


# --- strategies -------------------------------------------------------------------------------------------


@st.composite
def emails(draw: st.DrawFn, cp1252: bool) -> object:
    kind = draw(st.sampled_from(["pool", "pool", "variant", "invalid", "blank", "text"]))
    if kind == "pool":
        return draw(st.sampled_from(VALID))
    if kind == "variant":  # the same person, written differently
        email = draw(st.sampled_from(VALID))
        email = email.upper() if draw(st.booleans()) else email
        pad = st.sampled_from([" ", "\t", "  "] if cp1252 else [" ", "\t", "\u00a0", "\u3000"])
        return draw(pad) + email + draw(pad)
    if kind == "invalid":
        return draw(st.sampled_from(INVALID))
    if kind == "blank":
        return draw(st.sampled_from(["", "   "]))
    return draw(text_values(cp1252, max_size=15))


def text_values(cp1252: bool, max_size: int = 12) -> st.SearchStrategy[str]:
    return st.text(st.sampled_from(_CP1252_CHARS) if cp1252 else _ANY_CHARS, max_size=max_size)


@st.composite
def csv_records(draw: st.DrawFn, cp1252: bool) -> list[Any]:
    count = draw(st.integers(1, 25))
    records: list[Any] = []
    for _ in range(count):
        if draw(st.integers(0, 9)) == 0:
            records.append(BLANK)
            continue
        records.append(
            {
                "email": draw(emails(cp1252)),
                "name": draw(text_values(cp1252)),
                "note": draw(text_values(cp1252)),
            }
        )
    return records


@st.composite
def json_records(draw: st.DrawFn, cp1252: bool, blank_lines: bool) -> list[Any]:
    count = draw(st.integers(1, 25))
    records: list[Any] = []
    for _ in range(count):
        roll = draw(st.integers(0, 19))
        if roll == 0 and blank_lines:
            records.append(BLANK)
            continue
        if roll == 1 and blank_lines and records:  # NDJSON: a hand-broken line (never the first)
            records.append(None)
            continue
        email: object = draw(emails(cp1252))
        if roll == 2:
            email = draw(st.sampled_from([{"work": VALID[0]}, [VALID[1]], None, 12345, True]))
        note: object = draw(text_values(cp1252))
        if roll == 3:
            note = {"nested": {"plan": draw(text_values(cp1252))}, "tags": [1, 2]}  # travels on
        records.append({"email": email, "name": draw(text_values(cp1252)), "note": note})
    return records


def _line_ends(data: st.DataObject, count: int, mixed: bool) -> list[str]:
    """A line ending per line: one for the whole file, or a mix."""
    choice = st.sampled_from(["\n", "\r\n", "\r"])
    fixed = data.draw(choice)
    return [data.draw(choice) if mixed else fixed for _ in range(count)]


def write_csv(records: list[Any], delimiter: str, ends: list[str], final_newline: bool) -> str:
    parts = []
    previous = ""
    for record, end in zip([None, *records], ends, strict=True):
        if record is BLANK:
            line = ""
            if previous == "\r" and end == "\n":
                end = "\r\n"  # CR then LF would be one line break, not a blank line
        else:
            buffer = io.StringIO()
            # "\r\n" as the writer's terminator makes it quote every value holding CR or LF.
            writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
            writer.writerow(HEADER if record is None else [record[h] for h in HEADER])
            line = buffer.getvalue()[:-2]
        parts.append(line + end)
        previous = end
    text = "".join(parts)
    if not final_newline and records and records[-1] is not BLANK:
        text = text[: -len(ends[-1])]
    return text


def write_ndjson(records: list[Any], ends: list[str]) -> str:
    parts = []
    previous = ""
    for record, end in zip(records, ends, strict=True):
        if record is BLANK:
            line = ""
            if previous == "\r" and end == "\n":
                end = "\r\n"
        elif record is None:
            line = '{"email": "x@example.com",, "name": ""}'
        else:
            line = json.dumps(record, ensure_ascii=False)
        parts.append(line + end)
        previous = end
    return "".join(parts)


# --- the property ---------------------------------------------------------------------------------------------


def split_and_check(splitter: Splitter, store: DynamoJobStore, bucket: str, data: st.DataObject) -> None:
    label = data.draw(st.sampled_from(sorted(ENCODINGS)), label="encoding")
    codec, bom = ENCODINGS[label]
    cp1252 = codec == "cp1252"
    fmt = data.draw(st.sampled_from(["csv", "csv", "ndjson", "json-array"]), label="format")
    if fmt == "csv":
        records = data.draw(csv_records(cp1252), label="records")
        delimiter = data.draw(st.sampled_from([",", ";", "\t", "|"]), label="delimiter")
        ends = _line_ends(data, len(records) + 1, data.draw(st.booleans(), label="mixed endings"))
        text = write_csv(records, delimiter, ends, data.draw(st.booleans(), label="final newline"))
    elif fmt == "ndjson":
        records = data.draw(json_records(cp1252, blank_lines=True), label="records")
        ends = _line_ends(data, len(records), data.draw(st.booleans(), label="mixed endings"))
        text = write_ndjson(records, ends)
    else:
        records = data.draw(json_records(cp1252, blank_lines=False), label="records")
        text = json.dumps(records, ensure_ascii=False, indent=data.draw(st.sampled_from([None, 1])))
    expected = expected_rows(records, csv_file=fmt == "csv")
    if not expected:  # nothing but blank lines: a whole-file refusal, which the corpus covers
        return
    body = bom + text.encode(codec)
    if data.draw(st.booleans(), label="gzip"):
        body = gzip.compress(body)

    key = f"{WORKSHOP}/{uuid.uuid4().hex[:12]}.{'csv' if fmt == 'csv' else 'json'}"
    aws("s3").put_object(
        Bucket=bucket, Key=key, Body=body, Metadata={"tolerated-invalid-percent": "100", "resend": "true"}
    )  # each example stands alone, even when Hypothesis makes the same bytes again
    (outcome,) = splitter.split(ObjectRef(bucket, key))
    job = store.get_job(outcome.job_id)
    assert job is not None and job.message == "", job

    rejected = {
        int(r["row"]): r["reason"]
        for r in csv.DictReader(io.StringIO(_read(bucket, result_key(job.job_id, "rejected.csv")).decode()))
    }
    staged: dict[int, str] = {}
    for chunk in store.chunks(job.job_id):
        for line in _read(bucket, chunk.key, chunk.byte_range).splitlines():
            row = StagedRow.from_json(line)
            assert row.row not in staged, f"row {row.row} staged twice"
            staged[row.row] = row.identity

    assert (
        job.counts.read
        == len(expected)
        == job.counts.rejected + sum(c.rows for c in store.chunks(job.job_id))
    )
    assert not set(staged) & set(rejected)
    assert sorted([*staged, *rejected]) == [e.row for e in expected]
    for want in expected:
        if want.identity is not None:
            assert staged.get(want.row) == want.identity, (want, rejected.get(want.row))
        else:
            assert want.row in rejected, (want, staged.get(want.row))
            assert want.reason is not None
            got = rejected[want.row]
            assert (got == want.reason) if want.exact else (want.reason in got), (want, got)


def _read(bucket: str, key: str, byte_range: str = "") -> bytes:
    """An object's bytes, or (a chunk packed with others) its `byte_range` of them."""
    ranged = {"Range": byte_range} if byte_range else {}
    body: bytes = aws("s3").get_object(Bucket=bucket, Key=key, **ranged)["Body"].read()
    return body


@PROPERTY
@given(data=st.data())
def test_every_row_ends_once_and_duplicates_name_their_first_row(
    data: st.DataObject,
    module_splitter: Splitter,
    module_store: DynamoJobStore,
    module_config: SplitterConfig,
) -> None:
    split_and_check(module_splitter, module_store, module_config.bucket_name, data)


@pytest.mark.slow
@settings(PROPERTY, max_examples=400)
@given(data=st.data())
def test_every_row_ends_once_and_duplicates_name_their_first_row_at_length(
    data: st.DataObject,
    module_splitter: Splitter,
    module_store: DynamoJobStore,
    module_config: SplitterConfig,
) -> None:
    split_and_check(module_splitter, module_store, module_config.bucket_name, data)
