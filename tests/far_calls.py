"""A service far away, for tests of work done several calls at a time: each call takes `seconds`, and
the most calls in flight at once is counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class FarCalls:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()

    @contextmanager
    def call(self) -> Iterator[None]:
        """One call: in flight for `seconds`, then the block (which records what the call did)."""
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self.seconds)
        try:
            with self._lock:
                yield
        finally:
            with self._lock:
                self.in_flight -= 1
