"""Replay the example requests printed in the seed files and check the documented response shapes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest

from emulators.testing import AdminClient

pytestmark = pytest.mark.integration

SEEDS_DIR = Path(
    os.environ.get("JOURNEY_FANOUT_SEEDS", Path(__file__).resolve().parents[1] / "fixtures" / "seeds")
)

DOC_MATEO_TOKEN = "<token>"  # the seeds' curl examples send "Authorization: Bearer <token>"
DOC_ALTCRAFT_TOKEN = "abcdefghijklmnqrstuvwxyz"


def seed_text(prefix: str) -> str:
    """Text of the seed file named ``<prefix>_*.txt``; skips when the seeds are not available."""
    matches = sorted(SEEDS_DIR.glob(f"{prefix}_*.txt"))
    if not matches:
        pytest.skip(f"seed {prefix}_*.txt not found in {SEEDS_DIR} (set JOURNEY_FANOUT_SEEDS)")
    return matches[0].read_text(encoding="utf-8")


def json_objects(text: str, pattern: str) -> list[Any]:
    """Every JSON value starting where ``pattern`` (a regex whose match ends at '{') matches."""
    decoder = json.JSONDecoder()
    return [decoder.raw_decode(text, m.end() - 1)[0] for m in re.finditer(pattern, text, re.MULTILINE)]


def curl_example(text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(request body after ``--data '``, the response example that follows it) from a Mateo seed."""
    start = text.index("--data '") + len("--data '")
    request, end = json.JSONDecoder().raw_decode(text, text.index("{", start))
    response = json.JSONDecoder().raw_decode(text, text.index("{", end))[0]
    return request, response


def assert_same_keys(actual: Any, documented: Any, where: str = "response") -> None:
    """``actual`` has exactly the documented keys, recursively through objects and first list items."""
    if isinstance(documented, dict) and documented:
        assert isinstance(actual, dict), where
        assert set(actual) == set(documented), f"{where}: {set(actual) ^ set(documented)}"
        for key, value in documented.items():
            assert_same_keys(actual[key], value, f"{where}.{key}")
    elif isinstance(documented, list) and documented and isinstance(documented[0], dict) and documented[0]:
        assert isinstance(actual, list), where
        assert actual, f"{where} is empty"
        for item in actual:
            assert_same_keys(item, documented[0], f"{where}[]")


def test_mateo_batch_example(admin: AdminClient, urls: dict[str, str], http: httpx.Client) -> None:
    request, documented = curl_example(seed_text("000"))
    admin.seed("mateo", {"tokens": [DOC_MATEO_TOKEN]})
    response = http.post(
        f"{urls['mateo']}/journey_execution/batch",
        json=request,
        headers={"Authorization": f"Bearer {DOC_MATEO_TOKEN}"},
    )
    assert response.status_code == 200, response.text
    assert_same_keys(response.json(), documented)
    assert response.json() == {"success": True, "queued_count": 1}
    assert admin.targets("mateo") == {request["journey_id"]: {"<string>": 1}}


def test_mateo_contact_schema_matches_the_seed() -> None:
    """The emulator's contact schema has exactly the seed's fields, with the seed's value types."""
    from emulators.mateo import CONTACT_SCHEMA, validate_contact

    request, _ = curl_example(seed_text("000"))
    contact = request["items"][0]["contact"]
    assert set(CONTACT_SCHEMA) == set(contact)
    for field, value in contact.items():
        kind = CONTACT_SCHEMA[field]
        if value == 123:
            assert kind == "number", field
        elif value is True:
            assert kind == "boolean", field
        elif value == "healthy":
            assert kind == "health", field
        elif value == "legitimate_interest":
            assert kind == "transactional", field
        elif value == "<unknown>":
            assert kind == "any", field
        else:
            assert kind == "string", field
    validate_contact("contact", contact)


def test_mateo_send_message_example(admin: AdminClient, urls: dict[str, str], http: httpx.Client) -> None:
    request, documented = curl_example(seed_text("004"))
    admin.seed("mateo", {"tokens": [DOC_MATEO_TOKEN]})
    response = http.post(
        f"{urls['mateo']}/send_message", json=request, headers={"Authorization": f"Bearer {DOC_MATEO_TOKEN}"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert_same_keys(body, documented)
    assert body["message"]["id"] == request["id"]
    assert body["conversation"]["id"] == request["conversation_id"]
    assert body["conversation"]["channel_type"] == "email"
    assert {r["role"] for r in body["recipients"]} == {"from", "to", "cc", "bcc"}
    assert body["actions"][0]["type"] == "quick_reply"
    assert response.headers["ratelimit-limit"]
    assert response.headers["ratelimit-remaining"]
    # the three recipients all carry contact_id "<string>"
    assert admin.targets("mateo") == {request["from"]: {"<string>": 3}}


def test_symplify_example_rows_by_download_and_upload(
    admin: AdminClient, urls: dict[str, str], http: httpx.Client, presign: Any, tokens: dict[str, str]
) -> None:
    text = seed_text("001")
    rows = [line for line in text.splitlines() if line.startswith('{"id"')]
    assert len(rows) == 3
    for row in rows:
        json.loads(row)
    ndjson = ("\n".join(rows) + "\n").encode("utf-8")
    headers = {"X-Carma-Authentication-Token": tokens["symplify"]}
    trigger = f"{urls['symplify']}/demo/batchtrigger/v2"

    started = http.post(trigger, json={"entityId": 1001, "downloadUrl": presign(ndjson)}, headers=headers)
    assert started.status_code == 200, started.text
    assert started.content == b""  # the seed shows no answer body: the emulator invents none (no batchId)

    upload = http.post(trigger, json={"entityId": 1002}, headers=headers)
    assert upload.status_code == 200
    assert set(upload.json()) == {"uploadUrl"}
    put = http.put(upload.json()["uploadUrl"], content=ndjson, headers={"Content-Type": "text/plain"})
    assert (put.status_code, put.content) == (200, b"")
    assert admin.targets("symplify") == {"1001": {"0": 1, "1": 1, "2": 1}, "1002": {"0": 1, "1": 1, "2": 1}}


def test_workshop_example_payloads(
    admin: AdminClient, urls: dict[str, str], http: httpx.Client, tokens: dict[str, str]
) -> None:
    text = seed_text("002")
    payloads = json_objects(text[text.index("Example payloads") : text.index("Returns")], r"^json\n\{")
    assert len(payloads) == 3
    headers = {"Authorization": f"Bearer {tokens['workshop']}"}
    documented = json_objects(text[text.index("Example responses") :], r"^json\n\{")[0]
    for payload in payloads:
        response = http.post(f"{urls['workshop']}/journeys/jrn_welcome/enroll", json=payload, headers=headers)
        assert response.status_code == 200, response.text
        assert_same_keys(response.json(), documented)
    # user1 twice (first and third payload) -> already_enrolled the second time; lists overlap on bob
    assert admin.targets("workshop")["jrn_welcome"] == {
        "user1@example.com": 1,
        "user2@example.com": 1,
        "user3@example.com": 1,
        "alice@company.com": 1,
        "bob@company.com": 1,
        "carol@company.com": 1,
    }


def test_workshop_example_success_response_reproduced(
    urls: dict[str, str], http: httpx.Client, tokens: dict[str, str]
) -> None:
    """The default fixture's jrn_example answers exactly the seed's success example."""
    text = seed_text("002")
    documented = json_objects(text[text.index("Example responses") :], r"^json\n\{")[0]
    response = http.post(
        f"{urls['workshop']}/journeys/jrn_example/enroll",
        json={
            "contact_email_addresses": [
                "user1@example.com",
                " User2@Example.com ",
                "unknown@example.com",
                "already.in@example.com",
                "just.finished@example.com",
            ]
        },
        headers={"Authorization": f"Bearer {tokens['workshop']}"},
    )
    assert response.json() == documented


def test_altcraft_json_examples(admin: AdminClient, urls: dict[str, str], http: httpx.Client) -> None:
    text = seed_text("003")
    examples = json_objects(text, r"^\{")
    requests = [e for e in examples if "token" in e]
    success = next(e for e in examples if e.get("error") == 0)
    assert [r["matching"] for r in requests] == ["email", "custom"]
    admin.seed("altcraft", {"tokens": [DOC_ALTCRAFT_TOKEN]})
    for request in requests:
        response = http.post(f"{urls['altcraft']}/workflows/import_and_start_batch", json=request)
        assert response.status_code == 200
        body = response.json()
        assert_same_keys(body, success)
        assert body["error"] == 0
        assert body["error_text"] == "Successful operation"
        assert len(body["result"]) == len(request["data"])
        assert all(len(r["profile_id"]) == 24 for r in body["result"])
    assert admin.targets("altcraft") == {"12": {"example@example.com": 2, "00066": 1, "00076": 1}}


def xml_examples(text: str) -> list[ElementTree.Element]:
    """Every ``<xml>...</xml>`` example of a seed, parsed."""
    return [ElementTree.fromstring(block) for block in re.findall(r"(?s)<xml>.*?</xml>", text)]  # noqa: S314


def assert_same_xml_shape(actual: ElementTree.Element, documented: ElementTree.Element) -> None:
    """Same child tags in the same order pattern (a repeated documented element may repeat any number of
    times), recursively through each element's first documented instance."""
    documented_tags = [child.tag for child in documented]
    collapsed = [tag for i, tag in enumerate(documented_tags) if i == 0 or documented_tags[i - 1] != tag]
    actual_tags = [child.tag for child in actual]
    actual_collapsed = [tag for i, tag in enumerate(actual_tags) if i == 0 or actual_tags[i - 1] != tag]
    assert actual_collapsed == collapsed, (actual_tags, documented_tags)
    for child in actual:
        documented_child = documented.find(child.tag)
        assert documented_child is not None
        assert_same_xml_shape(child, documented_child)


def test_altcraft_xml_examples(admin: AdminClient, urls: dict[str, str], http: httpx.Client) -> None:
    """The seed's XML request examples, sent as XML, get answers shaped like its XML response example."""
    examples = xml_examples(seed_text("003"))
    requests = [e for e in examples if e.find("token") is not None]
    success = next(e for e in examples if e.findtext("error") == "0")
    limitation = next(e for e in examples if e.findtext("error") == "400")
    assert [r.findtext("matching") for r in requests] == ["email", "custom"]
    admin.seed(
        "altcraft", {"tokens": [DOC_ALTCRAFT_TOKEN], "workflows": {"10": {"name": "seed XML example"}}}
    )
    for request in requests:
        body = ElementTree.tostring(request)
        response = http.post(
            f"{urls['altcraft']}/workflows/import_and_start_batch",
            content=body,
            headers={"Content-Type": "application/xml"},
        )
        assert response.status_code == 200
        answer = ElementTree.fromstring(response.content)  # noqa: S314 - the emulator's own answer
        assert answer.tag == "xml"
        assert_same_xml_shape(answer, success)
        assert (answer.findtext("error"), answer.findtext("error_text")) == ("0", "Successful operation")
        assert len(answer.findall("result")) == len(request.findall("data"))
    assert admin.targets("altcraft") == {"10": {"example@example.com": 2}, "12": {"00067": 1, "00077": 1}}
    too_large = too_large_xml_answer(urls, http, requests[0])
    assert_same_xml_shape(too_large, limitation)
    assert {child.tag: child.text for child in too_large} == {child.tag: child.text for child in limitation}


def too_large_xml_answer(
    urls: dict[str, str], http: httpx.Client, request: ElementTree.Element
) -> ElementTree.Element:
    """The seed's XML request sent to the _task sibling with padding past the 10 MB limit."""
    body = ElementTree.tostring(request) + b" " * (10 * 1024 * 1024)
    response = http.post(
        f"{urls['altcraft']}/workflows/import_and_start_batch_task",
        content=body,
        headers={"Content-Type": "application/xml"},
    )
    assert response.status_code == 413
    return ElementTree.fromstring(response.content)  # noqa: S314 - the emulator's own answer


def test_altcraft_json_examples_on_the_task_endpoint(
    admin: AdminClient, urls: dict[str, str], http: httpx.Client
) -> None:
    text = seed_text("003")
    requests = [e for e in json_objects(text, r"^\{") if "token" in e]
    admin.seed("altcraft", {"tokens": [DOC_ALTCRAFT_TOKEN]})
    for request in requests:
        response = http.post(f"{urls['altcraft']}/workflows/import_and_start_batch_task", json=request)
        assert response.status_code == 200
        assert response.json()["error"] == 0
        assert set(response.json()["result"]) == {"task_id"}
    assert admin.targets("altcraft") == {"12": {"example@example.com": 2, "00066": 1, "00076": 1}}
