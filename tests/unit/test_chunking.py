"""fanout.chunking: every staged chunk fits one provider call (items and bytes, measured as sent), chunks
keep file order, and no row is lost or staged twice."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any, ClassVar

import boto3
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fanout.chunking import ChunkPlanner, StagedChunk
from fanout.destinations import Destination
from fanout.models import Contact, FileFloat, Rejection, StagedRow, compact_json, compact_row_json
from fanout.providers import provider_for
from fanout.providers.altcraft import MAX_BODY_BYTES, MAX_PROFILES, Altcraft
from fanout.providers.base import Limits, Provider, ProviderSecret, encode_body
from fanout.providers.mateo import MAX_ITEMS as MATEO_MAX
from fanout.providers.workshop import MAX_CONTACT_EMAILS, MAX_LIST_EMAILS, Workshop
from fanout.reading import open_rows

pytestmark = pytest.mark.unit

BUCKET = "unit-chunks"
ALTCRAFT_SECRET = ProviderSecret(base_url="https://ru.altkraft.com/api/v1.1", token="t" * 64)
PROPERTY_SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def s3() -> Any:
    return boto3.client("s3", region_name="eu-west-1")


@pytest.fixture
def bucket(aws_env: None) -> str:
    s3().create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return BUCKET


class Plan:
    """Rows through a ChunkPlanner, and the chunks it staged, read back from S3."""

    def __init__(self, provider: Provider, rows: list[tuple[str, StagedRow]]) -> None:
        self.job_id = f"j-{uuid.uuid4().hex[:16]}"
        self.chunks: list[StagedChunk] = []
        self.rejections: list[Rejection] = []
        planner = ChunkPlanner(provider, self.job_id, BUCKET, self.chunks.append)
        for lane, row in rows:
            refused = planner.add(lane, row)
            if refused is not None:
                self.rejections.append(refused)
        planner.finish()

    def rows_of(self, chunk: StagedChunk) -> list[StagedRow]:
        """The chunk's rows, read as a sender reads them: its byte range of its staged object."""
        ranged = {"Range": chunk.byte_range} if chunk.byte_range else {}
        body = s3().get_object(Bucket=BUCKET, Key=chunk.key, **ranged)["Body"].read()
        return [StagedRow.from_json(line) for line in body.splitlines()]

    def objects(self) -> list[dict[str, Any]]:
        """The staged objects the chunks are in."""
        listed = s3().list_objects_v2(Bucket=BUCKET, Prefix=f"jobs/{self.job_id}/chunks/")
        return list(listed.get("Contents", []))

    def sizes(self, lane: str = "c") -> list[int]:
        return [c.rows for c in self.chunks if c.chunk_id.startswith(lane)]


def email_rows(count: int, start: int = 1) -> list[StagedRow]:
    return [StagedRow(n, f"user{n}@example.com", f"user{n}@example.com") for n in range(start, start + count)]


def altcraft_rows(count: int, width: int, start: int = 1) -> list[StagedRow]:
    """Wide Altcraft profiles built by the provider itself; non-ASCII so bytes differ from characters."""
    altcraft = provider_for(Destination.ALTCRAFT)
    rows = []
    for n in range(start, start + count):
        notes = {f"note_{i}": ("å" + f"{n:06d}" * 2) * (width // 13 // 4) for i in range(4)}
        contact = Contact(n, f"u{n}@example.com", {"email": f"u{n}@example.com", "first_name": "Åsa"}, notes)
        rows.append(StagedRow(n, contact.identity, altcraft.to_item(contact, "j-1", {})))
    return rows


def altcraft_body(rows: list[StagedRow], options: dict[str, str]) -> bytes:
    """The exact bytes the Altcraft sender posts for these staged rows."""
    altcraft = provider_for(Destination.ALTCRAFT)
    envelope = altcraft.envelope("987654321", options)
    (call,) = altcraft.calls("987654321", envelope, rows, ALTCRAFT_SECRET, "c")
    return encode_body(call.json_body)


# --- limits from the seeds ----------------------------------------------------------------------------


def test_mateo_chunks_hold_at_most_500_items(bucket: str) -> None:
    plan = Plan(provider_for(Destination.MATEO), [("c", r) for r in email_rows(2 * MATEO_MAX + 1)])

    assert plan.sizes() == [500, 500, 1]
    assert [c.chunk_id for c in plan.chunks] == ["c00001", "c00002", "c00003"]
    assert [len(plan.rows_of(c)) for c in plan.chunks] == [500, 500, 1]


def test_chunks_share_a_few_staged_objects_and_each_reads_back_alone_by_its_byte_range(bucket: str) -> None:
    # One PutObject a chunk cost more CPU than reading and checking the chunk's rows (issue 15): chunks
    # are packed into objects of about STAGED_OBJECT_BYTES, each chunk one byte range of one of them.
    plan = Plan(provider_for(Destination.MATEO), [("c", r) for r in email_rows(10 * MATEO_MAX + 7)])

    assert len(plan.chunks) == 11
    assert len(plan.objects()) == 1 == len({c.key for c in plan.chunks})
    assert [len(plan.rows_of(c)) for c in plan.chunks] == [500] * 10 + [7]
    assert [r.row for c in plan.chunks for r in plan.rows_of(c)] == list(range(1, 5008))


def test_a_staged_object_is_cut_once_it_reaches_its_size(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fanout.chunking.STAGED_OBJECT_BYTES", 60_000)
    plan = Plan(provider_for(Destination.MATEO), [("c", r) for r in email_rows(10 * MATEO_MAX)])
    sizes = [o["Size"] for o in plan.objects()]
    chunk_bytes = max(len("\n".join(r.to_json() for r in plan.rows_of(c))) + 1 for c in plan.chunks)

    assert len(sizes) > 1
    assert all(size < 60_000 + chunk_bytes for size in sizes)  # cut at the first chunk that reaches it
    assert sum(sizes) == sum(len(r.to_json()) + 1 for c in plan.chunks for r in plan.rows_of(c))
    assert [r.row for c in plan.chunks for r in plan.rows_of(c)] == list(range(1, 5001))


def test_exactly_500_mateo_items_make_one_chunk(bucket: str) -> None:
    assert Plan(provider_for(Destination.MATEO), [("c", r) for r in email_rows(500)]).sizes() == [500]


def test_workshop_contacts_come_1000_and_lists_100_to_a_chunk_never_mixed(bucket: str) -> None:
    contacts = email_rows(1500)
    lists = [StagedRow(n, f"list{n}@company.com", f"list{n}@company.com") for n in range(2001, 2251)]
    mixed = (
        [("c", r) for r in contacts[:700]] + [("l", r) for r in lists] + [("c", r) for r in contacts[700:]]
    )
    plan = Plan(provider_for(Destination.WORKSHOP), mixed)

    assert plan.sizes("c") == [MAX_CONTACT_EMAILS, 500]
    assert plan.sizes("l") == [MAX_LIST_EMAILS, MAX_LIST_EMAILS, 50]
    for chunk in plan.chunks:
        names = {row.item.split("@")[0].rstrip("0123456789") for row in plan.rows_of(chunk)}
        assert names == ({"user"} if chunk.chunk_id.startswith("c") else {"list"})


def test_mateo_message_chunks_carry_several_rows_each(bucket: str) -> None:
    provider = provider_for(Destination.MATEO_MESSAGE)
    per_message = provider.rows_per_message
    plan = Plan(provider, [("c", r) for r in email_rows(60)])

    assert per_message is not None and per_message > 1
    full, rest = divmod(60, per_message)
    assert plan.sizes() == [per_message] * full + ([rest] if rest else [])


def test_symplify_keeps_the_whole_file_in_one_chunk(bucket: str) -> None:
    assert Plan(provider_for(Destination.SYMPLIFY), [("c", r) for r in email_rows(3000)]).sizes() == [3000]


def test_altcraft_chunks_hold_at_most_10000_profiles(bucket: str) -> None:
    rows = [StagedRow(n, f"u{n}@x.io", {"data": {"email": f"u{n}@x.io"}}) for n in range(1, MAX_PROFILES + 2)]
    assert Plan(provider_for(Destination.ALTCRAFT), [("c", r) for r in rows]).sizes() == [MAX_PROFILES, 1]


def test_altcraft_chunks_of_wide_rows_stay_within_10_mb_of_real_request_body(bucket: str) -> None:
    options = {"matching": "custom", "field-name": "CRM_ID_" + "x" * 200, "skip-triggers": "true"}
    rows = altcraft_rows(600, width=40_000)
    plan = Plan(provider_for(Destination.ALTCRAFT), [("c", r) for r in rows])
    staged = [plan.rows_of(chunk) for chunk in plan.chunks]

    assert len(plan.chunks) >= 3
    assert [r for chunk in staged for r in chunk] == rows
    for this, following in zip(staged, [*staged[1:], []], strict=True):
        assert len(altcraft_body(this, options)) <= MAX_BODY_BYTES == 10 * 1024 * 1024
        if following:  # cut because the next row would not fit, not earlier
            fuller = len(altcraft_body([*this, following[0]], options))
            assert fuller > MAX_BODY_BYTES - Altcraft.limits.envelope_bytes


def test_a_single_row_larger_than_one_altcraft_request_is_rejected_and_the_rest_staged(bucket: str) -> None:
    huge = StagedRow(
        2, "big@example.com", {"data": {"email": "big@example.com", "blob": "b" * MAX_BODY_BYTES}}
    )
    small = [StagedRow(n, f"u{n}@x.io", {"data": {"email": f"u{n}@x.io"}}) for n in (1, 3)]
    plan = Plan(provider_for(Destination.ALTCRAFT), [("c", small[0]), ("c", huge), ("c", small[1])])

    assert plan.rejections == [Rejection(2, "row is larger than one altcraft request may be")]
    assert [r.row for c in plan.chunks for r in plan.rows_of(c)] == [1, 3]


def test_nothing_added_stages_nothing(bucket: str) -> None:
    assert Plan(provider_for(Destination.MATEO), []).chunks == []


# --- properties ---------------------------------------------------------------------------------------


def tiny_altcraft(max_items: int, max_body: int) -> Provider:
    """Altcraft with small limits, so random files cross them often."""

    class Tiny(Altcraft):
        limits: ClassVar[Limits] = Limits(max_items=max_items, max_body_bytes=max_body, envelope_bytes=160)

    return Tiny()


@PROPERTY_SETTINGS
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=400), max_size=60),
    max_items=st.integers(min_value=1, max_value=12),
    max_body=st.integers(min_value=300, max_value=2_500),
)
def test_every_chunk_fits_one_call_keeps_order_and_loses_no_row(
    bucket: str, sizes: list[int], max_items: int, max_body: int
) -> None:
    provider = tiny_altcraft(max_items, max_body)
    rows = [StagedRow(n, f"id{n}", {"data": {"v": "ü" * size}}) for n, size in enumerate(sizes, 1)]
    plan = Plan(provider, [("c", r) for r in rows])
    staged = [plan.rows_of(chunk) for chunk in plan.chunks]
    secret = ProviderSecret(base_url="https://a.test", token="tok")

    for chunk, chunk_rows in zip(plan.chunks, staged, strict=True):
        assert 0 < chunk.rows == len(chunk_rows) <= max_items
        (call,) = provider.calls("12", provider.envelope("12", {}), chunk_rows, secret, "c")
        assert len(encode_body(call.json_body)) <= max_body
    kept = [r for chunk_rows in staged for r in chunk_rows]
    rejected = {r.row for r in plan.rejections}
    assert [r.row for r in kept] == sorted(r.row for r in kept)
    assert kept == [r for r in rows if r.row not in rejected]
    assert rejected == {r.row for r in rows if len(encode_body(r.item)) + 1 > max_body - 160}


@PROPERTY_SETTINGS
@given(
    lanes=st.lists(st.sampled_from("cl"), max_size=80),
    contact_limit=st.integers(min_value=1, max_value=9),
    list_limit=st.integers(min_value=1, max_value=4),
)
def test_lanes_are_chunked_apart_each_within_its_own_limit(
    bucket: str, lanes: list[str], contact_limit: int, list_limit: int
) -> None:
    class Tiny(Workshop):
        lane_limits: ClassVar[dict[str, int]] = {"c": contact_limit, "l": list_limit}

    rows = [(lane, StagedRow(n, f"{lane}{n}@x.io", f"{lane}{n}@x.io")) for n, lane in enumerate(lanes, 1)]
    plan = Plan(Tiny(), rows)

    for lane, limit in (("c", contact_limit), ("l", list_limit)):
        chunks = [c for c in plan.chunks if c.chunk_id[0] == lane]
        staged = [r for c in chunks for r in plan.rows_of(c)]
        assert all(0 < c.rows <= limit for c in chunks)
        assert staged == [r for row_lane, r in rows if row_lane == lane]
        # Only the last chunk of a lane may be partly filled.
        assert all(c.rows == limit for c in chunks[:-1])


@PROPERTY_SETTINGS
@given(count=st.integers(min_value=0, max_value=1_600))
def test_mateo_chunks_are_full_but_the_last(bucket: str, count: int) -> None:
    plan = Plan(provider_for(Destination.MATEO), [("c", r) for r in email_rows(count)])
    full, rest = divmod(count, MATEO_MAX)

    assert plan.sizes() == [MATEO_MAX] * full + ([rest] if rest else [])


def test_sizes_are_measured_on_the_bytes_as_sent() -> None:
    item: dict[str, Any] = {"data": {"name": "Åsa Öberg"}}
    assert len(encode_body(item)) > len('{"data":{"name":"Åsa Öberg"}}'.encode())


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@given(_JSON_VALUES)
def test_compact_json_is_exactly_what_the_standard_encoder_writes(value: object) -> None:
    # the prebuilt C encoder must give the bytes json.dumps gives with the same options
    assert compact_json(value) == json.dumps(value, separators=(",", ":"))


# What a provider builds from rows as read: text, the ints, bools and lists it adds itself, and the
# numbers of JSON rows (every number written with a fraction or exponent is read as a FileFloat).
_ROW_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False).map(FileFloat),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@given(_ROW_VALUES)
@example({"note": "DEL \x7f is escaped"})  # ASCII, but the standard encoder writes it \u007f
def test_compact_row_json_is_exactly_what_the_standard_encoder_writes(value: object) -> None:
    # orjson's text (ASCII), or the standard encoder's: the same bytes either way
    assert compact_row_json(value) == json.dumps(value, separators=(",", ":"))


def test_a_float_of_a_json_row_is_read_as_a_file_float() -> None:
    _info, rows = open_rows(io.BytesIO(b'{"email": "a@example.com", "score": 1e-05, "n": 3}\n'))
    (row,) = list(rows)
    assert type(row.fields["score"]) is FileFloat and row.fields["score"] == 1e-05
    assert type(row.fields["n"]) is int
    assert compact_row_json(row.fields) == json.dumps(row.fields, separators=(",", ":"))


class Recorded:
    """A ChunkSink that keeps each cut chunk's id and lines."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, list[str]]] = []

    def add(self, chunk_id: str, rows: int, data: bytes) -> None:
        lines = data.decode().splitlines()
        assert len(lines) == rows
        self.chunks.append((chunk_id, lines))

    def finish(self) -> None:
        return None


@PROPERTY_SETTINGS
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=400), max_size=60),
    max_items=st.integers(min_value=1, max_value=12),
    max_body=st.integers(min_value=300, max_value=2_500),
    batch=st.integers(min_value=1, max_value=25),
)
def test_a_batch_of_staged_lines_is_chunked_as_the_same_lines_one_by_one(
    sizes: list[int], max_items: int, max_body: int, batch: int
) -> None:
    # the row plan's rows go to the planner a batch at a time (add_lines); the cut must fall where
    # adding them one at a time (add_line) puts it, and the same rows be refused as too large
    provider = tiny_altcraft(max_items, max_body)
    planned = [
        (n, f"id{n}", f'{{"row":{n},"v":"{"x" * size}"}}', size + 20) for n, size in enumerate(sizes, 1)
    ]

    def staged(batched: bool) -> tuple[list[tuple[str, list[str]]], list[Rejection]]:
        sink = Recorded()
        planner = ChunkPlanner(provider, "j-1", "", lambda chunk: None, sink=sink)
        refused: list[Rejection] = []
        if batched:
            for start in range(0, len(planned), batch):
                refused += planner.add_lines("c", planned[start : start + batch])
        else:
            for row, _identity, line, size in planned:
                if (too_big := planner.add_line("c", row, line, size)) is not None:
                    refused.append(too_big)
        planner.finish()
        return sink.chunks, refused

    one_by_one = staged(batched=False)
    assert staged(batched=True) == one_by_one
    assert [row for _, lines in one_by_one[0] for row in lines] == [
        line for n, _, line, size in planned if size <= max_body - 160
    ]
