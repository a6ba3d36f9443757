"""The hostile-file corpus: what people really drop into the inbox, each file with the outcome we promise.

Every file is generated here (nothing big is committed): `write_corpus(directory)` writes them all, and
`python tests/hostile/corpus.py DIR` does it from a shell, e.g. to feed one to `fanout local run`.

Each file ends in exactly one of:

* `Failed`: the job fails with one clear message (a substring is given) and nothing is sent. When rows
  were read first (the invalid share, a truncated file), `rows_read` and `rejected` say which.
* `Completed`: the job goes on (at the split: staged and queued; end to end: completed) with exactly the
  `rejected` rows refused, each with a substring of its reason; every other row staged once.
* `NoJob`: no job at all (a folder placeholder).

Keys hold `{run}`, replaced per test run so reruns on one stack never meet each other's jobs.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import functools
import gzip
import io
import json
import random
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MATEO_JOURNEY = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
WORKSHOP = "inbox/workshop/jrn_welcome"
MATEO = f"inbox/mateo/{MATEO_JOURNEY}"
MB = 1024 * 1024
MAX_ROW_BYTES = 1_000_000  # the splitter's row limit (reading.open_rows' default)

DDE = "=cmd|' /C calc'!A0"
HYPERLINK = '=HYPERLINK("http://evil.example","click")'
AT_HYPERLINK = '@HYPERLINK("http://evil.example")'


@dataclass(frozen=True)
class Completed:
    """The job goes on: exactly `rejected` (row -> substring of its reason) refused, the rest staged."""

    rows_read: int
    rejected: Mapping[int, str] = field(default_factory=dict)
    identities: Mapping[int, str] = field(default_factory=dict)  # row -> the identity it is staged under
    sent_values: tuple[str, ...] = ()  # values that must reach the provider verbatim (sent as data)


@dataclass(frozen=True)
class Failed:
    """The job fails with one clear message (`message` is a substring of it); nothing is sent.

    `rows_read` / `rejected` are checked when given (None: the file failed before or while reading, and
    how far it got is not part of the promise)."""

    message: str
    rows_read: int | None = 0
    rejected: Mapping[int, str] | None = field(default_factory=dict)


@dataclass(frozen=True)
class NoJob:
    """No job at all."""


type Outcome = Completed | Failed | NoJob


@dataclass(frozen=True)
class HostileFile:
    """One corpus file: its key, how to make its bytes, and what must come of it."""

    name: str
    key: str  # the S3 key, with {run}
    why: str  # what a person did to produce it
    build: Callable[[], bytes]
    expect: Outcome
    metadata: Mapping[str, str] = field(default_factory=dict)
    slow: bool = False

    def object_key(self, run: str) -> str:
        return self.key.replace("{run}", run)

    @property
    def file_name(self) -> str:
        """A name for the file on disk: the case name with the key's own extension."""
        last = self.key.rstrip("/").rsplit("/", 1)[-1]
        suffix = last[last.rfind(".") :] if "." in last else ""
        return f"{self.name}{suffix}"


# --- building blocks -----------------------------------------------------------------------------------


def filler(count: int, prefix: str = "filler") -> list[str]:
    """`count` distinct valid email addresses."""
    return [f"{prefix}{n}@example.com" for n in range(1, count + 1)]


def lines(*rows: str, newline: str = "\n") -> bytes:
    return (newline.join(rows) + newline).encode("utf-8")


def csv_bytes(
    rows: list[list[str]], delimiter: str = ",", newline: str = "\n", encoding: str = "utf-8"
) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator=newline).writerows(rows)
    return buffer.getvalue().encode(encoding)


def _png() -> bytes:
    """A real 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _zip(entries: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in entries.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def _xlsx() -> bytes:
    """The parts of a minimal workbook, in the order Excel writes them."""
    return _zip(
        {
            "[Content_Types].xml": '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
            'package/2006/content-types"/>',
            "_rels/.rels": "<Relationships/>",
            "xl/workbook.xml": "<workbook><sheets><sheet name='Contacts' sheetId='1'/></sheets></workbook>",
            "xl/worksheets/sheet1.xml": "<worksheet><sheetData><row><c t='inlineStr'><is><t>email</t>"
            "</is></c></row></sheetData></worksheet>",
        }
    )


def _random_rows(count: int, seed: int = 7) -> bytes:
    """A CSV that compresses poorly (random tokens), so a cut in its gzip lands mid-file."""
    rng = random.Random(seed)
    body = [b"email,token\n"]
    body += [b"u%d@example.com,%s\n" % (i, rng.randbytes(24).hex().encode()) for i in range(1, count + 1)]
    return b"".join(body)


def _gzip_cut(fraction: float, count: int) -> bytes:
    data = gzip.compress(_random_rows(count))
    return data[: int(len(data) * fraction)]


def _gzip_corrupt() -> bytes:
    data = bytearray(gzip.compress(lines("email", *filler(50))))
    data[-6] ^= 0xFF  # the CRC
    return bytes(data)


def _invalid_utf8_mid() -> bytes:
    rows = [f"u{n}@example.com,Åsa {n}" for n in range(1, 4001)]  # ~120 KB: past the 64 KiB prefix
    return lines("email,first_name", *rows) + b"renee@example.com,Ren\xe9e\nlast@example.com,Last\n"


def _big_row(size: int) -> bytes:
    head = lines("email,note", *(f"{e},ok" for e in filler(10)))
    tail = lines(*(f"{e},ok" for e in filler(20, "after")))
    return head + b"huge@example.com," + b"x" * size + b"\n" + tail


def _single_line(size: int) -> bytes:
    return b"email," + b"x" * size


def _quoted_runaway() -> bytes:
    # A notes cell pasted with its quote never closed, over the row limit.
    return (
        lines("email,note", "a@example.com,fine")
        + b'b@example.com,"'
        + b"some pasted line\n" * (MAX_ROW_BYTES // 16 + 1000)
        + lines(*(f"{e},ok" for e in filler(20)))
    )


def _formulas() -> bytes:
    rows = [
        ["email", "first_name", "external_id", "note"],
        ["ada@example.com", DDE, "", "+SUM(1+1)"],
        ["", "Bob", HYPERLINK, "@SUM(A1)"],
        [DDE, "Eve", "", ""],
        [AT_HYPERLINK, "Mal", "", ""],
        ["carl@example.com", "-2+3+cmd|' /C calc'!A0", "", AT_HYPERLINK],
        *([email, "Filler", "", ""] for email in filler(20)),
    ]
    return csv_bytes(rows)


def _emails() -> bytes:
    rows = [
        ["email", "first_name"],
        ["  Ada@Example.COM  ", "Ada"],
        ["\u00a0bo@example.com\u00a0", "Bo"],
        ["åsa@exämple.se", "Åsa"],
        ["zoë@example.com", "Zoë"],
        ["\tcarl@example.com", "Carl"],
        ["dana@example.com\u200b", "Dana"],
        *([email, "Filler"] for email in filler(14)),
    ]
    return csv_bytes(rows)


def _objects(count: int = 20) -> list[dict[str, object]]:
    return [{"email": email, "first_name": f"First {n}"} for n, email in enumerate(filler(count), 1)]


def _ndjson(objects: list[object]) -> bytes:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects).encode()


def _ndjson_broken() -> bytes:
    text = _ndjson(list(_objects())).decode().splitlines()
    text[6] = text[6].replace('", "', '",, "')  # line 7: a doubled comma
    return ("\n".join(text) + "\n").encode()


def _nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def _nested_ndjson() -> bytes:
    body = _ndjson(list(_objects(60)))
    bad = [
        '{"email": {"work": "n1@example.com"}, "first_name": "N1"}',
        '{"email": "n2@example.com", "first_name": ["A", "B"]}',
        '{"email": "n3@example.com", "plan": {"tier": {"name": "gold"}}}',  # nested extra: travels on
        json.dumps({"email": "n4@example.com", "x": _nested(100)}),
        '{"email": "n5@example.com", "x": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"email": "n6@example.com", "score": 1e999}',
        '["n7@example.com"]',
    ]
    return body + ("\n".join(bad) + "\n").encode()


def _utf16_unicode_text() -> bytes:
    rows = [["E-Mail", "Förnamn", "Mobil"]]
    rows += [[f"kund{n}@example.se", f"Åsa {n}", f"+4670{n:07d}"] for n in range(1, 12)]
    rows += [["KUND1@example.se", "Åsa igen", "+46700000001"]]  # the same contact twice
    return codecs.BOM_UTF16_LE + csv_bytes(rows, delimiter="\t", newline="\r\n", encoding="utf-16-le")


def _cp1252() -> bytes:
    rows = [["email", "first_name", "last_name", "note"]]
    rows += [[f"renee{n}@example.com", "Renée", "Ångström", "€5 off, Straße"] for n in range(1, 11)]
    return b"sep=;\r\n" + csv_bytes(rows, delimiter=";", newline="\r\n", encoding="cp1252")


def _delimited(delimiter: str) -> bytes:
    rows = [["email", "name", "city"]]
    rows += [[email, "Smith, John; Jr | III", "Lund\tSkåne"] for email in filler(5)]
    return csv_bytes(rows, delimiter=delimiter)


def _phones(extra: list[str] | None = None) -> bytes:
    return lines("phone", *(f"+4670{n:07d}" for n in range(1, 11)), *(extra or []))


def _duplicates() -> bytes:
    return lines(
        "email,name",
        "a@example.com,A",
        "b@example.com,B",
        "A@EXAMPLE.COM ,A again",
        *(f"{e},N" for e in filler(20)),
        "b@example.com,B again",
    )


def _ten_thousand_columns() -> bytes:
    header = ["email", *(f"c{n}" for n in range(1, 10_000))]
    return csv_bytes([header, *([email, *("v" for _ in range(1, 10_000))] for email in filler(3))])


def _many_rows(count: int) -> bytes:
    body = ["email,first_name"]
    body += [f"bulk{n}@example.com,N{n}" if n % 100 else f"broken-{n},N{n}" for n in range(1, count + 1)]
    return gzip.compress(lines(*body))


OK = lines("email", "ada@example.com", "bo@example.com")


def _all_cases() -> Iterator[HostileFile]:
    # --- not a contacts file at all --------------------------------------------------------------------
    yield HostileFile(
        "empty",
        f"{WORKSHOP}/{{run}}-empty.csv",
        "a zero-byte upload",
        lambda: b"",
        Failed("the file is empty"),
    )
    yield HostileFile(
        "blank-lines",
        f"{WORKSHOP}/{{run}}-blank.csv",
        "an export that wrote only line breaks",
        lambda: b"\r\n \r\n\t\n",
        Failed("the file is empty"),
    )
    yield HostileFile(
        "header-only",
        f"{WORKSHOP}/{{run}}-header.csv",
        "an export of an empty segment",
        lambda: b"email,first_name\r\n",
        Failed("the file has a header but no data rows"),
    )
    yield HostileFile(
        "header-and-empty-rows",
        f"{WORKSHOP}/{{run}}-header-commas.csv",
        "Excel saving a sheet with formatted but empty rows",
        lambda: b"email,first_name\r\n,\r\n,\r\n\r\n",
        Failed("the file has a header but no data rows"),
    )
    yield HostileFile(
        "png-named-csv",
        f"{WORKSHOP}/{{run}}-screenshot.csv",
        "a screenshot renamed to .csv",
        _png,
        Failed("this looks like a PNG image, not CSV or NDJSON; export the contacts as CSV"),
    )
    yield HostileFile(
        "zip-named-csv",
        f"{WORKSHOP}/{{run}}-contacts.csv",
        "the zip the CRM exported, renamed",
        lambda: _zip({"contacts.csv": "email\nada@example.com\n"}),
        Failed("this looks like a ZIP archive, not CSV or NDJSON"),
    )
    yield HostileFile(
        "xlsx-named-csv",
        f"{WORKSHOP}/{{run}}-workbook.csv",
        "an Excel workbook renamed to .csv",
        _xlsx,
        Failed("this looks like an Excel workbook (XLSX), not CSV or NDJSON; export the contacts as CSV"),
    )
    yield HostileFile(
        "old-xls",
        f"{WORKSHOP}/{{run}}-old.csv",
        "an Excel 97 workbook renamed to .csv",
        lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512),
        Failed("this looks like an old Excel workbook (XLS)"),
    )
    yield HostileFile(
        "html-error-page",
        f"{WORKSHOP}/{{run}}-download.csv",
        "a download link's login page saved as the file",
        lambda: b"<!DOCTYPE html>\n<html><body>Please sign in</body></html>\n",
        Failed("this looks like an HTML or XML document"),
    )
    yield HostileFile(
        "no-header",
        f"{WORKSHOP}/{{run}}-noheader.csv",
        "an export without its header row",
        lambda: lines("ada@example.com,Ada", "bo@example.com,Bo"),
        Failed('the first row looks like a contact ("ada@example.com")'),
    )
    yield HostileFile(
        "pretty-printed-json",
        f"{WORKSHOP}/{{run}}-one.json",
        "one contact as pretty-printed JSON",
        lambda: json.dumps({"email": "ada@example.com"}, indent=2).encode(),
        Failed("the file is one JSON object spread over several lines"),
    )
    yield HostileFile(
        "duplicate-headers",
        f"{WORKSHOP}/{{run}}-dupheader.csv",
        "two sheets' columns pasted side by side",
        lambda: lines("email,name,email", "ada@example.com,Ada,ada@example.com"),
        Failed('the header row has the column "email" more than once; give each column a unique name'),
    )

    # --- half-uploaded and cut-off files -----------------------------------------------------------------
    yield HostileFile(
        "gzip-truncated-early",
        f"{WORKSHOP}/{{run}}-cut-early.csv.gz",
        "an upload that broke off in the first kilobytes",
        lambda: gzip.compress(lines("email", *filler(200)))[:300],
        Failed("the gzip data is truncated; upload the complete file"),
    )
    yield HostileFile(
        "gzip-truncated-mid",
        f"{WORKSHOP}/{{run}}-cut-mid.csv.gz",
        "an upload that broke off three quarters in",
        lambda: _gzip_cut(0.75, 20_000),
        # How many rows come out before the cut depends on gzip's buffering; every one is accounted for.
        Failed(
            "the rest of the file could not be read; nothing was sent: drop the complete, corrected file again",
            rows_read=None,
            rejected=None,
        ),
    )
    yield HostileFile(
        "gzip-corrupt",
        f"{WORKSHOP}/{{run}}-corrupt.csv.gz",
        "a gzip damaged in transit",
        _gzip_corrupt,
        Failed("the gzip data is corrupt; compress the file again"),
    )
    yield HostileFile(
        "json-array-cut-off",
        f"{WORKSHOP}/{{run}}-cut.json",
        "a JSON export that stopped mid-array",
        lambda: json.dumps(_objects(30)).encode()[:-40],
        Failed(
            "item 30 of the JSON array is not valid JSON: Unterminated string starting at; the file ends inside it;"
            " nothing was sent",
            rows_read=30,
            rejected={30: "the file ends inside it"},
        ),
    )
    yield HostileFile(
        "json-array-twice",
        f"{WORKSHOP}/{{run}}-twice.json",
        "the same JSON export appended to itself",
        lambda: json.dumps(_objects(10)).encode() * 2,
        Failed(
            "there is more data after the end of the JSON array; it was not read; nothing was sent",
            rows_read=11,
            rejected={11: "more data after the end of the JSON array"},
        ),
    )

    # --- encodings, line endings, delimiters ---------------------------------------------------------------
    yield HostileFile(
        "invalid-utf8-mid",
        f"{WORKSHOP}/{{run}}-mixed-encoding.csv",
        "two exports concatenated, the second one in cp1252",
        _invalid_utf8_mid,
        Completed(4002, {4001: "row 4001 is not valid UTF-8 (byte 0xE9); save the file as UTF-8"}),
    )
    yield HostileFile(
        "mixed-line-endings",
        f"{MATEO}/{{run}}-endings.csv",
        "rows pasted from Windows, Unix and old Mac files, with a line break inside a quoted note",
        lambda: (
            b'email,first_name,note\r\nada@example.com,Ada,"two\r\nlines"\nbo@example.com,Bo,x\r'
            b"cy@example.com,Cy,y\r\ndi@example.com,Di,z"
        ),
        Completed(4, identities={1: "ada@example.com", 4: "di@example.com"}, sent_values=("two\r\nlines",)),
    )
    yield HostileFile(
        "utf16-excel-unicode-text",
        f"{WORKSHOP}/{{run}}-unicode.txt",
        'Excel "Save as Unicode Text": UTF-16 with BOM, tabs, CRLF',
        _utf16_unicode_text,
        Completed(
            12, {12: "duplicate of row 1"}, identities={1: "kund1@example.se", 11: "kund11@example.se"}
        ),
    )
    yield HostileFile(
        "cp1252-accents",
        f"{MATEO}/{{run}}-excel-se.csv",
        'Excel "CSV (semicolon)" on a Swedish Windows: cp1252 with a sep=; line',
        _cp1252,
        Completed(10, identities={1: "renee1@example.com"}, sent_values=("Renée Ångström", "€5 off, Straße")),
    )
    yield HostileFile(
        "utf8-bom",
        f"{WORKSHOP}/{{run}}-bom.csv",
        'Excel "CSV UTF-8": a byte-order mark before the header',
        lambda: codecs.BOM_UTF8 + lines("Email,Name", *(f"{e},Zoë" for e in filler(5))),
        Completed(5, identities={1: "filler1@example.com"}),
    )
    for delimiter, label in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
        yield HostileFile(
            f"{label}-delimiter",
            f"{MATEO}/{{run}}-{label}.csv",
            f"a {label}-separated export whose values hold the other delimiters",
            functools.partial(_delimited, delimiter),
            Completed(
                5, identities={5: "filler5@example.com"}, sent_values=("Smith, John; Jr | III", "Lund\tSkåne")
            ),
        )

    # --- quotes and sizes ------------------------------------------------------------------------------------
    yield HostileFile(
        "unbalanced-quote",
        f"{WORKSHOP}/{{run}}-quote.csv",
        "a name typed with an opening quote only",
        lambda: lines(
            "email,name",
            "a@example.com,A",
            "b@example.com,B",
            'c@example.com,"Cy',
            *(f"{e},N" for e in filler(37)),
        ),
        Failed(
            "row 3 has a quote that is never closed, so the rest of the file (to line 41) was read into it; "
            "nothing was sent",
            rows_read=3,
            rejected={3: "row 3 has a quote that is never closed"},
        ),
    )
    yield HostileFile(
        "stray-quote",
        f"{WORKSHOP}/{{run}}-stray.csv",
        "a quoted value with text after its closing quote; a quote inside an unquoted value is fine",
        lambda: lines(
            "email,name",
            'a@example.com,Al "the bear" Smith',
            'b@example.com,"Bo"b',
            *(f"{e},N" for e in filler(28)),
        ),
        Completed(30, {2: "row 2 has a stray quote near line 3"}),
    )
    yield HostileFile(
        "row-of-absurd-size",
        f"{WORKSHOP}/{{run}}-bigrow.csv",
        "a 3 MB blob pasted into one cell",
        lambda: _big_row(3 * MB),
        Completed(31, {11: f"row is larger than {MAX_ROW_BYTES} bytes"}),
    )
    yield HostileFile(
        "runaway-quoted-cell",
        f"{WORKSHOP}/{{run}}-runaway.csv",
        "a notes cell whose opening quote swallows a megabyte of lines",
        _quoted_runaway,
        Failed(
            f"row is larger than {MAX_ROW_BYTES} bytes (it ends near line",
            rows_read=None,
            rejected=None,
        ),
    )
    yield HostileFile(
        "single-line-50mb",
        f"{WORKSHOP}/{{run}}-oneline.csv",
        "50 MB without a single line break",
        lambda: _single_line(50 * MB),
        Failed(f"the header line is longer than {MAX_ROW_BYTES} bytes; is this really a CSV file?"),
        slow=True,
    )
    yield HostileFile(
        "row-of-50mb",
        f"{WORKSHOP}/{{run}}-50mb-row.csv",
        "a 50 MB row between ordinary ones",
        lambda: _big_row(50 * MB),
        Completed(31, {11: f"row is larger than {MAX_ROW_BYTES} bytes"}),
        slow=True,
    )
    yield HostileFile(
        "ten-thousand-columns",
        f"{MATEO}/{{run}}-wide.csv",
        "a wide export: 10,000 columns",
        _ten_thousand_columns,
        Completed(3, identities={3: "filler3@example.com"}),
    )
    yield HostileFile(
        "cell-over-10000-chars",
        f"{WORKSHOP}/{{run}}-longcell.csv",
        "a 20,000-character note",
        lambda: lines("email,note", "a@example.com," + "n" * 20_000, *(f"{e},ok" for e in filler(20))),
        Completed(21, {1: "value is longer than 10000 characters"}),
    )
    yield HostileFile(
        "more-cells-than-header",
        f"{WORKSHOP}/{{run}}-shifted.csv",
        "a row with an unquoted comma, among rows with Excel's trailing commas",
        lambda: lines(
            "email,name,,", "a@example.com,Al,,", "b@example.com,Smith, Bo", *(f"{e},N,," for e in filler(20))
        ),
        Completed(22, {2: "row has 3 cells but the header has 2"}),
    )
    yield HostileFile(
        "many-rows-200k",
        f"{WORKSHOP}/{{run}}-bulk.csv.gz",
        "a big gzip export, one row in a hundred broken",
        lambda: _many_rows(200_000),
        Completed(
            200_000, {n: f"'broken-{n}' is not a valid email address" for n in range(100, 200_001, 100)}
        ),
        slow=True,
    )

    # --- values ----------------------------------------------------------------------------------------------
    yield HostileFile(
        "formula-injection",
        f"{MATEO}/{{run}}-formulas.csv",
        "spreadsheet formulas and DDE calls in names, ids, notes and emails",
        _formulas,
        Completed(
            25,
            {3: "is not a valid email address", 4: "is not a valid email address"},
            identities={1: "ada@example.com", 2: HYPERLINK},
            sent_values=(DDE, "+SUM(1+1)", HYPERLINK, "@SUM(A1)", "-2+3+cmd|' /C calc'!A0", AT_HYPERLINK),
        ),
    )
    yield HostileFile(
        "emails-unicode-and-whitespace",
        f"{WORKSHOP}/{{run}}-emails.csv",
        "addresses with padding, no-break spaces, accents and a pasted zero-width space",
        _emails,
        Completed(
            20,
            {6: "(it holds the invisible character U+200B)"},
            identities={
                1: "ada@example.com",
                2: "bo@example.com",
                3: "åsa@exämple.se",
                4: "zoë@example.com",
                5: "carl@example.com",
            },
        ),
    )
    yield HostileFile(
        "same-contact-twice",
        f"{WORKSHOP}/{{run}}-dupes.csv",
        "the same people twice, in other case and with a trailing space",
        _duplicates,
        Completed(24, {3: "duplicate of row 1", 24: "duplicate of row 2"}),
    )
    yield HostileFile(
        "phone-only-to-mateo",
        f"{MATEO}/{{run}}-phones.csv",
        "a list of mobile numbers, one without its country code",
        lambda: _phones(["070-123 45 67", "+46701111111"]),
        Completed(
            12,
            {11: "no country code: write +CC or set the file option phone-region"},
            identities={1: "+46700000001", 12: "+46701111111"},
        ),
    )
    yield HostileFile(
        "phone-only-with-region",
        f"{MATEO}/{{run}}-phones-se.csv",
        "local numbers, with the phone-region option",
        lambda: _phones(["070-123 45 67"]),
        Completed(11, identities={11: "+46701234567"}),
        metadata={"phone-region": "se"},
    )
    yield HostileFile(
        "phone-only-to-workshop",
        f"{WORKSHOP}/{{run}}-phones.csv",
        "the same phone list sent to Workshop, which enrols emails only",
        _phones,
        Failed(
            "no email (or list_email) to enroll, and no column of the file fills it: the file's columns are"
            " phone. Map one with the file option columns, e.g. -o columns=HEADER:FIELD",
        ),
    )

    # --- JSON --------------------------------------------------------------------------------------------------
    yield HostileFile(
        "json-array-named-ndjson",
        f"{WORKSHOP}/{{run}}-array.ndjson",
        "a JSON array where NDJSON was asked for",
        lambda: json.dumps(_objects()).encode(),
        Completed(20),
    )
    yield HostileFile(
        "ndjson-named-json",
        f"{WORKSHOP}/{{run}}-lines.json",
        "NDJSON where a JSON array was expected",
        lambda: _ndjson(list(_objects())),
        Completed(20),
    )
    yield HostileFile(
        "ndjson-one-broken-line",
        f"{WORKSHOP}/{{run}}-broken.ndjson",
        "NDJSON with one hand-edited line",
        _ndjson_broken,
        Completed(20, {7: "line 7 is not valid JSON"}),
    )
    yield HostileFile(
        "nested-objects",
        f"{MATEO}/{{run}}-nested.ndjson",
        "objects and lists where single values are due, absurd nesting, a number too large for JSON",
        _nested_ndjson,
        Completed(
            67,
            {
                61: "email must be a single value, not a list or object",
                62: "first_name must be a single value, not a list or object",
                64: "line 64 nests arrays or objects more than 64 deep",
                65: "line 65 nests arrays or objects more than 64 deep",
                66: "line 66 is not valid JSON: the number 1e999 is too large",
                67: "line 67 is an array, not a JSON object with fields",
            },
            identities={63: "n3@example.com"},
        ),
    )

    # --- keys ----------------------------------------------------------------------------------------------------
    yield HostileFile(
        "key-with-dotdot",
        f"{WORKSHOP}/../{{run}}-contacts.csv",
        "a key with '..' in it (S3 keys are names, not paths)",
        lambda: OK,
        Completed(2),
    )
    yield HostileFile(
        "key-dotdot-as-target",
        "inbox/workshop/../{run}-contacts.csv",
        "a client that resolved no path and put '..' where the target goes",
        lambda: OK,
        Failed("wrong target for workshop: '..' is not a Workshop journey id"),
    )
    yield HostileFile(
        "key-unicode-and-spaces",
        f"{WORKSHOP}/{{run}} my filé + more.csv",
        "a file name with spaces, a plus and an accent (URL-encoded in the event)",
        lambda: OK,
        Completed(2),
    )
    yield HostileFile(
        "key-without-target",
        "inbox/workshop/{run}-file.csv",
        "dropped straight into the destination folder",
        lambda: OK,
        Failed("the key names no target or no file: use inbox/workshop/<target>/<file>"),
    )
    yield HostileFile(
        "unknown-destination",
        "inbox/mailchimp/123/{run}-contacts.csv",
        "a destination we do not have",
        lambda: OK,
        Failed("no route for 'mailchimp': use inbox/<destination>/<target>/<file> with a destination of"),
    )
    yield HostileFile(
        "mateo-target-not-uuid",
        "inbox/mateo/welcome-journey/{run}-contacts.csv",
        "a Mateo journey named instead of its id",
        lambda: OK,
        Failed("wrong target for mateo: 'welcome-journey' is not a journey id: Mateo ids are uuids"),
    )
    yield HostileFile(
        "altcraft-target-not-integer",
        "inbox/altcraft/12.5/{run}-contacts.csv",
        "an Altcraft workflow id that is not an integer",
        lambda: OK,
        Failed(
            "wrong target for altcraft: '12.5' is not an Altcraft workflow id: it must be a positive integer"
        ),
    )
    yield HostileFile(
        "key-outside-inbox",
        "{run}/contacts.csv",
        "an object outside inbox/ (the rule filters these; a replayed event may not)",
        lambda: OK,
        Failed("the key must start with inbox/"),
    )
    yield HostileFile(
        "folder-placeholder",
        f"{WORKSHOP}/{{run}}/",
        'the S3 console\'s "Create folder"',
        lambda: b"",
        NoJob(),
    )

    # --- options -------------------------------------------------------------------------------------------------
    yield HostileFile(
        "unknown-metadata-option",
        f"{WORKSHOP}/{{run}}-option.csv",
        "a misspelt option",
        lambda: OK,
        Failed("unknown file option(s) tolerated-invalid-percentage in the object's metadata; known: "),
        metadata={"tolerated-invalid-percentage": "50"},
    )
    yield HostileFile(
        "bad-phone-region",
        f"{MATEO}/{{run}}-region.csv",
        "a country name where a region code is due",
        lambda: _phones(),
        Failed("file option phone-region='Sweden' is not a region code; use two letters such as SE or GB"),
        metadata={"phone-region": "Sweden"},
    )
    yield HostileFile(
        "bad-dry-run",
        f"{WORKSHOP}/{{run}}-dry.csv",
        "dry-run=perhaps, which must never be read as 'no' and sent for real",
        lambda: OK,
        Failed("file option dry-run='perhaps' must be true or false"),
        metadata={"dry-run": "perhaps"},
    )
    yield HostileFile(
        "bad-tolerance",
        f"{WORKSHOP}/{{run}}-tolerance.csv",
        "a percentage written with its sign",
        lambda: OK,
        Failed("file option tolerated-invalid-percent='50%' must be a number from 0 to 100"),
        metadata={"tolerated-invalid-percent": "50%"},
    )
    yield HostileFile(
        "underscored-tolerance",
        f"{WORKSHOP}/{{run}}-tolerance-underscore.csv",
        "1_0, which Python's float() reads as 10",
        lambda: OK,
        Failed("file option tolerated-invalid-percent='1_0' must be a number from 0 to 100"),
        metadata={"tolerated-invalid-percent": "1_0"},
    )


CORPUS: tuple[HostileFile, ...] = tuple(_all_cases())
BY_NAME: dict[str, HostileFile] = {case.name: case for case in CORPUS}
assert len(BY_NAME) == len(CORPUS), "corpus names must be unique"


def write_corpus(directory: Path, *, slow: bool = False) -> list[tuple[HostileFile, Path]]:
    """Write every corpus file (the slow, big ones only when asked) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for case in CORPUS:
        if case.slow and not slow:
            continue
        path = directory / case.file_name
        path.write_bytes(case.build())
        written.append((case, path))
    return written


def describe(outcome: Outcome) -> str:
    """One line for the corpus table."""
    if isinstance(outcome, NoJob):
        return "no job"
    if isinstance(outcome, Failed):
        return f"failed: {outcome.message}"
    rejected = "; ".join(f"row {row}: {reason}" for row, reason in sorted(outcome.rejected.items())[:6])
    more = f" (+{len(outcome.rejected) - 6} more)" if len(outcome.rejected) > 6 else ""
    return f"completed, {outcome.rows_read} rows" + (f", rejected {rejected}{more}" if rejected else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--slow", action="store_true", help="also the 50 MB and 200k-row files")
    args = parser.parse_args()
    for case, path in write_corpus(args.directory, slow=args.slow):
        print(f"{path}\t{case.object_key('RUN')}\t{describe(case.expect)}")


if __name__ == "__main__":
    main()
