"""Stable identities: the same source file or row always gets the same id, so retries never double-send."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from functools import lru_cache

# Namespace for row-derived uuids (Mateo deduplication_id and message id); never change it, or every
# in-flight job would re-enrol its contacts under new ids.
_ROW_NAMESPACE = uuid.UUID("6b3f2f0e-2d0c-4c6f-9a57-0f5a8c1d9e21")


def job_id(bucket: str, key: str, version: str, route_index: int = 0) -> str:
    """The job id of one S3 object version (or ETag when unversioned) and one of its routes.

    A duplicate S3 or EventBridge event for the same object version yields the same id, hence no second
    job. `route_index` separates the jobs of a file that a routes entry sends to several destinations.
    """
    digest = hashlib.sha256(f"{bucket}\n{key}\n{version}\n{route_index}".encode()).hexdigest()
    return f"j-{digest[:16]}"


def row_uuid(job: str, row: int, purpose: str = "row") -> str:
    """A uuid fixed by the job and the row number: Mateo's `deduplication_id` and message `id`.

    Exactly `str(uuid.uuid5(namespace, f"{job}:{purpose}:{row}"))`, computed without building UUID objects
    (the splitter makes one per row): SHA-1 of namespace + name, version 5 and the RFC 4122 variant set.
    """
    return row_uuids(job, purpose)(row)


# The variant nibble of a uuid: its top two bits 10 (RFC 4122), the low two kept.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


@lru_cache(maxsize=64)
def row_uuids(job: str, purpose: str = "row") -> Callable[[int], str]:
    """`row_uuid(job, row, purpose)` as a function of the row alone, for a loop over a job's rows: SHA-1
    fed with the namespace and the name up to the row number once, each row's copy hashing on."""
    prefix = hashlib.sha1(_ROW_NAMESPACE.bytes + f"{job}:{purpose}:".encode(), usedforsecurity=False)
    variant = _VARIANT

    def of_row(row: int) -> str:
        sha1 = prefix.copy()
        sha1.update(b"%d" % row)
        x = sha1.hexdigest()
        return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{variant[x[16]]}{x[17:20]}-{x[20:32]}"

    return of_row


def chunk_id(lane: str, number: int) -> str:
    """`c00001`: lane letter (c contacts, l lists) and a zero-padded number that sorts in file order."""
    return f"{lane}{number:05d}"
