"""Provider modules: each builds exactly the request its seed document describes, and reads every
answer (the seed's own examples first) into done / retry / uncertain / failed, row by row."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fanout.destinations import Destination
from fanout.ids import row_uuid
from fanout.models import Contact, Outcome, RowState, StagedRow, Verdict
from fanout.providers import provider_for
from fanout.providers.base import (
    Provider,
    ProviderCall,
    ProviderSecret,
    classify_transport_error,
    encode_body,
)
from fanout.transport import send_once

pytestmark = pytest.mark.unit

# The providers' API documents (copied from shared/seeds: every example there is a requirement).
SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"
MATEO_SEED = "000_91378643bbe1a269.txt"
SYMPLIFY_SEED = "001_882822a347510e5d.txt"
WORKSHOP_SEED = "002_378a25fbe8d7d65b.txt"
ALTCRAFT_SEED = "003_08c33f39e983d860.txt"
MESSAGE_SEED = "004_f0bf854db87159b7.txt"

JOB = "j-0123456789abcdef"
JOURNEY = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
CHANNEL = "6a1f1d3e-2b7c-4e0a-9d45-1c2b3a4d5e6f"

SECRETS = {
    Destination.MATEO: ProviderSecret(base_url="https://integration.getmateo.com/api/v1", token="mateo-key"),
    Destination.MATEO_MESSAGE: ProviderSecret(
        base_url="https://integration.getmateo.com/api/v1/", token="mateo-key"
    ),
    Destination.SYMPLIFY: ProviderSecret(
        base_url="https://eu-proxy-1.symplifymail.com/rest", token="carma-token", customer_id="4711"
    ),
    Destination.WORKSHOP: ProviderSecret(base_url="https://app.useworkshop.com/api/v1", token="ws-key"),
    Destination.ALTCRAFT: ProviderSecret(
        base_url="https://ru.altkraft.com/api/v1.1/", token="abcdefghijklmnqrstuvwxyz"
    ),
}
TARGETS = {
    Destination.MATEO: JOURNEY,
    Destination.MATEO_MESSAGE: CHANNEL,
    Destination.SYMPLIFY: "1001",
    Destination.WORKSHOP: "jrn_welcome",
    Destination.ALTCRAFT: "12",
}
EN_DASH = "\u2013"  # as the Altcraft seed writes its example headings
DOWNLOAD_URL = "https://bucket.s3.amazonaws.com/jobs/j-1/symplify/contacts.ndjson?X-Amz-Signature=abc"


def seed_text(name: str) -> str:
    return (SEEDS / name).read_text(encoding="utf-8")


def seed_json(name: str, marker: str) -> Any:
    """The first JSON object after `marker` in a seed document."""
    text = seed_text(name)
    start = text.index("{", text.index(marker))
    value, _ = json.JSONDecoder().raw_decode(text, start)
    return value


def person(row: int, **fields: str) -> Contact:
    extra = fields.pop("extra", None)
    return Contact(row, "", dict(fields), dict(extra or {}))  # type: ignore[arg-type]


def stage(
    destination: Destination, contacts: list[Contact], options: Mapping[str, str] | None = None
) -> list[StagedRow]:
    """Contacts staged as the splitter stages them (identity from the provider, item from to_item)."""
    provider = provider_for(destination)
    staged = []
    for contact in contacts:
        identity = provider.identify(contact, options or {}).identity
        assert identity is not None
        staged.append(StagedRow(contact.row, identity, provider.to_item(contact, JOB, options or {})))
    return staged


def calls(
    destination: Destination,
    rows: list[StagedRow],
    options: Mapping[str, str] | None = None,
    lane: str = "c",
) -> list[ProviderCall]:
    provider = provider_for(destination)
    envelope = provider.envelope(TARGETS[destination], options or {})
    if destination is Destination.SYMPLIFY:
        envelope["downloadUrl"] = DOWNLOAD_URL
    return list(provider.calls(TARGETS[destination], envelope, rows, SECRETS[destination], lane))


def typical_call(destination: Destination) -> ProviderCall:
    """The first call for two ordinary contacts of `destination`."""
    contacts = [
        person(1, email="ada@example.com", first_name="Ada", text="Hello"),
        person(2, email="bob@example.com", first_name="Bob", text="Hello"),
    ]
    return calls(destination, stage(destination, contacts))[0]


def answer(status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> httpx.Response:
    if body is None:
        return httpx.Response(status, headers=headers)
    if isinstance(body, str):
        return httpx.Response(status, text=body, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


# Each provider's error body, as its docs show it, with `message` standing for the text.
ERROR_BODIES: dict[Destination, Callable[[int, str], Any]] = {
    Destination.MATEO: lambda status, text: {"code": "E", "message": text, "hint": None, "status": status},
    Destination.MATEO_MESSAGE: lambda status, text: {"code": "E", "message": text, "hint": None},
    Destination.SYMPLIFY: lambda status, text: {"message": text},
    Destination.WORKSHOP: lambda status, text: {"error": text},
    Destination.ALTCRAFT: lambda status, text: {"error": status, "error_text": text},
}


# --- Mateo batch (seed 000) ---------------------------------------------------------------------------


def test_mateo_posts_the_batch_to_journey_execution_batch_with_a_bearer_key() -> None:
    rows = stage(Destination.MATEO, [person(1, email="ada@example.com"), person(2, phone="+46701234567")])
    (call,) = calls(Destination.MATEO, rows)

    assert (call.method, call.url) == (
        "POST",
        "https://integration.getmateo.com/api/v1/journey_execution/batch",
    )
    assert call.headers == {"Authorization": "Bearer mateo-key"}
    assert json.loads(call.content() or b"") == {"journey_id": JOURNEY, "items": [row.item for row in rows]}
    assert call.rows == rows


def test_a_mateo_item_has_exactly_the_seeds_keys_and_contact_fields() -> None:
    seed = seed_json(MATEO_SEED, "--data '")
    seed_item = seed["items"][0]
    contact = person(
        4,
        email="ada@example.com",
        phone="+46701234567",
        external_id="K-1",
        first_name="Ada",
        last_name="Lovelace",
        city="London",
        zipcode="N1",
        extra={"loyalty_tier": "gold"},
    )
    (row,) = stage(Destination.MATEO, [contact])

    assert set(row.item) == set(seed_item)
    assert set(row.item["contact"]) <= set(seed_item["contact"])
    assert row.item["contact"] == {
        "email": "ada@example.com",
        "sms": "+46701234567",
        "external_id": "K-1",
        "city": "London",
        "zipcode": "N1",
        "full_name": "Ada Lovelace",
    }
    assert row.item["context"] == {"loyalty_tier": "gold", "first_name": "Ada", "last_name": "Lovelace"}


def test_a_mateo_deduplication_id_is_stable_per_job_and_row() -> None:
    mateo = provider_for(Destination.MATEO)
    ada = person(4, email="ada@example.com")
    first = mateo.to_item(ada, JOB, {})["deduplication_id"]

    assert uuid.UUID(first)
    assert mateo.to_item(person(4, email="ada@example.com"), JOB, {})["deduplication_id"] == first
    assert mateo.to_item(person(5, email="ada@example.com"), JOB, {})["deduplication_id"] != first
    assert mateo.to_item(ada, "j-another-job", {})["deduplication_id"] != first
    assert first == row_uuid(JOB, 4)


@given(
    job=st.text(min_size=1, max_size=20),
    rows=st.lists(st.integers(min_value=0, max_value=2**48 - 1), min_size=2, max_size=5, unique=True),
    purpose=st.sampled_from(["row", "message"]),
)
def test_row_uuids_are_rfc_uuids_that_tell_rows_jobs_and_purposes_apart(
    job: str, rows: list[int], purpose: str
) -> None:
    ids = [row_uuid(job, row, purpose) for row in rows]

    for row, text in zip(rows, ids, strict=True):
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # canonical: lower case, 8-4-4-4-12
        assert (parsed.version, parsed.variant) == (8, uuid.RFC_4122)
        assert parsed.int & (2**48 - 1) == row  # the row can be read back from the id
    assert len(set(ids)) == len(ids)
    other = "message" if purpose == "row" else "row"
    assert {row_uuid(job, row, other) for row in rows}.isdisjoint(ids)
    assert {row_uuid(job + "x", row, purpose) for row in rows}.isdisjoint(ids)
    assert [row_uuid(job, row, purpose) for row in rows] == ids


def test_a_row_uuid_is_fixed_by_job_purpose_and_row() -> None:
    # the prefix is SHA-1 of the namespace, the job and the purpose: an id pinned here changes only when
    # the rule does, and a test run after such a change says so
    assert row_uuid("j-0123456789abcdef", 42) == "163ee086-ffa7-84c6-823c-00000000002a"


@pytest.mark.parametrize("row", [-1, 2**48])
def test_a_row_without_a_row_uuid_is_refused(row: int) -> None:
    with pytest.raises(ValueError, match="has no row uuid"):
        row_uuid("j-1", row)


@pytest.mark.parametrize(
    ("names", "full_name"),
    [({"first_name": "Ada", "last_name": "Lovelace"}, "Ada Lovelace"), ({"last_name": "Lovelace"}, "Lovelace"),
     ({"first_name": "Ada"}, "Ada"), ({}, None)],
)  # fmt: skip
def test_a_mateo_full_name_is_made_of_the_name_parts_there_are(
    names: dict[str, str], full_name: str | None
) -> None:
    contact = Contact(1, "ada@example.com", {"email": "ada@example.com", **names}, {})
    assert provider_for(Destination.MATEO).to_item(contact, JOB, {})["contact"].get("full_name") == full_name


def test_mateos_seed_answer_means_every_row_was_sent() -> None:
    call = typical_call(Destination.MATEO)
    outcome = provider_for(Destination.MATEO).outcome(call, answer(200, seed_json(MATEO_SEED, "}\n'\n")))

    assert outcome.verdict is Verdict.DONE
    assert [(r.row, r.state) for r in outcome.rows] == [(1, RowState.SENT), (2, RowState.SENT)]
    assert "queued_count=123" in outcome.rows[0].answer


def test_a_mateo_batch_it_does_not_confirm_fails_its_rows() -> None:
    call = typical_call(Destination.MATEO)
    outcome = provider_for(Destination.MATEO).outcome(
        call, answer(200, {"success": False, "queued_count": 0})
    )

    assert outcome.verdict is Verdict.FAILED
    assert {r.state for r in outcome.rows} == {RowState.FAILED}


# --- Mateo send_message (seed 004) --------------------------------------------------------------------


def test_mateo_message_makes_one_send_message_call_per_row() -> None:
    contacts = [person(1, email="ada@example.com", text="Hi"), person(2, phone="+46701234567", text="Hi")]
    rows = stage(Destination.MATEO_MESSAGE, contacts)
    found = calls(Destination.MATEO_MESSAGE, rows)

    assert [c.url for c in found] == ["https://integration.getmateo.com/api/v1/send_message"] * 2
    assert [c.rows for c in found] == [[rows[0]], [rows[1]]]
    assert all(c.headers == {"Authorization": "Bearer mateo-key"} for c in found)
    assert [c.json_body for c in found] == [{"from": CHANNEL, **row.item} for row in rows]


def test_a_message_has_only_seed_fields_a_stable_id_and_the_recipients_handle() -> None:
    seed_fields = set(seed_json(MESSAGE_SEED, "--data '"))
    options = {"subject": "March news", "template-id": JOURNEY}
    contact = person(
        3,
        email="ada@example.com",
        first_name="Ada",
        last_name="Lovelace",
        text="Hello Ada",
        placeholder_values="Ada | 42",
    )
    (row,) = stage(Destination.MATEO_MESSAGE, [contact], options)
    (call,) = calls(Destination.MATEO_MESSAGE, [row], options)

    assert set(call.json_body) <= seed_fields
    assert call.json_body == {
        "from": CHANNEL,
        "id": row_uuid(JOB, 3, "message"),
        "to": [{"handle": "ada@example.com", "full_name": "Ada Lovelace"}],
        "subject": "March news",
        "template_id": JOURNEY,
        "text": "Hello Ada",
        "placeholder_values": ["Ada", "42"],
    }
    again = provider_for(Destination.MATEO_MESSAGE).to_item(contact, JOB, options)
    assert again["id"] == row.item["id"]


def test_a_postal_recipient_has_a_contact_id_and_no_handle() -> None:
    options = {"postal": "true", "template-id": JOURNEY}
    contact = person(1, contact_id="ct-42", email="ada@example.com", full_name="Ada Lovelace")
    (row,) = stage(Destination.MATEO_MESSAGE, [contact], options)

    assert row.item["to"] == [{"contact_id": "ct-42", "full_name": "Ada Lovelace"}]


def test_the_seeds_message_answer_means_the_row_was_sent() -> None:
    call = typical_call(Destination.MATEO_MESSAGE)
    seed_answer = seed_json(MESSAGE_SEED, "}'\n")
    outcome = provider_for(Destination.MATEO_MESSAGE).outcome(call, answer(200, seed_answer))

    assert outcome.verdict is Verdict.DONE
    assert [(r.row, r.state) for r in outcome.rows] == [(1, RowState.SENT)]
    assert seed_answer["message"]["status"] in outcome.rows[0].answer


def test_a_message_answered_409_is_uncertain_never_sent_again() -> None:
    # No document says a reused message id answers 409 (seed 004 documents no idempotency): the call may
    # have sent the message, so its row is uncertain, and Mateo messages are not resent on our own.
    call = typical_call(Destination.MATEO_MESSAGE)
    provider = provider_for(Destination.MATEO_MESSAGE)
    outcome = provider.outcome(call, answer(409, {"message": "conflict"}))

    assert (outcome.verdict, outcome.rows) == (Verdict.UNCERTAIN, [])
    assert provider.dedupes is False


def test_a_message_mateo_refuses_fails_that_row_only() -> None:
    call = typical_call(Destination.MATEO_MESSAGE)
    body = {"code": "PGRST", "message": "placeholder_values does not match the template", "status": 400}
    outcome = provider_for(Destination.MATEO_MESSAGE).outcome(call, answer(400, body))

    assert outcome.verdict is Verdict.FAILED
    assert [(r.row, r.state) for r in outcome.rows] == [(1, RowState.FAILED)]
    assert "placeholder_values does not match the template" in outcome.rows[0].answer


# --- Symplify (seed 001) ------------------------------------------------------------------------------


def test_symplify_starts_the_batch_with_entity_id_and_download_url_and_its_token_header() -> None:
    rows = stage(Destination.SYMPLIFY, [person(1, id="0", email="bruce@example.com")])
    (call,) = calls(Destination.SYMPLIFY, rows)

    assert (call.method, call.url) == (
        "POST",
        "https://eu-proxy-1.symplifymail.com/rest/4711/batchtrigger/v2",
    )
    assert call.headers == {"X-Carma-Authentication-Token": "carma-token"}
    assert call.json_body == {"entityId": 1001, "downloadUrl": DOWNLOAD_URL}


def test_symplifys_token_header_can_be_renamed_in_the_secret() -> None:
    secret = SECRETS[Destination.SYMPLIFY].model_copy(update={"auth_header": "X-Symplify-Token"})
    provider = provider_for(Destination.SYMPLIFY)
    envelope = {"downloadUrl": DOWNLOAD_URL}
    (call,) = provider.calls("1001", envelope, [], secret, "c")

    assert call.headers == {"X-Symplify-Token": "carma-token"}


def test_a_symplify_row_is_one_id_and_properties_object_like_the_seeds_rows() -> None:
    seed_rows = [
        json.loads(line) for line in seed_text(SYMPLIFY_SEED).splitlines() if line.startswith('{"id"')
    ]
    contacts = [
        person(1, id="0", email="bruce@example.com", first_name="Bruce", extra={"attributeName": "yes"}),
        person(2, id="1", email="aretha@example.com", first_name="Aretha", extra={"attributeName": "yes"}),
    ]
    rows = stage(Destination.SYMPLIFY, contacts)

    assert len(seed_rows) == 3
    for row, seed_row in zip(rows, seed_rows, strict=False):
        assert set(row.item) == set(seed_row) == {"id", "properties"}
        assert set(row.item["properties"]) == set(seed_row["properties"])
        assert row.item["id"] == seed_row["id"]
        line = json.dumps(row.item, ensure_ascii=False)
        assert "\n" not in line and line.startswith("{")


def test_a_symplify_row_falls_back_to_external_id_then_email_as_its_id() -> None:
    rows = stage(Destination.SYMPLIFY, [person(1, external_id="K-1"), person(2, email="ada@example.com")])
    assert [row.item["id"] for row in rows] == ["K-1", "ada@example.com"]
    assert rows[1].item["properties"] == {"emailAddress": "ada@example.com"}


def test_a_started_symplify_batch_is_followed_not_yet_sent() -> None:
    call = calls(Destination.SYMPLIFY, stage(Destination.SYMPLIFY, [person(1, id="0"), person(2, id="1")]))[0]
    outcome = provider_for(Destination.SYMPLIFY).outcome(
        call, answer(200, {"batchId": 987, "status": "STARTED"})
    )

    assert (outcome.verdict, outcome.batch_id, outcome.rows) == (Verdict.STARTED, "987", [])


@pytest.mark.parametrize("body", [None, {}, {"status": "STARTED"}], ids=["empty", "{}", "no-id"])
def test_a_symplify_trigger_accepted_without_a_batch_id_sends_every_row(body: Any) -> None:
    # The seed shows no answer body for the downloadUrl variant ("Symplify will immediately download the
    # file and start the batch"): nothing to follow, the rows are sent, and nothing invites a resend.
    call = calls(Destination.SYMPLIFY, stage(Destination.SYMPLIFY, [person(1, id="0"), person(2, id="1")]))[0]
    outcome = provider_for(Destination.SYMPLIFY).outcome(call, answer(200, body))

    assert outcome.verdict is Verdict.DONE
    assert [(r.row, r.state) for r in outcome.rows] == [(1, RowState.SENT), (2, RowState.SENT)]
    assert outcome.batch_id is None


def symplify_status(status: int, body: Any = None) -> Outcome:
    provider = provider_for(Destination.SYMPLIFY)
    call = provider.status_call("1001", "b-42", SECRETS[Destination.SYMPLIFY])
    return provider.outcome(call, answer(status, body))


def test_symplify_batch_status_is_a_get_at_the_documented_path() -> None:
    provider = provider_for(Destination.SYMPLIFY)
    call = provider.status_call("1001", "b/42", SECRETS[Destination.SYMPLIFY])

    assert (call.method, call.url, call.json_body, call.rows) == (
        "GET",
        "https://eu-proxy-1.symplifymail.com/rest/4711/batches/b%2F42",
        None,
        [],
    )
    assert call.headers == {"X-Carma-Authentication-Token": "carma-token"}
    assert call.status_of == "b/42"


def test_symplify_batch_status_finished_error_or_still_running() -> None:
    finished = symplify_status(200, {"batchId": "b-42", "status": "FINISHED", "rows": 2})
    assert (finished.verdict, finished.detail) == (Verdict.DONE, "in Symplify batch b-42")
    error = symplify_status(200, {"batchId": "b-42", "status": "ERROR", "rows": 2})
    assert (error.verdict, error.detail) == (Verdict.FAILED, "Symplify batch b-42 ended in ERROR")
    reason = symplify_status(200, {"status": "ERROR", "message": "Journey is paused"})
    assert reason.detail == "Symplify batch b-42 ended in ERROR: Journey is paused"
    for running in ({"status": "STARTED"}, {"status": "RUNNING"}, {}, {"status": None}):
        assert symplify_status(200, running).verdict is Verdict.STARTED


def test_symplify_batch_status_errors_are_polled_again_or_uncertain_never_failed() -> None:
    for transient in (429, 500, 502, 503, 504):
        assert symplify_status(transient, {"error": "busy"}).verdict is Verdict.RETRY
    assert symplify_status(200, "<html>proxy</html>").verdict is Verdict.RETRY
    for refused in (401, 403, 404, 413):
        outcome = symplify_status(refused, {"error": "Batch not found"})
        assert outcome.verdict is Verdict.UNCERTAIN
        assert outcome.detail.startswith("could not read the status of symplify batch b-42: HTTP")
        assert outcome.rows == []


# --- Workshop (seed 002) ------------------------------------------------------------------------------


def test_workshop_enrolls_contact_emails_exactly_as_the_seed_example() -> None:
    seed = seed_json(WORKSHOP_SEED, "Enroll individual contacts:")
    contacts = [person(n, email=e) for n, e in enumerate(seed["contact_email_addresses"], 1)]
    (call,) = calls(Destination.WORKSHOP, stage(Destination.WORKSHOP, contacts))

    assert (call.method, call.url) == (
        "POST",
        "https://app.useworkshop.com/api/v1/journeys/jrn_welcome/enroll",
    )
    assert call.headers == {"Authorization": "Bearer ws-key"}
    assert call.json_body == seed


def test_workshop_enrolls_lists_in_their_own_lane_exactly_as_the_seed_example() -> None:
    seed = seed_json(WORKSHOP_SEED, "Enroll all members of lists:")
    contacts = [person(n, list_email=e) for n, e in enumerate(seed["list_email_addresses"], 1)]
    workshop = provider_for(Destination.WORKSHOP)
    (call,) = calls(Destination.WORKSHOP, stage(Destination.WORKSHOP, contacts), lane="l")

    assert {workshop.lane(c) for c in contacts} == {"l"}
    assert call.json_body == seed


def test_workshops_optional_version_header_comes_from_the_secret() -> None:
    secret = SECRETS[Destination.WORKSHOP].model_copy(update={"workshop_version": "2025-01-01"})
    (call,) = provider_for(Destination.WORKSHOP).calls("jrn", {}, [], secret, "c")
    assert call.headers["Workshop-Version"] == "2025-01-01"


def test_workshops_seed_answer_gives_every_email_its_own_outcome() -> None:
    emails = [
        "user1@example.com",
        "unknown@example.com",
        "already.in@example.com",
        "user2@example.com",
        "just.finished@example.com",
    ]
    rows = stage(Destination.WORKSHOP, [person(n, email=e) for n, e in enumerate(emails, 1)])
    (call,) = calls(Destination.WORKSHOP, rows)
    seed_answer = seed_json(WORKSHOP_SEED, "Success response (200)")
    outcome = provider_for(Destination.WORKSHOP).outcome(call, answer(200, seed_answer))

    assert outcome.verdict is Verdict.DONE
    assert [(r.row, r.identity, r.state) for r in outcome.rows] == [
        (1, "user1@example.com", RowState.SENT),
        (2, "unknown@example.com", RowState.FAILED),
        (3, "already.in@example.com", RowState.SENT),
        (4, "user2@example.com", RowState.SENT),
        (5, "just.finished@example.com", RowState.FAILED),
    ]
    answers = [r.answer for r in outcome.rows]
    assert answers[0] == answers[3] == "enrolled"
    assert answers[1].startswith("not_found")
    assert "already enrolled" in answers[2]
    assert answers[4].startswith("recently_completed")


def test_workshop_reasons_match_emails_whatever_their_case() -> None:
    rows = stage(Destination.WORKSHOP, [person(1, email="ada@example.com")])
    (call,) = calls(Destination.WORKSHOP, rows)
    body = {"enrolled_count": 0, "not_enrolled": {"not_found": [" Ada@Example.COM "]}}
    outcome = provider_for(Destination.WORKSHOP).outcome(call, answer(200, body))

    assert [r.state for r in outcome.rows] == [RowState.FAILED]


@pytest.mark.parametrize(
    ("status", "marker"),
    [
        (404, "Journey not found (404)"),
        (422, "Journey not active (422)"),
        (422, "No emails provided (422)"),
        (422, "List not found (422)"),
        (422, "Multiple lists with same email (422)"),
    ],
)
def test_workshops_seed_errors_fail_every_row_with_the_providers_words(status: int, marker: str) -> None:
    call = typical_call(Destination.WORKSHOP)
    body = seed_json(WORKSHOP_SEED, marker)
    outcome = provider_for(Destination.WORKSHOP).outcome(call, answer(status, body))
    words = body["error"] if isinstance(body["error"], str) else body["error"]["base"][0]

    assert outcome.verdict is Verdict.FAILED
    assert {r.state for r in outcome.rows} == {RowState.FAILED}
    assert all(words[:60] in r.answer for r in outcome.rows)


# --- Altcraft (seed 003) ------------------------------------------------------------------------------


def list_call(*lists: str) -> ProviderCall:
    rows = stage(Destination.WORKSHOP, [person(n, list_email=e) for n, e in enumerate(lists, start=1)])
    return calls(Destination.WORKSHOP, rows, lane="l")[0]


@pytest.mark.parametrize(
    "message",
    [
        "No list found with email address: Nonexistent@Company.com",
        "Multiple lists (2) found with email address: nonexistent@company.com. Please ensure each list has a"
        " unique email address.",
    ],
)
def test_a_list_workshop_refuses_is_isolated_from_the_other_lists_of_its_call(message: str) -> None:
    call = list_call("team@company.com", "nonexistent@company.com", "engineering@company.com")
    outcome = provider_for(Destination.WORKSHOP).outcome(call, answer(422, {"error": message}))

    assert (outcome.verdict, outcome.isolate_row, outcome.rows) == (Verdict.TOO_LARGE, 2, [])
    assert message in outcome.detail


def test_a_single_list_workshop_refuses_fails_with_workshops_words() -> None:
    call = list_call("nonexistent@company.com")
    message = "No list found with email address: nonexistent@company.com"
    outcome = provider_for(Destination.WORKSHOP).outcome(call, answer(422, {"error": message}))

    assert outcome.verdict is Verdict.FAILED
    assert [(r.row, r.state) for r in outcome.rows] == [(1, RowState.FAILED)]
    assert message in outcome.rows[0].answer


def test_a_422_for_the_whole_journey_still_fails_every_list() -> None:
    call = list_call("team@company.com", "engineering@company.com")
    message = "Journey must be in 'on' state to enroll people. Current state: draft"
    outcome = provider_for(Destination.WORKSHOP).outcome(call, answer(422, {"error": message}))

    assert outcome.verdict is Verdict.FAILED and len(outcome.rows) == 2


def altcraft_seed_contacts(request: Mapping[str, Any], custom: str | None = None) -> list[Contact]:
    contacts = []
    for number, entry in enumerate(request["data"], 1):
        data = entry["data"]
        fields = {"first_name": data["_fname"], "last_name": data["_lname"], "email": data["email"]}
        fields["phone"] = data["phones"]
        extra = {custom: data[custom]} if custom else {}
        contacts.append(Contact(number, "", fields, extra))
    return contacts


def test_altcraft_builds_the_seeds_email_matching_request() -> None:
    seed = seed_json(ALTCRAFT_SEED, f'Request example {EN_DASH} "matching":"email"')
    rows = stage(Destination.ALTCRAFT, altcraft_seed_contacts(seed))
    (call,) = calls(Destination.ALTCRAFT, rows)

    assert (call.method, call.url) == (
        "POST",
        "https://ru.altkraft.com/api/v1.1/workflows/import_and_start_batch",
    )
    assert call.headers == {}
    assert call.json_body.pop("format") == "json"  # documented, optional, "json" by default
    assert call.json_body == seed


def test_altcraft_builds_the_seeds_custom_matching_request_with_field_name() -> None:
    seed = seed_json(ALTCRAFT_SEED, f'Request example {EN_DASH} "matching":"custom"')
    options = {"matching": "custom", "field-name": "CRM_ID"}
    rows = stage(Destination.ALTCRAFT, altcraft_seed_contacts(seed, custom="CRM_ID"), options)
    (call,) = calls(Destination.ALTCRAFT, rows, options)

    call.json_body.pop("format")
    assert call.json_body == seed
    assert [row.identity for row in rows] == ["00066", "00076"]


def test_altcrafts_envelope_has_an_integer_workflow_id_and_the_matching_mode() -> None:
    altcraft = provider_for(Destination.ALTCRAFT)

    assert altcraft.envelope("12", {}) == {"workflow_id": 12, "matching": "email", "format": "json"}
    assert altcraft.envelope("7", {"matching": "phone", "skip-triggers": "yes"}) == {
        "workflow_id": 7,
        "matching": "phone",
        "format": "json",
        "skip_triggers": True,
    }


def test_altcraft_matching_on_profile_id_puts_it_beside_the_data() -> None:
    options = {"matching": "profile_id"}
    (row,) = stage(
        Destination.ALTCRAFT,
        [person(1, profile_id="5f19953a03e4227216278ba4", email="a@example.com")],
        options,
    )
    assert row.item == {"profile_id": "5f19953a03e4227216278ba4", "data": {"email": "a@example.com"}}


def test_altcraft_matching_on_phone_sends_seed_003s_phone_parameter_beside_the_data() -> None:
    options = {"matching": "phone"}
    (row,) = stage(Destination.ALTCRAFT, [person(1, phone="+79001234567", first_name="Alisa")], options)
    assert row.item == {"phone": "+79001234567", "data": {"phones": "+79001234567", "_fname": "Alisa"}}


def test_the_altcraft_token_travels_in_the_body_never_in_the_url_or_headers() -> None:
    call = typical_call(Destination.ALTCRAFT)
    assert call.json_body["token"] == "abcdefghijklmnqrstuvwxyz"
    assert "abcdefghijklmnqrstuvwxyz" not in call.url
    assert "abcdefghijklmnqrstuvwxyz" not in json.dumps(call.headers)


def test_altcrafts_seed_answer_gives_each_row_its_profile_id() -> None:
    call = typical_call(Destination.ALTCRAFT)
    seed_answer = seed_json(ALTCRAFT_SEED, "Response example\n")
    outcome = provider_for(Destination.ALTCRAFT).outcome(call, answer(200, seed_answer))

    assert outcome.verdict is Verdict.DONE
    assert [(r.row, r.state, r.answer) for r in outcome.rows] == [
        (1, RowState.SENT, f"profile_id {seed_answer['result'][0]['profile_id']}"),
        (2, RowState.SENT, f"profile_id {seed_answer['result'][1]['profile_id']}"),
    ]


@pytest.mark.parametrize("status", [200, 400])
def test_altcrafts_seed_body_too_large_answer_splits_the_chunk(status: int) -> None:
    call = typical_call(Destination.ALTCRAFT)
    body = seed_json(ALTCRAFT_SEED, "Response example when a request limitation")
    outcome = provider_for(Destination.ALTCRAFT).outcome(call, answer(status, body))

    assert outcome.verdict is Verdict.TOO_LARGE
    assert outcome.rows == []


@pytest.mark.parametrize(
    "body",
    [
        {"error": 401, "error_text": "Token required"},
        {"error": 402, "error_text": "Tariff limit"},
        {"error": 400, "error_text": "Invalid request", "error_debug": "workflow not found"},
    ],
)
def test_an_altcraft_error_code_in_a_2xx_body_fails_every_row(body: dict[str, Any]) -> None:
    call = typical_call(Destination.ALTCRAFT)
    outcome = provider_for(Destination.ALTCRAFT).outcome(call, answer(200, body))

    assert outcome.verdict is Verdict.FAILED
    assert [(r.row, r.state) for r in outcome.rows] == [(1, RowState.FAILED), (2, RowState.FAILED)]
    assert all(f"Altcraft error {body['error']}: {body['error_text']}" in r.answer for r in outcome.rows)


def test_an_altcraft_answer_without_an_error_code_cannot_be_read_so_is_uncertain() -> None:
    outcome = provider_for(Destination.ALTCRAFT).outcome(typical_call(Destination.ALTCRAFT), answer(200, {}))
    assert (outcome.verdict, outcome.rows) == (Verdict.UNCERTAIN, [])


# --- the shared status policy, for every provider -----------------------------------------------------

ALL = list(Destination)


def body_kinds(destination: Destination, status: int) -> list[Any]:
    """A plain-text body, an empty one, and the provider's own JSON error body."""
    return ["Service says no", None, ERROR_BODIES[destination](status, "Service says no")]


@pytest.mark.parametrize("destination", ALL)
@pytest.mark.parametrize("kind", [0, 1, 2], ids=["text", "empty", "json"])
def test_429_with_retry_after_is_retried_later_honouring_it(destination: Destination, kind: int) -> None:
    body = body_kinds(destination, 429)[kind]
    response = answer(429, body, {"Retry-After": "7"})
    outcome = provider_for(destination).outcome(typical_call(destination), response)

    assert (outcome.verdict, outcome.retry_after, outcome.rows) == (Verdict.RETRY, 7.0, [])


@pytest.mark.parametrize("destination", ALL)
def test_a_retry_after_date_still_defers_the_chunk(destination: Destination) -> None:
    response = answer(429, None, {"Retry-After": "Wed, 21 Oct 2025 07:28:00 GMT"})
    outcome = provider_for(destination).outcome(typical_call(destination), response)

    assert outcome.verdict is Verdict.RETRY
    assert outcome.retry_after is not None and outcome.retry_after > 0


# The "proves nothing happened" table (fanout.providers.outcomes), written out again from the documents:
# per provider, each HTTP status and what it proves. RETRY and FAILED and TOO_LARGE prove that nothing
# happened; UNCERTAIN means the provider may have acted (resent only where it de-duplicates).
R, F, U, L = Verdict.RETRY, Verdict.FAILED, Verdict.UNCERTAIN, Verdict.TOO_LARGE
TABLE_ROWS: dict[Destination, dict[int, Verdict]] = {
    # PROVIDERS.md: 400, 401, 403, 404, 429, 5xx; de-duplicates (an undocumented 4xx fails: resend safe)
    Destination.MATEO: {
        400: F,
        401: F,
        403: F,
        404: F,
        409: F,
        422: F,
        429: R,
        500: U,
        502: U,
        503: U,
        504: U,
    },
    # the same documented errors, but send_message does not de-duplicate: an undocumented 4xx is uncertain
    Destination.MATEO_MESSAGE: {
        **{400: F, 401: F, 403: F, 404: F, 429: R},
        **{409: U, 422: U, 500: U, 502: U, 503: U, 504: U},
    },
    # PROVIDERS.md: only 429 is documented for Symplify; it does not de-duplicate
    Destination.SYMPLIFY: {429: R, **{s: U for s in (400, 401, 403, 404, 409, 422, 500, 502, 503, 504)}},
    # seed 002: 401, 404, 422; de-duplicates
    Destination.WORKSHOP: {401: F, 404: F, 422: F, 400: F, 403: F, 429: R, 500: U, 502: U, 503: U, 504: U},
    # Altcraft answers in its body's error code; HTTP 429 and 413 (the server in front), 5xx uncertain
    Destination.ALTCRAFT: {413: L, 429: R, 500: U, 502: U, 503: U, 504: U},
}


@pytest.mark.parametrize(
    ("destination", "status"), [(d, s) for d, rows in TABLE_ROWS.items() for s in rows], ids=str
)
@pytest.mark.parametrize("kind", [0, 1, 2], ids=["text", "empty", "json"])
def test_each_status_proves_nothing_happened_only_where_the_document_says_so(
    destination: Destination, status: int, kind: int
) -> None:
    call = typical_call(destination)
    response = answer(status, body_kinds(destination, status)[kind], {"Retry-After": "7"})
    outcome = provider_for(destination).outcome(call, response)
    expected = TABLE_ROWS[destination][status]

    assert (outcome.verdict, outcome.status_code) == (expected, status)
    if expected is Verdict.FAILED:  # a refusal: every row of the call failed, nothing sent
        assert [(r.row, r.state) for r in outcome.rows] == [(r.row, RowState.FAILED) for r in call.rows]
    else:  # the sender decides: retry, split, or (uncertain) resend only where the provider de-duplicates
        assert outcome.rows == []
    if expected is Verdict.RETRY:
        assert outcome.retry_after == 7.0


# Altcraft's body error codes (seed 003, PROVIDERS.md: 0 OK, 400, 401, 402, 403).
ALTCRAFT_CODES: list[tuple[Any, Verdict]] = [
    (400, F),
    (401, F),
    (402, F),
    (403, F),
    ("403", F),
    (429, R),
    (500, U),
    (1, U),
]


@pytest.mark.parametrize("http_status", [200, 400])
@pytest.mark.parametrize(("code", "expected"), ALTCRAFT_CODES, ids=str)
def test_altcrafts_body_error_codes_prove_nothing_happened_only_where_documented(
    http_status: int, code: Any, expected: Verdict
) -> None:
    call = typical_call(Destination.ALTCRAFT)
    body = {"error": code, "error_text": "Service says no"}
    outcome = provider_for(Destination.ALTCRAFT).outcome(call, answer(http_status, body))

    assert outcome.verdict is expected
    assert "Service says no" in outcome.detail
    assert len(outcome.rows) == (len(call.rows) if expected is Verdict.FAILED else 0)


def test_the_providers_that_deduplicate_are_exactly_those_whose_documents_say_so() -> None:
    # Mateo batches (deduplication_id, seed 000) and Workshop (already_enrolled, seed 002) only.
    assert {d for d in ALL if provider_for(d).dedupes} == {Destination.MATEO, Destination.WORKSHOP}


@pytest.mark.parametrize("destination", ALL)
def test_a_2xx_answer_that_is_not_json_is_uncertain_not_a_crash(destination: Destination) -> None:
    response = answer(200, "<html><body>Service maintenance</body></html>")
    outcome = provider_for(destination).outcome(typical_call(destination), response)

    assert outcome.verdict is Verdict.UNCERTAIN


def test_no_provider_puts_its_secret_in_the_url() -> None:
    for destination in ALL:
        call = typical_call(destination)
        assert SECRETS[destination].token not in call.url


# --- transport errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (httpx.ConnectError("connection refused"), Verdict.RETRY),
        (httpx.ConnectTimeout("connect timed out"), Verdict.RETRY),
        (httpx.PoolTimeout("no connection free"), Verdict.RETRY),
        (httpx.ReadTimeout("read timed out"), Verdict.UNCERTAIN),
        (httpx.WriteTimeout("write timed out"), Verdict.UNCERTAIN),
        (httpx.RemoteProtocolError("server disconnected without sending a response"), Verdict.UNCERTAIN),
        (httpx.ReadError("connection reset by peer"), Verdict.UNCERTAIN),
    ],
)
def test_a_request_that_never_connected_is_retried_and_one_that_was_sent_is_uncertain(
    error: httpx.HTTPError, verdict: Verdict
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    provider: Provider = provider_for(Destination.ALTCRAFT)
    with httpx.Client(transport=httpx.MockTransport(fail)) as http:
        outcome = send_once(provider, typical_call(Destination.ALTCRAFT), http=http)

    assert classify_transport_error(error) is verdict
    assert outcome.verdict is verdict
    assert outcome.detail == f"{type(error).__name__} calling altcraft"


def test_the_request_goes_out_as_the_calls_json_with_its_headers() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"success": True, "queued_count": 2})

    call = typical_call(Destination.MATEO)
    with httpx.Client(transport=httpx.MockTransport(record)) as http:
        outcome = send_once(provider_for(Destination.MATEO), call, http=http)

    (request,) = seen
    assert outcome.verdict is Verdict.DONE
    assert (request.method, str(request.url)) == ("POST", call.url)
    assert request.headers["Authorization"] == "Bearer mateo-key"
    assert request.headers["Content-Type"] == "application/json"
    old = {"journey_id": JOURNEY, "items": [r.item for r in call.rows]}
    assert request.content == call.content() == encode_body(old)


# --- answers of the wrong shape: one rule (item 5 of issue 13) ---------------------------------------

WRONG_SHAPES: list[tuple[Destination, Any]] = [
    (Destination.MATEO, []),
    (Destination.MATEO, {"queued_count": 2}),
    (Destination.MATEO_MESSAGE, []),
    (Destination.MATEO_MESSAGE, {"message": "sent"}),
    (Destination.SYMPLIFY, []),
    (Destination.SYMPLIFY, "<html><body>Welcome</body></html>"),
    (Destination.SYMPLIFY, {"batchId": ["b-1"]}),
    (Destination.WORKSHOP, []),
    (Destination.WORKSHOP, {"enrolled_count": 1, "not_enrolled": ["ada@example.com"]}),
    (Destination.WORKSHOP, {"enrolled_count": "1", "not_enrolled": {}}),
    (Destination.WORKSHOP, {"enrolled_count": 1, "not_enrolled": {"not_found": "ada@example.com"}}),
    (Destination.ALTCRAFT, []),
    (Destination.ALTCRAFT, {"error": None, "error_text": "ok"}),
]


@pytest.mark.parametrize(("destination", "body"), WRONG_SHAPES, ids=str)
def test_an_answer_that_cannot_be_read_is_uncertain_never_sent(destination: Destination, body: Any) -> None:
    # Uncertain: resent where the provider de-duplicates (Mateo batches, Workshop), never elsewhere.
    outcome = provider_for(destination).outcome(typical_call(destination), answer(200, body))

    assert (outcome.verdict, outcome.rows) == (Verdict.UNCERTAIN, [])
    assert "cannot be read" in outcome.detail


def test_an_unreadable_answer_is_logged_with_its_status_and_shape_never_its_contents(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = {"enrolled_count": 1, "not_enrolled": ["ada@example.com"], "bob@example.com": 1}
    outcome = provider_for(Destination.WORKSHOP).outcome(
        typical_call(Destination.WORKSHOP), answer(200, body)
    )

    (record,) = [r for r in caplog.records if r.getMessage() == "provider answer cannot be read"]
    line = {key: getattr(record, key) for key in ("destination", "status", "shape")}
    assert line == {
        "destination": "workshop",
        "status": 200,
        "shape": "a JSON object {enrolled_count: number, not_enrolled: array} and 1 other keys",
    }
    assert "example.com" not in json.dumps(line) and "example.com" not in outcome.detail


@pytest.mark.parametrize("code", ["0", " 0", 0])
def test_altcrafts_success_code_is_read_as_a_string_too(code: Any) -> None:
    call = typical_call(Destination.ALTCRAFT)
    body = {"error": code, "error_text": "Successful", "result": [{"profile_id": "a" * 24}, {}]}
    outcome = provider_for(Destination.ALTCRAFT).outcome(call, answer(200, body))

    assert outcome.verdict is Verdict.DONE
    assert [r.state for r in outcome.rows] == [RowState.SENT, RowState.SENT]
    assert outcome.rows[0].answer == f"profile_id {'a' * 24}"
