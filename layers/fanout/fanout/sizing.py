"""How big a sender's work is, derived from each destination's rate: the one place these numbers are made.

A sender is paced (fanout.pacing): with every instance the queue may run busy, each gets `rate /
concurrency` calls a second, one slot every `(1 + SAFETY) * concurrency / rate` seconds. From that:

- rows per SQS message (destinations that make one call a row: Mateo messages): as many as fit in
  `MESSAGE_BUDGET_SECONDS` of slots, at most `MAX_ROWS_PER_MESSAGE`;
- the event source's batch size: as many messages as fit in that budget, at most the destination's cap
  (1 where a call carries a whole file or up to 10 MB);
- the function's timeout: the batch's paced time twice over plus `OVERHEAD_SECONDS` (claims, S3 and
  DynamoDB, settling a job), never below `MIN_TIMEOUT_SECONDS`, rounded up to ten seconds;
- the queue's visibility timeout: six times the function's timeout, as AWS asks of SQS event sources;
- the chunk lease (fanout.config CHUNK_LEASE_SECONDS) must outlast the timeout.

template.yaml writes these values down (it cannot compute them); tests/unit/test_template.py fails when
it contradicts this module, for every destination. Change a rate here and the test names what to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from fanout.destinations import Destination
from fanout.pacing import SAFETY

DEFAULT_CONCURRENCY: Final = 2  # template MaxConcurrency<Destination> default (Lambda's SQS minimum)
MESSAGE_BUDGET_SECONDS: Final = 20.0  # the paced time one invocation's messages may take together
MAX_ROWS_PER_MESSAGE: Final = 25
MAX_BATCH_SIZE: Final = 5
OVERHEAD_SECONDS: Final = 15.0
MIN_TIMEOUT_SECONDS: Final = 60
VISIBILITY_FACTOR: Final = 6  # AWS: visibility timeout >= 6 x the consuming function's timeout


@dataclass(frozen=True, slots=True)
class Pace:
    """What a destination's sizing starts from."""

    rate_per_second: float  # the template's RatePerSecond<Destination> default
    one_call_per_row: bool = False  # Mateo send_message: one call a row, many rows a message
    batch_cap: int = MAX_BATCH_SIZE  # 1 where one call carries a whole file (Symplify) or 10 MB (Altcraft)
    source: str = ""


PACES = MappingProxyType(
    {
        Destination.MATEO: Pace(2.0, source="PROVIDERS.md: Mateo allows 2 requests/s"),
        Destination.MATEO_MESSAGE: Pace(
            2.0, one_call_per_row=True, source="the same 2 requests/s key limit (PROVIDERS.md)"
        ),
        Destination.SYMPLIFY: Pace(1.0, batch_cap=1, source="undocumented: one batch trigger a second"),
        Destination.WORKSHOP: Pace(5.0, source="undocumented: 5 calls/s"),
        Destination.ALTCRAFT: Pace(5.0, batch_cap=1, source="undocumented: 5 calls/s, up to 10 MB a call"),
    }
)


@dataclass(frozen=True, slots=True)
class Sizing:
    """One destination's sender sizes, as template.yaml must write them."""

    destination: Destination
    rate_per_second: float
    concurrency: int
    rows_per_message: int | None  # None: a message is one provider call (a chunk of the provider's size)
    batch_size: int
    timeout_seconds: int
    visibility_timeout_seconds: int

    @property
    def slot_seconds(self) -> float:
        """Between two calls of one instance when every instance is busy."""
        return (1.0 + SAFETY) * self.concurrency / self.rate_per_second

    @property
    def paced_seconds(self) -> float:
        """The longest an invocation's batch takes in paced calls alone (no retry)."""
        return self.batch_size * (self.rows_per_message or 1) * self.slot_seconds


def sizing(destination: Destination, concurrency: int = DEFAULT_CONCURRENCY) -> Sizing:
    """The derived sizes of `destination`'s sender."""
    pace = PACES[destination]
    slot = (1.0 + SAFETY) * concurrency / pace.rate_per_second
    rows = (
        max(1, min(MAX_ROWS_PER_MESSAGE, math.floor(MESSAGE_BUDGET_SECONDS / slot)))
        if pace.one_call_per_row
        else None
    )
    calls = rows or 1
    batch = max(1, min(pace.batch_cap, math.floor(MESSAGE_BUDGET_SECONDS / (calls * slot))))
    paced = batch * calls * slot
    timeout = max(MIN_TIMEOUT_SECONDS, 10 * math.ceil((2 * paced + OVERHEAD_SECONDS) / 10))
    return Sizing(
        destination, pace.rate_per_second, concurrency, rows, batch, timeout, VISIBILITY_FACTOR * timeout
    )


def rows_per_message(destination: Destination) -> int | None:
    """How many rows an SQS message of `destination` carries when each row is its own call."""
    return sizing(destination).rows_per_message
