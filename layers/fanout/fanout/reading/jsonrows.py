"""JSON rows: NDJSON line by line, a JSON array element by element."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any, TextIO, cast

from fanout.models import FileFloat
from fanout.reading import bytelayer
from fanout.reading.bytelayer import (
    _ESCAPED,
    _escapes,
    _first_bad,
    _Guard,
    _GzipBroken,
    _LineTooLong,
    _not_valid,
)
from fanout.reading.model import _ROW_SLOTS, LostRows, RawRow

# ---------------------------------------------------------------------------------------------------
# JSON


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    # 1e999 parses as Infinity, which is no JSON: a staged item holding it would make the provider refuse
    # the whole chunk it travels in. Refuse the row instead. A FileFloat: staged as the file's JSON had it.
    value = FileFloat(text)
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


def _ndjson_rows(
    text: Iterator[str], guard: _Guard, max_row_bytes: int, first_line: int = 0
) -> Iterator[RawRow]:
    """NDJSON rows numbered by physical line; `first_line` blank lines were dropped before `text`."""
    decode = _DECODER.decode
    new_row, set_number, set_fields, set_error, set_size = _ROW_SLOTS
    encoding_name = guard.encoding_name
    bad = guard.bad
    number = first_line
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
                    # RawRow(number, value, None, len(line)), without the frozen __init__ (see _ROW_SLOTS)
                    row = new_row(RawRow)
                    set_number(row, number)
                    set_fields(row, value)
                    set_error(row, None)
                    set_size(row, len(line))
                    yield row
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
        chunk = self._read(want or bytelayer._CHUNK)
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
            want = bytelayer._CHUNK
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
                if bad[0] and _ESCAPED.search(self._buf, start, end):
                    found = len(_ESCAPED.findall(self._buf, start, end))
                    bad[0] = max(bad[0] - found, 0)
                    yield RawRow(
                        number,
                        {},
                        _not_valid(number, _first_bad(self._buf, start, end), self._encoding_name),
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
