"""Stable identities: the same source file or row always gets the same id, so retries never double-send."""

from __future__ import annotations

import hashlib
import uuid
from functools import lru_cache

# Namespace for row-derived uuids (Mateo deduplication_id and message id). Ids are staged with their
# items, so a change here would reach only rows split after it; keep it, so a job's ids stay its own.
_ROW_NAMESPACE = uuid.UUID("6b3f2f0e-2d0c-4c6f-9a57-0f5a8c1d9e21")


def job_id(bucket: str, key: str, version: str, route_index: int = 0) -> str:
    """The job id of one S3 object version (or ETag when unversioned) and one of its routes.

    A duplicate S3 or EventBridge event for the same object version yields the same id, hence no second
    job. `route_index` separates the jobs of a file that a routes entry sends to several destinations.
    """
    digest = hashlib.sha256(f"{bucket}\n{key}\n{version}\n{route_index}".encode()).hexdigest()
    return f"j-{digest[:16]}"


def row_uuid(job: str, row: int, purpose: str = "row") -> str:
    """A uuid fixed by the job, the purpose and the row number: Mateo's `deduplication_id` and message `id`.

    An RFC 9562 version 8 (custom) uuid: its first 74 free bits are SHA-1 of the namespace, the job and
    the purpose (`row_uuid_prefix`), its last 48 the row number in hex (`…-00000000002a` is row 42).
    Distinct rows of a job get distinct ids, and two jobs share a prefix with probability about 2^-74 a
    pair. The SHA-1 is taken once a job, not once a row: a uuid5 a row cost about a microsecond, a
    tenth of the split's work a row. Only the splitter makes these ids, once a row, and stages them with
    the item: a retry resends the staged id, so a change of this rule never changes an id staged or sent.
    The splitter's row plan writes `row_uuid_prefix` and the row as ROW_DIGITS itself (the same text).
    """
    if not 0 <= row < 1 << ROW_BITS:
        raise ValueError(f"row {row} has no row uuid (0 to 2^{ROW_BITS} - 1)")
    return row_uuid_prefix(job, purpose) + format(row, ROW_DIGITS)


# The row number's bits at the end of a row uuid: room for any file a split can reach (2^48 rows at a few
# µs each would take decades; the duplicate check's run files already hold row numbers in 32 bits).
ROW_BITS = 48
ROW_DIGITS = f"0{ROW_BITS // 4}x"  # the format spec that writes them: 12 hex digits, zero-padded
# The variant nibble of a uuid: its top two bits 10 (RFC 4122 and 9562), the low two kept.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


@lru_cache(maxsize=64)
def row_uuid_prefix(job: str, purpose: str = "row") -> str:
    """A job's row uuids up to the row number: their first 20 hex digits (and four dashes), version and
    variant set."""
    x = hashlib.sha1(_ROW_NAMESPACE.bytes + f"{job}:{purpose}".encode(), usedforsecurity=False).hexdigest()
    return f"{x[:8]}-{x[8:12]}-8{x[12:15]}-{_VARIANT[x[15]]}{x[16:19]}-"


def chunk_id(lane: str, number: int) -> str:
    """`c00001`: lane letter (c contacts, l lists) and a zero-padded number that sorts in file order."""
    return f"{lane}{number:05d}"
