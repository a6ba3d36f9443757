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

* Blank lines before the first record are skipped however many there are (beyond the 64 KiB prefix
  too); NDJSON still counts them as lines.
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
* The decision holds for the whole file, and what contradicts it later is never read silently: a row
  holding a NUL byte (binary data; in the prefix it refuses the file) or, in a cp1252 file, a line that
  is valid UTF-8 with multi-byte characters (a UTF-8 export pasted after a Windows one) is rejected with
  the reason, and the rows around it are read as before. Rejected, not the file failed: the row is
  counted, listed in rejected.csv with its text as written, and the tolerated-invalid share decides the
  file, as for any bad row, so a few odd rows do not stop a large file and a file that is mostly the
  other encoding fails with every row listed.
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
import gzip
import io
import zlib
from collections.abc import Callable, Iterator
from itertools import chain
from typing import Any, BinaryIO, Literal, TextIO, cast, overload

from fanout.reading import bytelayer
from fanout.reading.bytelayer import (
    _CP1252,
    _ESCAPE,
    PREFIX_BYTES,
    _Counted,
    _Guard,
    _read_upto,
    _Readable,
    _Replay,
)
from fanout.reading.csvrows import _open_csv, _resume_csv
from fanout.reading.detection import _binary_kind, _detect_encoding, _refuse_pretty_json
from fanout.reading.jsonrows import MAX_JSON_DEPTH, _array_rows, _ndjson_rows
from fanout.reading.model import FileFormatError, FileInfo, LostRows, RawRow, TextRow

__all__ = [
    "MAX_JSON_DEPTH",
    "PREFIX_BYTES",
    "FileFormatError",
    "FileInfo",
    "LostRows",
    "RawRow",
    "TextRow",
    "open_rows",
    "open_rows_at",
]

# ---------------------------------------------------------------------------------------------------
# entry point


@overload
def open_rows(
    stream: BinaryIO, *, name: str = "", max_row_bytes: int = 1_000_000, cells: Literal[False] = False
) -> tuple[FileInfo, Iterator[RawRow]]: ...


@overload
def open_rows(
    stream: BinaryIO, *, name: str = "", max_row_bytes: int = 1_000_000, cells: Literal[True]
) -> tuple[FileInfo, Iterator[RawRow | TextRow]]: ...


def open_rows(
    stream: BinaryIO, *, name: str = "", max_row_bytes: int = 1_000_000, cells: bool = False
) -> tuple[FileInfo, Iterator[RawRow | TextRow]]:
    """Detect compression, encoding and format from the first bytes, then yield rows lazily.

    Raises FileFormatError (before any row) when the file as a whole cannot be read as contacts.
    `cells`: a CSV file's plain rows come as TextRow (the planner's fast path), not RawRow.
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
            head, at_eof, blank_lines, _ = _skip_blank_lines(head, at_eof, gz)
        except EOFError:
            raise FileFormatError("the gzip data is truncated; upload the complete file") from None
        except (gzip.BadGzipFile, zlib.error):
            raise FileFormatError("the gzip data is corrupt; compress the file again") from None
        src = gz
        if not head:
            raise FileFormatError("the file is empty")
    else:
        head, at_eof, blank_lines, dropped = _skip_blank_lines(raw_head, at_eof, src)

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
    # cp1252 reaches the text layer transcoded to UTF-8 by the guard (which can then mark UTF-8 lines)
    text_codec = "utf-8" if codec == "cp1252" else codec
    text: TextIO = io.TextIOWrapper(cast(Any, guard), encoding=text_codec, errors=_ESCAPE, newline="")
    text._CHUNK_SIZE = bytelayer._CHUNK  # type: ignore[attr-defined]
    lines = _Counted(text)

    if fmt == "csv":
        info, rows = _open_csv(lines, guard, head_text, name, label, compressed, max_row_bytes, cells)
    elif fmt == "ndjson":
        info = FileInfo("ndjson", label, compressed, None, [])
        rows = _ndjson_rows(lines, guard, max_row_bytes, blank_lines)
    else:
        info = FileInfo("json-array", label, compressed, None, [])
        rows = _array_rows(text, guard, max_row_bytes)
    if not compressed and fmt != "json-array":
        info.position = _position(guard, lines, dropped + bom)

    # Peek the first data row so a file without any is refused up front.
    try:
        first = next(rows)
    except StopIteration:
        if fmt == "csv":
            raise FileFormatError("the file has a header but no data rows") from None
        if fmt == "json-array":
            raise FileFormatError("the JSON array is empty; there are no contacts in the file") from None
        raise FileFormatError("the file is empty") from None
    if isinstance(first, RawRow) and fmt != "csv" and first.error is None:
        info.columns = list(first.fields)
    if isinstance(first, RawRow) and fmt == "ndjson" and first.error is not None and first.number == 1:
        _refuse_pretty_json(head_text)
    return info, chain((first,), rows)


_BLANK = b"\r\n"  # blank lines; a line of spaces is a record (csv reads it as a cell " ")
_UTF8_BOM = b"\xef\xbb\xbf"


def _skip_blank_lines(head: bytes, at_eof: bool, src: _Readable) -> tuple[bytes, bool, int, int]:
    """`head` with as many leading blank lines dropped as it takes for text to start within the prefix
    (any number of them: an export with 70,000 empty lines before its header is still a file), the new
    end-of-input flag, how many line breaks were dropped (NDJSON numbers rows by line) and how many
    bytes (after a BOM, which stays)."""
    bom = _UTF8_BOM if head.startswith(_UTF8_BOM) else b""
    dropped = dropped_bytes = 0
    while not at_eof and not head[len(bom) :].strip(_BLANK):
        body = head[len(bom) :]
        gone = body[:-1] if body.endswith(b"\r") else body  # a CR may pair with an LF still to come
        dropped += gone.count(b"\n") + gone.count(b"\r") - gone.count(b"\r\n")
        dropped_bytes += len(gone)
        more, at_eof = _read_upto(src, PREFIX_BYTES)
        head = bom + body[len(gone) :] + more
    return head, at_eof, dropped, dropped_bytes


def _position(guard: _Guard, lines: _Counted, base: int) -> Callable[[], int | None]:
    """`FileInfo.position`: the source offset right after the last row handed out, when known."""

    def position() -> int | None:
        offset = guard.byte_offset(lines.chars)
        return None if offset is None else base + offset

    return position


@overload
def open_rows_at(
    stream: BinaryIO,
    *,
    info: FileInfo,
    offset: int,
    after_row: int,
    max_row_bytes: int = 1_000_000,
    cells: Literal[False] = False,
) -> tuple[FileInfo, Iterator[RawRow]]: ...


@overload
def open_rows_at(
    stream: BinaryIO,
    *,
    info: FileInfo,
    offset: int,
    after_row: int,
    max_row_bytes: int = 1_000_000,
    cells: Literal[True],
) -> tuple[FileInfo, Iterator[RawRow | TextRow]]: ...


def open_rows_at(
    stream: BinaryIO,
    *,
    info: FileInfo,
    offset: int,
    after_row: int,
    max_row_bytes: int = 1_000_000,
    cells: bool = False,
) -> tuple[FileInfo, Iterator[RawRow | TextRow]]:
    """The rows after row `after_row` of a file `open_rows` read before, from `stream`: the file's bytes
    from `offset` on (a ranged GET), where `FileInfo.position` said that row ended. Only for what
    `position` answered for: uncompressed UTF-8 CSV or NDJSON. Rows keep their numbers; `cells` as for
    `open_rows`."""
    if info.compressed or info.format == "json-array" or info.encoding not in ("utf-8", "utf-8-sig"):
        raise ValueError(f"a {info.format} file in {info.encoding} cannot be read from an offset")
    guard = _Guard(stream, "utf-8", max_row_bytes)
    text: TextIO = io.TextIOWrapper(cast(Any, guard), encoding="utf-8", errors=_ESCAPE, newline="")
    text._CHUNK_SIZE = bytelayer._CHUNK  # type: ignore[attr-defined]
    lines = _Counted(text)
    resumed = FileInfo(info.format, info.encoding, False, info.delimiter, list(info.columns))
    resumed.position = _position(guard, lines, offset)
    if info.format == "csv":
        return resumed, _resume_csv(lines, guard, resumed, max_row_bytes, after_row, cells)
    return resumed, _ndjson_rows(lines, guard, max_row_bytes, after_row)
