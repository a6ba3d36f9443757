"""Mateo's documented limits: daily request/entity quotas per UTC day, rate-limit headers, 2 s timeout.

Quota tests run the emulator in-process (``AppClient``) with an injected ``FakeClock``, so the UTC day
boundary is crossed without waiting; the admin-API test uses the shared running emulators.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from emulators import mateo
from emulators.__main__ import build_faults
from emulators.base import PROVIDERS, load_fixture
from emulators.faults import FaultSettings
from emulators.mateo import MateoEmulator
from emulators.testing import AdminClient, AppClient, FakeClock

pytestmark = pytest.mark.integration

JOURNEY = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
CHANNEL = "5d2c8e4a-7f1b-4a3c-9d6e-0b1a2c3d4e5f"  # the SMS channel
ERROR_KEYS = {"code", "message", "hint", "status"}
TOKEN = load_fixture()["mateo"]["tokens"][0]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def mateo_client(
    faults: FaultSettings, clock: FakeClock | None = None, seed: dict[str, Any] | None = None
) -> AppClient:
    fixture = load_fixture()
    fixture["mateo"].update(seed or {})
    return AppClient(MateoEmulator(fixture, faults, clock).build_app())


def batch(client: AppClient, *emails: str, dedup: bool = False) -> httpx.Response:
    items: list[dict[str, Any]] = [{"contact": {"email": e}} for e in emails]
    if dedup:
        for item, email in zip(items, emails, strict=True):
            item["deduplication_id"] = email
    return client.post(
        "/api/v1/journey_execution/batch", json={"journey_id": JOURNEY, "items": items}, headers=AUTH
    )


def assert_429(response: httpx.Response, needle: str) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert (body["code"], body["status"]) == ("rate_limited", 429)
    assert needle in body["message"]


@pytest.mark.parametrize("settings", [FaultSettings(daily_requests=1), FaultSettings(daily_entities=1)])
def test_by_default_a_quota_429_carries_no_retry_after_as_no_document_mentions_one(
    settings: FaultSettings,
) -> None:
    client = mateo_client(settings, FakeClock(datetime(2025, 3, 1, 12, 0, tzinfo=UTC)))
    assert batch(client, "a@x.io").status_code == 200
    refused = batch(client, "b@x.io")
    assert_429(refused, "daily limit")
    assert "retry-after" not in refused.headers
    assert refused.headers["x-emulator-fault"] == "daily_limit"


def test_daily_request_limit_until_utc_midnight() -> None:
    clock = FakeClock(datetime(2025, 3, 1, 23, 59, 30, tzinfo=UTC))
    client = mateo_client(FaultSettings(daily_requests=3, limit_retry_after=1), clock)
    answers = [batch(client, f"c{i}@x.io") for i in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert [r.headers["ratelimit-limit"] for r in answers] == ["3", "3", "3"]
    assert [r.headers["ratelimit-remaining"] for r in answers] == ["2", "1", "0"]
    refused = batch(client, "late@x.io")
    assert_429(refused, "daily limit of 3 requests")
    assert refused.headers["retry-after"] == "30"  # seconds until 00:00 UTC
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.headers["x-emulator-fault"] == "daily_limit"
    clock.advance(seconds=30)  # 2025-03-02 00:00:00 UTC: a new day
    fresh = batch(client, "next-day@x.io")
    assert fresh.status_code == 200
    assert fresh.headers["ratelimit-remaining"] == "2"


def test_the_day_is_the_utc_calendar_day_whatever_the_clocks_zone() -> None:
    berlin = timezone(timedelta(hours=2))
    clock = FakeClock(datetime(2025, 3, 2, 1, 0, tzinfo=berlin))  # 23:00 UTC on March 1
    client = mateo_client(FaultSettings(daily_requests=1, limit_retry_after=1), clock)
    assert batch(client, "a@x.io").status_code == 200
    clock.advance(minutes=59)  # 01:59 in Berlin, still March 1 in UTC
    refused = batch(client, "b@x.io")
    assert_429(refused, "daily limit")
    assert refused.headers["retry-after"] == "60"
    clock.advance(minutes=1)  # 02:00 in Berlin = 00:00 UTC
    assert batch(client, "b@x.io").status_code == 200


def test_daily_entity_limit_refuses_a_batch_whole() -> None:
    clock = FakeClock(datetime(2025, 3, 1, 12, 0, tzinfo=UTC))
    client = mateo_client(FaultSettings(daily_entities=5, limit_retry_after=1), clock)
    assert batch(client, "a@x.io", "b@x.io", "c@x.io").json() == {"success": True, "queued_count": 3}
    over = batch(client, "d@x.io", "e@x.io", "f@x.io")  # 3 + 3 > 5: nothing queued
    assert_429(over, "daily limit of 5 imported entities")
    assert over.headers["retry-after"] == str(12 * 3600)
    assert batch(client, "d@x.io", "e@x.io").json()["queued_count"] == 2  # exactly 5
    single = client.post(
        "/api/v1/journey_execution",
        json={"journey_id": JOURNEY, "contact": {"email": "g@x.io"}},
        headers=AUTH,
    )
    assert_429(single, "imported entities")
    message = {"from": CHANNEL, "to": [{"handle": "+4915100000001"}], "text": "Hi"}
    assert client.post("/api/v1/send_message", json=message, headers=AUTH).status_code == 200  # imports none
    received = client.get("/_emulator/received").json()["targets"]
    assert set(received[JOURNEY]) == {"a@x.io", "b@x.io", "c@x.io", "d@x.io", "e@x.io"}


def test_deduplicated_items_still_count_as_imported_entities() -> None:
    client = mateo_client(FaultSettings(daily_entities=4), FakeClock(datetime(2025, 3, 1, tzinfo=UTC)))
    assert batch(client, "a@x.io", "b@x.io", dedup=True).json()["queued_count"] == 2
    assert batch(client, "a@x.io", "b@x.io", dedup=True).json()["queued_count"] == 0  # contacts updated
    assert_429(batch(client, "c@x.io"), "imported entities")


def test_ratelimit_headers_report_the_tightest_enabled_limit() -> None:
    clock = FakeClock(datetime(2025, 3, 1, tzinfo=UTC))
    second_first = batch(mateo_client(FaultSettings(rate_limit=2, daily_requests=100), clock), "a@x.io")
    assert (second_first.headers["ratelimit-limit"], second_first.headers["ratelimit-remaining"]) == (
        "2",
        "1",
    )
    day_first = batch(mateo_client(FaultSettings(rate_limit=5, daily_requests=1), clock), "a@x.io")
    assert (day_first.headers["ratelimit-limit"], day_first.headers["ratelimit-remaining"]) == ("1", "0")
    unlimited = batch(mateo_client(FaultSettings(), clock), "a@x.io")
    assert unlimited.headers["ratelimit-limit"] == str(mateo.NOMINAL_LIMIT_WHEN_UNLIMITED)


def test_daily_limits_through_the_admin_api(
    admin: AdminClient, urls: dict[str, str], http: httpx.Client
) -> None:
    def post() -> httpx.Response:
        body = {"journey_id": JOURNEY, "items": [{"contact": {"email": "a@x.io"}}]}
        return http.post(f"{urls['mateo']}/journey_execution/batch", json=body, headers=AUTH)

    admin.set_faults("mateo", "daily_requests=2")
    assert [post().status_code for _ in range(3)] == [200, 200, 429]
    assert admin.faults("mateo").daily_requests == 2
    admin.set_faults(
        "mateo", FaultSettings(daily_requests=3, daily_entities=25_000)
    )  # raised mid-day: usage kept
    assert [post().status_code for _ in range(2)] == [200, 429]
    admin.reset("mateo")  # a reset forgets the day's usage
    assert post().status_code == 200
    assert admin.targets("mateo") == {JOURNEY: {"a@x.io": 1}}


def test_request_over_the_timeout_is_a_504_after_the_timeout_and_not_performed() -> None:
    client = mateo_client(FaultSettings(latency_ms=5000), seed={"request_timeout_seconds": 0.2})
    started = time.monotonic()
    response = batch(client, "slow@x.io")
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert 0.2 <= elapsed < 2.0
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert (body["code"], body["status"]) == ("gateway_timeout", 504)
    assert "timed out after 0.2 s" in body["message"]
    assert response.headers["x-emulator-fault"] == "request_timeout"
    assert client.get("/_emulator/received").json()["targets"] == {}


def test_latency_under_the_timeout_succeeds_late() -> None:
    client = mateo_client(FaultSettings(latency_ms=50), seed={"request_timeout_seconds": 0.2})
    started = time.monotonic()
    assert batch(client, "a@x.io").status_code == 200
    assert time.monotonic() - started >= 0.05


def test_timeout_defaults_to_the_documented_two_seconds_and_zero_turns_it_off() -> None:
    assert MateoEmulator(load_fixture()).request_timeout_seconds() == mateo.REQUEST_TIMEOUT_SECONDS == 2.0
    fixture = load_fixture()
    fixture["mateo"]["request_timeout_seconds"] = 0
    assert MateoEmulator(fixture).request_timeout_seconds() is None
    with pytest.raises(ValueError, match="request_timeout_seconds"):
        MateoEmulator({"mateo": {"request_timeout_seconds": "2s"}})


def test_fault_grammar_has_the_daily_limits() -> None:
    settings = FaultSettings.parse("daily_requests=10000,daily_entities=25000")
    assert (settings.daily_requests, settings.daily_entities) == (10_000, 25_000)
    assert FaultSettings.parse(settings.to_spec()) == settings
    assert FaultSettings.from_dict(settings.to_dict()) == settings
    assert (FaultSettings().daily_requests, FaultSettings().daily_entities) == (0, 0)
    for bad in ("daily_requests=1.5", "daily_entities=-1", "daily_requests=many"):
        with pytest.raises(ValueError, match="daily_"):
            FaultSettings.parse(bad)


def test_command_line_limits_default_off_documented_on_request() -> None:
    assert all(settings == FaultSettings() for settings in build_faults([], None, []).values())
    documented = build_faults([], None, [], [], documented_limits=True)
    assert documented["mateo"] == mateo.documented_limits()
    assert (documented["mateo"].rate_limit, documented["mateo"].daily_requests) == (2, 10_000)
    assert documented["mateo"].daily_entities == 25_000
    assert all(documented[name] == FaultSettings() for name in PROVIDERS if name != "mateo")
    raised = build_faults(["mateo:5xx=0.1"], 3, [], ["mateo=50000/2000000"], documented_limits=True)
    assert (raised["mateo"].daily_requests, raised["mateo"].daily_entities) == (50_000, 2_000_000)
    assert (raised["mateo"].rate_limit, raised["mateo"].p_5xx, raised["mateo"].seed) == (2, 0.1, 3)
    everyone = build_faults([], None, [], ["7"])
    assert all((s.daily_requests, s.daily_entities) == (7, 0) for s in everyone.values())
    entities_only = build_faults([], None, [], ["mateo=/100000"], documented_limits=True)["mateo"]
    assert (entities_only.daily_requests, entities_only.daily_entities) == (10_000, 100_000)
    lifted = build_faults([], None, [], ["mateo=0/0"], documented_limits=True)["mateo"]
    assert (lifted.rate_limit, lifted.daily_requests, lifted.daily_entities) == (2, 0, 0)
    for bad in (["mateo=x"], ["mateo=-1/5"], ["mailchimp=5"], ["mateo=/"]):
        with pytest.raises(ValueError, match="daily-limit"):
            build_faults([], None, [], bad)


def test_the_quota_clock_can_be_frozen_before_midnight_and_moved_past_it(
    admin: AdminClient, urls: dict[str, str], http: httpx.Client
) -> None:
    def post() -> httpx.Response:
        body = {"journey_id": JOURNEY, "items": [{"contact": {"email": "a@x.io"}}]}
        return http.post(f"{urls['mateo']}/journey_execution/batch", json=body, headers=AUTH)

    clock_url = admin.url("mateo", "clock")
    try:
        frozen = http.post(clock_url, json={"now": "2030-01-01T23:59:57Z"}).json()
        assert frozen == {"now": "2030-01-01T23:59:57Z", "frozen": True}
        admin.set_faults("mateo", "daily_requests=1,limit_retry_after=1")
        assert post().status_code == 200  # a new (fake) day: earlier usage does not count
        refused = post()
        assert (refused.status_code, refused.headers["retry-after"]) == (429, "3")
        time.sleep(1.1)
        assert post().headers["retry-after"] == "3"  # frozen: the wait stays what it was
        moved = http.post(clock_url, json={"advance_seconds": 4}).json()
        assert moved == {"now": "2030-01-02T00:00:01Z", "frozen": True}
        assert post().status_code == 200  # a new day, a new quota
        for bad in ({"now": "tomorrow"}, {"now": "2030-01-01T00:00:00"}, {"advance_seconds": -1}, {"x": 1}):
            assert http.post(clock_url, json=bad).status_code == 400
    finally:
        real = http.post(clock_url, json={"now": None}).json()
    assert real["frozen"] is False
    assert abs(datetime.fromisoformat(real["now"].replace("Z", "+00:00")) - datetime.now(UTC)) < timedelta(
        seconds=5
    )
    with pytest.raises(httpx.HTTPStatusError):
        http.post(clock_url, json={"advance_seconds": 1}).raise_for_status()  # only a frozen clock moves
