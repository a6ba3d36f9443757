"""fanout.reading: any real contacts file as a lazy stream of rows, in constant memory."""

from __future__ import annotations

import codecs
import csv
import dataclasses
import gzip
import io
import json
import random
import re
import tracemalloc
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fanout import reading
from fanout.reading import FileFormatError, FileInfo, RawRow, open_rows

pytestmark = pytest.mark.unit

FILES = Path(__file__).parent / "files"
SPECTRUM = Path(__file__).resolve().parents[2] / ".." / "shared" / "peer" / "csv-spectrum"
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@pytest.fixture(autouse=True)
def _restore_csv_field_limit() -> Iterator[None]:
    """open_rows sets the process-wide csv field limit; do not leak a tiny one into other tests."""
    limit = csv.field_size_limit()
    yield
    csv.field_size_limit(limit)


def read(data: bytes, **kwargs: object) -> tuple[FileInfo, list[RawRow]]:
    info, rows = open_rows(io.BytesIO(data), **kwargs)  # type: ignore[arg-type]
    return info, list(rows)


def fields_of(rows: Iterable[RawRow]) -> list[dict[str, object]]:
    return [row.fields for row in rows]


def refusal(data: bytes, **kwargs: object) -> str:
    with pytest.raises(FileFormatError) as caught:
        read(data, **kwargs)
    message = str(caught.value)
    assert message and "\n" not in message  # one sentence for a person
    return message


class ChunkedSource:
    """A binary source like botocore's StreamingBody: only read(n), and it checks n is bounded."""

    def __init__(self, pieces: Iterable[bytes], max_request: int = 256 * 1024) -> None:
        self._pieces = iter(pieces)
        self._buf = bytearray()
        self._max_request = max_request
        self.bytes_read = 0

    def read(self, n: int = -1) -> bytes:
        assert n is not None and 0 < n <= self._max_request, f"unbounded read({n})"
        while len(self._buf) < n:
            piece = next(self._pieces, None)
            if piece is None:
                break
            self._buf += piece
        out = bytes(self._buf[:n])
        del self._buf[:n]
        self.bytes_read += len(out)
        return out


def gzip_stream(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """gzip-compress `pieces` on the fly, without holding the whole output."""
    compressor = zlib.compressobj(wbits=31)
    for piece in pieces:
        out = compressor.compress(piece)
        if out:
            yield out
    yield compressor.flush()


def contact_lines(count: int) -> Iterator[bytes]:
    yield b"email,phone,first_name,last_name,city,country,zip,segment,signup\r\n"
    for i in range(count):
        yield (
            f"user{i}@example.com,+4670{i:07d},First{i % 997},Last{i % 1013},City{i % 50},SE,"
            f"{10000 + i % 9000},seg-{i % 7},2024-01-{1 + i % 28:02d}\r\n"
        ).encode()


# ---------------------------------------------------------------------------------------------------
# csv-spectrum acid test


def _spectrum_names() -> list[str]:
    if not (SPECTRUM / "csvs").is_dir():
        return []
    return sorted(p.stem for p in (SPECTRUM / "csvs").glob("*.csv"))


def _spectrum_expected(name: str, data: bytes) -> list[dict[str, str]]:
    expected = json.loads((SPECTRUM / "json" / f"{name}.json").read_text(encoding="utf-8"))
    if name == "location_coordinates":
        # Upstream defect in the oracle (csv-spectrum 2.0.0): the JSON is a bare object, not a list of rows,
        # and its phone number was scrubbed to 1234567890 while the CSV still says 2095257564. Pinned, so
        # the test goes red (and this branch can go) once the corpus is fixed.
        assert isinstance(expected, dict), "csv-spectrum fixed location_coordinates.json: drop this branch"
        assert expected["Contact Phone Number"] == "1234567890"
        assert b"2095257564" in data
        expected = [{**expected, "Contact Phone Number": "2095257564"}]
    return expected


@pytest.mark.skipif(not _spectrum_names(), reason=f"csv-spectrum corpus not found at {SPECTRUM}")
@pytest.mark.parametrize("name", _spectrum_names() or ["-"])
def test_csv_spectrum(name: str) -> None:
    data = (SPECTRUM / "csvs" / f"{name}.csv").read_bytes()
    expected = _spectrum_expected(name, data)
    if name.endswith("_crlf") and b"\r" not in data:
        # This copy lost its CRLF line endings (a checkout normalised them). The upstream file is the
        # same bytes with CRLF: that must read exactly as the JSON says ...
        info, rows = read(data.replace(b"\n", b"\r\n"))
        assert fields_of(rows) == expected
        # ... and the LF copy must read faithfully: the line break inside the quoted value is "\n".
        expected = [{k: v.replace("\r\n", "\n") for k, v in row.items()} for row in expected]
    info, rows = read(data)
    assert fields_of(rows) == expected
    assert [row.error for row in rows] == [None] * len(rows)
    assert [row.number for row in rows] == list(range(1, len(rows) + 1))
    assert info.format == "csv"
    assert info.delimiter == ","
    assert info.columns == list(expected[0])


_ODD_CSV = (
    b"email,name,city\r\n"
    b"a@example.com,Ann,Oslo\r\n"
    b"b@example.com,Bo\r\n"  # short: padded
    b"c@example.com,Cy,Rome,,\r\n"  # trailing delimiters: trimmed
    b"d@example.com,Di,Rome,extra\r\n"  # a cell too many: an error row
    b",,\r\n"  # only delimiters: skipped
    b"\r\n"
    b'e@example.com,"Ed\nNewline",Kyiv\r\n'
    b"f@example.com,F\xe9lix,Lyon\r\n"  # not UTF-8 in a UTF-8 file: an error row
    b"h@example.com,\xc3\x85sa,Malm\xc3\xb6\r\n"
    b"g@example.com," + b"x" * 300 + b",Bern\r\n"  # larger than max_row_bytes below: an error row
)


@pytest.mark.parametrize("name", [*(_spectrum_names() or []), "odd"])
def test_a_csv_read_for_cells_gives_every_row_as_the_row_reading_gives_it(name: str) -> None:
    data = _ODD_CSV if name == "odd" else (SPECTRUM / "csvs" / f"{name}.csv").read_bytes()
    info, rows = read(data, max_row_bytes=200)
    _, mixed = open_rows(io.BytesIO(data), max_row_bytes=200, cells=True)
    as_rows = [
        RawRow(row[0], dict(zip(info.columns, row[1], strict=True)), None, row[2])
        if isinstance(row, tuple)
        else row
        for row in mixed
    ]
    assert as_rows == rows
    if name == "odd":
        assert [
            row[0]
            for row in open_rows(io.BytesIO(data), max_row_bytes=200, cells=True)[1]
            if isinstance(row, tuple)
        ] == [1, 2, 3, 7, 9]


_CELL = st.text(alphabet=st.sampled_from('ab ,;"\n\r\tåé€x'), max_size=6)


def _by_csv_reader(text: str, delimiter: str) -> list[tuple[list[str], int]]:
    """The rows `csv.reader` reads from `text` after its header, as the reading pads, trims and sizes them
    (cells past the header's last column dropped when empty; all-empty records skipped)."""
    records = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    ncols = len(next(records))
    rows: list[tuple[list[str], int]] = []
    for values in records:
        values = values + [""] * (ncols - len(values)) if len(values) < ncols else values
        if len(values) > ncols and not any(values[ncols:]):
            values = values[:ncols]
        if any(values):
            rows.append((values, len("".join(values)) + len(values)))
    return rows


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    terminator=st.sampled_from(["\n", "\r\n", "\r"]),
    records=st.lists(st.lists(_CELL, min_size=1, max_size=4), min_size=1, max_size=12),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
)
def test_a_csv_file_reads_as_csv_reader_reads_it(
    delimiter: str, terminator: str, records: list[list[str]], quoting: int
) -> None:
    # lines without a quote are split on the delimiter, the others read by csv.reader: either way a row's
    # cells and size are csv.reader's
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator=terminator, quoting=quoting)
    writer.writerow(["email", "name", "city"])
    for record in records:
        writer.writerow(record)
    text = out.getvalue()
    expected = _by_csv_reader(text, delimiter)
    assume(expected and all(len(values) == 3 for values, _ in expected))  # a cell too many: an error row
    info, rows = read(text.encode(), name="contacts.csv")
    assume(info.delimiter == delimiter)  # what the sniffer takes for the delimiter is another test's
    assert [(list(row.fields.values()), row.size) for row in rows] == expected
    assert all(row.error is None for row in rows)


# ---------------------------------------------------------------------------------------------------
# formats


def test_csv_basic_info_and_rows() -> None:
    info, rows = read(b"email,first_name\nanna@example.se,Anna\nbo@example.se,Bo\n", name="x.csv")
    assert info == FileInfo("csv", "utf-8", False, ",", ["email", "first_name"])
    assert rows == [
        RawRow(1, {"email": "anna@example.se", "first_name": "Anna"}, None, 21),
        RawRow(2, {"email": "bo@example.se", "first_name": "Bo"}, None, 17),
    ]


def test_ndjson_rows_keep_nested_values_and_skip_blank_lines() -> None:
    data = (
        b'{"email": "a@x.se", "tags": ["a", "b"], "address": {"city": "Lund"}}\n\n  \n{"email": "b@x.se"}\n'
    )
    info, rows = read(data)
    assert info == FileInfo("ndjson", "utf-8", False, None, ["email", "tags", "address"])
    assert rows[0].fields == {"email": "a@x.se", "tags": ["a", "b"], "address": {"city": "Lund"}}
    assert rows[0].size == data.index(b"\n") + 1
    assert [(row.number, row.fields) for row in rows[1:]] == [(4, {"email": "b@x.se"})]


def test_ndjson_broken_and_non_object_lines_are_rejected_alone() -> None:
    data = b'{"a": 1}\n{"a": 2\n[1, 2]\n"text"\n{"a": NaN}\n{"a": 3}\n'
    _, rows = read(data)
    assert [row.number for row in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0].error is None and rows[5].fields == {"a": 3}
    assert rows[1].error is not None and rows[1].error.startswith("line 2 is not valid JSON: ")
    assert rows[2].error == "line 3 is an array, not a JSON object with fields"
    assert rows[3].error == "line 4 is a string, not a JSON object with fields"
    assert rows[4].error is not None and rows[4].error.startswith("line 5 is not valid JSON: ")
    assert "NaN" in rows[4].error


def test_json_array_streams_objects_and_rejects_non_objects() -> None:
    data = b'[\n  {"email": "a@x.se", "n": {"deep": [1, {"x": null}]}},\n  42,\n  "s",\n  [1],\n  {"email": "b@x.se"}\n]\n'
    info, rows = read(data)
    assert info == FileInfo("json-array", "utf-8", False, None, ["email", "n"])
    assert rows[0].fields == {"email": "a@x.se", "n": {"deep": [1, {"x": None}]}}
    assert [row.error for row in rows[1:4]] == [
        "item 2 of the JSON array is a number, not an object with fields",
        "item 3 of the JSON array is a string, not an object with fields",
        "item 4 of the JSON array is an array, not an object with fields",
    ]
    assert (rows[4].number, rows[4].fields, rows[4].error) == (5, {"email": "b@x.se"}, None)


def test_json_lone_surrogate_escapes_are_rejected_but_pairs_kept() -> None:
    lines = [b'{"a": "\\ud83d\\ude00"}', b'{"a": "x\\udce9"}', b'{"a": "\\uD800"}']
    _, rows = read(b"\n".join(lines))
    assert rows[0].fields == {"a": "\U0001f600"}
    assert rows[1].error == (
        "line 2 has a \\u escape that is half of a UTF-16 surrogate pair, which is not text; fix that value"
    )
    assert rows[2].error is not None
    _, rows = read(b"[" + b",".join(lines) + b"]")
    assert rows[0].fields == {"a": "\U0001f600"}
    assert rows[1].error is not None
    assert rows[1].error.startswith("item 2 of the JSON array has a \\u escape")


def test_json_array_is_read_incrementally(monkeypatch: pytest.MonkeyPatch) -> None:
    objs = [{"i": i, "email": f"u{i}@x.se", "s": "é" * (i % 13), "f": i / 7} for i in range(3000)]
    data = json.dumps(objs).encode()
    monkeypatch.setattr(reading.bytelayer, "_CHUNK", 97)
    source = ChunkedSource([data], max_request=4096)
    info, rows = open_rows(source)  # type: ignore[arg-type]
    assert info.format == "json-array"
    assert source.bytes_read <= reading.PREFIX_BYTES + 4096  # nothing read beyond the prefix yet
    assert fields_of(rows) == objs


def test_json_array_broken_item_is_skipped_and_reading_goes_on() -> None:
    data = b'[{"a": 1}, {"a": 2,}, {"a": {"b": "]}\\""}}, {"a": 4}]'
    _, rows = read(data)
    assert rows[1].error is not None and rows[1].error.startswith(
        "item 2 of the JSON array is not valid JSON"
    )
    assert fields_of(rows[2:]) == [{"a": {"b": ']}"'}}, {"a": 4}]
    assert [row.number for row in rows] == [1, 2, 3, 4]


def test_json_array_oversized_item_is_skipped() -> None:
    data = b'[{"a": "' + b"x" * 5000 + b'"}, {"a": 2}]'
    _, rows = read(data, max_row_bytes=1000)
    assert rows[0].error == "row is larger than 1000 bytes"
    assert (rows[1].number, rows[1].fields) == (2, {"a": 2})


@pytest.mark.parametrize(
    ("data", "number", "error"),
    [
        (b'[{"a": 1}, {"a": 2}', 3, "the JSON array is not closed: the file ends inside it"),
        (b'[{"a": 1}, {"a": ', 2, "item 2 of the JSON array is not valid JSON: Expecting value"),
        (b'[{"a": 1}] [{"a": 2}]', 2, "there is more data after the end of the JSON array; it was not read"),
        (
            b'[{"a": 1} {"a": 2}]',
            2,
            "the JSON array is broken after item 1: expected ',' or ']' but found '{'",
        ),
    ],
)
def test_json_array_structure_errors_end_with_an_error_row(data: bytes, number: int, error: str) -> None:
    _, rows = read(data)
    assert rows[0].fields == {"a": 1}
    assert rows[-1].error is not None
    assert rows[-1].error.startswith(error)
    assert rows[-1].number == number


# ---------------------------------------------------------------------------------------------------
# encodings

ROWS = [{"email": "åsa@example.se", "name": "Åsa Öberg"}, {"email": "jose@example.es", "name": "José"}]
TEXT = "email,name\r\nåsa@example.se,Åsa Öberg\r\njose@example.es,José\r\n"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (TEXT.encode("utf-8"), "utf-8"),
        (codecs.BOM_UTF8 + TEXT.encode("utf-8"), "utf-8-sig"),
        (TEXT.encode("utf-16"), "utf-16"),
        (codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), "utf-16"),
        (codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"), "utf-16"),
        (TEXT.encode("utf-16-le"), "utf-16-le"),
        (TEXT.encode("utf-16-be"), "utf-16-be"),
        (TEXT.encode("cp1252"), "cp1252"),
    ],
)
def test_encodings(data: bytes, encoding: str) -> None:
    info, rows = read(data)
    assert info.encoding == encoding
    assert info.columns == ["email", "name"]
    assert fields_of(rows) == ROWS


def test_cp1252_fallback_keeps_every_byte() -> None:
    info, rows = read(b"email;name\r\njose@x.es;Jos\xe9 \x93Pepe\x94 \x80\x81\r\n")
    assert (info.encoding, info.delimiter) == ("cp1252", ";")
    assert rows[0].fields["name"] == "José “Pepe” €\x81"


def test_utf8_with_a_damaged_byte_in_the_prefix_stays_utf8_and_rejects_that_row() -> None:
    data = "email,name\nå@x.se,Åsa Öberg Ärlig\n".encode() + b"b@x.se,Jos\xe9\n" + "c@x.se,Çelik\n".encode()
    info, rows = read(data)
    assert info.encoding == "utf-8"
    assert rows[0].fields == {"email": "å@x.se", "name": "Åsa Öberg Ärlig"}
    assert rows[1].error == "row 2 is not valid UTF-8 (byte 0xE9); save the file as UTF-8"
    assert rows[1].fields == {"email": "b@x.se", "name": "Jos\ufffd"}
    assert (rows[2].error, rows[2].fields) == (None, {"email": "c@x.se", "name": "Çelik"})


def _ascii_rows(count: int) -> bytes:
    return b"".join(b"user%d@example.com,Name %d\n" % (i, i) for i in range(count))


def test_invalid_utf8_later_in_the_file_rejects_only_those_rows() -> None:
    head = b"email,name\n" + _ascii_rows(4000)
    assert len(head) > reading.PREFIX_BYTES
    data = head + b"late@x.se,Jos\xe9\nok@x.se,Bj\xc3\xb6rn\nbad@x.se,\xff\xfe,\ncut@x.se,\xe2\x82\n"
    info, rows = read(data)
    assert info.encoding == "utf-8"
    tail = rows[-4:]
    assert [row.number for row in tail] == [4001, 4002, 4003, 4004]
    assert tail[0].error == "row 4001 is not valid UTF-8 (byte 0xE9); save the file as UTF-8"
    assert (tail[1].error, tail[1].fields["name"]) == (None, "Björn")
    assert tail[2].error == "row 4003 is not valid UTF-8 (byte 0xFF); save the file as UTF-8"
    assert tail[3].error == "row 4004 is not valid UTF-8 (byte 0xE2); save the file as UTF-8"
    assert all(row.error is None for row in rows[:-4])
    for row in rows:
        assert not any(LONE_SURROGATE.search(str(v)) for v in row.fields.values())


def test_invalid_utf8_later_in_ndjson_and_json_array() -> None:
    filler = b"".join(b'{"email": "u%d@x.se"}\n' % i for i in range(4000))
    _, rows = read(filler + b'{"email": "Jos\xe9"}\n{"email": "z@x.se"}\n')
    assert rows[-2].error == "row 4001 is not valid UTF-8 (byte 0xE9); save the file as UTF-8"
    assert rows[-1].fields == {"email": "z@x.se"}
    array = b"[" + filler.replace(b"\n", b",") + b'{"email": "Jos\xe9"}, {"email": "z@x.se"}]'
    _, rows = read(array)
    assert rows[-2].error == "row 4001 is not valid UTF-8 (byte 0xE9); save the file as UTF-8"
    assert rows[-1].fields == {"email": "z@x.se"}


def _cp1252_rows(count: int) -> bytes:
    return b"".join(b"user%d@example.com,Bj\xf6rn %d\n" % (i, i) for i in range(count))


@pytest.mark.parametrize("chunk", [3, 4096, 64 * 1024])
def test_utf8_rows_after_a_cp1252_prefix_are_rejected_not_garbled(
    monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    # Decided cp1252 on the first 64 KiB; the rest is UTF-8 (two exports pasted together). Today every
    # later row came out as mojibake ("Ã" and a C1 control for each letter) and was sent. Each such row is rejected with the reason instead.
    monkeypatch.setattr(reading.bytelayer, "_CHUNK", chunk)
    head = b"email,name\n" + _cp1252_rows(4000)
    assert len(head) > reading.PREFIX_BYTES
    tail = "asa@x.se,Åsa Öberg\nplain@x.se,Anna\n".encode() + b"late@x.se,Jos\xe9\n"
    info, rows = read(head + tail)
    assert info.encoding == "cp1252"
    assert all(row.error is None and row.fields["name"].startswith("Björn") for row in rows[:4000])
    asa, plain, late = rows[4000:]
    assert asa.number == 4001
    assert asa.error == (
        "row 4001 is UTF-8 text, but the file's first 64 KiB are Windows-1252 (cp1252); "
        "save the whole file as UTF-8"
    )
    assert "Ã" not in str(asa.fields) and "Åsa Öberg" in str(asa.fields)  # shown as written
    assert (plain.error, plain.fields["name"]) == (None, "Anna")
    assert (late.error, late.fields["name"]) == (None, "José")  # cp1252 goes on being read as cp1252


def test_nul_byte_after_the_prefix_rejects_its_row() -> None:
    # A NUL in the first 64 KiB refuses the file as binary; later, it reached the provider.
    head = b"email,name\n" + _ascii_rows(4000)
    data = head + b"nul@x.se,Ann\x00a\nok@x.se,Ok\n"
    info, rows = read(data)
    assert info.encoding == "utf-8"
    nul, ok = rows[-2:]
    assert (
        nul.error == "row 4001 holds a NUL byte (binary data, not text); remove it or export the file again"
    )
    assert "\x00" not in str(nul.fields)
    assert (ok.error, ok.fields) == (None, {"email": "ok@x.se", "name": "Ok"})
    assert all(row.error is None for row in rows[:-2])


def test_nul_byte_after_the_prefix_of_a_cp1252_file_rejects_its_row() -> None:
    data = b"email,name\n" + _cp1252_rows(4000) + b"nul@x.se,Ann\x00\xe9\nok@x.se,Ok\n"
    info, rows = read(data)
    assert info.encoding == "cp1252"
    assert rows[-2].error is not None and "NUL byte" in rows[-2].error
    assert rows[-1].error is None


@pytest.mark.parametrize("blank", [b"\n", b"\r\n", b"\r"])
def test_any_number_of_blank_lines_before_the_header_are_skipped(blank: bytes) -> None:
    data = blank * 70_000 + b"email,name\na@x.se,A\nb@x.se,B\n"
    info, rows = read(data)
    assert info.columns == ["email", "name"]
    assert fields_of(rows) == [{"email": "a@x.se", "name": "A"}, {"email": "b@x.se", "name": "B"}]
    assert [row.number for row in rows] == [1, 2]
    info, rows = read(gzip.compress(data))
    assert info.compressed and len(rows) == 2


def test_blank_lines_before_ndjson_still_count_as_lines() -> None:
    _, rows = read(b"\n" * 70_000 + b'{"email": "a@x.se"}\n{"email": 1\n')
    assert rows[0].number == 70_001
    assert rows[1].error is not None and rows[1].error.startswith("line 70002 ")
    assert refusal(b"\n" * 70_000) == "the file is empty"


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 4096])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-be"])
def test_characters_split_across_reads_are_not_errors(
    monkeypatch: pytest.MonkeyPatch, chunk: int, encoding: str
) -> None:
    monkeypatch.setattr(reading.bytelayer, "_CHUNK", chunk)
    rows = [{"email": f"u{i}@x.se", "name": "Å😀é" * (i % 4) + "x" * (i % 3)} for i in range(300)]
    text = "email,name\n" + "".join(f"{r['email']},{r['name']}\n" for r in rows)
    _, got = read(text.encode(encoding))
    assert fields_of(got) == rows
    assert all(row.error is None for row in got)


def test_invalid_utf16_is_flagged_per_row() -> None:
    good = "email\tname\r\n" + "".join(f"u{i}@x.se\tNamn {i}\r\n" for i in range(4000))
    lone = "x@x.se\tA".encode("utf-16-le") + b"\x00\xdc" + "\r\n".encode("utf-16-le")
    data = codecs.BOM_UTF16_LE + good.encode("utf-16-le") + lone + "z@x.se\tZ\r\n".encode("utf-16-le")
    _, rows = read(data)
    assert rows[-2].error is not None and rows[-2].error.startswith("row 4001 is not valid UTF-16")
    assert rows[-1].fields == {"email": "z@x.se", "name": "Z"}


def test_excel_unicode_text_file() -> None:
    with (FILES / "excel_unicode_text.txt").open("rb") as fh:
        info, rows = open_rows(fh, name="contacts.txt")
        got = list(rows)
    assert (info.format, info.encoding, info.delimiter) == ("csv", "utf-16", "\t")
    assert info.columns == ["email", "phone", "first_name", "last_name", "note"]
    assert got[0].fields["first_name"] == "Åsa"
    assert got[0].fields["note"] == "line one\nline two"
    assert got[1].fields == {
        "email": "bo@example.se",
        "phone": "0701234568",
        "first_name": "Bo",
        "last_name": "Nilsson",
        "note": "",
    }


def test_excel_cp1252_semicolon_file_with_sep_line() -> None:
    with (FILES / "excel_cp1252_semicolon.csv").open("rb") as fh:
        info, rows = open_rows(fh, name="kontakter.csv")
        got = list(rows)
    assert (info.encoding, info.delimiter) == ("cp1252", ";")
    assert info.columns == ["E-post", "Förnamn", "Efternamn", "Stad"]
    assert [row.number for row in got] == [1, 2, 4]
    assert got[1].fields == {"E-post": "bo@example.se", "Förnamn": "Bo", "Efternamn": "", "Stad": ""}
    assert got[2].fields["Efternamn"] == "“Cissi” Lund"


# ---------------------------------------------------------------------------------------------------
# compression


def test_gzip_is_detected_by_content_not_name() -> None:
    info, rows = read(gzip.compress(TEXT.encode("utf-16")), name="contacts.csv")
    assert (info.compressed, info.encoding) == (True, "utf-16")
    assert fields_of(rows) == ROWS
    info, rows = read(TEXT.encode(), name="contacts.csv.gz")
    assert info.compressed is False
    assert fields_of(rows) == ROWS


def test_gzip_truncated_up_front_is_refused() -> None:
    data = gzip.compress(b"email,name\n" + _ascii_rows(100))
    assert refusal(data[: len(data) // 2]) == "the gzip data is truncated; upload the complete file"


def test_gzip_corrupt_is_refused() -> None:
    data = bytearray(gzip.compress(b"email,name\n" + _ascii_rows(100)))
    data[-6] ^= 0xFF  # the CRC
    assert refusal(bytes(data)) == "the gzip data is corrupt; compress the file again"


def test_gzip_truncated_mid_stream_ends_with_an_error_row() -> None:
    rng = random.Random(7)
    body = b"email,token\n" + b"".join(
        b"u%d@x.se,%s\n" % (i, rng.randbytes(24).hex().encode()) for i in range(20000)
    )
    data = gzip.compress(body)
    info, rows = read(data[: len(data) * 3 // 4])
    assert info.compressed
    last = rows[-1]
    assert last.error is not None
    assert last.error.startswith(f"the gzip data is truncated after row {last.number - 1}")
    assert last.error.endswith("the rest of the file could not be read")
    assert all(row.error is None for row in rows[:-1])
    assert len(rows) > 5000


# ---------------------------------------------------------------------------------------------------
# CSV dialects and shapes


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed(delimiter: str) -> None:
    others = "".join(d for d in ",;\t|" if d != delimiter)
    rows = [
        {"email": "a@x.se", "name": f"Smith{others}John", "note": f'say "hi"{delimiter} ok'},
        {"email": "b@x.se", "name": "Bo", "note": ""},
    ]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["email", "name", "note"], delimiter=delimiter)
    writer.writeheader()
    writer.writerows(rows)
    info, got = read(buf.getvalue().encode())
    assert info.delimiter == delimiter
    assert fields_of(got) == rows


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_excel_sep_line_sets_the_delimiter(delimiter: str) -> None:
    data = f"\nsep={delimiter}\r\nemail{delimiter}name,x\r\na@x.se{delimiter}A,1\r\n".encode()
    info, rows = read(data)
    assert info.delimiter == delimiter
    assert info.columns == (["email", "name", "x"] if delimiter == "," else ["email", "name,x"])
    assert rows[0].number == 1


def test_header_delimiter_count_beats_a_misleading_sniff() -> None:
    data = b"email;name;city\na@x.se;Smith, John;Lund, Sk\xc3\xa5ne\nb@x.se;Doe, Jane;Malm\xc3\xb6, SE\n"
    info, rows = read(data)
    assert info.delimiter == ";"
    assert rows[0].fields == {"email": "a@x.se", "name": "Smith, John", "city": "Lund, Skåne"}


def test_single_column_file_is_never_split() -> None:
    info, rows = read(b'email\na@x.se\n"b,c@x.se"\nd;e@x.se\n')
    assert info.columns == ["email"]
    assert fields_of(rows) == [{"email": "a@x.se"}, {"email": "b,c@x.se"}, {"email": "d;e@x.se"}]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_endings_and_embedded_newlines(newline: str) -> None:
    text = f'a,b{newline}1,"two{newline}lines"{newline}3,4{newline}'
    _, rows = read(text.encode())
    assert fields_of(rows) == [{"a": "1", "b": f"two{newline}lines"}, {"a": "3", "b": "4"}]
    assert [row.number for row in rows] == [1, 2]


def test_mixed_line_endings_and_no_final_newline() -> None:
    _, rows = read(b"a,b\r\n1,2\n3,4\r5,6\r\n7,8")
    assert fields_of(rows) == [{"a": str(i), "b": str(i + 1)} for i in (1, 3, 5, 7)]


def test_row_numbers_count_as_a_person_does() -> None:
    data = b'\n\nemail,name\na@x.se,A\n\n"b@x.se","B\nsecond line"\n,,\nc@x.se,C\n'
    _, rows = read(data)
    assert [(row.number, row.fields["email"]) for row in rows] == [
        (1, "a@x.se"),
        (3, "b@x.se"),
        (5, "c@x.se"),
    ]


def test_short_rows_are_padded_and_long_rows_rejected() -> None:
    data = b"a,b,c\n1,2\n1\n1,2,3,4\n1,2,3,,\n1,2,3\n"
    _, rows = read(data)
    assert [(row.number, row.fields, row.error) for row in rows] == [
        (1, {"a": "1", "b": "2", "c": ""}, None),
        (2, {"a": "1", "b": "", "c": ""}, None),
        (3, {"a": "1", "b": "2", "c": "3"}, "row has 4 cells but the header has 3"),
        (4, {"a": "1", "b": "2", "c": "3"}, None),  # empty trailing cells: a trailing delimiter
        (5, {"a": "1", "b": "2", "c": "3"}, None),
    ]


def test_trailing_empty_header_cells_are_dropped() -> None:
    info, rows = read(b"email,name,,\na@x.se,A,,\n")
    assert info.columns == ["email", "name"]
    assert fields_of(rows) == [{"email": "a@x.se", "name": "A"}]


def test_stray_and_unclosed_quotes_reject_rows_not_the_file() -> None:
    data = b'a,b\n1,"ab"c\n2,3\n4,"never closed\n5,6\n'
    _, rows = read(data)
    assert rows[0].error is not None and rows[0].error.startswith("row 1 has a stray quote near line 2")
    assert (rows[1].number, rows[1].fields) == (2, {"a": "2", "b": "3"})
    assert rows[2].error is not None and rows[2].error.startswith("row 3 has a quote that is never closed")
    assert len(rows) == 3


def test_runaway_quote_is_capped_by_max_row_bytes_and_reading_goes_on() -> None:
    data = b'email,name\na@x.se,"Unclosed\n' + b"".join(b"u%d@x.se,Name\n" % i for i in range(2000))
    _, rows = read(data, max_row_bytes=1000)
    assert rows[0].number == 1
    assert rows[0].error is not None and rows[0].error.startswith("row is larger than 1000 bytes")
    assert len(rows) > 1500  # the lines after the cut are read again
    assert all(row.error is None and row.fields["name"] == "Name" for row in rows[1:])


def test_runaway_quote_to_the_end_of_the_file_gives_one_error_row() -> None:
    data = b'email,name\na@x.se,A\nb@x.se,"Unclosed\n' + b"c@x.se,C\n" * 50
    _, rows = read(data)
    assert rows[0].fields == {"email": "a@x.se", "name": "A"}
    assert len(rows) == 2
    assert rows[1].error is not None and "never closed" in rows[1].error


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_overlong_physical_line_is_one_error_row(newline: bytes) -> None:
    data = newline.join([b"a,b", b"1,2", b"3," + b"x" * 5000, b"5,6", b"7," + b"y" * 3000]) + newline + b"9,9"
    _, rows = read(data, max_row_bytes=1000)
    assert [(row.number, row.error) for row in rows] == [
        (1, None),
        (2, "row is larger than 1000 bytes"),
        (3, None),
        (4, "row is larger than 1000 bytes"),
        (5, None),
    ]
    assert rows[4].fields == {"a": "9", "b": "9"}


def test_overlong_line_in_ndjson_and_utf16() -> None:
    data = b'{"a": 1}\n{"a": "' + b"x" * 5000 + b'"}\n{"a": 3}\n'
    _, rows = read(data, max_row_bytes=1000)
    assert [(row.number, row.error) for row in rows] == [
        (1, None),
        (2, "line 2 is larger than 1000 bytes"),
        (3, None),
    ]
    text = "a\tb\r\n1\t2\r\n3\t" + "x" * 3000 + "\r\n5\t6\r\n"
    _, rows = read(text.encode("utf-16"), max_row_bytes=1000)
    assert [row.error for row in rows] == [None, "row is larger than 1000 bytes", None]
    assert rows[2].fields == {"a": "5", "b": "6"}


def test_rows_over_max_row_bytes_on_many_lines_are_rejected() -> None:
    cell = b'"' + b"x\n" * 200 + b'"'  # each cell under the limit, the row over it
    data = b"a,b,c\n" + b",".join([cell, cell, cell]) + b"\n2,3,4\n"
    _, rows = read(data, max_row_bytes=1000)
    assert rows[0].error == "row is larger than 1000 bytes"
    assert (rows[1].number, rows[1].fields) == (2, {"a": "2", "b": "3", "c": "4"})


# ---------------------------------------------------------------------------------------------------
# whole-file refusals


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b" \r\n\n\t\n", "the file is empty"),
        (codecs.BOM_UTF8, "the file is empty"),
        (gzip.compress(b""), "the file is empty"),
        (b"email,name\n", "the file has a header but no data rows"),
        (b"email,name\r\n\r\n,\r\n", "the file has a header but no data rows"),
        (b"[]", "the JSON array is empty; there are no contacts in the file"),
        (b"email,name,email\na,b,c\n", 'the header row has the column "email" more than once'),
        (b"email,,name,,x\na,b,c,d,e\n", "the header row has more than one column without a name"),
        (
            b"anna@example.se,Anna\nbo@example.se,Bo\n",
            'the first row looks like a contact ("anna@example.se")',
        ),
        (b"+46701234567;Anna\n", 'the first row looks like a contact ("+46701234567")'),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "this looks like a PNG image, not CSV or NDJSON"),
        (b"%PDF-1.7\n%\xe2\xe3", "this looks like a PDF document"),
        (
            b"PK\x03\x04\x14\x00[Content_Types].xml xl/workbook.xml",
            "this looks like an Excel workbook (XLSX)",
        ),
        (b"PK\x03\x04\x14\x00some.csv", "this looks like a ZIP archive"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00", "this looks like an old Excel workbook (XLS)"),
        (gzip.compress(b"PK\x03\x04\x14\x00xl/"), "this looks like an Excel workbook (XLSX)"),
        (b"email,name\na@x.se,\x00\x01\x02\x03\x00\x00", "the file contains binary data (NUL bytes)"),
        (codecs.BOM_UTF32_LE + "a,b\n".encode("utf-32-le"), "the file is UTF-32 text"),
        (b"<!DOCTYPE html>\n<html><body>oops</body></html>", "this looks like an HTML or XML document"),
        (b'{\n  "email": "a@x.se"\n}\n', "the file is one JSON object spread over several lines"),
        (b"a" * 2000 + b",b\n1,2\n", "the header line is longer than 1000 bytes"),
    ],
)
def test_whole_file_refusals(data: bytes, message: str) -> None:
    assert refusal(data, max_row_bytes=1000).startswith(message)


def test_xlsx_is_recognised_by_name_when_the_zip_listing_is_not_in_the_prefix() -> None:
    assert "Excel workbook (XLSX)" in refusal(b"PK\x03\x04" + b"\x01" * 100, name="contacts.xlsx")


# ---------------------------------------------------------------------------------------------------
# laziness, bounded reads and constant memory


def test_open_rows_reads_only_a_bounded_prefix_and_in_bounded_pieces() -> None:
    source = ChunkedSource(contact_lines(200_000), max_request=reading.PREFIX_BYTES)
    info, rows = open_rows(source)  # type: ignore[arg-type]
    assert info.columns[:2] == ["email", "phone"]
    assert source.bytes_read <= 2 * reading.PREFIX_BYTES
    first = next(rows)
    assert first.number == 1 and first.fields["email"] == "user0@example.com"
    assert sum(1 for _ in rows) == 199_999


def _blocks(header: bytes, line: Callable[[int], bytes], count: int, footer: bytes = b"") -> Iterator[bytes]:
    """`header`, `count` generated lines and `footer`, produced on the fly 1000 lines at a time.

    The blocks after the first repeat the second one, so the generator itself allocates next to nothing
    (tracemalloc makes every allocation expensive).
    """
    yield header
    first = b"".join(line(i) for i in range(min(1000, count)))
    yield first
    block = b"".join(line(i) for i in range(1000, 2000))
    for _ in range(1000, count, 1000):
        yield block
    yield footer


def _csv_line(i: int) -> bytes:
    return b"u%d@example.com,+4670%07d,Name %d\n" % (i, i, i % 997)


def _ndjson_line(i: int) -> bytes:
    return b'{"email": "u%d@x.se", "n": {"k": [%d]}}\n' % (i, i)


def _array_item(i: int) -> bytes:
    return b'%s{"email": "u%d@x.se", "n": {"k": [%d]}}' % (
        b"," if i else b"",
        i,
        i,
    )  # comma before all but #0


def _peak_bytes(make_pieces: Callable[[int], Iterable[bytes]], count: int) -> int:
    """tracemalloc peak while reading a generated file of `count` rows (asserting every row is read)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        _, rows = open_rows(ChunkedSource(make_pieces(count)))  # type: ignore[arg-type]
        seen = 0
        for row in rows:
            assert row.error is None
            seen += 1
        assert seen == count
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _csv_file(count: int) -> Iterator[bytes]:
    return _blocks(b"email,phone,name\n", _csv_line, count)


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param(20_000, id="20k-vs-40k"),
        # tracemalloc makes each allocation cost microseconds: the full size takes a while
        pytest.param(150_000, id="150k-vs-300k", marks=pytest.mark.slow),
    ],
)
def test_memory_stays_constant_for_csv(rows: int) -> None:
    small = _peak_bytes(_csv_file, rows)
    large = _peak_bytes(_csv_file, 2 * rows)
    assert large < 4_000_000, f"peak {large} bytes for {2 * rows} rows"
    assert large < small * 1.5 + 500_000, f"peak grew with the file: {small} -> {large}"


@pytest.mark.parametrize(
    "make_pieces",
    [
        pytest.param(lambda n: gzip_stream(_csv_file(n)), id="csv.gz"),
        pytest.param(lambda n: _blocks(b"", _ndjson_line, n), id="ndjson"),
        pytest.param(lambda n: _blocks(b"[", _array_item, n, b"]"), id="json-array"),
    ],
)
def test_memory_stays_constant_for_gzip_ndjson_and_json_arrays(
    make_pieces: Callable[[int], Iterable[bytes]],
) -> None:
    small = _peak_bytes(make_pieces, 20_000)
    large = _peak_bytes(make_pieces, 40_000)
    assert large < 4_000_000, f"peak {large} bytes for 40k rows"
    assert large < small * 1.5 + 500_000, f"peak grew with the file: {small} -> {large}"


def test_memory_stays_constant_for_a_file_without_line_breaks() -> None:
    def one_line() -> Iterator[bytes]:
        yield b"a,b\n1,2\n"
        for _ in range(200):
            yield b"x" * 50_000  # 10 MB in one line
        yield b"\n3,4\n"

    tracemalloc.start()
    try:
        _info, rows = open_rows(ChunkedSource(one_line()), max_row_bytes=100_000)  # type: ignore[arg-type]
        got = [(row.number, row.error) for row in rows]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == [(1, None), (2, "row is larger than 100000 bytes"), (3, None)]
    assert peak < 3_000_000


# ---------------------------------------------------------------------------------------------------
# RawRow as the fast path builds it


def test_rows_are_real_frozen_rawrows() -> None:
    _, rows = read(b"a,b\n1,2\n")
    row = rows[0]
    assert type(row) is RawRow
    assert row == RawRow(1, {"a": "1", "b": "2"}, None, 4)
    assert hash(row.number) == 1 and repr(row).startswith("RawRow(number=1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.number = 2  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------
# properties

_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_ ]{0,11}", fullmatch=True).filter(lambda s: s[-1] != " ")
_values = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(), delimiter=st.sampled_from([",", ";", "\t", "|"]), chunk=st.sampled_from([1, 3, 64 * 1024])
)
def test_property_dictwriter_round_trip(data: st.DataObject, delimiter: str, chunk: int) -> None:
    header = data.draw(st.lists(_names, min_size=1, max_size=6, unique=True), label="header")
    rows = data.draw(st.lists(st.fixed_dictionaries({h: _values for h in header}), min_size=1, max_size=15))
    expected = [row for row in rows if any(row.values())]  # all-empty records are blank lines
    assume(expected)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, delimiter=delimiter)
    writer.writeheader()
    writer.writerows(rows)
    saved = reading.bytelayer._CHUNK
    reading.bytelayer._CHUNK = chunk
    try:
        info, got = read(buf.getvalue().encode("utf-8"))
    finally:
        reading.bytelayer._CHUNK = saved
    assert info.columns == header
    if len(header) > 1:
        assert info.delimiter == delimiter
    assert [row.error for row in got] == [None] * len(got)
    assert fields_of(got) == expected


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    objs=st.lists(st.dictionaries(st.text(max_size=5), _json_values, max_size=4), min_size=1, max_size=12),
    chunk=st.integers(1, 40),
    indent=st.sampled_from([None, 2]),
    ndjson=st.booleans(),
)
def test_property_json_any_chunking(
    objs: list[dict[str, object]], chunk: int, indent: int | None, ndjson: bool
) -> None:
    if ndjson:
        data = "\n".join(json.dumps(o, ensure_ascii=False) for o in objs).encode()
    else:
        data = json.dumps(objs, indent=indent, ensure_ascii=False).encode()
    saved = reading.bytelayer._CHUNK
    reading.bytelayer._CHUNK = chunk
    try:
        info, got = read(data)
    finally:
        reading.bytelayer._CHUNK = saved
    assert info.format == ("ndjson" if ndjson else "json-array")
    assert [row.error for row in got] == [None] * len(objs)
    assert fields_of(got) == objs


_SEEDS = [
    b'email,name,note\r\na@x.se,Anna,"hi, there"\r\nb@x.se,Bo,"multi\nline"\r\n',
    b'{"email": "a@x.se", "n": [1, 2]}\n{"email": "b@x.se"}\n',
    b'[{"email": "a@x.se", "n": [1, 2]}, {"email": "b@x.se", "s": "x\\"y"}]',
    "email;namn\r\nå@x.se;Åsa\r\n".encode("cp1252"),
    "email\tname\r\nx@y.z\tÅsa\r\n".encode("utf-16"),
]


@settings(max_examples=300, deadline=None)
@given(
    seed=st.sampled_from(_SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 4), st.binary(max_size=4)), max_size=6),
    repeat=st.integers(1, 30),
    chunk=st.sampled_from([1, 3, 64 * 1024]),
    limit=st.sampled_from([40, 1_000_000]),
    compress=st.booleans(),
    cut=st.floats(0.05, 1.0),
)
def test_property_damaged_files_never_raise_from_the_iterator(
    seed: bytes,
    edits: list[tuple[int, int, bytes]],
    repeat: int,
    chunk: int,
    limit: int,
    compress: bool,
    cut: float,
) -> None:
    data = bytearray(seed * repeat)
    for at, drop, insert in edits:
        at %= len(data) + 1
        data[at : at + drop] = insert
    raw = bytes(data)
    if compress:
        raw = gzip.compress(raw)
        raw = raw[: max(1, int(len(raw) * cut))]
    saved = reading.bytelayer._CHUNK
    reading.bytelayer._CHUNK = chunk
    try:
        try:
            _, rows = open_rows(io.BytesIO(raw), max_row_bytes=limit)
        except FileFormatError as exc:
            refused = str(exc)
        else:
            refused = ""
        if refused:
            assert "\n" not in refused
            return
        for row in rows:  # must not raise
            assert type(row) is RawRow
            for key, value in row.fields.items():
                text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                assert not LONE_SURROGATE.search(key + text), row
    finally:
        reading.bytelayer._CHUNK = saved


# --- going on from where a checkpoint stopped (a ranged read) -----------------------------------------


def _resumable_files() -> dict[str, bytes]:
    rng = random.Random(5)
    people = [("Åsa Öberg", "ÅÄÖ😀"), ("Bob", "plain"), ('Quote "Q"', "line1\nline2"), ("Zoë", "a,b")]
    csv_lines = ["email,name,note"]
    ndjson_lines = []
    for n in range(1, 6_000):
        name, note = people[n % len(people)]
        if n % 97 == 0:
            csv_lines.append(",,")  # a blank record: skipped, still numbered
        quoted = '"' + note.replace('"', '""') + '"'
        csv_lines.append(f'u{n}@x.se,"{name.replace(chr(34), chr(34) * 2)}",{quoted}')
        ndjson_lines.append(
            json.dumps({"email": f"u{n}@x.se", "name": name, "note": note}, ensure_ascii=False)
        )
        if n % 89 == 0:
            ndjson_lines.append("")
    sep = rng.choice(["\n", "\r\n"])
    return {
        "csv": (sep.join(csv_lines) + sep).encode(),
        "csv-bom-blank-lines": b"\xef\xbb\xbf" + ("\r\n" * 70_000 + "\r\n".join(csv_lines)).encode(),
        "ndjson": ("\n" * 3 + "\n".join(ndjson_lines) + "\n").encode(),
    }


@pytest.mark.parametrize("name", ["csv", "csv-bom-blank-lines", "ndjson"])
def test_rows_go_on_from_the_position_a_checkpoint_kept(name: str) -> None:
    data = _resumable_files()[name]
    _, everything = read(data)
    rng = random.Random(name)
    for stop in sorted(rng.sample(range(1, len(everything)), 6)):
        info, rows = open_rows(io.BytesIO(data))  # type: ignore[arg-type]
        seen = [next(rows) for _ in range(stop)]
        offset = info.position()
        assert offset is not None
        more_info, more = reading.open_rows_at(
            io.BytesIO(data[offset:]),  # type: ignore[arg-type]
            info=info,
            offset=offset,
            after_row=seen[-1].number,
        )
        half = [next(more) for _ in range((len(everything) - stop) // 2)]
        # and again from the resumed reader's own position
        again = more_info.position()
        assert again is not None
        _, rest = reading.open_rows_at(
            io.BytesIO(data[again:]),  # type: ignore[arg-type]
            info=more_info,
            offset=again,
            after_row=half[-1].number if half else seen[-1].number,
        )
        assert seen + half + list(rest) == everything


@pytest.mark.parametrize(
    "data",
    [
        gzip.compress(b"email\na@x.se\nb@x.se\n"),
        b'[{"email": "a@x.se"}, {"email": "b@x.se"}]',
        b"email,name\na@x.se,Jos\xe9\nb@x.se,B\n",  # cp1252
        b"email,name\n" + b"x@y.se,C\n" * 8000 + b"a@x.se,A\x00\n",  # a NUL (after the prefix) was marked
    ],
)
def test_no_position_where_the_text_is_not_the_file_as_it_is(data: bytes) -> None:
    info, rows = open_rows(io.BytesIO(data))  # type: ignore[arg-type]
    list(rows)
    assert info.position() is None
