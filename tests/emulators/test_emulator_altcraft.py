"""Altcraft emulator: token errors, workflow/matching validation, 10 MB limit, no de-duplication."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from emulators.altcraft import MAX_BODY_BYTES, profile_id_for
from emulators.testing import AdminClient

pytestmark = pytest.mark.integration

TOO_LARGE = {"error": 400, "error_debug": "http: request body too large", "error_text": "Invalid request"}


@pytest.fixture
def call(urls: dict[str, str], http: httpx.Client, tokens: dict[str, str]) -> Callable[..., httpx.Response]:
    """POST import_and_start_batch; the demo token is added unless the body sets ``token``."""

    def post(body: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        if body is not None:
            body = {"token": tokens["altcraft"], **body}
            kwargs["json"] = body
        return http.post(f"{urls['altcraft']}/workflows/import_and_start_batch", **kwargs)

    return post


def profiles(*emails: str) -> list[dict[str, Any]]:
    return [{"data": {"email": e, "_fname": "Test"}} for e in emails]


def test_token_missing_and_wrong(call: Callable[..., httpx.Response]) -> None:
    missing = call({"token": None, "workflow_id": 12, "matching": "email", "data": profiles("a@x.io")})
    assert missing.status_code == 200
    assert missing.json() == {"error": 401, "error_text": "Token required"}
    wrong = call({"token": "wrong", "workflow_id": 12, "matching": "email", "data": profiles("a@x.io")})
    assert wrong.json()["error"] == 403


def test_bearer_header_is_accepted_instead_of_body_token(
    call: Callable[..., httpx.Response], tokens: dict[str, str]
) -> None:
    body = {"workflow_id": 12, "matching": "email", "data": profiles("a@x.io")}
    response = call(json=body, headers={"Authorization": f"Bearer {tokens['altcraft']}"})
    assert response.json()["error"] == 0


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"matching": "email", "data": profiles("a@x.io")}, "workflow_id is required"),
        ({"workflow_id": "12", "matching": "email", "data": profiles("a@x.io")}, "must be an integer"),
        ({"workflow_id": 7, "matching": "email", "data": profiles("a@x.io")}, "Workflow 7 not found"),
        ({"workflow_id": 12, "matching": "fax", "data": profiles("a@x.io")}, "matching must be one of"),
        ({"workflow_id": 12, "matching": "custom", "data": profiles("a@x.io")}, "field_name is required"),
        ({"workflow_id": 12, "matching": "email", "data": []}, "non-empty"),
        ({"workflow_id": 12, "matching": "email", "data": [{"email": "a@x.io"}]}, "data[0]"),
        ({"workflow_id": 12, "matching": "email", "data": [{"data": {"phones": "+1"}}]}, "email is required"),
        ({"workflow_id": 12, "matching": "phone", "data": profiles("a@x.io")}, "phones is required"),
        ({"workflow_id": 12, "matching": "profile_id", "data": profiles("a@x.io")}, "profile_id"),
        (
            {"workflow_id": 12, "matching": "custom", "field_name": "CRM_ID", "data": profiles("a@x.io")},
            'custom field "CRM_ID"',
        ),
        ({"workflow_id": 12, "matching": "email", "skip_triggers": "yes", "data": profiles("a")}, "boolean"),
    ],
)
def test_request_errors_are_reported_in_the_error_field(
    call: Callable[..., httpx.Response], admin: AdminClient, body: dict[str, Any], needle: str
) -> None:
    response = call(body)
    assert response.status_code == 200
    assert response.json()["error"] == 400
    assert needle in response.json()["error_text"]
    assert admin.targets("altcraft") == {}


def test_xml_is_refused(call: Callable[..., httpx.Response]) -> None:
    xml = call(content=b"<xml><token>t</token></xml>", headers={"Content-Type": "application/xml"})
    assert xml.json()["error"] == 400
    assert "json" in xml.json()["error_debug"]
    fmt = call({"format": "xml", "workflow_id": 12, "matching": "email", "data": profiles("a@x.io")})
    assert fmt.json()["error"] == 400


def test_all_matching_modes_and_stable_profile_ids(
    call: Callable[..., httpx.Response], admin: AdminClient
) -> None:
    known_id = "5f19953a03e4227216278ba4"
    cases = [
        ("email", None, {"email": "Ann@X.io"}, "ann@x.io"),
        ("email", None, {"_subscriptions": [{"channel": "email", "email": "sub@x.io"}]}, "sub@x.io"),
        ("email_profile", None, {"email": "ann@x.io"}, "ann@x.io"),
        ("phone", None, {"phones": ["+7 900 123-45-67"]}, "+79001234567"),
        ("phone", None, {"phone": "+79001234567"}, "+79001234567"),
        ("profile_id", None, {"profile_id": known_id}, known_id),
        ("custom", "CRM_ID", {"CRM_ID": "00066"}, "00066"),
    ]
    for matching, field_name, data, identity in cases:
        body: dict[str, Any] = {"workflow_id": 42, "matching": matching, "data": [{"data": data}]}
        if field_name:
            body["field_name"] = field_name
        response = call(body)
        assert response.json()["error"] == 0, (matching, response.json())
        expected = identity if matching == "profile_id" else profile_id_for(identity)
        assert response.json()["result"] == [{"profile_id": expected}]
    assert admin.targets("altcraft") == {
        "42": {"ann@x.io": 2, "sub@x.io": 1, "+79001234567": 2, known_id: 1, "00066": 1}
    }


def test_no_deduplication_a_repeat_engages_again(
    call: Callable[..., httpx.Response], admin: AdminClient
) -> None:
    body = {"workflow_id": 12, "matching": "email", "data": profiles("a@x.io", "b@x.io")}
    first = call(body).json()
    second = call(body).json()
    assert first == second  # same profile ids in the same order
    assert [r["profile_id"] for r in first["result"]] == [profile_id_for("a@x.io"), profile_id_for("b@x.io")]
    assert admin.targets("altcraft") == {"12": {"a@x.io": 2, "b@x.io": 2}}


def test_body_over_10_mb_is_413_with_the_documented_body(
    call: Callable[..., httpx.Response], admin: AdminClient, tokens: dict[str, str]
) -> None:
    head = {"token": tokens["altcraft"], "workflow_id": 12, "matching": "email", "data": profiles("a@x.io")}
    raw = json.dumps(head).encode()
    padded = raw[:-1] + b', "pad": "' + b"x" * (MAX_BODY_BYTES - len(raw)) + b'"}'
    assert len(padded) > MAX_BODY_BYTES
    response = call(content=padded, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json() == TOO_LARGE
    # just under the limit is fine (unknown keys are ignored)
    fits = raw[:-1] + b', "pad": "' + b"x" * (MAX_BODY_BYTES - len(raw) - 12) + b'"}'
    assert len(fits) <= MAX_BODY_BYTES
    assert call(content=fits, headers={"Content-Type": "application/json"}).json()["error"] == 0
    assert admin.targets("altcraft") == {"12": {"a@x.io": 1}}


def test_body_over_10_mb_without_content_length_is_413(call: Callable[..., httpx.Response]) -> None:
    def chunks() -> Any:
        yield b'{"token": "x", "pad": "'
        for _ in range(11):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    response = call(content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json() == TOO_LARGE
