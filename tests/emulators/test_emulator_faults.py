"""Fault injection: grammar, determinism under a seed, lost responses, drops, timeouts, rate limit."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from emulators.faults import FaultEngine, FaultSettings
from emulators.testing import AdminClient

pytestmark = pytest.mark.integration

MATEO_JOURNEY = "3c90c3cc-0d44-4b50-8888-8dd25736052a"


# --- grammar ---------------------------------------------------------------------------------------
def test_parse_full_grammar_and_round_trip() -> None:
    text = "5xx=0.2, 429=0.05,timeout=0.02,drop=0.01,lost_response=0.02,latency_ms=20,rate_limit=2,seed=7"
    settings = FaultSettings.parse(text + ",retry_after=3,timeout_seconds=1.5")
    assert settings.p_5xx == 0.2
    assert settings.p_429 == 0.05
    assert settings.p_timeout == 0.02
    assert settings.p_drop == 0.01
    assert settings.p_lost_response == 0.02
    assert settings.latency_ms == 20
    assert settings.rate_limit == 2
    assert settings.seed == 7
    assert settings.retry_after == 3
    assert settings.timeout_seconds == 1.5
    assert FaultSettings.parse(settings.to_spec()) == settings
    assert FaultSettings.from_dict(settings.to_dict()) == settings
    assert FaultSettings.parse("") == FaultSettings() == FaultSettings.parse(" , ")
    defaults = FaultSettings()
    assert (defaults.retry_after, defaults.timeout_seconds, defaults.rate_limit) == (1, 5.0, 0.0)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("5xx=0.2,bogus=1", "unknown fault setting 'bogus'"),
        ("5xx", "key=value"),
        ("5xx=lots", "not a valid number"),
        ("5xx=1.5", "between 0 and 1"),
        ("5xx=0.6,429=0.6", "more than 1"),
        ("5xx=0.1,5xx=0.2", "given twice"),
        ("latency_ms=-1", ">= 0"),
    ],
)
def test_parse_errors_are_clear(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        FaultSettings.parse(text)


def test_engine_sequence_is_deterministic_and_one_draw_per_request() -> None:
    settings = FaultSettings.parse("5xx=0.3,429=0.1,timeout=0.1,drop=0.1,lost_response=0.1,seed=11")
    first = [FaultEngine(settings).draw() for _ in range(1)]
    engine_a, engine_b = FaultEngine(settings), FaultEngine(settings)
    run_a = [engine_a.draw() for _ in range(300)]
    run_b = [engine_b.draw() for _ in range(300)]
    assert run_a == run_b
    assert run_a[0] == first[0]
    kinds = {d.kind for d in run_a}
    assert kinds == {"none", "5xx", "429", "timeout", "drop", "lost_response"}
    assert {d.status for d in run_a if d.kind == "5xx"} == {500, 502, 503}
    assert {d.drop for d in run_a if d.kind == "lost_response"} == {True, False}


# --- over HTTP -------------------------------------------------------------------------------------
@pytest.fixture
def fresh() -> Iterator[httpx.Client]:
    """A separate client: drops and timeouts must not disturb the shared session client."""
    with httpx.Client(trust_env=False, timeout=httpx.Timeout(2.0)) as client:
        yield client


def outcome(send: Callable[[], httpx.Response]) -> str:
    try:
        return str(send().status_code)
    except httpx.RemoteProtocolError:
        return "drop"


@pytest.fixture
def workshop_enroll(
    urls: dict[str, str], fresh: httpx.Client, tokens: dict[str, str]
) -> Callable[..., httpx.Response]:
    def post(email: str = "a@x.io") -> httpx.Response:
        return fresh.post(
            f"{urls['workshop']}/journeys/jrn_welcome/enroll",
            json={"contact_email_addresses": [email]},
            headers={"Authorization": f"Bearer {tokens['workshop']}"},
        )

    return post


def test_same_seed_gives_same_status_sequence(
    admin: AdminClient, workshop_enroll: Callable[..., httpx.Response]
) -> None:
    spec = "5xx=0.3,429=0.15,drop=0.1,lost_response=0.1,seed=1234"
    admin.set_faults("workshop", spec)
    first = [outcome(lambda i=i: workshop_enroll(f"c{i}@x.io")) for i in range(40)]
    admin.reset("workshop")  # restarts the fault sequence from the seed
    second = [outcome(lambda i=i: workshop_enroll(f"c{i}@x.io")) for i in range(40)]
    admin.set_faults("workshop", spec)  # re-installing the same settings restarts it as well
    third = [outcome(lambda i=i: workshop_enroll(f"c{i}@x.io")) for i in range(40)]
    assert first == second == third
    assert {"200", "429", "drop"} <= set(first)
    assert set(first) & {"500", "502", "503"}
    counted = admin.received("workshop")  # since the reset
    assert counted["requests"] == 80
    assert counted["faulted"] == sum(o != "200" for o in second + third)  # the rest the provider answered


def test_lost_response_enrols_but_the_client_sees_a_failure(
    admin: AdminClient, urls: dict[str, str], fresh: httpx.Client, tokens: dict[str, str]
) -> None:
    admin.set_faults("mateo", "lost_response=1,seed=5")
    body = {
        "journey_id": MATEO_JOURNEY,
        "items": [{"deduplication_id": "d-1", "contact": {"email": "a@x.io"}}],
    }
    headers = {"Authorization": f"Bearer {tokens['mateo']}"}
    seen = {
        outcome(lambda: fresh.post(f"{urls['mateo']}/journey_execution/batch", json=body, headers=headers))
    }
    for i in range(2, 12):  # both flavours: 502 and a dropped connection
        item = {"deduplication_id": f"d-{i}", "contact": {"email": f"c{i}@x.io"}}
        seen.add(
            outcome(
                lambda item=item: fresh.post(
                    f"{urls['mateo']}/journey_execution/batch",
                    json={"journey_id": MATEO_JOURNEY, "items": [item]},
                    headers=headers,
                )
            )
        )
    assert seen == {"502", "drop"}
    assert admin.targets("mateo")[MATEO_JOURNEY]["a@x.io"] == 1  # performed despite the failure
    # the caller retries once the provider is healthy again: Mateo's de-dup protects the contact
    admin.set_faults("mateo", "")
    retry = fresh.post(f"{urls['mateo']}/journey_execution/batch", json=body, headers=headers)
    assert retry.json() == {"success": True, "queued_count": 0}
    assert admin.targets("mateo")[MATEO_JOURNEY]["a@x.io"] == 1


def test_lost_response_then_retry_counts_twice_without_provider_dedup(
    admin: AdminClient, urls: dict[str, str], fresh: httpx.Client, tokens: dict[str, str]
) -> None:
    admin.set_faults("altcraft", "lost_response=1")
    body = {
        "token": tokens["altcraft"],
        "workflow_id": 12,
        "matching": "email",
        "data": [{"data": {"email": "a@x.io"}}],
    }
    url = f"{urls['altcraft']}/workflows/import_and_start_batch"
    assert outcome(lambda: fresh.post(url, json=body)) in {"502", "drop"}
    admin.set_faults("altcraft", "")
    assert fresh.post(url, json=body).json()["error"] == 0
    assert admin.targets("altcraft") == {"12": {"a@x.io": 2}}


def test_drop_closes_the_connection_without_a_response(
    admin: AdminClient, workshop_enroll: Callable[..., httpx.Response]
) -> None:
    admin.set_faults("workshop", "drop=1")
    with pytest.raises(httpx.RemoteProtocolError):
        workshop_enroll()
    assert admin.targets("workshop") == {}
    admin.set_faults("workshop", "")
    assert workshop_enroll().status_code == 200  # the client recovers with a new connection


def test_5xx_does_nothing_and_uses_provider_error_shape(
    admin: AdminClient,
    workshop_enroll: Callable[..., httpx.Response],
    urls: dict[str, str],
    http: httpx.Client,
) -> None:
    admin.set_faults("workshop", "5xx=1,seed=3")
    statuses = {workshop_enroll(f"c{i}@x.io").status_code for i in range(20)}
    assert statuses == {500, 502, 503}
    assert admin.targets("workshop") == {}
    assert set(workshop_enroll().json()) == {"error"}
    admin.set_faults("altcraft", "5xx=1")
    response = http.post(f"{urls['altcraft']}/workflows/import_and_start_batch", json={})
    assert response.status_code in {500, 502, 503}
    assert response.json()["error"] == response.status_code
    assert response.headers["x-emulator-fault"] == "5xx"


def test_injected_429_has_retry_after_and_provider_body(
    admin: AdminClient, urls: dict[str, str], fresh: httpx.Client, tokens: dict[str, str]
) -> None:
    admin.set_faults("mateo", "429=1,retry_after=7")
    response = fresh.post(
        f"{urls['mateo']}/journey_execution/batch",
        json={"journey_id": MATEO_JOURNEY, "items": [{"contact": {"email": "a@x.io"}}]},
        headers={"Authorization": f"Bearer {tokens['mateo']}"},
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert set(response.json()) == {"code", "message", "hint", "status"}
    assert "ratelimit-remaining" in response.headers
    assert admin.targets("mateo") == {}


def test_timeout_sleeps_then_504_and_does_nothing(
    admin: AdminClient,
    workshop_enroll: Callable[..., httpx.Response],
    urls: dict[str, str],
    tokens: dict[str, str],
) -> None:
    admin.set_faults("workshop", "timeout=1,timeout_seconds=0.4")
    started = time.monotonic()
    response = workshop_enroll()
    assert response.status_code == 504
    assert time.monotonic() - started >= 0.4
    with httpx.Client(trust_env=False, timeout=0.1) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post(
            f"{urls['workshop']}/journeys/jrn_welcome/enroll",
            json={"contact_email_addresses": ["b@x.io"]},
            headers={"Authorization": f"Bearer {tokens['workshop']}"},
        )
    assert admin.targets("workshop") == {}


def test_latency_is_added(admin: AdminClient, workshop_enroll: Callable[..., httpx.Response]) -> None:
    admin.set_faults("workshop", "latency_ms=150")
    started = time.monotonic()
    assert workshop_enroll().status_code == 200
    assert time.monotonic() - started >= 0.15


def test_rate_limit_sliding_window(
    admin: AdminClient, workshop_enroll: Callable[..., httpx.Response]
) -> None:
    admin.set_faults("workshop", "rate_limit=3")
    statuses = [workshop_enroll(f"c{i}@x.io").status_code for i in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    limited = workshop_enroll("late@x.io")
    assert "retry-after" not in limited.headers  # no document mentions one
    assert limited.json() == {"error": "rate limit exceeded"}
    admin.set_faults("workshop", "rate_limit=3,limit_retry_after=1")  # the named option adds it
    statuses = [workshop_enroll(f"d{i}@x.io").status_code for i in range(4)]
    assert statuses[-1] == 429
    assert workshop_enroll("late2@x.io").headers["retry-after"] == "1"
    time.sleep(1.05)
    assert workshop_enroll("later@x.io").status_code == 200
    assert len(admin.targets("workshop")["jrn_welcome"]) == 7


def test_admin_endpoints_are_never_faulted(admin: AdminClient, http: httpx.Client) -> None:
    admin.set_faults("symplify", "5xx=1,rate_limit=1,latency_ms=500")
    started = time.monotonic()
    for _ in range(5):
        assert admin.health("symplify") == {"status": "ok", "provider": "symplify"}
        assert admin.received("symplify")["requests"] == 0
    assert time.monotonic() - started < 0.5
    assert admin.faults("symplify") == FaultSettings.parse("5xx=1,rate_limit=1,latency_ms=500")


def test_faults_admin_accepts_json_spec_and_text(admin: AdminClient, http: httpx.Client) -> None:
    url = admin.url("altcraft", "faults")
    assert http.post(url, json={"5xx": 0.5, "seed": 9}).json()["5xx"] == 0.5
    assert http.post(url, content=b"drop=0.25", headers={"Content-Type": "text/plain"}).json()["drop"] == 0.25
    got = http.get(url).json()
    assert got == FaultSettings.parse("drop=0.25").to_dict()
    bad = http.post(url, json={"spec": "nonsense=1"})
    assert bad.status_code == 400
    assert "unknown fault setting 'nonsense'" in bad.json()["error"]
    assert http.get(url).json() == got  # a refused update changes nothing


def test_received_shape_and_seed_merge(admin: AdminClient, http: httpx.Client, urls: dict[str, str]) -> None:
    admin.seed("mateo", {"mateo": {"tokens": ["second-token"]}, "workshop": {"tokens": ["ignored"]}})
    seeded = admin.seed("mateo", {"tokens": ["third-token"]})
    assert {"local-mateo-token", "second-token", "third-token"} <= set(seeded["tokens"])
    response = http.post(
        f"{urls['mateo']}/journey_execution/batch",
        json={"journey_id": MATEO_JOURNEY, "items": [{"contact": {"email": "A@x.io"}}]},
        headers={"Authorization": "Bearer third-token"},
    )
    assert response.status_code == 200
    assert admin.received("mateo") == {
        "provider": "mateo",
        "requests": 1,
        "faulted": 0,
        "targets": {MATEO_JOURNEY: {"a@x.io": 1}},
    }
    bad = http.post(admin.url("mateo", "seed"), json={"journeys": {"not-a-uuid": {}}})
    assert bad.status_code == 400
    admin.reset("mateo")
    assert admin.received("mateo") == {"provider": "mateo", "requests": 0, "faulted": 0, "targets": {}}


@pytest.mark.parametrize(("spec", "performed"), [("5xx=1", 0), ("5xx_after=1", 1)])
def test_5xx_after_acts_then_answers_5xx_where_5xx_does_nothing(
    admin: AdminClient,
    urls: dict[str, str],
    fresh: httpx.Client,
    tokens: dict[str, str],
    spec: str,
    performed: int,
) -> None:
    # The two answer alike (500, 502 or 503): only the emulator's record tells them apart.
    admin.set_faults("altcraft", f"{spec},seed=3")
    url = f"{urls['altcraft']}/workflows/import_and_start_batch"
    statuses = set()
    for i in range(12):
        body = {"token": tokens["altcraft"], "workflow_id": 12, "data": [{"data": {"email": f"a{i}@x.io"}}]}
        statuses.add(fresh.post(url, json=body).status_code)
    assert statuses == {500, 502, 503}
    engaged = admin.targets("altcraft").get("12", {})
    assert sum(engaged.values()) == 12 * performed


def test_5xx_after_is_a_fault_key_with_its_own_band() -> None:
    settings = FaultSettings.parse("5xx=0.2,5xx_after=0.3,seed=1")
    assert (settings.p_5xx, settings.p_5xx_after) == (0.2, 0.3)
    assert FaultSettings.parse(settings.to_spec()) == settings
