"""fanout.transport.send: a few quick retries inside one invocation for answers that are safe to retry,
honouring a short Retry-After; anything longer goes back to the queue, and a refusal is never retried."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
import respx

from fanout import transport
from fanout.destinations import Destination
from fanout.models import StagedRow, Verdict
from fanout.providers import provider_for
from fanout.providers.base import ProviderCall, ProviderSecret, encode_body

pytestmark = pytest.mark.unit

BASE = "https://provider.test/api"
SECRET = ProviderSecret(base_url=BASE, token="secret-token", customer_id="4711")
TARGETS = {
    Destination.MATEO: "3c90c3cc-0d44-4b50-8888-8dd25736052a",
    Destination.MATEO_MESSAGE: "6a1f1d3e-2b7c-4e0a-9d45-1c2b3a4d5e6f",
    Destination.SYMPLIFY: "1001",
    Destination.WORKSHOP: "jrn_welcome",
    Destination.ALTCRAFT: "12",
}
SUCCESS = {
    Destination.MATEO: {"success": True, "queued_count": 1},
    Destination.MATEO_MESSAGE: {"message": {"id": "m-1", "status": "sent"}},
    Destination.SYMPLIFY: {"batchId": 1},
    Destination.WORKSHOP: {"enrolled_count": 1, "not_enrolled": {}},
    Destination.ALTCRAFT: {"error": 0, "error_text": "Successful operation", "result": [{"profile_id": "p"}]},
}
DEDUPES = [d for d in Destination if provider_for(d).dedupes]
# What a successful answer means: done, except at Symplify, where it starts a batch to follow up.
ACCEPTED = {d: Verdict.STARTED if provider_for(d).follows_batches else Verdict.DONE for d in Destination}
NO_DEDUPE = [d for d in Destination if not provider_for(d).dedupes]


def one_call(destination: Destination) -> ProviderCall:
    provider = provider_for(destination)
    item = (
        "ada@example.com" if destination is Destination.WORKSHOP else {"data": {"email": "ada@example.com"}}
    )
    envelope = provider.envelope(TARGETS[destination], {})
    if destination is Destination.SYMPLIFY:
        envelope["downloadUrl"] = "https://bucket.test/contacts.ndjson"
    rows = [StagedRow(1, "ada@example.com", item)]
    return next(iter(provider.calls(TARGETS[destination], envelope, rows, SECRET, "c")))


class Script:
    """An HTTP server stand-in that answers with the given responses (or errors), in turn."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def waits() -> list[float]:
    """The waits the retry rule asks for, recorded instead of slept (only this call's: other threads'
    sleeps in the same process are not ours)."""
    return []


@pytest.fixture
def run(waits: list[float]) -> Iterator[Callable[[Destination, Script], transport.Outcome]]:
    clients: list[httpx.Client] = []

    def send(destination: Destination, script: Script) -> transport.Outcome:
        client = httpx.Client(transport=httpx.MockTransport(script))
        clients.append(client)
        return transport.send(
            provider_for(destination), one_call(destination), http=client, sleep=waits.append
        )

    yield send
    for client in clients:
        client.close()


def busy(status: int = 429, retry_after: str | None = None) -> httpx.Response:
    return httpx.Response(status, headers={"Retry-After": retry_after} if retry_after else None)


def ok(destination: Destination) -> httpx.Response:
    return httpx.Response(200, json=SUCCESS[destination])


@pytest.mark.parametrize("destination", list(Destination))
def test_a_throttled_call_is_retried_after_a_short_retry_after(
    destination: Destination, run: Callable[..., transport.Outcome], waits: list[float]
) -> None:
    script = Script(busy(429, "0.01"), busy(429, "0.02"), ok(destination))
    outcome = run(destination, script)

    assert outcome.verdict is ACCEPTED[destination]
    assert len(script.requests) == transport.ATTEMPTS == 3
    assert waits == [0.01, 0.02]


@pytest.mark.parametrize("destination", DEDUPES)
def test_a_503_is_retried_with_a_short_backoff_then_succeeds(
    destination: Destination, run: Callable[..., transport.Outcome], waits: list[float]
) -> None:
    script = Script(busy(503), ok(destination))
    outcome = run(destination, script)

    assert outcome.verdict is ACCEPTED[destination]
    assert len(script.requests) == 2
    assert len(waits) == 1 and 0 < waits[0] <= 2.0


def test_retries_stop_after_three_attempts_and_return_the_last_answer(
    run: Callable[..., transport.Outcome], waits: list[float]
) -> None:
    script = Script(busy(429, "0.01"), busy(429, "0.01"), busy(429, "0.03"))
    outcome = run(Destination.ALTCRAFT, script)

    assert len(script.requests) == 3
    assert (outcome.verdict, outcome.status_code, outcome.retry_after) == (Verdict.RETRY, 429, 0.03)
    assert len(waits) == 2


def test_a_retry_after_within_the_inline_limit_is_waited_out(
    run: Callable[..., transport.Outcome], waits: list[float]
) -> None:
    script = Script(busy(429, str(transport.MAX_INLINE_WAIT)), ok(Destination.MATEO))
    assert run(Destination.MATEO, script).verdict is Verdict.DONE
    assert waits == [transport.MAX_INLINE_WAIT]


@pytest.mark.parametrize("destination", list(Destination))
def test_a_long_retry_after_is_not_waited_for_but_handed_to_the_queue(
    destination: Destination, run: Callable[..., transport.Outcome], waits: list[float]
) -> None:
    script = Script(busy(429, "120"), ok(destination))
    outcome = run(destination, script)

    assert len(script.requests) == 1
    assert (outcome.verdict, outcome.retry_after) == (Verdict.RETRY, 120.0)
    assert waits == []


@pytest.mark.parametrize("destination", DEDUPES)
@pytest.mark.parametrize(
    "first",
    [busy(502), busy(504), httpx.ReadTimeout("read timed out"), httpx.RemoteProtocolError("disconnected")],
    ids=["502", "504", "read-timeout", "disconnected"],
)
def test_an_uncertain_call_is_resent_where_the_provider_deduplicates(
    destination: Destination, first: httpx.Response | Exception, run: Callable[..., transport.Outcome]
) -> None:
    script = Script(first, ok(destination))
    assert run(destination, script).verdict is Verdict.DONE
    assert len(script.requests) == 2


@pytest.mark.parametrize("destination", NO_DEDUPE)
@pytest.mark.parametrize(
    "first",
    [
        busy(500),
        busy(502),
        busy(503),
        busy(504),
        httpx.Response(200, text="<html>maintenance</html>"),
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("disconnected"),
    ],
    ids=["500", "502", "503", "504", "html-200", "read-timeout", "disconnected"],
)
def test_an_uncertain_call_is_never_resent_where_the_provider_does_not_deduplicate(
    destination: Destination, first: httpx.Response | Exception, run: Callable[..., transport.Outcome]
) -> None:
    script = Script(first, ok(destination))
    outcome = run(destination, script)

    assert outcome.verdict is Verdict.UNCERTAIN
    assert len(script.requests) == 1


@pytest.mark.parametrize("destination", DEDUPES)
def test_a_call_whose_answer_was_lost_stays_uncertain_when_its_retries_are_refused(
    destination: Destination, run: Callable[..., transport.Outcome]
) -> None:
    # The first attempt may have gone through; that the next two were refused does not undo it.
    script = Script(httpx.ReadTimeout("read timed out"), busy(429, "0.01"), busy(429, "0.01"))
    outcome = run(destination, script)

    assert outcome.verdict is Verdict.UNCERTAIN
    assert len(script.requests) == 3
    assert "ReadTimeout" in outcome.detail


@pytest.mark.parametrize("destination", DEDUPES)
def test_refused_attempts_alone_leave_the_call_to_retry(
    destination: Destination, run: Callable[..., transport.Outcome]
) -> None:
    script = Script(busy(429, "0.01"), busy(429, "0.01"), busy(429, "0.01"))
    assert run(destination, script).verdict is Verdict.RETRY


def test_the_deduplicating_providers_are_the_ones_the_seeds_make_safe() -> None:
    assert set(DEDUPES) == {Destination.MATEO, Destination.WORKSHOP}


@pytest.mark.parametrize("destination", list(Destination))
def test_a_call_that_never_connected_is_retried_even_without_deduplication(
    destination: Destination, run: Callable[..., transport.Outcome]
) -> None:
    script = Script(httpx.ConnectError("connection refused"), ok(destination))
    assert run(destination, script).verdict is ACCEPTED[destination]
    assert len(script.requests) == 2


@pytest.mark.parametrize("destination", list(Destination))
@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
def test_a_4xx_is_never_retried(
    destination: Destination, status: int, run: Callable[..., transport.Outcome], waits: list[float]
) -> None:
    script = Script(httpx.Response(status, json={"error": "no"}), ok(destination))
    run(destination, script)

    assert len(script.requests) == 1
    assert waits == []


def test_a_body_too_large_answer_is_not_retried_as_is(run: Callable[..., transport.Outcome]) -> None:
    too_large = {"error": 400, "error_debug": "http: request body too large", "error_text": "Invalid request"}
    script = Script(httpx.Response(400, json=too_large), ok(Destination.ALTCRAFT))

    assert run(Destination.ALTCRAFT, script).verdict is Verdict.TOO_LARGE
    assert len(script.requests) == 1


@respx.mock(assert_all_called=True)
def test_the_containers_own_client_sends_the_encoded_body(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(f"{BASE}/journey_execution/batch").mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json={"success": True, "queued_count": 1})]
    )
    call = one_call(Destination.MATEO)

    outcome = transport.send(provider_for(Destination.MATEO), call)

    assert outcome.verdict is Verdict.DONE
    assert route.call_count == 2
    request = route.calls.last.request
    old = {"journey_id": TARGETS[Destination.MATEO], "items": [r.item for r in call.rows]}
    assert request.content == call.content() == encode_body(old)
    assert request.headers["Authorization"] == "Bearer secret-token"
    assert request.headers["Content-Type"] == "application/json"


def test_every_attempt_waits_for_its_pacing_slot_retries_included(waits: list[float]) -> None:
    slots: list[int] = []
    script = Script(busy(retry_after="1"), ok(Destination.MATEO))
    with httpx.Client(transport=httpx.MockTransport(script)) as client:
        outcome = transport.send(
            provider_for(Destination.MATEO),
            one_call(Destination.MATEO),
            http=client,
            sleep=waits.append,
            pace=lambda: slots.append(len(script.requests)),
        )
    assert outcome.verdict is Verdict.DONE
    assert slots == [0, 1], "a slot before the first request and before the retry"


def test_a_daily_quota_429_is_not_retried_in_the_invocation(
    run: Callable[..., transport.Outcome], waits: list[float]
) -> None:
    # Mateo's daily quota: 429 with Retry-After until 00:00 UTC. Waiting in the Lambda is pointless.
    quota = httpx.Response(
        429,
        headers={"Retry-After": "30000"},
        json={
            "code": "rate_limited",
            "message": "daily limit of 10000 requests reached; it resets at 00:00 UTC",
        },
    )
    script = Script(quota, ok(Destination.MATEO))
    outcome = run(Destination.MATEO, script)

    assert (outcome.verdict, outcome.retry_after, outcome.attempts) == (Verdict.RETRY, 30000.0, 1)
    assert len(script.requests) == 1 and waits == []
    assert "daily limit" in outcome.detail


def test_a_status_read_sends_no_body_and_a_failed_connection_is_read_again_later(
    waits: list[float],
) -> None:
    provider = provider_for(Destination.SYMPLIFY)
    call = provider.status_call("1001", "b-1", SECRET)
    script = Script(httpx.ReadTimeout("read timed out"), httpx.Response(200, json={"status": "FINISHED"}))
    with httpx.Client(transport=httpx.MockTransport(script)) as client:
        lost = transport.send(provider, call, attempts=1, http=client, sleep=waits.append)
        done = transport.send(provider, call, attempts=1, http=client, sleep=waits.append)
    assert lost.verdict is Verdict.RETRY  # a GET has no effect: never uncertain
    assert done.verdict is Verdict.DONE
    request = script.requests[-1]
    assert (request.method, request.content) == ("GET", b"")
    assert "content-type" not in request.headers
