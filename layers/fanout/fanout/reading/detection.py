"""Whole-file decisions on the first 64 KiB: binary files refused, encoding, header, CSV delimiter."""

from __future__ import annotations

import codecs
import csv
import io
import re

from fanout.reading.bytelayer import _ESCAPE, _ESCAPED, _NON_ASCII_TEXT
from fanout.reading.model import FileFormatError

_SNIFF_CHARS = 16 * 1024  # the sample the delimiter is chosen on
_SNIFF_HARD = 8 * 1024  # what csv.Sniffer sees when the header alone does not decide
_DELIMITERS = ",;\t|"
_QUOTED = re.compile(r'"[^"]*"')

# ---------------------------------------------------------------------------------------------------
# whole-file checks

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Excel workbook (XLS)"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "gzip data inside the gzip data"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"\x28\xb5\x2f\xfd", "a zstd archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"PAR1", "a Parquet file"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"{\\rtf", "an RTF document"),
)


def _binary_kind(head: bytes, name: str) -> str | None:
    """What a known non-text file looks like, from its magic bytes."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        lowered = name.lower()
        if b"xl/" in head or b"[Content_Types].xml" in head or lowered.endswith((".xlsx", ".xlsm")):
            return "an Excel workbook (XLSX)"
        if b"opendocument.spreadsheet" in head or lowered.endswith(".ods"):
            return "an OpenDocument spreadsheet (ODS)"
        return "a ZIP archive"
    if head.startswith(b"BZh") and head[4:10] == b"1AY&SY":
        return "a bzip2 archive"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return None


def _detect_encoding(head: bytes, at_eof: bool) -> tuple[str, str, int]:
    """(label for FileInfo, codec for the text layer, BOM length) from the first bytes."""
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        raise FileFormatError("the file is UTF-32 text, which is not supported; save it as UTF-8")
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig", "utf-8", 3
    if head.startswith(b"\xff\xfe"):
        return "utf-16", "utf-16-le", 2
    if head.startswith(b"\xfe\xff"):
        return "utf-16", "utf-16-be", 2
    if b"\x00" in head:
        # UTF-16 without a BOM: ASCII text has a NUL in every other byte, on one side only
        even, odd = head[0::2].count(0), head[1::2].count(0)
        if odd * 3 > len(head) // 2 and even * 4 < odd:
            return "utf-16-le", "utf-16-le", 0
        if even * 3 > len(head) // 2 and odd * 4 < even:
            return "utf-16-be", "utf-16-be", 0
        raise FileFormatError(
            "the file contains binary data (NUL bytes), not text; export the contacts as CSV (UTF-8)"
        )
    text = codecs.getincrementaldecoder("utf-8")(_ESCAPE).decode(head, at_eof)
    bad = len(_ESCAPED.findall(text))
    if not bad or len(_NON_ASCII_TEXT.findall(text)) > bad:
        return "utf-8", "utf-8", 0
    return "cp1252", "cp1252", 0


_LOOKS_LIKE_EMAIL = re.compile(r"^\s*[^@\s]+@[^@\s]+\.[^@\s]+\s*$")
_LOOKS_LIKE_PHONE = re.compile(r"^\s*\+\d[\d\s().-]{6,}\s*$")


def _check_header(cells: list[str]) -> list[str]:
    """The header names to use; FileFormatError when the first row cannot be a header."""
    while cells and cells[-1] == "":  # a trailing delimiter, or empty spreadsheet columns
        cells = cells[:-1]
    seen: set[str] = set()
    for cell in cells:
        if cell in seen:
            if cell == "":
                raise FileFormatError(
                    "the header row has more than one column without a name; name them or delete them"
                )
            raise FileFormatError(
                f'the header row has the column "{cell}" more than once; give each column a unique name'
            )
        seen.add(cell)
    for cell in cells:
        if _LOOKS_LIKE_EMAIL.match(cell) or _LOOKS_LIKE_PHONE.match(cell):
            raise FileFormatError(
                f'the first row looks like a contact ("{cell.strip()}"), not column names; '
                "add a header row with the column names"
            )
    return cells


def _refuse_pretty_json(head_text: str) -> None:
    """A single pretty-printed JSON object is not NDJSON: say so instead of rejecting every line."""
    first_line = head_text.lstrip().split("\n", 1)[0].strip()
    if first_line == "{":
        raise FileFormatError(
            "the file is one JSON object spread over several lines; put one contact object per line "
            "(NDJSON) or a JSON array of contact objects"
        )


def _sniff_delimiter(head_text: str, name: str) -> tuple[str, bool]:
    """(delimiter, whether the first line is an Excel `sep=` line)."""
    first = ""
    for line in head_text[:_SNIFF_CHARS].lstrip("\ufeff").splitlines():
        if line.strip():
            first = line
            break
    if first[:4].lower() == "sep=" and len(first) == 5:
        return first[4], True
    sample = head_text[:_SNIFF_CHARS]
    cut = max(sample.rfind("\n"), sample.rfind("\r"))
    if cut > 0 and len(head_text) > len(sample):
        sample = sample[: cut + 1]
    unquoted = _QUOTED.sub("", first)
    counts = {d: unquoted.count(d) for d in _DELIMITERS}
    if sum(1 for d in _DELIMITERS if counts[d]) > 1:
        # Several candidates in the header: let csv.Sniffer weigh the sample (only then: it is regex
        # based and can take a second on hostile input), and take its answer if the header has it.
        try:
            sniffed = csv.Sniffer().sniff(sample[:_SNIFF_HARD], delimiters=_DELIMITERS).delimiter
        except csv.Error:
            sniffed = ""
        if sniffed and counts.get(sniffed, 0) > 0:
            return sniffed, False
    preferred = "\t" if name.lower().endswith((".tsv", ".tab", ".txt")) else ","
    best = max(_DELIMITERS, key=lambda d: (counts[d], d == preferred))
    if counts[best]:
        return best, False
    # One column: take a delimiter that splits no record of the sample, preferring the usual one.
    for candidate in sorted(_DELIMITERS, key=lambda d: d != preferred):
        try:
            if all(
                len(cells) <= 1 for cells in csv.reader(io.StringIO(sample, newline=""), delimiter=candidate)
            ):
                return candidate, False
        except csv.Error:
            continue
    return preferred, False
