"""Symplify emulator: auth, 404s, presigned-URL expiry, file validation, no idempotency, upload URL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from emulators.symplify import JSON_ARRAY_ERROR, SymplifyError, check_download_url, parse_contact_file
from emulators.testing import AdminClient

pytestmark = pytest.mark.integration

ROWS = b'{"id": "c-1", "properties": {"emailAddress": "a@x.io"}}\n\n{"id": "c-2", "properties": {}}\n'


def answer_batch_ids(admin: AdminClient, on: bool) -> None:
    journeys = {j: {"trigger_answers_batch_id": on} for j in ("1001", "1002", "1003", "1004")}
    journeys["1003"]["name"] = "Broken journey"
    journeys["1004"]["name"] = "Slow journey"
    admin.seed("symplify", {"customers": {"demo": {"journeys": journeys}}})


@pytest.fixture(autouse=True)
def batch_ids(admin: AdminClient) -> Iterator[None]:
    """Most tests here follow batches: the named option `trigger_answers_batch_id` on, and off again after
    (seeds outlive a test, and by default the emulator answers as seed 001 shows: no body)."""
    answer_batch_ids(admin, True)
    yield
    answer_batch_ids(admin, False)


def test_by_default_a_started_batch_is_an_empty_200_as_seed_001_shows(
    admin: AdminClient, trigger: Callable[..., httpx.Response], presign: Any, http: httpx.Client
) -> None:
    answer_batch_ids(admin, False)
    started = trigger({"entityId": 1001, "downloadUrl": presign(ROWS)})
    assert (started.status_code, started.content) == (200, b"")
    upload_url = trigger({"entityId": 1002}).json()["uploadUrl"]
    put = http.put(upload_url, content=ROWS, headers={"Content-Type": "text/plain"})
    assert (put.status_code, put.content) == (200, b"")
    assert admin.targets("symplify") == {"1001": {"c-1": 1, "c-2": 1}, "1002": {"c-1": 1, "c-2": 1}}


@pytest.fixture
def trigger(
    urls: dict[str, str], http: httpx.Client, tokens: dict[str, str]
) -> Callable[..., httpx.Response]:
    """POST /{customer}/batchtrigger/v2 with the demo token (or ``token=``)."""

    def post(body: Any, customer: str = "demo", token: str | None = tokens["symplify"]) -> httpx.Response:
        headers = {"X-Carma-Authentication-Token": token} if token is not None else {}
        return http.post(f"{urls['symplify']}/{customer}/batchtrigger/v2", json=body, headers=headers)

    return post


def test_token_missing_or_wrong_is_401(trigger: Callable[..., httpx.Response], presign: Any) -> None:
    for token in (None, "wrong"):
        response = trigger({"entityId": 1001, "downloadUrl": presign(ROWS)}, token=token)
        assert response.status_code == 401
        assert response.json() == {"error": "Unauthorized"}


def test_unknown_journey_or_customer_is_404(trigger: Callable[..., httpx.Response], presign: Any) -> None:
    response = trigger({"entityId": 999, "downloadUrl": presign(ROWS)})
    assert response.status_code == 404
    assert response.json() == {"error": "Journey 999 not found"}
    assert trigger({"entityId": 1001}, customer="acme").status_code == 404


def test_bad_bodies_are_400(trigger: Callable[..., httpx.Response]) -> None:
    assert trigger({"downloadUrl": "http://127.0.0.1/x"}).status_code == 400
    assert trigger({"entityId": "abc"}).status_code == 400
    assert trigger({"entityId": 1001, "type": "SOMETHING_ELSE"}).status_code == 400
    assert trigger({"entityId": 1001, "type": "JOURNEY_COMMENCE"}).status_code == 200


def test_download_starts_batch_and_retry_counts_twice(
    trigger: Callable[..., httpx.Response], presign: Any, admin: AdminClient, http: httpx.Client, urls: Any
) -> None:
    url = presign(ROWS)
    first = trigger({"entityId": 1001, "downloadUrl": url})
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "STARTED"
    # Symplify has no idempotency: the same request again enrols everybody again
    assert trigger({"entityId": "1001", "downloadUrl": url}).status_code == 200
    assert admin.targets("symplify") == {"1001": {"c-1": 2, "c-2": 2}}
    batch = http.get(
        f"{urls['symplify']}/demo/batches/{first.json()['batchId']}",
        headers={"X-Carma-Authentication-Token": "local-symplify-token"},
    )
    assert batch.json() == {"batchId": first.json()["batchId"], "status": "FINISHED", "rows": 2}
    missing = http.get(
        f"{urls['symplify']}/demo/batches/nope",
        headers={"X-Carma-Authentication-Token": "local-symplify-token"},
    )
    assert missing.status_code == 404


def test_expired_presigned_url_is_refused_without_download(
    trigger: Callable[..., httpx.Response], presign: Any, admin: AdminClient
) -> None:
    url = presign(ROWS, expires_in=1)
    time.sleep(2.1)
    response = trigger({"entityId": 1001, "downloadUrl": url})
    assert response.status_code == 400
    assert response.json() == {"error": "downloadUrl has expired"}
    assert admin.targets("symplify") == {}


def test_expiry_check_reads_sigv4_and_sigv2_queries() -> None:
    now = time.time()
    v4 = "http://127.0.0.1:9/b/k?X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-Signature=x"
    with pytest.raises(SymplifyError, match="expired"):
        check_download_url(v4, now=now)
    assert check_download_url(v4, now=1704067200 + 10) == v4
    v2 = f"http://localhost:9/b/k?AWSAccessKeyId=x&Signature=y&Expires={int(now) - 5}"
    with pytest.raises(SymplifyError, match="expired"):
        check_download_url(v2, now=now)
    assert check_download_url("http://127.0.0.1:9/plain.ndjson", now=now)


@pytest.mark.parametrize(
    "url",
    ["https://example.com/contacts.ndjson", "file:///etc/passwd", "http://169.254.169.254/latest", "", 5],
)
def test_non_local_download_urls_are_refused(trigger: Callable[..., httpx.Response], url: Any) -> None:
    response = trigger({"entityId": 1001, "downloadUrl": url})
    assert response.status_code == 400
    assert "downloadUrl" in response.json()["error"]


def test_json_array_file_is_400(
    trigger: Callable[..., httpx.Response], presign: Any, admin: AdminClient
) -> None:
    body = b'[{"id": "1", "properties": {}}, {"id": "2", "properties": {}}]'
    response = trigger({"entityId": 1001, "downloadUrl": presign(body)})
    assert response.status_code == 400
    assert response.json() == {"error": JSON_ARRAY_ERROR}
    assert "one JSON object per line" in JSON_ARRAY_ERROR
    assert admin.targets("symplify") == {}


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b'{"id": 1, "properties": {}}', '"id" must be a string'),
        (b'{"id": "1"}', '"properties" must be an object'),
        (b'{"id": "1", "properties": {}, "extra": 1}', "unexpected attribute"),
        (b'{"id": "1", "properties": {}}\nnot json', "line 2"),
        (b'"just a string"', "must be a JSON object"),
        (b"\xff\xfe{", "UTF-8"),
        (b"\n\n", "no contacts"),
    ],
)
def test_file_validation(raw: bytes, needle: str) -> None:
    with pytest.raises(SymplifyError, match=needle):
        parse_contact_file(raw)


def test_file_validation_accepts_bom_and_blank_lines() -> None:
    assert [r["id"] for r in parse_contact_file(b"\xef\xbb\xbf" + ROWS + b"\n   \n")] == ["c-1", "c-2"]


def test_upload_url_flow(
    trigger: Callable[..., httpx.Response], http: httpx.Client, admin: AdminClient, emulators: Any
) -> None:
    response = trigger({"entityId": 1002})
    assert response.status_code == 200
    upload_url = response.json()["uploadUrl"]
    assert upload_url.startswith(f"{emulators.admin_urls['symplify']}/rest/_upload/")
    wrong_type = http.put(upload_url, content=ROWS, headers={"Content-Type": "application/json"})
    assert wrong_type.status_code == 415
    put = http.put(upload_url, content=ROWS, headers={"Content-Type": "text/plain; charset=utf-8"})
    assert put.status_code == 200
    assert put.json()["status"] == "STARTED"
    bad = http.put(upload_url, content=b"[]", headers={"Content-Type": "text/plain"})
    assert bad.status_code == 400
    assert http.put(upload_url + "x", content=ROWS, headers={"Content-Type": "text/plain"}).status_code == 404
    assert admin.targets("symplify") == {"1002": {"c-1": 1, "c-2": 1}}


def test_upload_url_expires(
    trigger: Callable[..., httpx.Response], http: httpx.Client, admin: AdminClient
) -> None:
    admin.seed("symplify", {"upload_url_ttl_seconds": 0})
    try:
        upload_url = trigger({"entityId": 1002}).json()["uploadUrl"]
        time.sleep(0.01)
        response = http.put(upload_url, content=ROWS, headers={"Content-Type": "text/plain"})
        assert response.status_code == 403
        assert response.json() == {"error": "uploadUrl has expired"}
    finally:
        admin.seed("symplify", {"upload_url_ttl_seconds": 43200})


# --- batch status: polled until FINISHED or ERROR -----------------------------------------------------
ERROR_JOURNEY = "1003"  # seeded to end every batch in ERROR
SLOW_JOURNEY = "1004"  # seeded to report STARTED for two polls
HEADERS = {"X-Carma-Authentication-Token": "local-symplify-token"}


@pytest.fixture
def status_journeys(admin: AdminClient) -> None:
    journeys = {
        ERROR_JOURNEY: {"name": "Broken journey", "batch_outcome": "ERROR"},
        SLOW_JOURNEY: {"name": "Slow journey", "batch_polls_until_done": 2},
    }
    admin.seed("symplify", {"customers": {"demo": {"journeys": journeys}}})


def poll(http: httpx.Client, urls: dict[str, str], batch_id: str) -> list[str]:
    """Poll the batch until FINISHED or ERROR (at most 5 times); every status seen, in order."""
    seen: list[str] = []
    while len(seen) < 5 and seen[-1:] not in (["FINISHED"], ["ERROR"]):
        answer = http.get(f"{urls['symplify']}/demo/batches/{batch_id}", headers=HEADERS)
        assert answer.status_code == 200, answer.text
        assert set(answer.json()) == {"batchId", "status", "rows"}
        seen.append(answer.json()["status"])
    return seen


@pytest.mark.usefixtures("status_journeys")
def test_a_batch_can_end_in_error_and_enrols_nobody(
    trigger: Callable[..., httpx.Response],
    presign: Any,
    http: httpx.Client,
    urls: dict[str, str],
    admin: AdminClient,
) -> None:
    started = trigger({"type": "JOURNEY_COMMENCE", "entityId": 1003, "downloadUrl": presign(ROWS)})
    assert started.status_code == 200
    assert started.json()["status"] == "STARTED"  # the failure only shows in the batch status
    assert poll(http, urls, started.json()["batchId"]) == ["ERROR"]
    upload_url = trigger({"entityId": 1003}).json()["uploadUrl"]
    put = http.put(upload_url, content=ROWS, headers={"Content-Type": "text/plain"})
    assert poll(http, urls, put.json()["batchId"]) == ["ERROR"]
    assert admin.targets("symplify") == {}


@pytest.mark.usefixtures("status_journeys")
def test_batch_status_can_stay_started_for_some_polls(
    trigger: Callable[..., httpx.Response],
    presign: Any,
    http: httpx.Client,
    urls: dict[str, str],
    admin: AdminClient,
) -> None:
    started = trigger({"entityId": 1004, "downloadUrl": presign(ROWS)})
    assert poll(http, urls, started.json()["batchId"]) == ["STARTED", "STARTED", "FINISHED"]
    assert admin.targets("symplify") == {"1004": {"c-1": 1, "c-2": 1}}


def test_batch_status_needs_the_token_and_the_right_customer(
    trigger: Callable[..., httpx.Response], presign: Any, http: httpx.Client, urls: dict[str, str]
) -> None:
    batch_id = trigger({"entityId": 1001, "downloadUrl": presign(ROWS)}).json()["batchId"]
    assert http.get(f"{urls['symplify']}/demo/batches/{batch_id}").status_code == 401
    assert http.get(f"{urls['symplify']}/acme/batches/{batch_id}", headers=HEADERS).status_code == 404


def test_bad_batch_outcome_seed_is_refused(admin: AdminClient, http: httpx.Client) -> None:
    bad = {"customers": {"demo": {"journeys": {"1005": {"batch_outcome": "MAYBE"}}}}}
    response = http.post(admin.url("symplify", "seed"), json=bad)
    assert response.status_code == 400
    assert "batch_outcome" in response.json()["error"]


# --- single contact: POST /{customerid}/journeys/{id}/commence -----------------------------------------
def commence(
    http: httpx.Client,
    urls: dict[str, str],
    body: Any,
    journey: str = "1001",
    customer: str = "demo",
    **kw: Any,
) -> httpx.Response:
    headers = kw.get("headers", HEADERS)
    return http.post(f"{urls['symplify']}/{customer}/journeys/{journey}/commence", json=body, headers=headers)


def test_commence_enters_one_contact_every_time(
    http: httpx.Client, urls: dict[str, str], admin: AdminClient
) -> None:
    body = {"id": "c-9", "properties": {"emailAddress": "c9@x.io", "firstname": "Nina"}}
    first = commence(http, urls, body)
    assert first.status_code == 200, first.text
    assert first.json() == {"id": "c-9", "entityId": 1001}
    assert commence(http, urls, {"id": "c-9"}).status_code == 200  # properties optional; no idempotency
    assert admin.targets("symplify") == {"1001": {"c-9": 2}}


@pytest.mark.parametrize(
    ("body", "journey", "customer", "status", "needle"),
    [
        ({"id": "c-1"}, "999", "demo", 404, "Journey 999 not found"),
        ({"id": "c-1"}, "1001", "acme", 404, "Customer not found"),
        ({"properties": {}}, "1001", "demo", 400, '"id" must be a string'),
        ({"id": " "}, "1001", "demo", 400, '"id" must identify the contact'),
        ({"id": "c-1", "properties": []}, "1001", "demo", 400, '"properties" must be an object'),
        ({"id": "c-1", "entityId": 1001}, "1001", "demo", 400, "unexpected attribute 'entityId'"),
        ([{"id": "c-1"}], "1001", "demo", 400, "must be a JSON object"),
    ],
)
def test_commence_errors(
    http: httpx.Client,
    urls: dict[str, str],
    admin: AdminClient,
    body: Any,
    journey: str,
    customer: str,
    status: int,
    needle: str,
) -> None:
    response = commence(http, urls, body, journey, customer)
    assert response.status_code == status
    assert needle in response.json()["error"]
    assert admin.targets("symplify") == {}


def test_commence_needs_the_token(http: httpx.Client, urls: dict[str, str]) -> None:
    response = commence(http, urls, {"id": "c-1"}, headers={})
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized"}


@pytest.mark.usefixtures("status_journeys")
def test_received_lists_every_batch_started_and_how_often_its_status_was_read(
    trigger: Callable[..., httpx.Response],
    presign: Any,
    http: httpx.Client,
    urls: dict[str, str],
    admin: AdminClient,
) -> None:
    slow = trigger({"entityId": 1004, "downloadUrl": presign(ROWS)}).json()["batchId"]
    broken = trigger({"entityId": 1003, "downloadUrl": presign(ROWS)}).json()["batchId"]
    poll(http, urls, slow)
    poll(http, urls, broken)
    assert admin.received("symplify")["batches"] == [
        {"batchId": slow, "entityId": "1004", "rows": 2, "outcome": "FINISHED", "polls": 3},
        {"batchId": broken, "entityId": "1003", "rows": 2, "outcome": "ERROR", "polls": 1},
    ]
    admin.reset("symplify")
    assert admin.received("symplify")["batches"] == []
