"""A file's content goes to one destination and target once: the same bytes dropped again within
RESEND_WINDOW_DAYS (a second submit, a client retrying a PUT that had succeeded) are not sent again unless
the file option `resend=true` says it is meant.

The splitter hashes the bytes as it reads them (`HashingReader`) and, once the file is known good and
before any chunk is queued, claims the hash for the destination and target with one conditional write
(JobStore.claim_file): of two drops split at the same moment exactly one wins, and the other job fails,
sends nothing, and names the job that has the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

RESEND_WINDOW_DAYS = 30
RESEND_WINDOW_SECONDS = RESEND_WINDOW_DAYS * 86400


class HashingReader:
    """A binary stream that hashes (SHA-256) every byte read through it."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()

    def read(self, size: int | None = -1) -> bytes:
        data: bytes = self._stream.read(size) if size is not None else self._stream.read()
        self._hash.update(data)
        return data

    def hexdigest(self) -> str:
        """The hash of the whole object: whatever the reader left unread is read (and hashed) first."""
        while piece := self._stream.read(1 << 20):
            self._hash.update(piece)
        return self._hash.hexdigest()


@dataclass(frozen=True, slots=True)
class FileClaim:
    """Which job has a file's content for a destination and target, and since when (ISO UTC)."""

    job_id: str
    claimed_at: str


def already_sent(destination: str, target: str, claim: FileClaim) -> str:
    """The message of a job refused because `claim`'s job has (or is sending) the same file."""
    return (
        f"already sent to {destination}/{target} by job {claim.job_id} on {claim.claimed_at[:10]};"
        " drop it with resend=true to send it again"
    )
