"""A split that outlives one invocation: the checkpoint it leaves, and how it hands over to the next one.

Before its invocation runs out of time, a split stops at a chunk boundary (every open chunk is cut and
staged), keeps a checkpoint in S3 (`Checkpoint`: where in the file it is, its counts, chunks, writers and
duplicate state), makes it the job's current one with a conditional write (generation N -> N + 1, only
while this invocation holds the job), and invokes its own function asynchronously with a small payload
naming the job and the generation. Whoever continues first takes the job at that generation (another
conditional write), so a continuation delivered twice runs once; one killed between checkpoints leaves the
job at the last checkpoint, and Lambda's retry of it (or of any later delivery) goes on from there.

The payload (what the local stack must route to the splitter function, as AWS does):

    {"continuation": {"job_id": "j-...", "generation": 3, "checkpoint": "jobs/j-.../checkpoints/..."}}

The local stack takes the very same InvokeFunction call: its Lambda puts an asynchronous invocation on
the function's event queue, which its event runner delivers with Lambda's retries (IAM checked).

And, when one file has several routes and a route's split had to continue, the remaining routes:

    {"continue_object": {"bucket": ..., "key": ..., "version": ..., "etag": ..., "route_from": 1}}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from fanout.aws import client
from fanout.destinations import Destination
from fanout.models import ObjectRef, Route

CHECKPOINT_MARGIN_MS = 60_000  # time kept back to checkpoint (cut chunks, keep state) and hand over


class Invoker(Protocol):
    """Starts another invocation of this function with `payload`, without waiting for it."""

    def invoke(self, payload: dict[str, Any]) -> None: ...


class LambdaInvoker:
    """The real one: `lambda:InvokeFunction` on the function's own name, `InvocationType="Event"`."""

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name

    def invoke(self, payload: dict[str, Any]) -> None:
        client("lambda").invoke(
            FunctionName=self.function_name,
            InvocationType="Event",
            Payload=json.dumps(payload).encode(),
        )


def invoker_from_environment(environ: Mapping[str, str]) -> Invoker:
    """The function's own asynchronous invocation (AWS_LAMBDA_FUNCTION_NAME, which Lambda sets), on AWS
    and on the local stack alike."""
    return LambdaInvoker(environ.get("AWS_LAMBDA_FUNCTION_NAME", ""))


@dataclass(frozen=True, slots=True)
class Continuation:
    """The payload of a continuation: the job, and the generation its checkpoint made current."""

    job_id: str
    generation: int
    checkpoint: str

    def payload(self) -> dict[str, Any]:
        return {"continuation": asdict(self)}

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Continuation | None:
        body = event.get("continuation")
        if not isinstance(body, dict):
            return None
        return cls(str(body["job_id"]), int(body["generation"]), str(body.get("checkpoint", "")))


def object_payload(ref: ObjectRef, route_from: int) -> dict[str, Any]:
    """The payload that splits a file's routes from `route_from` on in a new invocation."""
    return {
        "continue_object": {
            "bucket": ref.bucket,
            "key": ref.key,
            "version": ref.version,
            "etag": ref.etag,
            "size": ref.size,
            "route_from": route_from,
        }
    }


def object_from_event(event: dict[str, Any]) -> tuple[ObjectRef, int] | None:
    body = event.get("continue_object")
    if not isinstance(body, dict):
        return None
    ref = ObjectRef(body["bucket"], body["key"], body.get("version"), body.get("etag"), body.get("size"))
    return ref, int(body.get("route_from", 0))


@dataclass
class Checkpoint:
    """Everything a split needs to go on exactly where it stopped (kept as JSON in S3)."""

    ref: ObjectRef  # the object version being split (GET with its version, or If-Match its ETag)
    route_index: int
    route: Route
    last_row: int  # the number of the last row read (RawRow.number): the next invocation starts after it
    read: int  # rows read so far
    rejected: int
    lost: str | None  # the first error after which rows of the file went unread, if any
    lanes: dict[str, int]  # chunks cut per lane (chunk ids go on from there)
    # (chunk id, S3 key, rows, byte range) of every chunk staged so far (a checkpoint written before
    # chunks were packed has no byte range: the whole object)
    chunks: list[tuple[Any, ...]]
    writers: dict[str, dict[str, Any]]  # S3Writer.suspend() states by name
    seen: dict[str, str]  # duplicate-state file name -> S3 key
    columns: list[str] = field(default_factory=list)
    # Where the next row starts in the object (bytes), when the reader knows (uncompressed UTF-8 CSV or
    # NDJSON): the next invocation reads from there with a ranged GET; otherwise it reads from the
    # start and skips the rows up to `last_row`.
    offset: int | None = None
    file: dict[str, Any] = field(default_factory=dict)  # format, encoding, delimiter (FileInfo)
    skipped: int = 0  # rows only-new skipped as sent before (rejected, but not invalid)

    def to_json(self) -> str:
        data = asdict(self)
        data["route"]["destination"] = self.route.destination.value
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        data = json.loads(text)
        route = data["route"]
        data["route"] = Route(
            Destination(route["destination"]), route["target"], route["options"], route["columns"]
        )
        data["ref"] = ObjectRef(**data["ref"])
        data["chunks"] = [tuple(chunk) for chunk in data["chunks"]]
        return cls(**data)


def stopper(
    remaining_ms: Callable[[], int] | None, margin_ms: int = CHECKPOINT_MARGIN_MS
) -> Callable[[], bool]:
    """`stop()`: True once the invocation has less than the margin left. The margin is at most a third
    of the time the invocation had at the start, so a short timeout still makes progress."""
    if remaining_ms is None:
        return lambda: False
    margin = min(margin_ms, remaining_ms() // 3)
    return lambda: remaining_ms() < margin
