"""Altcraft emulator: token errors, workflow/matching validation, 10 MB limit, no de-duplication."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest

from emulators.altcraft import MAX_BODY_BYTES, AltcraftEmulator, profile_id_for
from emulators.base import load_fixture
from emulators.testing import AdminClient, AppClient

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
        ({"workflow_id": 12, "matching": "phone", "data": profiles("a@x.io")}, "phone is required"),
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


def xml_request(token: str, *emails: str, extra: str = "") -> bytes:
    data = "".join(f"<data><_fname>T</_fname><email>{e}</email></data>" for e in emails)
    return f"<xml><token>{token}</token><workflow_id>12</workflow_id>{extra}{data}</xml>".encode()


def xml_answer(response: httpx.Response) -> ElementTree.Element:
    assert response.headers["content-type"].startswith("application/xml")
    root = ElementTree.fromstring(response.content)  # noqa: S314 - the emulator's own answer
    assert root.tag == "xml"
    return root


def test_xml_request_gets_an_xml_answer(
    call: Callable[..., httpx.Response], admin: AdminClient, tokens: dict[str, str]
) -> None:
    response = call(content=xml_request(tokens["altcraft"], "A@x.io", "b@x.io"))  # no Content-Type
    assert response.status_code == 200
    root = xml_answer(response)
    assert [child.tag for child in root] == ["error", "error_text", "result", "result"]
    assert (root.findtext("error"), root.findtext("error_text")) == ("0", "Successful operation")
    assert [r.findtext("profile_id") for r in root.iter("result")] == [
        profile_id_for("a@x.io"),
        profile_id_for("b@x.io"),
    ]
    with_type = call(
        content=xml_request(
            tokens["altcraft"], "c@x.io", extra="<format>xml</format><skip_triggers>true</skip_triggers>"
        ),
        headers={"Content-Type": "application/xml"},
    )
    assert xml_answer(with_type).findtext("error") == "0"
    assert admin.targets("altcraft") == {"12": {"a@x.io": 1, "b@x.io": 1, "c@x.io": 1}}


def test_xml_with_bearer_token_and_custom_matching(
    call: Callable[..., httpx.Response], admin: AdminClient, tokens: dict[str, str]
) -> None:
    body = (
        b"<xml><workflow_id>42</workflow_id><matching>custom</matching><field_name>CRM_ID</field_name>"
        b'<data><email>a@x.io</email><CRM_ID string = "true" >00066</CRM_ID></data></xml>'
    )
    response = call(content=body, headers={"Authorization": f"Bearer {tokens['altcraft']}"})
    assert xml_answer(response).findtext("result/profile_id") == profile_id_for("00066")
    assert admin.targets("altcraft") == {"42": {"00066": 1}}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"<xml><token>t", "invalid XML"),
        (b"<request><token>t</token></request>", "root element must be <xml>"),
        (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><xml><token>&a;</token></xml>', "DOCTYPE"),
        (
            b"<xml><format>json</format><workflow_id>12</workflow_id></xml>",
            'format "json" but the body is xml',
        ),
    ],
)
def test_xml_errors_are_answered_in_xml(
    call: Callable[..., httpx.Response], admin: AdminClient, body: bytes, needle: str
) -> None:
    root = xml_answer(call(content=body, headers={"Content-Type": "text/xml"}))
    assert root.findtext("error") == "400"
    assert needle in (root.findtext("error_debug") or root.findtext("error_text") or "")
    assert admin.targets("altcraft") == {}


def test_xml_token_errors_use_the_error_field(call: Callable[..., httpx.Response]) -> None:
    missing = xml_answer(
        call(content=b"<xml><workflow_id>12</workflow_id><data><email>a@x.io</email></data></xml>")
    )
    assert (missing.findtext("error"), missing.findtext("error_text")) == ("401", "Token required")
    wrong = xml_answer(call(content=xml_request("wrong", "a@x.io")))
    assert wrong.findtext("error") == "403"


@pytest.mark.parametrize("fmt", ["xml", "csv"])
def test_json_body_must_not_claim_another_format(call: Callable[..., httpx.Response], fmt: str) -> None:
    response = call({"format": fmt, "workflow_id": 12, "matching": "email", "data": profiles("a@x.io")})
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == 400
    assert "format" in response.json()["error_debug"]
    declared = call({"format": "json", "workflow_id": 12, "matching": "email", "data": profiles("a@x.io")})
    assert declared.json()["error"] == 0


def test_xml_body_over_the_limit_is_413_in_xml(
    admin: AdminClient, call: Callable[..., httpx.Response], tokens: dict[str, str]
) -> None:
    body = xml_request(tokens["altcraft"], "a@x.io") + b" " * (MAX_BODY_BYTES + 1)
    response = call(content=body, headers={"Content-Type": "application/xml"})
    assert response.status_code == 413
    root = xml_answer(response)
    assert {child.tag: child.text for child in root} == {str(k): str(v) for k, v in TOO_LARGE.items()}
    assert admin.targets("altcraft") == {}


# --- import_and_start_batch_task: a task_id at once, same limits ------------------------------------------
@pytest.fixture
def task(urls: dict[str, str], http: httpx.Client, tokens: dict[str, str]) -> Callable[..., httpx.Response]:
    """POST import_and_start_batch_task; the demo token is added unless the body sets ``token``."""

    def post(body: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        if body is not None:
            kwargs["json"] = {"token": tokens["altcraft"], **body}
        return http.post(f"{urls['altcraft']}/workflows/import_and_start_batch_task", **kwargs)

    return post


def test_task_endpoint_answers_a_task_id(task: Callable[..., httpx.Response], admin: AdminClient) -> None:
    body = {"workflow_id": 12, "matching": "email", "data": profiles("a@x.io", "b@x.io")}
    first, second = task(body), task(body)
    assert first.status_code == 200
    assert set(first.json()) == {"error", "error_text", "result"}
    assert (first.json()["error"], first.json()["error_text"]) == (0, "Successful operation")
    task_id = first.json()["result"]["task_id"]
    assert len(task_id) == 24 and int(task_id, 16) >= 0
    assert second.json()["result"]["task_id"] != task_id
    assert admin.targets("altcraft") == {"12": {"a@x.io": 2, "b@x.io": 2}}  # no de-duplication either


def test_task_endpoint_has_the_same_validation_auth_and_size_limit(
    task: Callable[..., httpx.Response], admin: AdminClient, tokens: dict[str, str]
) -> None:
    assert task({"workflow_id": 7, "matching": "email", "data": profiles("a@x.io")}).json()["error"] == 400
    assert task({"token": None, "workflow_id": 12, "data": profiles("a@x.io")}).json()["error"] == 401
    bearer = task(
        json={"workflow_id": 12, "data": profiles("b@x.io")},
        headers={"Authorization": f"Bearer {tokens['altcraft']}"},
    )
    assert bearer.json()["error"] == 0
    too_large = task(content=b"x" * (MAX_BODY_BYTES + 1), headers={"Content-Type": "application/json"})
    assert too_large.status_code == 413
    assert too_large.json() == TOO_LARGE
    xml = xml_answer(task(content=xml_request(tokens["altcraft"], "c@x.io")))
    assert [child.tag for child in xml] == ["error", "error_text", "result"]
    assert len(xml.findtext("result/task_id") or "") == 24
    assert admin.targets("altcraft") == {"12": {"b@x.io": 1, "c@x.io": 1}}


def test_tariff_limit_is_error_402_and_engages_nobody() -> None:
    fixture = load_fixture()
    fixture["altcraft"]["tariff_profile_limit"] = 3
    client = AppClient(AltcraftEmulator(fixture).build_app())
    token = fixture["altcraft"]["tokens"][0]

    def post(*emails: str) -> dict[str, Any]:
        body = {"token": token, "workflow_id": 12, "data": profiles(*emails)}
        response = client.post("/api/v1.1/workflows/import_and_start_batch", json=body)
        assert response.status_code == 200
        return response.json()

    assert post("a@x.io", "b@x.io")["error"] == 0
    refused = post("c@x.io", "d@x.io")
    assert (refused["error"], refused["error_text"]) == (402, "Tariff limit exceeded")
    assert post("c@x.io")["error"] == 0  # exactly the limit
    assert client.get("/_emulator/received").json()["targets"] == {
        "12": {"a@x.io": 1, "b@x.io": 1, "c@x.io": 1}
    }


def test_all_matching_modes_and_stable_profile_ids(
    call: Callable[..., httpx.Response], admin: AdminClient
) -> None:
    # Seed 003's words per mode: email is the profile's own field (in data, as its example shows);
    # `phone` and `profile_id` are the mode's parameters, beside each profile's data; custom names
    # field_name once and reads the value in data (its example).
    known_id = "5f19953a03e4227216278ba4"
    cases: list[tuple[str, str | None, dict[str, Any], str]] = [
        ("email", None, {"data": {"email": "Ann@X.io"}}, "ann@x.io"),
        (
            "email",
            None,
            {"data": {"_subscriptions": [{"channel": "email", "email": "sub@x.io"}]}},
            "sub@x.io",
        ),
        ("email_profile", None, {"data": {"email": "ann@x.io"}}, "ann@x.io"),
        ("phone", None, {"phone": "+7 900 123-45-67", "data": {"phones": "+79001234567"}}, "+79001234567"),
        ("phone", None, {"phone": "+79001234567", "data": {}}, "+79001234567"),
        ("profile_id", None, {"profile_id": known_id, "data": {"_fname": "Ann"}}, known_id),
        ("custom", "CRM_ID", {"data": {"CRM_ID": "00066"}}, "00066"),
    ]
    for matching, field_name, entry, identity in cases:
        body: dict[str, Any] = {"workflow_id": 42, "matching": matching, "data": [entry]}
        if field_name:
            body["field_name"] = field_name
        response = call(body)
        assert response.json()["error"] == 0, (matching, response.json())
        expected = identity if matching == "profile_id" else profile_id_for(identity)
        assert response.json()["result"] == [{"profile_id": expected}]
    assert admin.targets("altcraft") == {
        "42": {"ann@x.io": 2, "sub@x.io": 1, "+79001234567": 2, known_id: 1, "00066": 1}
    }


@pytest.mark.parametrize(
    ("matching", "entry", "fragment"),
    [
        ("phone", {"data": {"phones": "+79001234567"}}, "phone is required"),
        ("profile_id", {"data": {"profile_id": "5f19953a03e4227216278ba4"}}, "profile_id"),
    ],
)
def test_the_matching_parameter_inside_data_instead_of_beside_it_is_refused(
    call: Callable[..., httpx.Response], matching: str, entry: dict[str, Any], fragment: str
) -> None:
    answer = call({"workflow_id": 42, "matching": matching, "data": [entry]}).json()
    assert answer["error"] == 400 and fragment in json.dumps(answer)


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
