"""Reading chunk results ahead of the rows.csv merge: same order, bounded, failures surface."""

from __future__ import annotations

import threading
import time

import pytest

from fanout.results import read_ahead

pytestmark = pytest.mark.unit


def test_results_come_back_in_chunk_order_however_the_reads_finish() -> None:
    def fetch(n: int) -> int:
        time.sleep(0.001 * (n % 5))  # later chunks often arrive first
        return n * 10

    assert list(read_ahead(range(60), fetch, 8)) == [n * 10 for n in range(60)]


def test_no_more_than_the_window_is_read_at_once() -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def fetch(n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.005)
        with lock:
            running -= 1
        return n

    assert list(read_ahead(range(40), fetch, 4)) == list(range(40))
    assert 1 < most <= 4  # reads overlap, within the window


def test_a_failed_read_fails_the_merge() -> None:
    def fetch(n: int) -> int:
        if n == 7:
            raise OSError("S3 read failed")
        return n

    with pytest.raises(OSError, match="S3 read failed"):
        list(read_ahead(range(20), fetch, 4))
