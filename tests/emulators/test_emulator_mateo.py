"""Mateo emulator: auth, validation, 404, de-duplication, postal rule, 409 for a running execution."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from emulators.base import is_uuid
from emulators.testing import AdminClient

pytestmark = pytest.mark.integration

JOURNEY = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
OTHER_JOURNEY = "6f1a7c2e-5b8d-4c3e-9a1f-2b7d8e9f0a1b"
UNPUBLISHED_JOURNEY = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
EMAIL_CHANNEL = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
POSTAL_CHANNEL = "7b3e9f5c-2d4a-4b6e-8f1c-3a5b7d9e1f2a"
ERROR_KEYS = {"code", "message", "hint", "status"}


@pytest.fixture
def mateo(urls: dict[str, str], http: httpx.Client, tokens: dict[str, str]) -> Any:
    """POST helper: mateo("journey_execution/batch", body, token=...)."""

    def post(path: str, body: Any, token: str | None = tokens["mateo"]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return http.post(f"{urls['mateo']}/{path}", json=body, headers=headers)

    return post


def batch(*emails: str, journey: str = JOURNEY, dedup: bool = True) -> dict[str, Any]:
    items: list[dict[str, Any]] = [{"contact": {"email": e}, "context": {}} for e in emails]
    if dedup:
        for item, email in zip(items, emails, strict=True):
            item["deduplication_id"] = f"{journey}:{email.lower()}"
    return {"journey_id": journey, "items": items}


def assert_error(response: httpx.Response, status: int, *needles: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["status"] == status
    for needle in needles:
        assert needle in body["message"], body
    return body


def test_auth_missing_is_401_wrong_is_403(mateo: Any) -> None:
    assert_error(mateo("journey_execution/batch", batch("a@x.io"), token=None), 401)
    assert_error(mateo("journey_execution/batch", batch("a@x.io"), token="nope"), 403)
    assert_error(mateo("send_message", {"from": EMAIL_CHANNEL}, token=None), 401)
    assert_error(mateo("send_message", {"from": EMAIL_CHANNEL}, token="nope"), 403)


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"journey_id": NaN, "items": []}', b'{"journey_id": "\\ud800", "items": []}', b"\xff\xfe"],
    ids=["cut-off", "NaN", "lone-surrogate", "not-utf8"],
)
def test_a_body_that_is_not_rfc_8259_json_is_400(
    urls: dict[str, str], http: httpx.Client, tokens: dict[str, str], raw: bytes
) -> None:
    response = http.post(
        f"{urls['mateo']}/journey_execution/batch",
        content=raw,
        headers={"Authorization": f"Bearer {tokens['mateo']}", "Content-Type": "application/json"},
    )
    assert_error(response, 400, "request body is not valid JSON")


def test_ratelimit_headers_on_every_response(mateo: Any) -> None:
    for response in (
        mateo("journey_execution/batch", batch("a@x.io")),
        mateo("send_message", {}, token=None),
    ):
        assert int(response.headers["ratelimit-limit"]) >= int(response.headers["ratelimit-remaining"]) >= 0


def test_batch_journey_not_found_or_unpublished_is_404(mateo: Any) -> None:
    for journey in ("00000000-0000-4000-8000-000000000000", UNPUBLISHED_JOURNEY):
        body = assert_error(mateo("journey_execution/batch", batch("a@x.io", journey=journey)), 404)
        assert body["message"] == "journey not found or not published"
        assert body["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"items": [{"contact": {}}]}, "journey_id is required"),
        ({"journey_id": "not-a-uuid", "items": [{"contact": {}}]}, "journey_id must be a uuid"),
        ({"journey_id": JOURNEY}, "items is required"),
        ({"journey_id": JOURNEY, "items": []}, "at least 1"),
        ({"journey_id": JOURNEY, "items": [{"contact": {"email": "a@x.io", "shoe_size": 42}}]}, "shoe_size"),
        ({"journey_id": JOURNEY, "items": [{"contact": {"email": 5}}]}, "email must be a string"),
        ({"journey_id": JOURNEY, "items": [{"contact": {"is_blocked": "no"}}]}, "must be a boolean"),
        ({"journey_id": JOURNEY, "items": [{"contact": {"influenced_revenue": "1"}}]}, "must be a number"),
        (
            {"journey_id": JOURNEY, "items": [{"contact": {"sms_health": "great"}}]},
            "sms_health must be one of",
        ),
        (
            {"journey_id": JOURNEY, "items": [{"contact": {"transactional_opt_in": "maybe"}}]},
            "must be one of",
        ),
        ({"journey_id": JOURNEY, "items": [{"contact": {"email": "a@x.io"}, "context": []}]}, "context"),
        ({"journey_id": JOURNEY, "items": [{"context": {}}]}, "contact is required"),
        ({"journey_id": JOURNEY, "items": [{"contact": {}, "deduplication_id": 7}]}, "deduplication_id"),
    ],
)
def test_batch_validation_errors_are_400(mateo: Any, body: dict[str, Any], needle: str) -> None:
    assert_error(mateo("journey_execution/batch", body), 400, needle)


def test_batch_enum_values_the_seed_shows_are_accepted_and_no_others(mateo: Any) -> None:
    # Seed 000 shows "healthy" and "legitimate_interest"; the emulator invents no other value.
    contact = {
        "email": "e@x.io",
        "email_health": "healthy",
        "whatsapp_transactional_opt_in": "legitimate_interest",
    }
    response = mateo("journey_execution/batch", {"journey_id": JOURNEY, "items": [{"contact": contact}]})
    assert response.json() == {"success": True, "queued_count": 1}
    for field, value in (("email_health", "unhealthy"), ("whatsapp_transactional_opt_in", "opt_out")):
        body = {"journey_id": JOURNEY, "items": [{"contact": {"email": "e@x.io", field: value}}]}
        assert_error(mateo("journey_execution/batch", body), 400, field)


def test_batch_over_500_items_is_400(mateo: Any, admin: AdminClient) -> None:
    body = batch(*(f"c{i}@x.io" for i in range(501)))
    assert_error(mateo("journey_execution/batch", body), 400, "at most 500")
    assert (
        mateo("journey_execution/batch", batch(*(f"c{i}@x.io" for i in range(500)))).json()["queued_count"]
        == 500
    )
    assert len(admin.targets("mateo")[JOURNEY]) == 500


def test_duplicate_deduplication_id_is_not_enrolled_again(mateo: Any, admin: AdminClient) -> None:
    first = mateo("journey_execution/batch", batch("A@x.io", "b@x.io"))
    assert first.json() == {"success": True, "queued_count": 2}
    again = mateo("journey_execution/batch", batch("a@x.io", "b@x.io", "c@x.io"))
    assert again.json() == {"success": True, "queued_count": 1}
    # same ids in another journey are independent; the same id twice in one batch counts once
    other = batch("a@x.io", journey=OTHER_JOURNEY)
    other["items"] *= 2
    assert mateo("journey_execution/batch", other).json()["queued_count"] == 1
    # items without a deduplication_id are always queued
    assert mateo("journey_execution/batch", batch("a@x.io", dedup=False)).json()["queued_count"] == 1
    assert admin.targets("mateo") == {
        JOURNEY: {"a@x.io": 2, "b@x.io": 1, "c@x.io": 1},
        OTHER_JOURNEY: {"a@x.io": 1},
    }


def test_identity_falls_back_to_phone_then_external_id(mateo: Any, admin: AdminClient) -> None:
    items = [{"contact": {"sms": "+49 151 2345 678"}}, {"contact": {"external_id": "crm-7"}}]
    assert mateo("journey_execution/batch", {"journey_id": JOURNEY, "items": items}).status_code == 200
    assert admin.targets("mateo") == {JOURNEY: {"+491512345678": 1, "crm-7": 1}}


def message(channel: str = EMAIL_CHANNEL, **fields: Any) -> dict[str, Any]:
    return {
        "from": channel,
        "to": [{"handle": "Ann@Example.com", "full_name": "Ann"}],
        "text": "Hi",
        **fields,
    }


def test_send_message_minimal_and_counts(mateo: Any, admin: AdminClient) -> None:
    response = mateo("send_message", message())
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"conversation", "message", "recipients", "actions"}
    assert body["message"]["status"] == "sent"
    assert body["message"]["blurb"] == "Hi"
    assert admin.targets("mateo") == {EMAIL_CHANNEL: {"ann@example.com": 1}}


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"from": None}, "from is required"),
        ({"from": "channel-1"}, "from must be a uuid"),
        ({"id": "m-1"}, "id must be a uuid"),
        ({"conversation_status": "pending"}, "conversation_status"),
        ({"send_after": "tomorrow"}, "send_after"),
        ({"to": [{"handle": "a@x.io", "email": "a@x.io"}]}, "unknown field 'email'"),
        ({"actions": [{"type": "swipe"}]}, "actions[0].type"),
        ({"actions": [{"type": "quick_reply", "subtype": "deeplink"}]}, "actions[0].subtype"),
        ({"actions": [{"type": "call"}]}, "actions[0].type"),
        ({"attachments": ["s3://bucket/key.pdf"]}, "attachments"),
        ({"placeholder_values": [1]}, "placeholder_values"),
        ({"priority": "high"}, "unknown field 'priority'"),
        ({"to": [{"full_name": "No handle"}]}, "handle or a contact_id"),
    ],
)
def test_send_message_validation_errors_are_400(mateo: Any, fields: dict[str, Any], needle: str) -> None:
    assert_error(mateo("send_message", message(**fields)), 400, needle)


def test_send_message_unknown_channel_is_404(mateo: Any) -> None:
    assert_error(mateo("send_message", message("00000000-0000-4000-8000-000000000000")), 404, "channel")


def test_postal_message_needs_contact_id_and_no_handle(mateo: Any, admin: AdminClient) -> None:
    with_handle = message(POSTAL_CHANNEL, to=[{"handle": "Main St 1", "contact_id": "c-1"}])
    body = assert_error(mateo("send_message", with_handle), 400, "must contain the contact_id and no handle")
    assert "postal" in body["message"]
    assert_error(mateo("send_message", message(POSTAL_CHANNEL, to=[{"full_name": "Ann"}])), 400, "contact_id")
    ok = mateo("send_message", message(POSTAL_CHANNEL, to=[{"contact_id": "c-1", "full_name": "Ann"}]))
    assert ok.status_code == 200, ok.text
    assert ok.json()["conversation"]["channel_type"] == "postal"
    assert admin.targets("mateo") == {POSTAL_CHANNEL: {"c-1": 1}}


def test_a_reused_message_id_is_sent_again_as_no_document_says_otherwise(
    mateo: Any, admin: AdminClient
) -> None:
    # Seed 004 documents no idempotency for send_message: the emulator does not invent a 409.
    body = message(id="11111111-2222-4333-8444-555555555555")
    assert mateo("send_message", body).status_code == 200
    assert mateo("send_message", body).status_code == 200
    assert admin.targets("mateo") == {EMAIL_CHANNEL: {"ann@example.com": 2}}


def test_rate_limit_two_per_second_gives_429_without_retry_after(mateo: Any, admin: AdminClient) -> None:
    admin.set_faults("mateo", "rate_limit=2")
    statuses = [mateo("journey_execution/batch", batch("a@x.io", dedup=False)) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[0].headers["ratelimit-limit"] == "2"
    assert statuses[0].headers["ratelimit-remaining"] == "1"
    assert statuses[1].headers["ratelimit-remaining"] == "0"
    limited = statuses[2]
    assert "retry-after" not in limited.headers  # PROVIDERS.md: no Retry-After is documented
    assert limited.headers["ratelimit-remaining"] == "0"
    assert_error(limited, 429)
    assert limited.json()["code"] == "rate_limited"
    assert admin.targets("mateo") == {JOURNEY: {"a@x.io": 2}}


# --- single contact: POST /journey_execution --------------------------------------------------------
ORDER_JOURNEY = "0f3a6c1e-2b4d-4e8f-9a1c-5d7e9f1a3b5c"
NO_TRIGGER_JOURNEY = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
NO_SCHEMA_JOURNEY = "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e"


@pytest.fixture
def execution_journeys(admin: AdminClient) -> None:
    """Journeys with an HTTP trigger context schema, without a trigger, and without a schema."""
    admin.seed(
        "mateo",
        {
            "journeys": {
                ORDER_JOURNEY: {"published": True, "context_schema": {"order_id": {"type": "string"}}},
                NO_TRIGGER_JOURNEY: {"published": True, "http_trigger": False},
                NO_SCHEMA_JOURNEY: {"published": True, "context_schema": None},
            }
        },
    )


def execution(journey: str = JOURNEY, context: dict[str, Any] | None = None, /, **contact: Any) -> dict:
    body: dict[str, Any] = {"journey_id": journey, "contact": contact or {"email": "ann@x.io"}}
    if context is not None:
        body["context"] = context
    return body


def test_journey_execution_is_202_with_ids_and_409_for_a_running_contact(
    mateo: Any, admin: AdminClient
) -> None:
    first = mateo("journey_execution", execution(email="Ann@X.io", full_name="Ann"))
    assert first.status_code == 202, first.text
    assert set(first.json()) == {"journey_execution_id", "contact_id"}
    assert all(is_uuid(value) for value in first.json().values())
    assert first.headers["ratelimit-limit"]
    again = assert_error(mateo("journey_execution", execution(email="ann@x.io")), 409, "already running")
    assert again["code"] == "conflict"
    # the same contact in another journey: a new execution, the same contact id (matched on email)
    other = mateo("journey_execution", execution(OTHER_JOURNEY, email="ann@x.io"))
    assert other.status_code == 202
    assert other.json()["contact_id"] == first.json()["contact_id"]
    assert other.json()["journey_execution_id"] != first.json()["journey_execution_id"]
    # a contact enrolled by the batch endpoint is running too
    assert mateo("journey_execution/batch", batch("bob@x.io")).status_code == 200
    assert_error(mateo("journey_execution", execution(email="bob@x.io")), 409)
    assert admin.targets("mateo") == {JOURNEY: {"ann@x.io": 1, "bob@x.io": 1}, OTHER_JOURNEY: {"ann@x.io": 1}}


def test_journey_execution_matches_on_sms_whatsapp_or_external_id(mateo: Any, admin: AdminClient) -> None:
    for contact in ({"sms": "+49 151 1"}, {"whatsapp": "+49 151 2"}, {"external_id": "crm-9"}):
        assert mateo("journey_execution", execution(**contact)).status_code == 202
    body = assert_error(mateo("journey_execution", execution(full_name="Nobody")), 400, "matched on")
    assert body["code"] == "bad_request"
    assert admin.targets("mateo") == {JOURNEY: {"+491511": 1, "+491512": 1, "crm-9": 1}}


@pytest.mark.usefixtures("execution_journeys")
def test_journey_execution_context_must_match_the_trigger_schema(mateo: Any, admin: AdminClient) -> None:
    for context in (None, {}, {"order_id": ""}, {"order_id": 7}):
        assert_error(mateo("journey_execution", execution(ORDER_JOURNEY, context)), 400, "context validation")
    ok = mateo("journey_execution", execution(ORDER_JOURNEY, {"order_id": "ORD-1", "extra": "kept"}))
    assert ok.status_code == 202, ok.text
    assert_error(mateo("journey_execution", execution(NO_SCHEMA_JOURNEY, {})), 400, "missing context schema")
    assert admin.targets("mateo") == {ORDER_JOURNEY: {"ann@x.io": 1}}


@pytest.mark.usefixtures("execution_journeys")
def test_journey_execution_404s(mateo: Any) -> None:
    for journey in ("00000000-0000-4000-8000-000000000000", UNPUBLISHED_JOURNEY):
        body = assert_error(mateo("journey_execution", execution(journey)), 404)
        assert body["message"] == "journey not found or not published"
    assert_error(mateo("journey_execution", execution(NO_TRIGGER_JOURNEY)), 404, "no HTTP trigger node")


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"contact": {"email": "a@x.io"}}, 400, "journey_id is required"),
        ({"journey_id": JOURNEY}, 400, "contact is required"),
        ({"journey_id": JOURNEY, "contact": {"email": "a@x.io", "shoe": 1}}, 400, "unknown contact field"),
        ({"journey_id": JOURNEY, "contact": {"email": "a@x.io"}, "context": []}, 400, "context must be"),
        ({"journey_id": JOURNEY, "contact": {"email": "a@x.io"}, "items": []}, 400, "unknown field 'items'"),
    ],
)
def test_journey_execution_validation(mateo: Any, body: dict[str, Any], status: int, needle: str) -> None:
    assert_error(mateo("journey_execution", body), status, needle)


def test_journey_execution_auth(mateo: Any) -> None:
    assert_error(mateo("journey_execution", execution(), token=None), 401)
    assert_error(mateo("journey_execution", execution(), token="nope"), 403)
