"""Read any real contacts file (CSV, NDJSON or a JSON array; gzip or not) as a lazy stream of rows.

`open_rows(stream)` looks at the first 64 KiB only, decides compression, encoding and format, and returns
a `FileInfo` plus an iterator of `RawRow`s. Memory stays constant whatever the file size: the source is
only ever read in bounded pieces (`read(n)`), gzip is decompressed as a stream, text is decoded by a
`TextIOWrapper`, CSV is parsed by `csv.reader`, NDJSON line by line and a JSON array element by element
(`JSONDecoder.raw_decode` over a sliding buffer).

A problem with the file as a whole raises `FileFormatError` from `open_rows`, before any row, with one
sentence a person can act on. A problem with one row never raises: that row comes out with `error` set
and reading goes on. Only I/O errors of the source itself (a dropped S3 connection) propagate, so the
caller can retry the file.

Decisions, in one place:

* Rows are numbered as a person sees them. CSV: data records after the header, counting blank records,
  so row N is spreadsheet row N + 1 (a record with quoted line breaks is one row). NDJSON: the physical
  line number (blank lines are skipped but still counted, as an editor counts them). JSON array: the
  1-based position of the element.
* CSV rows with fewer cells than the header are padded with "" (spreadsheet exports drop trailing empty
  cells; a shifted row still fails validation downstream). Rows with more cells are rejected ("row has
  N cells but the header has M") unless every extra cell is empty (a trailing delimiter); empty trailing
  header cells are dropped the same way. Records whose cells are all empty (blank lines, `,,,,` lines
  from Excel) are skipped.
* The header must look like one: a duplicated name, two unnamed columns, or a first row holding an
  email address or a +phone number (no header at all) refuse the file. An Excel `sep=;` line is honoured.
* The delimiter is the one of `, ; TAB |` found in the header line (outside quotes); only when several
  are there does `csv.Sniffer` weigh a sample. A one-column file gets a delimiter that splits nothing.
* CSV is parsed with `strict=True`: a stray quote (`"abc"def`) or a quote never closed rejects that row
  instead of silently gluing lines together. An unclosed quote is capped by `max_row_bytes` (through
  `csv.field_size_limit`, which is process-wide): that row is rejected and reading resumes at the next
  physical line, which resynchronises on the real rows an unbalanced quote swallowed (a genuine quoted
  value over the limit leaves its remaining lines to be read as rows, which then fail validation).
* Encoding is decided on the first 64 KiB: a BOM wins (UTF-8, UTF-16 LE/BE); NUL-interleaved text
  without a BOM is UTF-16 too; otherwise UTF-8 if the prefix is valid UTF-8 (or if its valid multi-byte
  characters outnumber its invalid bytes, i.e. UTF-8 with a few damaged bytes), else cp1252 (the five
  bytes cp1252 leaves undefined map to the same code points, as Windows does).
* Invalid bytes after that decision (UTF-8 damaged later in the file) are never replaced silently. See
  `_Guard`: it validates each decoded piece before `TextIOWrapper` sees it and counts the invalid bytes;
  the wrapper decodes them to lone surrogates (U+DC00 + byte); while that count is non-zero each row is
  scanned, and a row holding such characters is rejected with "row N is not valid UTF-8 (byte 0xE9); save
  the file as UTF-8". Rows otherwise cost one integer test. Yielded `fields` never hold lone surrogates
  (JSON `\\uDC00`-style escapes that are not half of a pair reject their row too).
* A physical line longer than `max_row_bytes` (a file without line breaks) is cut off by `_Guard` before
  the text layer buffers it: that row is rejected and reading resumes after the line. A JSON array has
  no such limit per line (minified arrays are one line); an element over the limit is skipped instead,
  as is a malformed element (found by bracket and string structure). A broken array structure (a
  missing comma, the file ending inside the array) ends the rows with an error row.
* gzip is recognised by its magic bytes, not by name. Truncated or corrupt gzip data within the first
  64 KiB of decompressed text raises `FileFormatError`; later in the file it ends the iterator with a
  final row whose `error` says the rest could not be read.
* NDJSON and JSON arrays reject NaN/Infinity (not JSON) and numbers too large for a float (1e999 would
  become Infinity); duplicate keys keep the last value. A row nesting arrays or objects more than
  MAX_JSON_DEPTH deep is rejected (decoding thousands of levels raises RecursionError, caught here).
* An error after which rows of the file went unread or were swallowed (gzip or a JSON array cut off, a
  broken array, data after it, a quote never closed) is a `LostRows`: the caller knows the rows it got
  cannot account for the whole file.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import math
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any, BinaryIO, Protocol, TextIO, cast

__all__ = ["FileFormatError", "FileInfo", "LostRows", "RawRow", "open_rows"]

PREFIX_BYTES = 64 * 1024  # what encoding and format are decided on
_CHUNK = 64 * 1024  # text layer read size
_SNIFF_CHARS = 16 * 1024  # the sample the delimiter is chosen on
_SNIFF_HARD = 8 * 1024  # what csv.Sniffer sees when the header alone does not decide
_DELIMITERS = ",;\t|"
_QUOTED = re.compile(r'"[^"]*"')


class FileFormatError(Exception):
    """The file cannot be a contacts file at all; str(e) is one clear, actionable sentence for a person."""


class LostRows(str):
    """The `error` of a row after which rows of the file went unread or were swallowed into it (gzip data
    cut off, a quote never closed, a JSON array cut off or broken): the rows read cannot account for the
    whole file. The reader goes on as it can; a caller that must not send part of a file (the splitter)
    fails the job when it meets one. It compares and serialises as the plain message it is."""


@dataclass(frozen=True, slots=True)
class RawRow:
    """One row as read from the file, before any validation."""

    number: int  # 1-based data-row number as a person counts rows (first data row = 1, header not counted)
    fields: dict[str, object]  # header -> value (CSV: str; JSON: any JSON value, nested kept as-is)
    error: str | None = None  # set when this row alone is unreadable: it is rejected, the file goes on
    size: int = 0  # bytes (approximately: characters) the row took in the file


# The hot loops build RawRow through its slot descriptors: a frozen dataclass __init__ goes through
# object.__setattr__ per field, which is a quarter of the per-row cost of a CSV file.
_ROW_SLOTS: Any = (
    object.__new__,
    vars(RawRow)["number"].__set__,
    vars(RawRow)["fields"].__set__,
    vars(RawRow)["error"].__set__,
    vars(RawRow)["size"].__set__,
)


@dataclass
class FileInfo:
    """What `open_rows` found out about the file."""

    format: str  # "csv" | "ndjson" | "json-array"
    encoding: str  # "utf-8", "utf-8-sig", "utf-16" (BOM), "utf-16-le"/"utf-16-be" (no BOM), "cp1252"
    compressed: bool  # gzip detected by content (magic bytes 1f 8b), not by name
    delimiter: str | None  # CSV only
    columns: list[str]  # header names as in the file (CSV) or keys seen in the first object (JSON)


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


# ---------------------------------------------------------------------------------------------------
# decoding: escapes for invalid bytes, and cp1252's five undefined bytes

_ESCAPE = "fanout.escape"  # each invalid byte b -> U+DC00+b (a lone surrogate, never valid text)
_CP1252 = "fanout.cp1252"  # 0x81 0x8D 0x8F 0x90 0x9D -> U+0081 ... (what Windows does)
_ESCAPED = re.compile("[\udc00-\udcff]")
_NON_ASCII_TEXT = re.compile("[^\x00-\x7f\udc00-\udcff]")


def _escape_handler(err: UnicodeError) -> tuple[str, int]:
    if not isinstance(err, UnicodeDecodeError):
        raise err
    return "".join(chr(0xDC00 + b) for b in err.object[err.start : err.end]), err.end


def _cp1252_handler(err: UnicodeError) -> tuple[str, int]:
    if not isinstance(err, UnicodeDecodeError):
        raise err
    return "".join(chr(b) for b in err.object[err.start : err.end]), err.end


codecs.register_error(_ESCAPE, _escape_handler)
codecs.register_error(_CP1252, _cp1252_handler)


def _not_valid(number: int, byte: int, encoding_name: str) -> str:
    """The error of a row holding bytes that are not valid in the file's encoding."""
    if encoding_name == "UTF-8":
        return f"row {number} is not valid UTF-8 (byte 0x{byte:02X}); save the file as UTF-8"
    return f"row {number} is not valid {encoding_name} text; save the file as UTF-8"


def _clean(value: str) -> str:
    """A value safe to show a person: escaped invalid bytes become U+FFFD."""
    return _ESCAPED.sub("\ufffd", value)


def _escapes(values: list[str]) -> tuple[int, int]:
    """How many escaped invalid bytes `values` hold, and the first such byte."""
    count, first = 0, -1
    for value in values:
        found = _ESCAPED.findall(value)
        if found:
            if first < 0:
                first = ord(found[0]) - 0xDC00
            count += len(found)
    return count, first


# ---------------------------------------------------------------------------------------------------
# byte layers


class _Replay:
    """Reads `head` again, then the rest of `src`: a peeked prefix chained back in front of its stream."""

    __slots__ = ("_head", "_src")

    def __init__(self, head: bytes, src: _Readable) -> None:
        self._head = memoryview(head)
        self._src = src

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = _CHUNK  # never ask the source for everything
        if self._head:
            piece = bytes(self._head[:size])
            self._head = self._head[size:]
            return piece
        return self._src.read(size)


def _read_upto(src: _Readable, size: int) -> tuple[bytes, bool]:
    """Up to `size` bytes of `src` in bounded reads; and whether the source ended."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        piece = src.read(min(size - got, _CHUNK))
        if not piece:
            return b"".join(parts), True
        parts.append(bytes(piece))
        got += len(piece)
    return b"".join(parts), False


class _LineTooLong(Exception):
    """Raised through the text layer when a physical line exceeds the row limit; the line is skipped."""


class _GzipBroken(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Guard(io.BufferedIOBase):
    """The decoded-byte layer under `TextIOWrapper`: hands out whole characters only, validates them,
    and cuts off physical lines longer than `line_limit`.

    Why here: `TextIOWrapper` decodes in chunks ahead of the row being parsed, so an error handler
    there cannot tell which row a bad byte belongs to. Instead every piece is checked before the wrapper
    sees it (ASCII pieces cost one `isascii()`, others one strict decode). Invalid bytes are counted in
    `bad[0]`; the wrapper, with the `fanout.escape` handler, turns each into one lone surrogate. The row
    loops scan rows only while `bad[0]` is non-zero and subtract what they find, so the count stays
    exact and the common path costs one integer test per row. Because pieces always end on a character
    boundary, the wrapper's decoder never carries a partial sequence over, and both decodings agree.
    """

    def __init__(self, src: _Readable, encoding: str, line_limit: int | None) -> None:
        super().__init__()
        self._src = src
        self._encoding = encoding  # "utf-8" | "utf-16-le" | "utf-16-be" | "cp1252"
        self._unit = 2 if encoding.startswith("utf-16") else 1
        if encoding == "utf-16-le":
            self._newlines: tuple[bytes, ...] = (b"\n\x00", b"\r\x00")
        elif encoding == "utf-16-be":
            self._newlines = (b"\x00\n", b"\x00\r")
        else:
            self._newlines = (b"\n", b"\r")
        self._limit = line_limit
        self._tail = b""  # an incomplete character held back for the next piece
        self._pending = b""  # what followed a line that was cut off
        self._eof = False
        self._run = 0  # bytes since the last line break
        self._skipping = False  # inside a line that was cut off
        self.bad = [0]  # invalid bytes handed out and not yet found in a row
        self.encoding_name = "UTF-16" if self._unit == 2 else "UTF-8"

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def read(self, size: int | None = -1) -> bytes:
        if size == 0:
            return b""
        if size is None or size < 0:
            size = _CHUNK
        if self._limit is not None:
            # a line wholly inside one piece can then never exceed the limit unnoticed
            size = min(size, max(self._limit, 4))
        while True:
            if self._pending:
                data, self._pending = self._pending, b""
            elif self._eof:
                return b""
            else:
                try:
                    data = self._src.read(size)
                except EOFError as exc:  # gzip: compressed data ended early
                    raise _GzipBroken("the gzip data is truncated") from exc
                except (gzip.BadGzipFile, zlib.error) as exc:
                    raise _GzipBroken("the gzip data is corrupt") from exc
                if data:
                    data = self._tail + bytes(data)
                    cut = self._cut(data)
                    self._tail = data[cut:]
                    data = data[:cut]
                    if not data:
                        continue
                else:  # end of input: hand out whatever was held back (it is invalid, and counted)
                    self._eof = True
                    data, self._tail = self._tail, b""
                    if not data:
                        return b""
            if self._skipping:
                at = self._first_newline(data)
                if at < 0:
                    continue
                data = data[self._after_newline(data, at) :]
                self._skipping = False
                self._run = 0
                if not data:
                    continue
            if self._limit is not None:
                self._check_lines(data)
            self._validate(data)
            return data

    def _cut(self, data: bytes) -> int:
        """Length of the longest prefix of `data` that ends on a character boundary."""
        n = len(data)
        if self._unit == 2:
            n -= n % 2
            if n >= 2:
                high = data[n - 1] if self._encoding == "utf-16-le" else data[n - 2]
                if 0xD8 <= high <= 0xDB:  # a high surrogate waits for its pair
                    n -= 2
            return n
        if self._encoding != "utf-8" or data[-1] < 0x80:
            return n
        for back in range(1, min(4, n) + 1):
            byte = data[n - back]
            if byte >= 0xC0:  # a lead byte: is its sequence complete?
                need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
                return n if need <= back else n - back
            if byte < 0x80:
                return n
        return n

    def _first_newline(self, data: bytes, start: int = 0) -> int:
        best = -1
        for nl in self._newlines:
            at = data.find(nl, start)
            while at >= 0 and at % self._unit:  # UTF-16: only whole code units count
                at = data.find(nl, at + 1)
            if at >= 0 and (best < 0 or at < best):
                best = at
        return best

    def _after_newline(self, data: bytes, at: int) -> int:
        """Where the text after the line break at `at` starts (CR LF is one break)."""
        unit = self._unit
        if data[at : at + unit] == self._newlines[1] and data[at + unit : at + 2 * unit] == self._newlines[0]:
            return at + 2 * unit
        return at + unit

    def _last_newline(self, data: bytes) -> int:
        best = -1
        for nl in self._newlines:
            at = data.rfind(nl)
            while at >= 0 and at % self._unit:
                at = data.rfind(nl, 0, at)
            best = max(best, at)
        return best

    def _check_lines(self, data: bytes) -> None:
        assert self._limit is not None
        first = self._first_newline(data)
        if first < 0:
            self._run += len(data)
            if self._run > self._limit:
                self._skipping = True
                raise _LineTooLong
            return
        if self._run + first > self._limit:  # the line this piece finishes is too long
            self._pending = data[self._after_newline(data, first) :]
            self._run = 0
            raise _LineTooLong
        self._run = len(data) - self._last_newline(data) - self._unit

    def _validate(self, data: bytes) -> None:
        encoding = self._encoding
        if encoding == "cp1252" or (self._unit == 1 and data.isascii()):
            return
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            self.bad[0] += len(_ESCAPED.findall(data.decode(encoding, _ESCAPE)))


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


# ---------------------------------------------------------------------------------------------------
# entry point


def open_rows(
    stream: BinaryIO, *, name: str = "", max_row_bytes: int = 1_000_000
) -> tuple[FileInfo, Iterator[RawRow]]:
    """Detect compression, encoding and format from the first bytes, then yield rows lazily.

    Raises FileFormatError (before any row) when the file as a whole cannot be read as contacts.
    """
    src: _Readable = stream
    raw_head, at_eof = _read_upto(src, PREFIX_BYTES)
    if not raw_head:
        raise FileFormatError("the file is empty")
    compressed = raw_head.startswith(b"\x1f\x8b")
    if compressed:
        gz = gzip.GzipFile(fileobj=cast(Any, _Replay(raw_head, src)), mode="rb")
        try:
            head, at_eof = _read_upto(gz, PREFIX_BYTES)
        except EOFError:
            raise FileFormatError("the gzip data is truncated; upload the complete file") from None
        except (gzip.BadGzipFile, zlib.error):
            raise FileFormatError("the gzip data is corrupt; compress the file again") from None
        src = gz
        if not head:
            raise FileFormatError("the file is empty")
    else:
        head = raw_head

    kind = _binary_kind(head, name)
    if kind is not None:
        raise FileFormatError(f"this looks like {kind}, not CSV or NDJSON; export the contacts as CSV")
    label, codec, bom = _detect_encoding(head, at_eof)
    body = head[bom:]
    errors = _CP1252 if codec == "cp1252" else _ESCAPE
    head_text = codecs.getincrementaldecoder(codec)(errors).decode(body, at_eof)
    start = head_text.lstrip(" \t\r\n\ufeff")
    if not start:
        raise FileFormatError("the file is empty")
    lowered = start[:20].lower()
    if lowered.startswith(("<?xml", "<!doctype", "<html")):
        raise FileFormatError(
            "this looks like an HTML or XML document, not CSV or NDJSON; export the contacts as CSV"
        )

    fmt = "json-array" if start[0] == "[" else "ndjson" if start[0] == "{" else "csv"
    guard = _Guard(_Replay(body, src), codec, None if fmt == "json-array" else max_row_bytes)
    text: TextIO = io.TextIOWrapper(cast(Any, guard), encoding=codec, errors=errors, newline="")
    text._CHUNK_SIZE = _CHUNK  # type: ignore[attr-defined]

    if fmt == "csv":
        info, rows = _open_csv(text, guard, head_text, name, label, compressed, max_row_bytes)
    elif fmt == "ndjson":
        info = FileInfo("ndjson", label, compressed, None, [])
        rows = _ndjson_rows(text, guard, max_row_bytes)
    else:
        info = FileInfo("json-array", label, compressed, None, [])
        rows = _array_rows(text, guard, max_row_bytes)

    # Peek the first data row so a file without any is refused up front.
    try:
        first = next(rows)
    except StopIteration:
        if fmt == "csv":
            raise FileFormatError("the file has a header but no data rows") from None
        if fmt == "json-array":
            raise FileFormatError("the JSON array is empty; there are no contacts in the file") from None
        raise FileFormatError("the file is empty") from None
    if fmt != "csv" and first.error is None:
        info.columns = list(first.fields)
    if fmt == "ndjson" and first.error is not None and first.number == 1:
        _refuse_pretty_json(head_text)
    return info, chain((first,), rows)


def _refuse_pretty_json(head_text: str) -> None:
    """A single pretty-printed JSON object is not NDJSON: say so instead of rejecting every line."""
    first_line = head_text.lstrip().split("\n", 1)[0].strip()
    if first_line == "{":
        raise FileFormatError(
            "the file is one JSON object spread over several lines; put one contact object per line "
            "(NDJSON) or a JSON array of contact objects"
        )


# ---------------------------------------------------------------------------------------------------
# CSV


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


def _open_csv(
    text: TextIO,
    guard: _Guard,
    head_text: str,
    name: str,
    label: str,
    compressed: bool,
    max_row_bytes: int,
) -> tuple[FileInfo, Iterator[RawRow]]:
    delimiter, sep_line = _sniff_delimiter(head_text, name)
    csv.field_size_limit(max(max_row_bytes, 1))  # process-wide; caps a runaway quoted field
    reader = csv.reader(text, delimiter=delimiter, quotechar='"', doublequote=True, strict=True)
    try:
        for cells in reader:
            if cells and (cells[0] or any(cells)):
                if sep_line:  # Excel's "sep=;" line comes before the header
                    sep_line = False
                    continue
                break
        else:
            raise FileFormatError("the file is empty")
    except _LineTooLong:
        raise FileFormatError(
            f"the header line is longer than {max_row_bytes} bytes; is this really a CSV file?"
        ) from None
    except csv.Error as exc:
        if "field limit" in str(exc):
            raise FileFormatError(
                f"the header row is longer than {max_row_bytes} bytes; check for an unclosed quote"
            ) from None
        raise FileFormatError(f"the header row is not valid CSV ({exc}); check its quotes") from None
    except _GzipBroken as exc:
        raise FileFormatError(f"{exc.reason}; upload the complete file") from None
    if cells[0].startswith("\ufeff"):  # a second BOM
        cells[0] = cells[0][1:]
    if guard.bad[0]:  # UTF-8 with a few damaged bytes in the prefix: never leak escapes
        found, _ = _escapes(cells)
        guard.bad[0] = max(guard.bad[0] - found, 0)
        cells = [_clean(c) for c in cells]
    header = _check_header(cells)
    info = FileInfo("csv", label, compressed, delimiter, header)
    return info, _csv_rows(reader, header, guard, max_row_bytes)


def _csv_rows(reader: Any, header: list[str], guard: _Guard, max_row_bytes: int) -> Iterator[RawRow]:
    ncols = len(header)
    number = 0
    bad = guard.bad
    encoding_name = guard.encoding_name
    join = "".join
    new_row, set_number, set_fields, set_error, set_size = _ROW_SLOTS
    too_large = f"row is larger than {max_row_bytes} bytes"
    while True:
        try:
            for number, cells in enumerate(reader, number + 1):  # noqa: B020 (resumes the count)
                n = len(cells)
                if bad[0]:
                    found, byte = _escapes(cells)
                    if found:
                        bad[0] = max(bad[0] - found, 0)
                        yield RawRow(
                            number,
                            dict(zip(header, map(_clean, cells), strict=False)),
                            _not_valid(number, byte, encoding_name),
                            sum(map(len, cells)) + n,
                        )
                        continue
                if n != ncols:
                    if n < ncols:
                        cells.extend([""] * (ncols - n))
                    elif any(cells[ncols:]):
                        yield RawRow(
                            number,
                            dict(zip(header, cells, strict=False)),
                            f"row has {n} cells but the header has {ncols}",
                            sum(map(len, cells)) + n,
                        )
                        continue
                    else:
                        del cells[ncols:]  # empty cells after the last column: trailing delimiters
                    n = ncols
                size = len(join(cells)) + n  # characters plus delimiters and line break
                if size == n:
                    continue  # every cell empty: a blank line, or only delimiters
                if size > max_row_bytes:
                    yield RawRow(number, {}, too_large, size)
                    continue
                # RawRow(number, dict(zip(header, cells)), None, size), without the frozen __init__
                row = new_row(RawRow)
                set_number(row, number)
                set_fields(row, dict(zip(header, cells)))  # noqa: B905 (lengths checked above)
                set_error(row, None)
                set_size(row, size)
                yield row
            return
        except _LineTooLong:
            number += 1
            yield RawRow(number, {}, too_large, max_row_bytes + 1)
        except csv.Error as exc:
            number += 1
            message = str(exc)
            line = reader.line_num
            error: str
            if "field limit" in message:
                error = LostRows(
                    f"{too_large} (it ends near line {line}); a quote that is never closed may have "
                    "swallowed the lines after it"
                )
            elif "expected after" in message:
                error = (
                    f"row {number} has a stray quote near line {line}: a quoted value must end with a "
                    'quote followed by the delimiter or the line end (write a quote inside it as "")'
                )
            elif "unexpected end of data" in message:
                error = LostRows(
                    f"row {number} has a quote that is never closed, so the rest of the file (to line "
                    f"{line}) was read into it"
                )
            else:
                error = f"row {number} is not valid CSV near line {line}: {message}"
            yield RawRow(number, {}, error, 0)
        except _GzipBroken as exc:
            yield RawRow(
                number + 1,
                {},
                LostRows(f"{exc.reason} after row {number}; the rest of the file could not be read"),
            )
            return


# ---------------------------------------------------------------------------------------------------
# JSON


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    # 1e999 parses as Infinity, which is no JSON: a staged item holding it would make the provider refuse
    # the whole chunk it travels in. Refuse the row instead.
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:30]} is too large")
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)

# Contact rows are flat; a row nested deeper is refused. Far below the interpreter's recursion limit, so
# a row that decodes here also encodes everywhere later (chunking, the sender) instead of raising
# RecursionError there, which would escape the splitter.
MAX_JSON_DEPTH = 64


def _too_deep(value: object) -> bool:
    """Whether `value` nests objects or arrays more than MAX_JSON_DEPTH deep (walked without recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        children = item.values() if isinstance(item, dict) else cast(list[object], item)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _too_deep_error(where: str) -> str:
    return f"{where} nests arrays or objects more than {MAX_JSON_DEPTH} deep; give each field a plain value"


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    return "a number"


def _has_lone_surrogate(value: object) -> bool:
    """Whether a parsed JSON value holds a \\uD800-\\uDFFF escape that is not half of a pair."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _lone_surrogate_error(where: str) -> str:
    return (
        f"{where} has a \\u escape that is half of a UTF-16 surrogate pair, which is not text; fix that value"
    )


def _json_reason(exc: ValueError, column: bool = True) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} (column {exc.colno})" if column else exc.msg
    if "integer string conversion" in str(exc):  # Python's limit on huge integers, worded for programmers
        return "a number has more than 4300 digits"
    return str(exc)


def _ndjson_rows(text: TextIO, guard: _Guard, max_row_bytes: int) -> Iterator[RawRow]:
    decode = _DECODER.decode
    encoding_name = guard.encoding_name
    bad = guard.bad
    number = 0
    while True:
        try:
            for line in text:
                number += 1
                if bad[0]:
                    found, byte = _escapes([line])
                    if found:
                        bad[0] = max(bad[0] - found, 0)
                        yield RawRow(
                            number,
                            {},
                            _not_valid(number, byte, encoding_name),
                            len(line),
                        )
                        continue
                try:
                    value = decode(line)
                except ValueError as exc:
                    if not line.strip():
                        continue  # blank line
                    yield RawRow(
                        number, {}, f"line {number} is not valid JSON: {_json_reason(exc)}", len(line)
                    )
                    continue
                except RecursionError:  # thousands of nested brackets: the decoder gives up
                    yield RawRow(number, {}, _too_deep_error(f"line {number}"), len(line))
                    continue
                if type(value) is dict:
                    if ("\\ud" in line or "\\uD" in line) and _has_lone_surrogate(value):
                        yield RawRow(number, {}, _lone_surrogate_error(f"line {number}"), len(line))
                        continue
                    # a row can only nest as deep as it has brackets: the walk runs on suspicious rows only
                    if line.count("{") + line.count("[") > MAX_JSON_DEPTH and _too_deep(value):
                        yield RawRow(number, {}, _too_deep_error(f"line {number}"), len(line))
                        continue
                    yield RawRow(number, value, None, len(line))
                else:
                    yield RawRow(
                        number,
                        {},
                        f"line {number} is {_json_kind(value)}, not a JSON object with fields",
                        len(line),
                    )
            return
        except _LineTooLong:
            number += 1
            yield RawRow(number, {}, f"line {number} is larger than {max_row_bytes} bytes", max_row_bytes + 1)
        except _GzipBroken as exc:
            yield RawRow(
                number + 1,
                {},
                LostRows(f"{exc.reason} after line {number}; the rest of the file could not be read"),
            )
            return


_WS = re.compile("[ \t\r\n\ufeff]*")
_SCALAR_END = re.compile(r"[,\]]")
_STRUCTURE = re.compile(r'["\\\[\]{}]')


class _ArrayReader:
    """A top-level JSON array, element by element, over a sliding text buffer."""

    def __init__(self, text: TextIO, guard: _Guard, max_row_bytes: int) -> None:
        self._read = text.read
        self._bad = guard.bad
        self._encoding_name = guard.encoding_name
        self._max = max_row_bytes
        self._buf = ""
        self._pos = 0
        self._eof = False
        self.number = 0

    def _more(self, want: int = 0) -> bool:
        """Append some text (about `want` characters, default one chunk); False at the end of the input."""
        if self._eof:
            return False
        chunk = self._read(want or _CHUNK)
        if not chunk:
            self._eof = True
            return False
        if self._pos:
            self._buf = self._buf[self._pos :] + chunk
            self._pos = 0
        else:
            self._buf += chunk
        return True

    def _skip_ws(self) -> str:
        """The next non-whitespace character ("" at the end), leaving the position on it."""
        while True:
            end = _WS.match(self._buf, self._pos).end()  # type: ignore[union-attr]
            if end < len(self._buf):
                self._pos = end
                return self._buf[end]
            self._pos = end
            if not self._more():
                return ""

    def _skip_value(self) -> bool:
        """Skip the value at the position structurally (brackets and strings); False if input ended."""
        depth = 0
        in_string = False
        escaped = False
        first = True
        while True:
            buf = self._buf
            i = self._pos
            if first and not in_string and buf[i] not in '[{"':
                # a bare scalar: up to the next comma or closing bracket
                while True:
                    m = _SCALAR_END.search(self._buf, self._pos)
                    if m:
                        self._pos = m.start()
                        return True
                    self._pos = len(self._buf)
                    if not self._more():
                        return False
            first = False
            while i < len(buf):
                if escaped:
                    escaped = False
                    i += 1
                    continue
                m = _STRUCTURE.search(buf, i)
                if m is None:
                    i = len(buf)
                    break
                ch = m.group()
                i = m.end()
                if in_string:
                    if ch == "\\":
                        escaped = True
                    elif ch == '"':
                        in_string = False
                        if depth == 0:
                            self._pos = i
                            return True
                elif ch == '"':
                    in_string = True
                elif ch in "[{":
                    depth += 1
                elif ch in "]}":
                    depth -= 1
                    if depth <= 0:
                        self._pos = i
                        return True
            self._pos = i
            if not self._more():
                return False

    def rows(self) -> Iterator[RawRow]:
        bad = self._bad
        raw_decode = _DECODER.raw_decode
        if self._skip_ws() != "[":  # cannot happen: the format was sniffed from this character
            return
        self._pos += 1
        number = self.number = 0
        ch = self._skip_ws()
        if ch == "]":
            self._pos += 1
            yield from self._trailer(number)
            return
        while True:
            number = self.number = number + 1
            if not ch:
                yield RawRow(number, {}, LostRows("the JSON array is not closed: the file ends inside it"))
                return
            start = self._pos
            want = _CHUNK
            while True:
                try:
                    value, end = raw_decode(self._buf, start)
                except json.JSONDecodeError as exc:
                    incomplete = exc.msg.startswith("Unterminated string") or exc.pos >= len(self._buf) - 8
                    if incomplete and not self._eof and len(self._buf) - start <= self._max:
                        start -= self._pos  # _more() may drop what precedes the position
                        self._more(want)
                        want = min(want * 2, self._max + 1)
                        start += self._pos
                        continue
                    if len(self._buf) - start > self._max:
                        error = f"row is larger than {self._max} bytes"
                    else:
                        error = (
                            f"item {number} of the JSON array is not valid JSON: {_json_reason(exc, False)}"
                        )
                    self._pos = start
                    if not self._skip_value():
                        yield RawRow(number, {}, LostRows(f"{error}; the file ends inside it"))
                        return
                    yield RawRow(number, {}, error)
                    break
                except ValueError as exc:  # NaN / Infinity
                    self._pos = start
                    self._skip_value()
                    reason = _json_reason(exc, False)
                    yield RawRow(number, {}, f"item {number} of the JSON array is not valid JSON: {reason}")
                    break
                except RecursionError:  # thousands of nested brackets: the decoder gives up
                    error = _too_deep_error(f"item {number} of the JSON array")
                    self._pos = start
                    if not self._skip_value():
                        yield RawRow(number, {}, LostRows(f"{error}; the file ends inside it"))
                        return
                    yield RawRow(number, {}, error)
                    break
                if end >= len(self._buf) and not self._eof:
                    # a number may continue in the next chunk: make sure the value really ended
                    start -= self._pos
                    self._more(want)
                    start += self._pos
                    continue
                size = end - start
                self._pos = end
                if bad[0] and (hit := _ESCAPED.search(self._buf, start, end)):
                    found = len(_ESCAPED.findall(self._buf, start, end))
                    bad[0] = max(bad[0] - found, 0)
                    yield RawRow(
                        number,
                        {},
                        _not_valid(number, ord(hit.group()) - 0xDC00, self._encoding_name),
                        size,
                    )
                elif size > self._max:
                    yield RawRow(number, {}, f"row is larger than {self._max} bytes", size)
                elif type(value) is dict:
                    buf = self._buf
                    if (buf.find("\\ud", start, end) >= 0 or buf.find("\\uD", start, end) >= 0) and (
                        _has_lone_surrogate(value)
                    ):
                        yield RawRow(
                            number, {}, _lone_surrogate_error(f"item {number} of the JSON array"), size
                        )
                    elif buf.count("{", start, end) + buf.count("[", start, end) > MAX_JSON_DEPTH and (
                        _too_deep(value)
                    ):
                        yield RawRow(number, {}, _too_deep_error(f"item {number} of the JSON array"), size)
                    else:
                        yield RawRow(number, value, None, size)
                else:
                    yield RawRow(
                        number,
                        {},
                        f"item {number} of the JSON array is {_json_kind(value)}, not an object with fields",
                        size,
                    )
                break
            ch = self._skip_ws()
            if ch == ",":
                self._pos += 1
                ch = self._skip_ws()
                continue
            if ch == "]":
                self._pos += 1
                yield from self._trailer(number)
                return
            if not ch:
                yield RawRow(
                    number + 1, {}, LostRows("the JSON array is not closed: the file ends inside it")
                )
                return
            yield RawRow(
                number + 1,
                {},
                LostRows(
                    f"the JSON array is broken after item {number}: expected ',' or ']' but found {ch!r}; "
                    "the rest of the file was not read"
                ),
            )
            return

    def _trailer(self, number: int) -> Iterator[RawRow]:
        if self._skip_ws():
            yield RawRow(
                number + 1,
                {},
                LostRows("there is more data after the end of the JSON array; it was not read"),
            )


def _array_rows(text: TextIO, guard: _Guard, max_row_bytes: int) -> Iterator[RawRow]:
    reader = _ArrayReader(text, guard, max_row_bytes)
    last = 0  # the last item handed out: gzip may break after it, before the next item starts
    try:
        for row in reader.rows():
            last = row.number
            yield row
    except _GzipBroken as exc:
        yield RawRow(
            last + 1,
            {},
            LostRows(f"{exc.reason} after item {last}; the rest of the file could not be read"),
        )
