"""A staged line is read back as it was written: the row, its identity, and its item's JSON text, which a
provider that sends items as staged (Mateo's batch) passes into the request body without parsing it or
encoding it again. The bytes sent are those the old parse-then-encode path sent, whatever the item holds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fanout.destinations import Destination
from fanout.models import FileFloat, StagedRow, compact_json, compact_row_json, staged_line
from fanout.providers import provider_for
from fanout.providers.base import ProviderSecret, encode_body

pytestmark = pytest.mark.unit

JOURNEY = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
SECRET = ProviderSecret(base_url="https://integration.getmateo.com/api/v1", token="mateo-key")

# What a row's item can hold: text of any script (emoji, lone surrogates, quotes, control characters),
# ints past 64 bits, floats of every form, nested objects and arrays.
SCALARS = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text()
)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
)
ITEMS = st.dictionaries(st.text(), VALUES, max_size=6)
IDENTITIES = st.text(min_size=1)

ODD_ITEMS: list[dict[str, Any]] = [
    {"deduplication_id": "d-1", "contact": {"email": "åsa@exämple.se", "full_name": "Zoë 山田 🚀"}},
    {"context": {"score": 1e-05, "big": 1e16, "tiny": 5e-324, "neg": -0.0, "third": 1 / 3}},
    {"context": {"nested": [{"a": [1, 2.5, None, True]}, [], {}], "quote": 'say "hi"\\ \n\t\x00\x7f'}},
    {"context": {"huge": 2**80, "surrogate": "\ud800", "pair": "\U0001f600"}},
]


def old_body(lines: list[str]) -> bytes:
    """What the sender sent before: each staged line parsed whole, the items encoded again."""
    return encode_body({"journey_id": JOURNEY, "items": [json.loads(line)["item"] for line in lines]})


def mateo_body(lines: list[str]) -> bytes:
    rows = [StagedRow.from_json(line.encode("ascii")) for line in lines]
    (call,) = provider_for(Destination.MATEO).calls(JOURNEY, {}, rows, SECRET, "c")
    return call.content()


def test_mateo_sends_odd_items_byte_for_byte_as_the_old_encoding() -> None:
    lines = [staged_line(n, f"row{n}@example.com", compact_json(item)) for n, item in enumerate(ODD_ITEMS, 1)]

    assert mateo_body(lines) == old_body(lines)


@given(st.lists(st.tuples(IDENTITIES, ITEMS), min_size=1, max_size=8))
def test_mateo_body_from_staged_lines_is_the_old_encoding_for_any_item(
    rows: list[tuple[str, dict[str, Any]]],
) -> None:
    lines = [staged_line(n, identity, compact_json(item)) for n, (identity, item) in enumerate(rows, 1)]

    assert mateo_body(lines) == old_body(lines)


@given(
    st.lists(
        st.dictionaries(
            st.text(),
            st.none() | st.text() | st.integers() | st.floats(allow_nan=False).map(FileFloat),
            max_size=6,
        ),
        min_size=1,
        max_size=6,
    )
)
# a file's 1e999 reads as an infinite FileFloat: the standard encoder writes Infinity (as json.loads reads)
@example([{"x": FileFloat("inf"), "y": FileFloat("-inf")}])
def test_items_the_chunker_encodes_with_orjson_are_sent_as_the_old_encoding(
    items: list[dict[str, Any]],
) -> None:
    lines = [staged_line(n, "id", compact_row_json(item)) for n, item in enumerate(items, 1)]

    assert mateo_body(lines) == old_body(lines)


@given(st.integers(min_value=0, max_value=10**9), IDENTITIES, ITEMS)
def test_a_staged_line_reads_back_whole_and_writes_back_unchanged(
    row: int, identity: str, item: dict[str, Any]
) -> None:
    line = staged_line(row, identity, compact_json(item))
    staged = StagedRow.from_json(line.encode("ascii"))

    assert line == compact_json({"row": row, "identity": identity, "item": item})  # the standard encoder's
    assert (staged.row, staged.identity) == (row, identity)
    assert staged.item_json == compact_json(item)
    assert json.dumps(staged.item) == json.dumps(json.loads(line)["item"])  # NaN != NaN: compared as text
    assert staged.to_json() == line


def test_a_line_in_another_json_form_is_still_read() -> None:
    spaced = '{"identity": "a@b.se", "row": 7, "item": {"x": [1, 2.0]}}'

    staged = StagedRow.from_json(spaced)

    assert staged == StagedRow(7, "a@b.se", {"x": [1, 2.0]})
    assert staged.item_json == '{"x":[1,2.0]}'


def test_a_row_built_from_its_item_equals_the_same_row_read_back() -> None:
    built = StagedRow(3, "a@b.se", {"contact": {"email": "a@b.se"}, "context": {"n": 1.5}})

    assert StagedRow.from_json(built.to_json()) == built
    assert built.to_json() == staged_line(3, "a@b.se", compact_json(built.item))
