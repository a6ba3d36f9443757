"""CSV rows: the header, then one RawRow per record."""

from __future__ import annotations

import csv
from collections.abc import Iterator

from fanout.reading.bytelayer import (
    WINDOWS_1252,
    _clean,
    _Counted,
    _escapes,
    _Guard,
    _GzipBroken,
    _LineTooLong,
    _not_valid,
)
from fanout.reading.detection import _check_header, _sniff_delimiter
from fanout.reading.model import _ROW_SLOTS, FileFormatError, FileInfo, LostRows, RawRow, TextRow

QUOTE = '"'  # the quote character of every CSV file read here


def _open_csv(
    text: _Counted,
    guard: _Guard,
    head_text: str,
    name: str,
    label: str,
    compressed: bool,
    max_row_bytes: int,
    as_cells: bool = False,
) -> tuple[FileInfo, Iterator[RawRow | TextRow]]:
    delimiter, sep_line = _sniff_delimiter(head_text, name)
    feeder = _Feeder(text, delimiter, max_row_bytes)
    reader = feeder.reader
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
        cells = [_clean(c, guard.encoding_name == WINDOWS_1252) for c in cells]
    header = _check_header(cells)
    info = FileInfo("csv", label, compressed, delimiter, header)
    return info, _csv_rows(feeder, header, guard, max_row_bytes, cells=as_cells)


def _resume_csv(
    lines: _Counted,
    guard: _Guard,
    info: FileInfo,
    max_row_bytes: int,
    after_row: int,
    cells: bool = False,
) -> Iterator[RawRow | TextRow]:
    """CSV rows from a record boundary of a file read before (its header and delimiter known)."""
    assert info.delimiter is not None
    feeder = _Feeder(lines, info.delimiter, max_row_bytes)
    return _csv_rows(feeder, info.columns, guard, max_row_bytes, after_row, cells)


class _Feeder:
    """A file's CSV text: its `lines` and the `reader` (`csv.reader`, over this feeder) of its records with
    a quote, and of its header. The reader reads the line handed `back` to it first (the start of a
    record with a quote), then the text's own. An iterator, not a generator: the guard's exceptions pass
    through it and reading goes on after them."""

    __slots__ = ("_next", "back", "delimiter", "lines", "reader")

    def __init__(self, lines: _Counted, delimiter: str, max_row_bytes: int) -> None:
        self.lines = lines
        self.delimiter = delimiter
        self.back: str | None = None
        self._next = lines.__next__
        csv.field_size_limit(max(max_row_bytes, 1))  # process-wide; caps a runaway quoted field
        self.reader = csv.reader(self, delimiter=delimiter, quotechar=QUOTE, doublequote=True, strict=True)

    def __iter__(self) -> _Feeder:
        return self

    def __next__(self) -> str:
        line = self.back
        if line is None:
            return self._next()
        self.back = None
        return line


def _csv_rows(
    feeder: _Feeder,
    header: list[str],
    guard: _Guard,
    max_row_bytes: int,
    after_row: int = 0,
    cells: bool = False,
) -> Iterator[RawRow | TextRow]:
    """The rows after `after_row`; with `cells`, each plain one as a TextRow (no dict, no RawRow).

    A line without a quote character is a whole record whose cells are what lies between its delimiters:
    exactly what `csv.reader` makes of it (no quote to open a field, and the text layer ends a line only at
    a line break), at a third of its cost, so it is split here. A line with a quote is handed back to
    the feeder's `reader`, which reads the record to its end, however many lines its quoted values
    span, and words its errors."""
    ncols = len(header)
    number = after_row
    plain_lines = 0  # lines read here, not by `reader` (whose line_num counts the rest)
    bad = guard.bad
    encoding_name = guard.encoding_name
    clean, marked = _clean, encoding_name == WINDOWS_1252
    join = "".join
    new_row, set_number, set_fields, set_error, set_size = _ROW_SLOTS
    too_large = f"row is larger than {max_row_bytes} bytes"
    lines, reader, delimiter = feeder.lines, feeder.reader, feeder.delimiter
    text = lines.text
    while True:
        try:
            for line in text:
                lines.chars += len(line)  # counted as `lines` counts the lines it hands on (the reader's)
                if QUOTE in line:
                    feeder.back = line
                    values = next(reader)  # never ends here: it has this line to read at least
                    n = len(values)
                    size = len(join(values)) + n  # characters plus delimiters and line break
                else:
                    plain_lines += 1
                    line = line.rstrip("\r\n")
                    values = line.split(delimiter)
                    n = len(values)
                    size = len(line) + 1  # the same: the cells' characters and the delimiters between them
                number += 1
                if bad[0]:
                    found, byte = _escapes(values)
                    if found:
                        bad[0] = max(bad[0] - found, 0)
                        yield RawRow(
                            number,
                            dict(zip(header, [clean(c, marked) for c in values], strict=False)),
                            _not_valid(number, byte, encoding_name),
                            sum(map(len, values)) + n,
                        )
                        continue
                if n != ncols:
                    if n < ncols:
                        values.extend([""] * (ncols - n))
                    elif any(values[ncols:]):
                        yield RawRow(
                            number,
                            dict(zip(header, values, strict=False)),
                            f"row has {n} cells but the header has {ncols}",
                            sum(map(len, values)) + n,
                        )
                        continue
                    else:
                        del values[ncols:]  # empty cells after the last column: trailing delimiters
                    size += ncols - n  # one more delimiter for each cell added, one fewer for each dropped
                    n = ncols
                if size == n:
                    continue  # every cell empty: a blank line, or only delimiters
                if size > max_row_bytes:
                    yield RawRow(number, {}, too_large, size)
                    continue
                if cells:
                    yield number, values, size
                    continue
                # RawRow(number, dict(zip(header, cells)), None, size), without the frozen __init__
                row = new_row(RawRow)
                set_number(row, number)
                set_fields(row, dict(zip(header, values)))  # noqa: B905 (lengths checked above)
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
            near = reader.line_num + plain_lines
            error: str
            if "field limit" in message:
                error = LostRows(
                    f"{too_large} (it ends near line {near}); a quote that is never closed may have "
                    "swallowed the lines after it"
                )
            elif "expected after" in message:
                error = (
                    f"row {number} has a stray quote near line {near}: a quoted value must end with a "
                    'quote followed by the delimiter or the line end (write a quote inside it as "")'
                )
            elif "unexpected end of data" in message:
                error = LostRows(
                    f"row {number} has a quote that is never closed, so the rest of the file (to line "
                    f"{near}) was read into it"
                )
            else:
                error = f"row {number} is not valid CSV near line {near}: {message}"
            yield RawRow(number, {}, error, 0)
        except _GzipBroken as exc:
            yield RawRow(
                number + 1,
                {},
                LostRows(f"{exc.reason} after row {number}; the rest of the file could not be read"),
            )
            return
