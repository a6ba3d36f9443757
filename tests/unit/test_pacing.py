"""Pacing on the stack's own table (moto, in process): calls evenly spaced, across every sender instance,
so no sliding second ever holds more calls than the provider allows."""

from __future__ import annotations

import pytest

from fanout.pacing import SAFETY, Pacer
from fanout_local.deployed import DeployedStack

pytestmark = pytest.mark.unit


class FakeTime:
    """A clock that only moves when someone sleeps (or a test moves it)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.starts: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def pacers(stack: DeployedStack, destination: str, rate: float, count: int, time: FakeTime) -> list[Pacer]:
    table = stack.physical["JobsTable"]
    return [Pacer(table, destination, rate, clock=time.clock, sleep=time.sleep) for _ in range(count)]


def most_in_one_second(starts: list[float]) -> int:
    """The largest number of call starts any window [t, t + 1) holds."""
    ordered = sorted(starts)
    return max(sum(1 for s in ordered if t <= s < t + 1.0) for t in ordered)


def test_calls_are_evenly_spaced_at_the_rate_less_the_margin(stack: DeployedStack) -> None:
    time = FakeTime()
    (pacer,) = pacers(stack, "pace-even", 4.0, 1, time)
    for _ in range(12):
        pacer.acquire()
        time.starts.append(time.now)
    gaps = {round(b - a, 6) for a, b in zip(time.starts, time.starts[1:], strict=False)}
    assert gaps == {round((1 + SAFETY) / 4.0, 6)}
    assert most_in_one_second(time.starts) == 4


def test_instances_share_one_pace(stack: DeployedStack) -> None:
    time = FakeTime()
    first, second = pacers(stack, "pace-shared", 2.0, 2, time)
    for _ in range(10):
        for pacer in (first, second):
            pacer.acquire()
            time.starts.append(time.now)
    assert most_in_one_second(time.starts) <= 2
    assert len(time.starts) / (time.starts[-1] - time.starts[0] + (1 + SAFETY) / 2.0) == pytest.approx(
        2.0 / (1 + SAFETY)
    )


def test_a_pause_does_not_bank_slots_for_a_burst(stack: DeployedStack) -> None:
    time = FakeTime()
    (pacer,) = pacers(stack, "pace-idle", 2.0, 1, time)
    pacer.acquire()
    time.now += 60  # nobody called for a minute
    for _ in range(6):
        pacer.acquire()
        time.starts.append(time.now)
    assert most_in_one_second(time.starts) <= 2


def test_no_rate_means_no_waiting_and_no_table_writes() -> None:
    time = FakeTime()
    pacer = Pacer("no-such-table", "mateo", 0.0, clock=time.clock, sleep=time.sleep)
    pacer.acquire()
    assert (time.now, pacer.interval) == (1_800_000_000.0, 0.0)
