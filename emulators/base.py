"""Shared machinery of the provider emulators: seeded state, observation counters, admin API, faults.

Every emulator is a Starlette app wrapped in ``FaultMiddleware``. Admin endpoints (never faulted)::

    GET  /_emulator/health    -> {"status": "ok", "provider": "<name>"}
    GET  /_emulator/received  -> {"provider": "<name>", "requests": <int>, "faulted": <int>,
                                  "targets": {"<target id>": {"<contact identity>": <times>}}}
    POST /_emulator/reset     -> forget everything received (counters, de-dup memory, batches, messages),
                                 keep the seeds, restart the fault sequence from its seed
    GET  /_emulator/faults    -> the fault settings, keyed as in the fault grammar (see faults.py)
    POST /_emulator/faults    -> replace them: a JSON object with grammar keys, {"spec": "<fault string>"},
                                 or a text/plain fault string; answers the new settings
    GET  /_emulator/seed      -> this provider's seeded state
    POST /_emulator/seed      -> merge seed data: either the whole fixture shape {"mateo": {...}, ...}
                                 (only this provider's section is used) or this provider's section alone
    GET  /_emulator/clock     -> the daily quotas' clock: {"now": "<ISO 8601>", "frozen": <bool>}
    POST /_emulator/clock     -> {"now": "2030-01-01T23:59:57Z"} freezes it there (null: real time again),
                                 {"advance_seconds": 10} moves a frozen one on (see faults.SettableClock)

``requests`` counts every provider HTTP request that reached the emulator (faulted, rejected or not);
``faulted`` how many of them got an injected fault or limit instead of the provider's own answer (a lost
response counts: the client never saw the answer); ``requests - faulted`` is what the provider answered.
``targets`` counts actual enrolments/messages: a request refused or de-duplicated adds nothing.

Order of what ``FaultMiddleware`` applies to a provider request: ``latency_ms`` (cut short at the
emulator's ``request_timeout_seconds()``, if it has one), the per-second ``rate_limit`` (429
``x-emulator-fault: rate_limit``), the ``daily_requests`` quota (429 ``daily_limit``; with
``limit_retry_after=1`` these limits' 429s carry a Retry-After, until the next UTC midnight for a day's), then a request whose latency exceeded the timeout is answered 504
(``request_timeout``) without being performed, and finally the random fault drawn for the request.

Seed merging: objects merge key by key, arrays are unioned (order kept), other values are replaced.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, ClassVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from emulators.faults import FaultEngine, FaultSettings, UtcClock

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROVIDERS: tuple[str, ...] = ("mateo", "symplify", "workshop", "altcraft")
ADMIN_PREFIX = "/_emulator"
DEFAULT_FIXTURE = Path(__file__).parent / "fixtures" / "default.json"
# Key under scope["extensions"] where server.py's protocol puts the connection's transport, so that a
# "drop" fault can close the TCP connection without writing a response.
TRANSPORT_EXTENSION = "emulator.transport"

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_PHONE_JUNK_RE = re.compile(r"[\s\-().]")
_REASONS = {500: "internal server error", 502: "bad gateway", 503: "service unavailable"}


def load_fixture(path: str | Path | None = None) -> dict[str, Any]:
    """Read a fixture file (default: emulators/fixtures/default.json); raises ValueError if not an object."""
    fixture_path = Path(path) if path else DEFAULT_FIXTURE
    data = json.loads(fixture_path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"fixture {fixture_path} must hold a JSON object")
    return data


def section_for(provider: str, data: dict[str, Any]) -> dict[str, Any]:
    """This provider's part of seed data given either in the whole-fixture shape or as a bare section."""
    if provider in data:
        section = data[provider]
    elif any(name in data for name in PROVIDERS):
        section = {}  # whole-fixture shape without a section for us
    else:
        section = data
    if not isinstance(section, dict):
        raise ValueError(f"seed section for {provider} must be a JSON object")
    return section


def merge_seed(base: Any, update: Any) -> Any:
    """Deep-merge ``update`` into a copy of ``base`` (objects merged, arrays unioned, scalars replaced)."""
    if isinstance(base, dict) and isinstance(update, dict):
        merged = dict(base)
        for key, value in update.items():
            merged[key] = merge_seed(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(update, list):
        seen = {json.dumps(item, sort_keys=True) for item in base}
        merged_list = list(base)
        for item in update:
            marker = json.dumps(item, sort_keys=True)
            if marker not in seen:
                seen.add(marker)
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(update)


def is_uuid(value: Any) -> bool:
    """True for a canonical 8-4-4-4-12 hex UUID string."""
    return isinstance(value, str) and bool(_UUID_RE.match(value))


def normalize_phone(value: str) -> str:
    """Best-effort E.164: drop spaces, dashes, dots and parentheses; a leading 00 becomes +."""
    phone = _PHONE_JUNK_RE.sub("", value.strip())
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    return phone


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, "" if malformed, None if absent."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return token.strip()


class Emulator:
    """Base class of one provider emulator: seeds, received counters, faults and the admin routes.

    Subclasses set ``name``, implement ``routes``, ``error_body`` and optionally ``validate_seed``,
    ``reset_state``, ``response_headers`` and ``request_timeout_seconds``. All state is touched only
    from the server's event loop. ``clock`` (UTC, aware datetimes) drives the daily quotas; tests inject
    a fake one.
    """

    name: ClassVar[str] = "provider"

    def __init__(
        self,
        seed: dict[str, Any] | None = None,
        faults: FaultSettings | None = None,
        clock: UtcClock | None = None,
    ) -> None:
        self.seed_data: dict[str, Any] = {}
        self.faults = FaultEngine(faults, clock)
        self.requests = 0
        self.faulted = 0
        self.targets: dict[str, Counter[str]] = {}
        self.apply_seed(seed or {})
        self.reset_state()

    # --- seeds and state -------------------------------------------------------------------------
    def apply_seed(self, data: dict[str, Any]) -> None:
        """Merge seed data (whole-fixture shape or bare section); raises ValueError if malformed."""
        merged = merge_seed(self.seed_data, section_for(self.name, data))
        self.validate_seed(merged)
        self.seed_data = merged

    def validate_seed(self, section: dict[str, Any]) -> None:
        """Raise ValueError if a merged seed section is unusable. Default: only ``tokens`` is checked."""
        tokens = section.get("tokens", [])
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise ValueError(f"{self.name}.tokens must be an array of non-empty strings")

    @property
    def tokens(self) -> set[str]:
        """API tokens this emulator accepts."""
        return set(self.seed_data.get("tokens", []))

    def reset(self) -> None:
        """Forget everything received; keep seeds and fault settings (their sequence restarts)."""
        self.requests = 0
        self.faulted = 0
        self.targets = {}
        self.faults.reset()
        self.reset_state()

    def reset_state(self) -> None:
        """Subclass hook: clear provider-specific memory (de-dup sets, batches, ...)."""

    def record(self, target: str, identity: str, times: int = 1) -> None:
        """Count an actual enrolment/message of ``identity`` at ``target``."""
        self._counts(target)[identity] += times

    def record_all(self, target: str, identities: list[str]) -> None:
        """Count one enrolment of each of ``identities`` at ``target`` (a batch's, at once)."""
        self._counts(target).update(identities)

    def _counts(self, target: str) -> Counter[str]:
        key = str(target)
        counts = self.targets.get(key)
        if counts is None:
            counts = self.targets[key] = Counter()
        return counts

    def received(self) -> dict[str, Any]:
        """The observation document served at GET /_emulator/received."""
        return {
            "provider": self.name,
            "requests": self.requests,
            "faulted": self.faulted,
            "targets": {target: dict(counts) for target, counts in self.targets.items()},
        }

    # --- responses ---------------------------------------------------------------------------------
    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """The provider's JSON error body for an HTTP status."""
        return {"error": message}

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        """A JSON error response in the provider's shape."""
        return JSONResponse(self.error_body(status, message), status_code=status, headers=headers)

    def response_headers(self) -> list[tuple[bytes, bytes]]:
        """Extra headers added to every provider response (Mateo's rate-limit headers)."""
        return []

    def request_timeout_seconds(self) -> float | None:
        """How long the provider lets a request take before answering 504 itself; None = no limit."""
        return None

    def routes(self) -> list[BaseRoute]:
        """The provider's own routes."""
        raise NotImplementedError

    def build_app(self) -> ASGIApp:
        """The ASGI app to serve: provider routes + admin routes, wrapped in fault injection."""
        app = Starlette(routes=[*self.routes(), *admin_routes(self)])
        return FaultMiddleware(app, self)


def admin_routes(emulator: Emulator) -> list[BaseRoute]:
    """The /_emulator/... routes described in the module docstring."""

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "provider": emulator.name})

    async def received(request: Request) -> Response:
        return JSONResponse(emulator.received())

    async def reset(request: Request) -> Response:
        emulator.reset()
        return JSONResponse({"status": "reset", "provider": emulator.name})

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            try:
                emulator.faults.replace(_settings_from_body(await request.body()))
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(emulator.faults.settings.to_dict())

    async def seed(request: Request) -> Response:
        if request.method == "POST":
            try:
                data = json.loads(await request.body())
                if not isinstance(data, dict):
                    raise ValueError("seed data must be a JSON object")
                emulator.apply_seed(data)
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(emulator.seed_data)

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            try:
                data = json.loads(await request.body())
                if not isinstance(data, dict):
                    raise ValueError("clock settings must be a JSON object")
                emulator.faults.clock.update(data)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(emulator.faults.clock.to_dict())

    return [
        Route(f"{ADMIN_PREFIX}/health", health, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/received", received, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/reset", reset, methods=["POST"]),
        Route(f"{ADMIN_PREFIX}/faults", faults, methods=["GET", "POST"]),
        Route(f"{ADMIN_PREFIX}/seed", seed, methods=["GET", "POST"]),
        Route(f"{ADMIN_PREFIX}/clock", clock, methods=["GET", "POST"]),
    ]


def _settings_from_body(body: bytes) -> FaultSettings:
    text = body.decode("utf-8").strip()
    if not text.startswith("{"):
        return FaultSettings.parse(text)
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError('fault settings must be a JSON object, {"spec": "..."} or a fault string')
    if set(data) == {"spec"}:
        if not isinstance(data["spec"], str):
            raise ValueError('spec must be a fault string like "5xx=0.2,latency_ms=20"')
        return FaultSettings.parse(data["spec"])
    return FaultSettings.from_dict(data)


class FaultMiddleware:
    """Applies latency, the rate limit and random faults to provider requests (not to /_emulator/)."""

    def __init__(self, app: ASGIApp, emulator: Emulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        try:
            await self._handle(scope, receive, send)
        except asyncio.CancelledError:
            # Only happens when the server stops with requests in flight (e.g. a 5 s "timeout" fault):
            # close the connection quietly instead of letting uvicorn log the cancellation as a crash.
            await _drop(_transport_of(scope, send))

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        emulator = self.emulator
        emulator.requests += 1
        decision = emulator.faults.draw()  # always exactly one draw per request, even if unused
        settings = emulator.faults.settings
        transport = _transport_of(scope, send)
        send = self._with_headers(send)
        timed_out = await self._delay(settings.latency_ms / 1000)
        if not await self._admitted(scope, receive, send):
            return
        if timed_out is not None:
            message = f"request timed out after {timed_out:g} s"
            await self._answer(scope, receive, send, 504, message, "request_timeout")
            return
        if decision.kind == "none":
            await self.app(scope, receive, send)
            return
        tracked = _BodyTracker(receive)
        if decision.kind in ("lost_response", "5xx_after"):
            # Perform the request for real, throw its answer away, then fail like a lost response (a 502
            # or a dropped connection) or answer a 5xx as if nothing had been done (5xx_after).
            await self.app(scope, tracked, _discard)
            await self._fail(scope, tracked, send, transport, decision.status, decision.kind)
        elif decision.kind == "timeout":
            await asyncio.sleep(settings.timeout_seconds)
            await self._answer(scope, tracked, send, 504, "gateway timeout", "timeout")
        elif decision.kind == "429":
            await self._answer(scope, tracked, send, 429, "too many requests", "429", settings.retry_after)
        else:  # 5xx or drop, nothing performed
            await self._fail(scope, tracked, send, transport, decision.status, decision.kind)

    async def _delay(self, latency: float) -> float | None:
        """Sleep the injected latency, or only the provider's request timeout when the latency is longer;
        returns that timeout when it cut the request short, else None."""
        limit = self.emulator.request_timeout_seconds()
        if limit and latency > limit:
            await asyncio.sleep(limit)
            return limit
        if latency:
            await asyncio.sleep(latency)
        return None

    async def _admitted(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Apply the per-second rate limit, then the daily request quota; False once answered 429."""
        faults = self.emulator.faults
        header = bool(faults.settings.limit_retry_after)  # no document mentions one: off by default
        retry_after = faults.admit(time.monotonic())
        if retry_after is not None:
            wait = retry_after if header else None
            await self._answer(scope, receive, send, 429, "rate limit exceeded", "rate_limit", wait)
            return False
        retry_after = faults.admit_daily()
        if retry_after is not None:
            limit = faults.settings.daily_requests
            message = f"daily limit of {limit} requests reached; it resets at 00:00 UTC"
            await self._answer(
                scope, receive, send, 429, message, "daily_limit", retry_after if header else None
            )
            return False
        return True

    def _with_headers(self, send: Send) -> Send:
        if type(self.emulator).response_headers is Emulator.response_headers:
            return send  # no extra headers for this provider: skip the wrapper
        extra = self.emulator.response_headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra()]}
            await send(message)

        return send_with_headers

    async def _fail(
        self, scope: Scope, receive: _BodyTracker, send: Send, transport: Any, status: int | None, kind: str
    ) -> None:
        if status is None and transport is not None:
            # Read the whole request first: closing with unread bytes makes the kernel send a TCP
            # reset, and the client would see "connection reset" instead of a clean close.
            await receive.drain()
            if await _drop(transport):
                self.emulator.faulted += 1
                return
        # No transport to drop (not served by uvicorn/server.py): the closest thing is a 502.
        status = status or 502
        await self._answer(scope, receive, send, status, _REASONS.get(status, "server error"), kind)

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        message: str,
        kind: str,
        retry_after: int | None = None,
    ) -> None:
        self.emulator.faulted += 1
        headers = {"x-emulator-fault": kind}
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        response = self.emulator.error(status, message, headers=headers)
        await response(scope, receive, send)


class _BodyTracker:
    """Wraps an ASGI receive and remembers whether the request body has been read to the end."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.done = False

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        return message

    async def drain(self) -> None:
        """Read and discard the rest of the body (never call receive() again once it is complete)."""
        while not self.done:
            await self()


async def _discard(message: Message) -> None:
    """An ASGI send that throws the response away (for lost_response)."""


def _transport_of(scope: Scope, send: Send) -> Any:
    """The connection's asyncio transport, if the server exposes it."""
    transport = scope.get("extensions", {}).get(TRANSPORT_EXTENSION)
    if transport is None:
        # uvicorn passes its cycle's bound ``send``; the cycle holds the transport.
        transport = getattr(getattr(send, "__self__", None), "transport", None)
    return transport


async def _drop(transport: Any) -> bool:
    """Close the TCP connection without a response; False if there is no transport to close."""
    if transport is None or not hasattr(transport, "abort"):
        return False
    transport.abort()
    # Let the protocol's connection_lost run so uvicorn marks the cycle disconnected and does not
    # try to send its own "500 Internal Server Error" after we return without a response.
    for _ in range(3):
        await asyncio.sleep(0)
    return True
