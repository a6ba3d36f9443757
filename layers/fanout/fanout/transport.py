"""Calling a provider: one httpx client per warm container, and the in-invocation retry rule.

The retry rule lives here and only here: a few quick attempts with exponential backoff and jitter that
honour `Retry-After` (tenacity, a well-kept retry library); longer waits go back to SQS instead, so a
throttled Lambda does not sit idle on the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache

import httpx
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt, wait_exponential_jitter

from fanout.models import Outcome, Verdict
from fanout.providers.base import Provider, ProviderCall, classify_transport_error

ATTEMPTS = 3
MAX_INLINE_WAIT = 5.0  # seconds; a longer Retry-After returns the chunk to the queue instead
# Mateo times out every request after 2 s (PROVIDERS.md); read a little longer so its own 504 arrives.
TIMEOUT = httpx.Timeout(connect=2.0, read=10.0, write=10.0, pool=5.0)


@cache
def http_client() -> httpx.Client:
    """The container's client: keeps connections to the provider alive between invocations."""
    return httpx.Client(
        timeout=TIMEOUT, limits=httpx.Limits(max_connections=10, max_keepalive_connections=10)
    )


def send_once(
    provider: Provider, call: ProviderCall, http: httpx.Client | None = None, body: bytes | None = None
) -> Outcome:
    """One request, its answer classified; transport errors become RETRY (never sent) or UNCERTAIN (a
    status read, which has no effect, is always RETRY). `body`: the call's body already encoded
    (`call.content()`); a call without a JSON body (a status GET) sends none."""
    headers = dict(call.headers)
    content = call.content() if body is None else body
    if content is not None:
        headers = {"Content-Type": "application/json", **headers}
    started = time.perf_counter()
    try:
        response = (http or http_client()).request(call.method, call.url, content=content, headers=headers)
    except httpx.HTTPError as exc:
        verdict = Verdict.RETRY if call.status_of is not None else classify_transport_error(exc)
        outcome = Outcome(verdict, f"{type(exc).__name__} calling {provider.destination.value}")
    else:
        outcome = provider.outcome(call, response)
        outcome.ratelimit = rate_limit_headers(response.headers)
    outcome.elapsed_ms = (time.perf_counter() - started) * 1000
    return outcome


def rate_limit_headers(headers: httpx.Headers) -> tuple[int, int] | None:
    """(`ratelimit-limit`, `ratelimit-remaining`) when the answer carries both (a value may carry
    parameters, `10000;w=86400`: its leading number counts), else None."""
    values = []
    for name in ("ratelimit-limit", "ratelimit-remaining"):
        text = headers.get(name, "").split(";")[0].split(",")[0].strip()
        if not text.isdigit():
            return None
        values.append(int(text))
    return values[0], values[1]


def _worth_retrying(provider: Provider) -> Callable[[Outcome], bool]:
    def check(outcome: Outcome) -> bool:
        # A longer Retry-After (a provider's daily quota asks for hours) is not tried again in this
        # invocation at all: the sender hands the whole wait to the queue.
        if outcome.retry_after is not None and outcome.retry_after > MAX_INLINE_WAIT:
            return False
        # A 429 with no Retry-After while the rate window its headers show still has room: another limit
        # refused it (a daily quota), which a quick retry cannot clear.
        if (
            outcome.status_code == 429
            and outcome.retry_after is None
            and outcome.ratelimit is not None
            and outcome.ratelimit[1] > 0
        ):
            return False
        return outcome.verdict is Verdict.RETRY or (outcome.verdict is Verdict.UNCERTAIN and provider.dedupes)

    return check


def _wait(state: RetryCallState) -> float:
    outcome = state.outcome.result() if state.outcome else None
    if outcome is not None and outcome.retry_after is not None:
        return outcome.retry_after
    return float(wait_exponential_jitter(multiplier=0.2, max=2.0)(state))


def send(
    provider: Provider,
    call: ProviderCall,
    attempts: int = ATTEMPTS,
    http: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    pace: Callable[[], None] | None = None,
) -> Outcome:
    """Send with a few in-invocation retries; the last outcome is returned, never raised.

    `pace` (the destination's Pacer.acquire) is waited for before every attempt, retries included: a
    retry that skipped it would land between two paced calls and be refused in its turn. The body is
    encoded and the client made before that wait, so the request leaves as soon as its slot comes.
    """
    client = http or http_client()
    body = call.content()
    reached: list[Outcome] = []  # attempts whose answer was lost: they may have reached the provider

    def attempt() -> Outcome:
        if pace is not None:
            pace()
        outcome = send_once(provider, call, client, body)
        if outcome.verdict is Verdict.UNCERTAIN:
            reached.append(outcome)
        return outcome

    retrying = Retrying(
        sleep=sleep,
        stop=stop_after_attempt(attempts),
        wait=_wait,
        retry=retry_if_result(_worth_retrying(provider)),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        reraise=False,
    )
    outcome: Outcome = retrying(attempt)
    outcome.attempts = retrying.statistics.get("attempt_number", 1)
    if reached and outcome.verdict is Verdict.RETRY:
        # A later attempt was refused, but an earlier one may have gone through: the call as a whole may
        # have reached the provider, and its rows must not end "failed" should it never be answered.
        outcome.verdict = Verdict.UNCERTAIN
        outcome.detail = f"{outcome.detail}, after an earlier attempt's {reached[-1].detail}"
    return outcome
