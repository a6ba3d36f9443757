"""Pacing: a calls-per-second limit per destination, held across every concurrent sender instance.

Calls are spaced evenly. One DynamoDB item per destination (`RATE#<destination>` / `next`) holds the
earliest time the next call may start; a caller takes the slot at that time (or now, when it has passed),
moves the mark one interval on with a conditional write, and sleeps until its slot. Evenly spaced calls
never put more than `rate` calls into any one-second window, which is how providers count (a sliding
second). A counter per calendar second does not: it lets `rate` calls through at the end of one second and
`rate` more at the start of the next, and the provider answers 429 to the second lot.

The interval carries a small margin (SAFETY): the time between taking a slot and the request reaching the
provider varies by some milliseconds, and without the margin a late call and an early one could still
meet in one second.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from botocore.exceptions import ClientError

from fanout.aws import client

SAFETY = 0.05  # the interval is 5 % longer than 1/rate: at most 95 % of the limit, never over it
MARK_TTL_SECONDS = 3600  # an unused mark expires with the table's TTL


class Pacer:
    """`acquire()` blocks until a call may go out; a rate of 0 means no limit."""

    def __init__(
        self,
        table: str,
        destination: str,
        rate_per_second: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._table = table
        self._key = {"pk": {"S": f"RATE#{destination}"}, "sk": {"S": "next"}}
        self._rate = rate_per_second
        self._interval = (1.0 + SAFETY) / rate_per_second if rate_per_second > 0 else 0.0
        self._clock = clock
        self._sleep = sleep

    @property
    def interval(self) -> float:
        """Seconds between the starts of two calls (0 without a limit)."""
        return self._interval

    def acquire(self) -> None:
        """Wait for this caller's slot."""
        if self._rate <= 0:
            return
        while True:
            slot = self._reserve(self._clock())
            if slot is not None:
                wait = slot - self._clock()
                if wait > 0:
                    self._sleep(wait)
                return

    def _reserve(self, now: float) -> float | None:
        """The start time taken, or None when another caller moved the mark meanwhile (try again)."""
        expires = {"N": str(int(now) + MARK_TTL_SECONDS)}
        try:  # the mark is ahead of now: take its slot and move it one interval on
            old = self._update(
                "SET #at = #at + :interval, expires_at = :expires",
                "#at >= :now",
                {":interval": _number(self._interval), ":now": _number(now), ":expires": expires},
                returns="UPDATED_OLD",
            )
        except _Taken:
            pass
        else:
            return float(old["at"]["N"])
        try:  # the mark has passed (or there is none yet): the slot is now
            self._update(
                "SET #at = :next, expires_at = :expires",
                "attribute_not_exists(#at) OR #at < :now",
                {":next": _number(now + self._interval), ":now": _number(now), ":expires": expires},
            )
        except _Taken:
            return None
        return now

    def _update(
        self, expression: str, condition: str, values: dict[str, dict[str, str]], returns: str = "NONE"
    ) -> dict[str, dict[str, str]]:
        try:
            answer = client("dynamodb").update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#at": "at"},
                ExpressionAttributeValues=values,
                ReturnValues=returns,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise _Taken from exc
            raise
        attributes: dict[str, dict[str, str]] = answer.get("Attributes", {})
        return attributes


def _number(seconds: float) -> dict[str, str]:
    return {"N": f"{seconds:.6f}"}


class _Taken(Exception):
    """The mark was not where this caller saw it: another instance took the slot first."""
