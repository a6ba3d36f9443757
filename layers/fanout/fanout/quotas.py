"""Daily quotas: what a provider allows per UTC day, how the senders share it, and how long a file takes.

Mateo allows 10,000 requests and 25,000 imported contacts per UTC day per API key (PROVIDERS.md), answers
429 over either — with no Retry-After — and resets at the start of the next UTC day. A customer's contract
may differ, so the figures are parameters (`DAILY_REQUEST_QUOTA`, `DAILY_CONTACT_QUOTA` in the sender's
environment); the documented ones are the defaults.

The senders plan within the quota instead of running into it: before a chunk's calls go out, its requests
and contacts are reserved on today's ledger (one DynamoDB item per quota family and UTC day, a conditional
update). A chunk that does not fit waits, with a follow-up message, until the next UTC day: no delivery is
used, so no healthy chunk reaches the dead-letter queue. When the provider answers a quota 429 anyway
(another client shares the key), the day is marked spent and the chunk waits likewise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from botocore.exceptions import ClientError

from fanout.aws import client
from fanout.destinations import Destination

LEDGER_TTL_DAYS = 3  # a day's ledger item expires with the table's TTL


@dataclass(frozen=True, slots=True)
class DailyQuota:
    """What one API key may do per UTC day; 0 means no limit."""

    family: str  # destinations that share the quota (one API key): Mateo batches and messages
    requests: int = 0
    contacts: int = 0  # imported contacts (Mateo: every batch item creates or updates one)

    def days_for(self, requests: int, contacts: int) -> int:
        """Whole UTC days `requests` calls importing `contacts` contacts take at this quota (at least 1)."""
        days = [1]
        if self.requests:
            days.append(math.ceil(requests / self.requests))
        if self.contacts:
            days.append(math.ceil(contacts / self.contacts))
        return max(days)

    def describe(self) -> str:
        parts = []
        if self.contacts:
            parts.append(f"{self.contacts:,} contacts")
        if self.requests:
            parts.append(f"{self.requests:,} requests")
        return " and ".join(parts) + " a UTC day"


# PROVIDERS.md, Mateo: "10,000 requests/day, 25,000 imported entities/day"; send_message imports nothing but
# its requests count against the same key.
DOCUMENTED: MappingProxyType[Destination, DailyQuota] = MappingProxyType(
    {
        Destination.MATEO: DailyQuota("mateo", requests=10_000, contacts=25_000),
        Destination.MATEO_MESSAGE: DailyQuota("mateo", requests=10_000),
    }
)
# Which destinations' calls import contacts (one per row) against the quota.
IMPORTS_CONTACTS = frozenset({Destination.MATEO})


def quota_for(
    destination: Destination, requests: int | None = None, contacts: int | None = None
) -> DailyQuota | None:
    """`destination`'s daily quota: the documented one with any figure a contract sets instead."""
    documented = DOCUMENTED.get(destination)
    if documented is None and not (requests or contacts):
        return None
    base = documented or DailyQuota(destination.value)
    quota = DailyQuota(
        base.family,
        base.requests if requests is None else requests,
        base.contacts if contacts is None else contacts,
    )
    return quota if (quota.requests or quota.contacts) else None


def usage_of(destination: Destination, rows: int, calls: int) -> tuple[int, int]:
    """(requests, contacts) that sending `rows` rows in `calls` calls counts against the quota."""
    return calls, rows if destination in IMPORTS_CONTACTS else 0


def utc_day(now: float) -> str:
    """The UTC date of `now` (epoch seconds), e.g. 2026-11-29."""
    return datetime.fromtimestamp(now, UTC).date().isoformat()


def next_utc_day(now: float) -> float:
    """Epoch seconds of the next 00:00:00 UTC after `now`."""
    today = datetime.fromtimestamp(now, UTC).date()
    return datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=UTC).timestamp()


def plan_note(destination: Destination, rows: int, calls: int, quota: DailyQuota | None = None) -> str | None:
    """How many UTC days a file of `rows` rows in `calls` calls needs at the daily quota, or None when it
    has none or the file fits in one day."""
    quota = quota or quota_for(destination)
    if quota is None:
        return None
    requests, contacts = usage_of(destination, rows, calls)
    days = quota.days_for(requests, contacts)
    if days <= 1:
        return None
    return (
        f"{days} days at {destination.value}'s daily quota of {quota.describe()}: each day's part goes out"
        " when the UTC day starts"
    )


def wait_note(destination: Destination, quota: DailyQuota, until: float, rows_left: int, reason: str) -> str:
    """What `fanout status` says while a job waits for the next UTC day: the wait and the ETA."""
    _, contacts = usage_of(destination, rows_left, 0)
    more = max(1, math.ceil(contacts / quota.contacts)) if quota.contacts and contacts else 1
    done = datetime.fromtimestamp(until, UTC) + timedelta(days=more - 1)
    when = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"waiting for {destination.value}'s daily quota ({quota.describe()}) until {when} ({reason});"
        f" the next part goes out then, {rows_left:,} rows to go: about {more} more day(s),"
        f" done around {done.date().isoformat()}"
    )


class QuotaLedger:
    """Today's requests and contacts of one quota family, in the jobs table; shared by every sender."""

    def __init__(self, table: str, quota: DailyQuota, clock: Callable[[], float]) -> None:
        self._table = table
        self._quota = quota
        self._clock = clock

    @property
    def quota(self) -> DailyQuota:
        return self._quota

    def reserve(self, requests: int, contacts: int) -> bool:
        """Count `requests` and `contacts` against today's quota, all or nothing; False when they do not
        fit. A day with nothing used yet takes any chunk, so one chunk bigger than a day's quota still goes."""
        conditions = ["attribute_not_exists(requests)"]
        limits = []
        values = {
            ":r": {"N": str(requests)},
            ":c": {"N": str(contacts)},
            ":zero": {"N": "0"},
            ":ttl": {"N": str(int(self._clock()) + LEDGER_TTL_DAYS * 86400)},
        }
        if self._quota.requests:
            limits.append("requests <= :rmax")
            values[":rmax"] = {"N": str(self._quota.requests - requests)}
        if self._quota.contacts:
            limits.append("contacts <= :cmax")
            values[":cmax"] = {"N": str(self._quota.contacts - contacts)}
        if limits:
            conditions.append("(" + " AND ".join(limits) + ")")
        conditions.append("(requests = :zero AND contacts = :zero)")
        try:
            client("dynamodb").update_item(
                TableName=self._table,
                Key=self._key(),
                UpdateExpression="ADD requests :r, contacts :c SET expires_at = :ttl",
                ConditionExpression=" OR ".join(conditions),
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def spend_all(self) -> None:
        """The provider says today's quota is used up (its 429): nothing more is reserved today."""
        values = {
            ":r": {"N": str(self._quota.requests or 1)},
            ":c": {"N": str(self._quota.contacts or 0)},
            ":ttl": {"N": str(int(self._clock()) + LEDGER_TTL_DAYS * 86400)},
        }
        client("dynamodb").update_item(
            TableName=self._table,
            Key=self._key(),
            UpdateExpression="SET requests = :r, contacts = :c, expires_at = :ttl",
            ExpressionAttributeValues=values,
        )

    def _key(self) -> dict[str, dict[str, str]]:
        return {"pk": {"S": f"QUOTA#{self._quota.family}"}, "sk": {"S": utc_day(self._clock())}}
