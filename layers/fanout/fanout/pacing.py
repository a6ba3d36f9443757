"""Pacing: a requests-per-second limit per destination, held across every concurrent sender instance.

Each provider call takes a slot in the current second from a DynamoDB counter (`RATE#<destination>`,
one item per second, conditional increment); a full second makes the caller wait for the next. With the
event source mapping's maximum concurrency this approaches a provider's limit without passing it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from botocore.exceptions import ClientError

from fanout.aws import client


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
        self._key = f"RATE#{destination}"
        self._rate = rate_per_second
        self._clock = clock
        self._sleep = sleep

    def acquire(self) -> None:
        if self._rate <= 0:
            return
        # Slots of 1/rate seconds when the rate is below 1/s; else `rate` calls per whole second.
        window = max(1.0, 1.0 / self._rate)
        per_window = max(1, math.floor(self._rate * window))
        while True:
            now = self._clock()
            slot = math.floor(now / window)
            if self._take(slot, per_window, window):
                return
            self._sleep(max(0.0, (slot + 1) * window - self._clock()) + 0.005)

    def _take(self, slot: int, per_window: int, window: float) -> bool:
        try:
            client("dynamodb").update_item(
                TableName=self._table,
                Key={"pk": {"S": self._key}, "sk": {"S": str(slot)}},
                UpdateExpression="ADD calls :one SET expires_at = :expires",
                ConditionExpression="attribute_not_exists(calls) OR calls < :limit",
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(per_window)},
                    ":expires": {"N": str(int(slot * window) + 3600)},
                },
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True
