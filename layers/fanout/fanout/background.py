"""Work on a few threads with a bounded backlog (`Background`): the splitter stages chunks on it while it
reads, and queues and records them many calls at a time (`in_flight`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain

# AWS calls a split makes at once when it records or queues its chunks: one after another, each waits a
# round trip, and a 10M-row file makes 2,800 of them (within the clients' 20 pooled connections).
CALLS_IN_FLIGHT = 8


class Background:
    """Work on a few threads while the caller goes on (the splitter's staging: closing a chunk's S3 object
    while it reads on; queueing and recording chunks): the network waits overlap with the caller's work,
    and with each other, instead of adding to it.

    At most `depth` pieces of work wait, so memory stays bounded (a few chunks). A failure is raised to
    the caller at its next `submit` or at `drain`, and cancels what has not started. Work may finish in
    any order (a chunk's `on_chunk` too): the splitter orders chunks by id when it records them.
    """

    def __init__(self, depth: int = 6, workers: int = 3, name: str = "staging") -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._pending: deque[Future[None]] = deque()
        self._depth = depth

    def submit(self, work: Callable[[], None]) -> None:
        self._pending.append(self._pool.submit(work))
        while self._pending and (len(self._pending) > self._depth or self._pending[0].done()):
            self._settle(self._pending.popleft())

    def drain(self) -> None:
        """Wait for all submitted work; raise its first failure."""
        while self._pending:
            self._settle(self._pending.popleft())

    def close(self) -> None:
        """Stop the thread; work not started is dropped (after a failure nothing more is wanted)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _settle(self, future: Future[None]) -> None:
        try:
            future.result()
        except BaseException:
            self.close()
            raise


def in_flight(works: Iterable[Callable[[], None]], name: str, calls: int = CALLS_IN_FLIGHT) -> None:
    """Do `works`, `calls` at a time on threads (a lone one on the caller's thread: no threads for one
    call); the first failure is raised, and what has not started is dropped. `works` is drawn as the
    threads free up, so a generator's items are made a few at a time."""
    works = iter(works)
    first = next(works, None)
    if first is None:
        return
    second = next(works, None)
    if second is None:
        first()
        return
    pool = Background(depth=2 * calls, workers=calls, name=name)
    try:
        for work in chain((first, second), works):
            pool.submit(work)
        pool.drain()
    finally:
        pool.close()
