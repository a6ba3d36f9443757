"""Which answers prove that nothing happened: the one table, per provider, that decides what is resent.

An answer *proves nothing happened* only where a document says so: a refusal the provider documents (its
listed 4xx statuses or body error codes), a throttling refusal (429), or a request that never left this
machine (the connection was never made). Such a call is retried (429, a connection never made), failed
(a documented refusal: nothing was done and nothing will be on a resend) or split (refused for its size).

Every other failure — any 5xx, a timeout or a connection lost after the request went out, an answer of a
shape the documents do not show, a 4xx no document lists (at a provider that de-duplicates such a 4xx
fails its rows: a redrive of them is safe) — *may have been acted on*: it is UNCERTAIN.
The sender resends an uncertain call only where the provider itself ignores a resend (`dedupes`: Mateo's
`deduplication_id`, Workshop's `already_enrolled`); everywhere else (Symplify, Altcraft, Mateo messages)
its rows end `uncertain` and nothing is sent again until a person decides (`fanout redrive
--include-uncertain`). README "What counts as 'nothing happened'" is this table in words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from fanout.destinations import Destination
from fanout.models import Verdict

if TYPE_CHECKING:
    import httpx

THROTTLED = 429  # every provider: "too many requests" is a refusal, nothing was done


@dataclass(frozen=True, slots=True)
class NothingHappened:
    """One provider's answers that prove a request had no effect, and where each is documented."""

    dedupes: bool  # the provider ignores a resend of what it already did (so an uncertain call is resent)
    # HTTP statuses the provider documents as refusals: nothing was done, and a resend would be refused too.
    refusals: Mapping[int, str] = field(default_factory=dict)
    # HTTP statuses that refuse a request for its size (split the chunk and send the halves).
    too_large: frozenset[int] = frozenset()
    # Error codes in a 2xx/4xx body that the provider documents as refusals (Altcraft's `error`).
    body_refusals: Mapping[int, str] = field(default_factory=dict)
    source: str = ""

    def status_verdict(self, status: int) -> Verdict | None:
        """The verdict of an HTTP status; None for a 2xx (read the body)."""
        if 200 <= status < 300:
            return None
        if status == THROTTLED:
            return Verdict.RETRY
        if status in self.too_large:
            return Verdict.TOO_LARGE
        if status in self.refusals:
            return Verdict.FAILED
        if self.dedupes and 400 <= status < 500:
            # A refusal no document lists, at a provider that ignores a resend: failed, not retried over
            # and over; `fanout redrive` of its rows is safe.
            return Verdict.FAILED
        return Verdict.UNCERTAIN


def _frozen(mapping: dict[int, str]) -> Mapping[int, str]:
    return MappingProxyType(mapping)


MATEO_REFUSALS = _frozen(
    {
        400: "bad request (PROVIDERS.md: Mateo errors)",
        401: "API key missing",
        403: "API key invalid",
        404: "not found (journey, channel)",
    }
)

TABLE: Mapping[Destination, NothingHappened] = MappingProxyType(
    {
        Destination.MATEO: NothingHappened(
            dedupes=True,  # seed 000: each item's deduplication_id
            refusals=MATEO_REFUSALS,
            source="PROVIDERS.md Mateo: 400, 401, 403, 404, 429, 5xx",
        ),
        # send_message documents no idempotency (seed 004, PROVIDERS.md): a reused message id is not known
        # to be refused, so a message whose answer was lost is never sent again on our own.
        Destination.MATEO_MESSAGE: NothingHappened(
            dedupes=False,
            refusals=MATEO_REFUSALS,
            source="PROVIDERS.md Mateo: 400, 401, 403, 404, 429, 5xx; no idempotency for send_message",
        ),
        # Neither seed 001 nor PROVIDERS.md documents an error status of the batch starter but 429.
        Destination.SYMPLIFY: NothingHappened(
            dedupes=False, source="PROVIDERS.md Symplify: 429 when called too often"
        ),
        Destination.WORKSHOP: NothingHappened(
            dedupes=True,  # seed 002: already_enrolled, recently_completed
            refusals=_frozen(
                {
                    401: "invalid or missing API token",
                    404: "journey not found",
                    422: "journey not on, list not found, or invalid parameters",
                }
            ),
            source="seed 002 Errors: 401, 404, 422",
        ),
        # Altcraft reports errors in the body's `error` (seed 003, PROVIDERS.md); an HTTP 413 comes from
        # the web server in front of it, refusing the body before Altcraft reads it.
        Destination.ALTCRAFT: NothingHappened(
            dedupes=False,
            too_large=frozenset({413}),
            body_refusals=_frozen(
                {
                    400: "bad request",
                    401: "token required",
                    402: "tariff limit",
                    403: "forbidden",
                    429: "too many requests",
                }
            ),
            source="seed 003 + PROVIDERS.md Altcraft: error 0 OK, 400, 401, 402, 403",
        ),
    }
)


def nothing_happened(destination: Destination) -> NothingHappened:
    """The table row of `destination`."""
    return TABLE[destination]


def transport_verdict(exc: httpx.HTTPError) -> Verdict:
    """A request whose connection was never made surely had no effect (RETRY); one that may have been
    written to the wire may have (UNCERTAIN), whatever went wrong after."""
    import httpx  # here, not at the top: the splitter imports the providers and never sends a request

    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return Verdict.RETRY
    return Verdict.UNCERTAIN
