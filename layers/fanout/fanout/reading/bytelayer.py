"""The byte layer: bounded reads, a peeked prefix replayed, and `_Guard`, which validates decoded bytes
and cuts off overlong lines before the text layer sees them."""

from __future__ import annotations

import codecs
import gzip
import io
import re
import zlib
from collections import deque
from collections.abc import Iterator
from typing import Protocol

PREFIX_BYTES = 64 * 1024  # what encoding and format are decided on
_CHUNK = 64 * 1024  # text layer read size


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


# Bytes the guard puts in place of what contradicts the encoding chosen on the first 64 KiB, so the
# text layer escapes them like any invalid byte and the row holding them is rejected (never sent):
_NUL_MARK = b"\xc0\x80"  # a NUL byte (binary data): the overlong form of NUL, never valid UTF-8
_NUL_ESCAPED = "\udcc0\udc80"
_UTF8_MARK = b"\xf8"  # put before a UTF-8 line in a cp1252 file (0xF8 is never valid UTF-8)
_UTF8_ESCAPED = "\udcf8"
WINDOWS_1252 = "Windows-1252"


def _not_valid(number: int, byte: int, encoding_name: str) -> str:
    """The error of a row holding bytes that are not valid in the file's encoding (`byte` -1: a NUL)."""
    if byte < 0:
        return f"row {number} holds a NUL byte (binary data, not text); remove it or export the file again"
    if encoding_name == WINDOWS_1252:
        return (
            f"row {number} is UTF-8 text, but the file's first 64 KiB are Windows-1252 (cp1252); "
            "save the whole file as UTF-8"
        )
    if encoding_name == "UTF-8":
        return f"row {number} is not valid UTF-8 (byte 0x{byte:02X}); save the file as UTF-8"
    return f"row {number} is not valid {encoding_name} text; save the file as UTF-8"


def _clean(value: str, marked: bool = False) -> str:
    """A value safe to show a person: escaped invalid bytes become U+FFFD (a NUL one U+FFFD); with
    `marked` (a cp1252 file), the marks before UTF-8 text go, so the row shows as it was written."""
    if marked:
        value = value.replace(_UTF8_ESCAPED, "")
    return _ESCAPED.sub("\ufffd", value.replace(_NUL_ESCAPED, "\udc80"))


def _first_bad(text: str, start: int = 0, end: int | None = None) -> int:
    """The first escaped byte in `text[start:end]` (-1 for a NUL; callers know there is one)."""
    hit = _ESCAPED.search(text, start, len(text) if end is None else end)
    assert hit is not None
    if text.startswith(_NUL_ESCAPED, hit.start()):
        return -1
    return ord(hit.group()) - 0xDC00


def _escapes(values: list[str]) -> tuple[int, int]:
    """How many escaped invalid bytes `values` hold, and the first such byte (-1: a NUL)."""
    count, first = 0, 0
    for value in values:
        found = _ESCAPED.findall(value)
        if found:
            if not count:
                first = _first_bad(value)
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
        self._cp1252 = encoding == "cp1252"  # handed out transcoded to UTF-8 (the text layer decodes UTF-8)
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
        self.encoding_name = "UTF-16" if self._unit == 2 else WINDOWS_1252 if self._cp1252 else "UTF-8"
        # Where in the source a character offset of the text is (a checkpoint's resume point): known while
        # the text is the source's UTF-8 unchanged (nothing marked, escaped, transcoded or cut off).
        self.tracking = encoding == "utf-8"
        self._pieces: deque[tuple[int, int, bytes]] = deque(maxlen=8)  # (byte start, char start, bytes)
        self._handed = (0, 0)  # bytes and characters handed out so far

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
            data = self._validate(data)
            if self.tracking:
                self._note(data)
            return data

    def _note(self, data: bytes) -> None:
        byte_start, char_start = self._handed
        chars = len(data) if data.isascii() else len(data.decode("utf-8"))
        self._pieces.append((byte_start, char_start, data))
        self._handed = (byte_start + len(data), char_start + chars)

    def byte_offset(self, chars: int) -> int | None:
        """How many bytes of the source the first `chars` characters handed out are; None when unknown
        (the text is not the source unchanged, or that point is no longer among the recent pieces)."""
        if not self.tracking:
            return None
        if chars == self._handed[1]:
            return self._handed[0]
        for byte_start, char_start, data in self._pieces:
            text = data.decode("utf-8")
            if char_start <= chars <= char_start + len(text):
                return byte_start + len(text[: chars - char_start].encode("utf-8"))
        return None

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
        if data[-1] < 0x80:  # UTF-8, and cp1252 (whose lines may turn out to be UTF-8)
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
                self.tracking = False
                raise _LineTooLong
            return
        if self._run + first > self._limit:  # the line this piece finishes is too long
            self._pending = data[self._after_newline(data, first) :]
            self._run = 0
            self.tracking = False
            raise _LineTooLong
        self._run = len(data) - self._last_newline(data) - self._unit

    def _validate(self, data: bytes) -> bytes:
        """`data` as the text layer is to decode it; what is not text in the file's encoding is counted.

        Decisions taken on the first 64 KiB are held to here, for the whole file: a NUL byte (binary data)
        and, in a cp1252 file, a line that is valid UTF-8 with multi-byte characters (a UTF-8 export
        pasted after a Windows one) are marked so that their row is rejected with the reason rather than
        sent as NUL or as "Ã…sa". A cp1252 line is transcoded to UTF-8 here, so one text codec serves.
        """
        if self._unit == 2:
            try:
                data.decode(self._encoding)
            except UnicodeDecodeError:
                self.bad[0] += len(_ESCAPED.findall(data.decode(self._encoding, _ESCAPE)))
            return data
        if data.isascii():
            if b"\x00" in data:
                self.tracking = False
                self.bad[0] += 2 * data.count(b"\x00")
                return data.replace(b"\x00", _NUL_MARK)
            return data
        if self._cp1252:
            data = self._transcode(data)
        elif b"\x00" in data:
            self.tracking = False
            data = data.replace(b"\x00", _NUL_MARK)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            self.tracking = False
            self.bad[0] += len(_ESCAPED.findall(data.decode("utf-8", _ESCAPE)))
        return data

    @staticmethod
    def _transcode(data: bytes) -> bytes:
        """cp1252 bytes as UTF-8, line by line; a line that is UTF-8 already keeps its bytes, marked."""
        out: list[bytes] = []
        for line in data.splitlines(keepends=True):
            if line.isascii():
                out.append(line.replace(b"\x00", _NUL_MARK))
                continue
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                out.append(line.decode("cp1252", _CP1252).encode("utf-8").replace(b"\x00", _NUL_MARK))
            else:
                out.append(_UTF8_MARK + line.replace(b"\x00", _NUL_MARK))
        return b"".join(out)


class _Counted:
    """The text's lines as the row parsers take them, counting the characters handed on (where the
    last row read ends). An iterator, not a generator: the guard's exceptions pass through it and
    reading goes on after them. A loop that takes lines from `text` itself adds them to `chars` itself
    (the CSV rows: a call a line here is a tenth of a plain row's cost)."""

    __slots__ = ("_next", "chars", "text")

    def __init__(self, text: Iterator[str]) -> None:
        self.text = text
        self._next = text.__next__
        self.chars = 0

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> str:
        line = self._next()
        self.chars += len(line)
        return line
