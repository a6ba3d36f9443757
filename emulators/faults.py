"""Fault injection settings and the per-emulator fault engine.

Grammar of a fault string (``FaultSettings.parse``), comma-separated ``key=value`` pairs, whitespace
ignored, each key at most once, empty string = no faults::

    5xx=<share>            answer 500, 502 or 503 (chosen evenly) without doing anything
    5xx_after=<share>      PERFORM the request, then answer 500, 502 or 503 (chosen evenly): the provider
                           acted and says it failed — no answer tells the client which of 5xx and
                           5xx_after it met
    429=<share>            answer 429 with a ``Retry-After`` header and the provider's error body
    timeout=<share>        sleep ``timeout_seconds`` then answer 504, without doing anything
    drop=<share>           close the connection without any response, without doing anything
    lost_response=<share>  PERFORM the request, then answer 502 or drop the connection (even odds)
    latency_ms=<ms>        extra delay before every answer (float, >= 0)
    rate_limit=<n>         max requests per sliding 1-second window; 0 = off (the default)
    retry_after=<s>        Retry-After seconds sent with injected 429s (int, default 1)
    limit_retry_after=<0|1>  1: the limits' own 429s (rate_limit, daily_requests, daily_entities) carry a
                           Retry-After (seconds until the window frees, or until 00:00 UTC). 0, the default:
                           they carry none, as no provider document mentions one (Mateo's docs: a 429 and
                           ratelimit-* headers only)
    timeout_seconds=<s>    how long a ``timeout`` fault sleeps (default 5, longer than the clients' read timeout)
    daily_requests=<n>     max requests per UTC calendar day; 0 = off (the default)
    daily_entities=<n>     max imported entities (contacts) per UTC calendar day; 0 = off (the default).
                           Counted only by emulators whose endpoints import entities (Mateo).
    seed=<int>             makes the fault sequence deterministic

Shares are probabilities in 0..1 and must add up to at most 1. Exactly one random draw is made per
provider request, in arrival order, so two runs with the same seed and the same request order see the
same faults. Admin endpoints (``/_emulator/...``) never get faults and make no draw.

Daily quotas (``DailyQuota``): a day is a UTC calendar day, 00:00:00 to 24:00:00 UTC, read from an
injectable clock; usage starts again at 0 when the UTC date changes; with ``limit_retry_after=1`` a refused
request's Retry-After is the number of seconds until the next UTC midnight (by default it has none). Refused requests/entities are not
counted. ``POST /_emulator/faults`` keeps the day's usage (raising a limit mid-day behaves like the
provider raising it); ``POST /_emulator/reset`` forgets it.

The quotas' clock (``SettableClock``) can be frozen at a chosen instant and moved on through the admin
API (``POST /_emulator/clock``), so a running stack meets a quota and its reset at UTC midnight on cue:
frozen at 23:59:57 UTC, every refusal says ``Retry-After: 3``; advanced past midnight, a new day starts.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

FaultKind = Literal["none", "5xx", "429", "timeout", "drop", "lost_response", "5xx_after"]

# Grammar key -> dataclass attribute. The order of the share keys is the order of the bands that a
# draw falls into; changing it would change which fault a given seed produces.
_SHARE_KEYS: dict[str, str] = {
    "5xx": "p_5xx",
    "429": "p_429",
    "timeout": "p_timeout",
    "drop": "p_drop",
    "lost_response": "p_lost_response",
    "5xx_after": "p_5xx_after",  # last: the bands before it draw as they always did for a given seed
}
_OTHER_KEYS: dict[str, str] = {
    "latency_ms": "latency_ms",
    "rate_limit": "rate_limit",
    "retry_after": "retry_after",
    "limit_retry_after": "limit_retry_after",
    "timeout_seconds": "timeout_seconds",
    "daily_requests": "daily_requests",
    "daily_entities": "daily_entities",
    "seed": "seed",
}
KEYS: dict[str, str] = {**_SHARE_KEYS, **_OTHER_KEYS}
_INTEGER_KEYS = frozenset({"daily_requests", "daily_entities", "limit_retry_after"})
_SERVER_ERRORS = (500, 502, 503)
UtcClock = Callable[[], datetime]


@dataclass(frozen=True)
class FaultSettings:
    """What an emulator injects. All defaults mean "behave perfectly, no limit"."""

    p_5xx: float = 0.0
    p_429: float = 0.0
    p_timeout: float = 0.0
    p_drop: float = 0.0
    p_lost_response: float = 0.0
    p_5xx_after: float = 0.0
    latency_ms: float = 0.0
    rate_limit: float = 0.0
    retry_after: int = 1
    limit_retry_after: int = 0
    timeout_seconds: float = 5.0
    daily_requests: int = 0
    daily_entities: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        for key, attr in _SHARE_KEYS.items():
            share = getattr(self, attr)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"fault share {key}={share} must be between 0 and 1")
        if self.total_share() > 1.0 + 1e-9:
            raise ValueError(f"fault shares add up to {self.total_share():.3f}, more than 1")
        for key in ("latency_ms", "rate_limit", "timeout_seconds", "daily_requests", "daily_entities"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0")
        if self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if self.limit_retry_after not in (0, 1):
            raise ValueError("limit_retry_after must be 0 or 1")

    def total_share(self) -> float:
        """Sum of the fault shares (probability that a request gets any random fault)."""
        return sum(getattr(self, attr) for attr in _SHARE_KEYS.values())

    @classmethod
    def parse(cls, text: str | None) -> FaultSettings:
        """Parse ``"5xx=0.2,429=0.05,latency_ms=20"``; raises ValueError naming a bad key or value."""
        values: dict[str, Any] = {}
        for raw in (text or "").split(","):
            item = raw.strip()
            if not item:
                continue
            key, sep, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not value:
                raise ValueError(f"fault setting {item!r} is not of the form key=value")
            if key not in KEYS:
                raise ValueError(f"unknown fault setting {key!r}; valid keys: {', '.join(KEYS)}")
            if key in values:
                raise ValueError(f"fault setting {key!r} given twice")
            values[key] = value
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultSettings:
        """Build from a mapping using the grammar's keys (as ``to_dict`` returns); unknown keys are errors."""
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in KEYS:
                raise ValueError(f"unknown fault setting {key!r}; valid keys: {', '.join(KEYS)}")
            kwargs[KEYS[key]] = _coerce(key, value)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The settings keyed by the grammar's names (JSON-serialisable)."""
        by_attr = asdict(self)
        return {key: by_attr[attr] for key, attr in KEYS.items()}

    def to_spec(self) -> str:
        """The settings as a fault string that ``parse`` reads back to an equal object."""
        default = FaultSettings()
        parts = [
            f"{key}={getattr(self, attr)}"
            for key, attr in KEYS.items()
            if getattr(self, attr) != getattr(default, attr)
        ]
        return ",".join(parts)

    def with_overrides(self, **changes: Any) -> FaultSettings:
        """A copy with some attributes replaced (attribute names, e.g. ``rate_limit=2``)."""
        return replace(self, **changes)


def _coerce(key: str, value: Any) -> Any:
    """Convert a string/number from the grammar or JSON to the attribute's type."""
    try:
        if key == "seed":
            if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null")):
                return None
            return int(value)
        if key == "retry_after":
            return math.ceil(float(value))
        if isinstance(value, bool):
            raise TypeError("booleans are not numbers here")
        if key in _INTEGER_KEYS:
            number = float(value)
            if not number.is_integer():
                raise ValueError(f"{key} must be a whole number")
            return int(number)
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"fault setting {key}={value!r} is not a valid number") from exc


@dataclass(frozen=True)
class FaultDecision:
    """Outcome of one draw: which fault, if any, and the HTTP status / drop flag it implies."""

    kind: FaultKind
    status: int | None = None
    drop: bool = False


_NO_FAULT = FaultDecision("none")


def utc_now() -> datetime:
    """The real clock: an aware datetime in UTC."""
    return datetime.now(UTC)


def seconds_until_utc_midnight(now: datetime) -> int:
    """Whole seconds (at least 1) from ``now`` until the next 00:00:00 UTC."""
    tomorrow = now.astimezone(UTC).date() + timedelta(days=1)
    midnight = datetime.combine(tomorrow, datetime.min.time(), tzinfo=UTC)
    return max(1, math.ceil((midnight - now).total_seconds()))


class SettableClock:
    """The daily quotas' clock: the emulator's own clock (real time unless a test injects one), or a
    frozen instant that only moves when told to (``POST /_emulator/clock``)."""

    def __init__(self, base: UtcClock = utc_now) -> None:
        self.base = base
        self.frozen: datetime | None = None

    def __call__(self) -> datetime:
        return self.frozen if self.frozen is not None else self.base()

    def freeze(self, now: datetime) -> None:
        """Stop the clock at ``now`` (an aware datetime)."""
        if now.tzinfo is None:
            raise ValueError("the clock needs a time with a zone, e.g. 2030-01-01T23:59:57Z")
        self.frozen = now.astimezone(UTC)

    def advance(self, seconds: float) -> None:
        """Move a frozen clock on by ``seconds``."""
        if self.frozen is None:
            raise ValueError("advance_seconds needs a frozen clock: set now first")
        self.frozen += timedelta(seconds=seconds)

    def thaw(self) -> None:
        """Back to the emulator's own clock."""
        self.frozen = None

    def update(self, body: dict[str, Any]) -> None:
        """Apply an admin request: ``{"now": "<ISO 8601 time with zone>" | null}`` freezes the clock there
        (null: back to the emulator's own clock), ``{"advance_seconds": <n>}`` moves a frozen one on."""
        unknown = sorted(set(body) - {"now", "advance_seconds"})
        if unknown:
            raise ValueError(f"unknown clock setting {unknown[0]!r}; use now and/or advance_seconds")
        if "now" in body:
            if body["now"] is None:
                self.thaw()
            elif isinstance(body["now"], str):
                self.freeze(datetime.fromisoformat(body["now"].replace("Z", "+00:00")))
            else:
                raise ValueError("now must be an ISO 8601 time with a zone, or null")
        if "advance_seconds" in body:
            seconds = body["advance_seconds"]
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                raise ValueError("advance_seconds must be a number >= 0")
            self.advance(float(seconds))

    def to_dict(self) -> dict[str, Any]:
        """What ``GET /_emulator/clock`` answers."""
        return {"now": self().isoformat().replace("+00:00", "Z"), "frozen": self.frozen is not None}


class DailyQuota:
    """Requests and imported entities used during the current UTC calendar day.

    A day is a UTC calendar day (00:00:00 up to the next 00:00:00 UTC), whatever the host's time zone;
    the counters start again at 0 on the first use after the UTC date changes. ``clock`` returns an
    aware datetime (tests pass a fake one).
    """

    def __init__(self, clock: UtcClock = utc_now) -> None:
        self.clock = clock
        self.day: date | None = None
        self.requests = 0
        self.entities = 0

    def clear(self) -> None:
        """Forget today's usage."""
        self.day, self.requests, self.entities = None, 0, 0

    def take_request(self, limit: int) -> int | None:
        """Count one request against ``limit`` (0 = none): None if admitted, else the Retry-After seconds."""
        now = self._today()
        if limit and self.requests >= limit:
            return seconds_until_utc_midnight(now)
        self.requests += 1
        return None

    def take_entities(self, count: int, limit: int) -> int | None:
        """Count ``count`` entities against ``limit`` (0 = none), all or nothing: None if admitted,
        else the Retry-After seconds."""
        now = self._today()
        if limit and self.entities + count > limit:
            return seconds_until_utc_midnight(now)
        self.entities += count
        return None

    def used_requests(self) -> int:
        """Requests admitted so far today (UTC)."""
        self._today()
        return self.requests

    def _today(self) -> datetime:
        now = self.clock()
        today = now.astimezone(UTC).date()
        if today != self.day:
            self.day, self.requests, self.entities = today, 0, 0
        return now


class FaultEngine:
    """Draws faults and enforces the rate limits for one emulator. Used from one event loop only."""

    def __init__(self, settings: FaultSettings | None = None, clock: UtcClock | None = None) -> None:
        self.settings = settings or FaultSettings()
        self._rng = random.Random(self.settings.seed)
        # Monotonic times of requests admitted by the rate limiter in the last second.
        self._window: deque[float] = deque()
        self.clock = SettableClock(clock or utc_now)
        self.quota = DailyQuota(self.clock)

    def replace(self, settings: FaultSettings) -> None:
        """Install new settings; restarts the random sequence from their seed and empties the window.
        The day's quota usage is kept: a raised daily limit applies to what was already used."""
        self.settings = settings
        self._restart()

    def reset(self) -> None:
        """Restart the random sequence (same seed => same faults again), forget the rate window and
        the day's quota usage."""
        self._restart()
        self.quota.clear()

    def _restart(self) -> None:
        self._rng = random.Random(self.settings.seed)
        self._window.clear()

    def draw(self) -> FaultDecision:
        """Make the one draw for a request and map it onto the configured bands."""
        r = self._rng.random()
        low = 0.0
        for key, attr in _SHARE_KEYS.items():
            share = getattr(self.settings, attr)
            if share > 0 and r < low + share:
                position = (r - low) / share  # where in the band: picks the variant, no second draw
                return _decision(key, position)
            low += share
        return _NO_FAULT

    def admit(self, now: float | None = None) -> int | None:
        """Count a request against the sliding 1-second window.

        Returns None when admitted, or the Retry-After seconds when over ``rate_limit``. Rejected
        requests are not counted, so a client that backs off gets through again after a second.
        """
        now = time.monotonic() if now is None else now
        self._expire(now)
        limit = self.settings.rate_limit
        if limit and len(self._window) >= limit:
            return max(1, math.ceil(self._window[0] + 1.0 - now))
        self._window.append(now)
        return None

    def used(self, now: float | None = None) -> int:
        """How many requests were admitted in the last second."""
        self._expire(time.monotonic() if now is None else now)
        return len(self._window)

    def admit_daily(self) -> int | None:
        """Count a request against ``daily_requests``: None if admitted, else the Retry-After seconds."""
        return self.quota.take_request(self.settings.daily_requests)

    def take_entities(self, count: int) -> int | None:
        """Count imported entities against ``daily_entities``: None if admitted, else the Retry-After."""
        return self.quota.take_entities(count, self.settings.daily_entities)

    def tightest_request_limit(self) -> tuple[int, int] | None:
        """(limit, remaining) of the enabled request limit closest to exhaustion - the sliding second
        or the UTC day - or None when neither is enabled (what ``ratelimit-*`` headers report)."""
        policies = []
        if self.settings.rate_limit:
            limit = int(self.settings.rate_limit)
            policies.append((limit, max(0, limit - self.used())))
        if self.settings.daily_requests:
            limit = self.settings.daily_requests
            policies.append((limit, max(0, limit - self.quota.used_requests())))
        return min(policies, key=lambda policy: policy[1], default=None)

    def _expire(self, now: float) -> None:
        while self._window and self._window[0] <= now - 1.0:
            self._window.popleft()


def _decision(key: str, position: float) -> FaultDecision:
    if key == "5xx":
        return FaultDecision("5xx", _SERVER_ERRORS[min(2, int(position * 3))])
    if key == "5xx_after":
        return FaultDecision("5xx_after", _SERVER_ERRORS[min(2, int(position * 3))])
    if key == "429":
        return FaultDecision("429", 429)
    if key == "timeout":
        return FaultDecision("timeout", 504)
    if key == "drop":
        return FaultDecision("drop", drop=True)
    # lost_response: first half of the band answers 502, the second half drops the connection.
    if position < 0.5:
        return FaultDecision("lost_response", 502)
    return FaultDecision("lost_response", drop=True)
