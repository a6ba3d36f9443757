"""Typed data that crosses modules: routes, contacts, chunks, outcomes and jobs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

import orjson

from fanout.destinations import Destination

_COMPACT = json.JSONEncoder(separators=(",", ":")).encode
# The C encoder JSONEncoder.encode builds on every call, built once (no circular check: values come from
# parsed files and are trees). Same bytes as _COMPACT; a test holds them to it.
_C_COMPACT = (
    c_make_encoder(
        None, json.JSONEncoder().default, encode_basestring_ascii, None, ":", ",", False, False, True
    )
    if c_make_encoder is not None
    else None
)


# `compact_json(text)` for a str: the standard encoder's own string writer (a C function).
json_text: Callable[[str], str] = encode_basestring_ascii


def compact_json(value: Any) -> str:
    """`value` as compact JSON text, non-ASCII escaped: the form provider request bodies are sent in, so
    its length is its size in bytes. One encoder, made once (json.dumps with options builds one a call)."""
    if _C_COMPACT is None:
        return _COMPACT(value)
    return "".join(_C_COMPACT(value, 0))


class FileFloat(float):
    """A number a file's JSON wrote with a fraction or an exponent, as read (the readers make every such
    number one). A float in every respect; `compact_row_json` writes it exactly as the standard encoder
    writes a float, which orjson does not do by itself for plain floats (1e-05 as 0.00001)."""

    __slots__ = ()


# what the standard encoder writes for the floats float's repr writes otherwise (a file's 1e999 reads as inf)
_NOT_FINITE = {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}


def _file_float(value: Any) -> Any:
    """orjson's `default`: a FileFloat as the standard encoder writes it (float's own repr, or Infinity,
    -Infinity and NaN)."""
    if type(value) is FileFloat:
        text = float.__repr__(value)
        return orjson.Fragment(_NOT_FINITE.get(text, text))
    raise TypeError(type(value).__name__)


def compact_row_json(value: Any) -> str:
    """`compact_json(value)` for a provider item made of rows as read: a tree of dicts and lists of str,
    int, bool, None and FileFloat; never a plain float (orjson writes some otherwise: 1e-05 as 0.00001).
    Such a value orjson writes as the standard encoder does, but for non-ASCII and DEL, which it does not
    escape: text holding any goes to the standard encoder, as does what orjson refuses (a test holds the two to
    the same text)."""
    try:
        raw = orjson.dumps(value, default=_file_float)
    except orjson.JSONEncodeError:  # an int over 64 bits, a lone surrogate, a key not a str
        return compact_json(value)
    if raw.isascii() and b"\x7f" not in raw:  # the standard encoder writes DEL as \u007f, orjson as is
        return raw.decode("ascii")
    return compact_json(value)


@dataclass(frozen=True, slots=True)
class Route:
    """Where one file goes: a destination, its target id, the file's options and a column mapping."""

    destination: Destination
    target: str
    options: dict[str, str] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)  # file header -> canonical field name


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One S3 object version as an event names it."""

    bucket: str
    key: str
    version: str | None = None
    etag: str | None = None
    size: int | None = None
    # An EventBridge event's key exactly as written: tried when no object has `key` (decoded), since
    # EventBridge does not URL-encode keys as S3 notifications do ("a+b.csv" is not "a b.csv").
    event_key: str | None = None

    @property
    def identity(self) -> str:
        """What makes two events the same object: the version id, else the ETag."""
        return self.version or (self.etag or "").strip('"')


@dataclass(slots=True)
class Contact:
    """A validated input row: canonical fields (normalised) and the columns no provider field takes."""

    row: int
    identity: str
    fields: dict[str, str]
    extra: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one input row is not sent: the row number, the column and value at fault, and a fix."""

    row: int
    reason: str
    column: str = ""
    value: str = ""


# A staged line's form, `{"row":…,"identity":…,"item":…}`: written by `staged_line`, read back by
# `StagedRow.from_json` without the JSON parser.
STAGED_LINE_HEAD = '{"row":'
STAGED_LINE_IDENTITY = ',"identity":'
STAGED_LINE_ITEM = ',"item":'
_STAGED_LINE_LENGTHS = (len(STAGED_LINE_HEAD), len(STAGED_LINE_IDENTITY), len(STAGED_LINE_ITEM))


def staged_line(row: int, identity: str, item_json: str) -> str:
    """One line of a staged chunk (`StagedRow.to_json`): the row, its identity and its item's JSON text."""
    return (
        f"{STAGED_LINE_HEAD}{row:d}{STAGED_LINE_IDENTITY}{json_text(identity)}{STAGED_LINE_ITEM}{item_json}}}"
    )


def _json_string_value(text: str) -> str | None:
    """The str a JSON string literal stands for (read without the parser when it holds no escape), or None
    when `text` is not exactly one JSON string."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return None
    inner = text[1:-1]
    if "\\" not in inner and '"' not in inner:
        return inner
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


_UNREAD: Any = object()  # a StagedRow's item not parsed from its JSON text yet


class StagedRow:
    """One line of a staged chunk: the input row, who it is, and the provider item built from it.

    Read from a staged line, the item is kept as the JSON text it was staged as (`item_json`: exactly
    `compact_json(item)`, the form a request body carries it in) and parsed only when `item` is first asked
    for: a provider that sends items as staged (Mateo's batch) neither parses nor encodes them again.
    Immutable (its item is not to be changed in place either: `item_json` would no longer be its text).
    Not a dataclass because of that lazy field; equal to another row with the same row, identity and item.
    """

    __slots__ = ("_item", "_item_json", "identity", "row")

    row: int
    identity: str
    _item: Any
    _item_json: str | None

    def __init__(self, row: int, identity: str, item: Any = _UNREAD, *, item_json: str | None = None) -> None:
        if item is _UNREAD and item_json is None:
            raise TypeError("StagedRow needs its item or the item's JSON text")
        # The slots' own setters (past the immutable __setattr__), a quarter of object.__setattr__'s cost:
        # a staged row is made for every row a sender reads.
        _set_row(self, row)
        _set_identity(self, identity)
        _set_item(self, item)
        _set_item_json(self, item_json)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"StagedRow is immutable: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"StagedRow is immutable: cannot delete {name}")

    @property
    def item(self) -> Any:
        """The provider item (a dict for most providers, a str for a Workshop list)."""
        if self._item is _UNREAD:
            _set_item(self, json.loads(self._item_json or ""))
        return self._item

    @property
    def item_json(self) -> str:
        """The item as compact JSON text (`compact_json(item)`), as staged."""
        text = self._item_json
        if text is None:
            text = compact_json(self._item)
            _set_item_json(self, text)
        return text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StagedRow):
            return NotImplemented
        return (self.row, self.identity, self.item) == (other.row, other.identity, other.item)

    def __hash__(self) -> int:  # equal items may differ in text (key order, 1 and 1.0): not hashed
        return hash((self.row, self.identity))

    def __repr__(self) -> str:
        return f"StagedRow(row={self.row!r}, identity={self.identity!r}, item={self.item!r})"

    def to_json(self) -> str:
        """The staged line, compact JSON (`staged_line`)."""
        return staged_line(self.row, self.identity, self.item_json)

    @classmethod
    def from_json(cls, line: str | bytes) -> StagedRow:
        """A staged line. One written by `staged_line` (`{"row":…,"identity":…,"item":…}`, in that order)
        keeps its item as text: the first `,"item":` of such a line ends the identity (a quote inside a
        JSON string is always escaped), and the item runs from there to the closing brace. A line in any
        other JSON form is parsed whole."""
        text = (line.decode() if isinstance(line, bytes) else line).strip()
        head, after_identity, after_item = _STAGED_LINE_LENGTHS
        cut = text.find(STAGED_LINE_ITEM) if text.startswith(STAGED_LINE_HEAD) and text[-1:] == "}" else -1
        comma = text.find(STAGED_LINE_IDENTITY, head, cut) if cut > 0 else -1
        if comma > 0:
            number = text[head:comma]
            if number.isascii() and number.isdigit():
                identity = _json_string_value(text[comma + after_identity : cut])
                if identity is not None:
                    return cls(int(number), identity, item_json=text[cut + after_item : -1])
        data = json.loads(text)
        return cls(row=int(data["row"]), identity=str(data["identity"]), item=data["item"])


_STAGED_ROW_SLOTS: Any = StagedRow  # its slots' member descriptors, which the annotations hide from mypy
_set_row = _STAGED_ROW_SLOTS.row.__set__
_set_identity = _STAGED_ROW_SLOTS.identity.__set__
_set_item = _STAGED_ROW_SLOTS._item.__set__
_set_item_json = _STAGED_ROW_SLOTS._item_json.__set__


@dataclass(frozen=True, slots=True)
class ChunkMessage:
    """The SQS message for one staged chunk; small, it points at the chunk in S3.

    A sender that must come back to a chunk much later (a provider batch to poll, a provider quota to
    wait out) does not keep the message invisible delivery after delivery, which would use up the
    queue's maxReceiveCount and send a healthy chunk to the dead-letter queue: it queues a follow-up
    message with a fresh `turn` (recorded on the chunk, so any older message for the chunk is stale and
    dropped) and, for a wait longer than SQS's 15-minute delay, `not_before` (epoch seconds).
    """

    job_id: str
    chunk_id: str
    destination: Destination
    target: str
    key: str
    rows: int
    envelope: dict[str, Any] = field(default_factory=dict)
    download_url: str | None = None
    turn: str | None = None  # which follow-up message of the chunk this is (None: the first)
    not_before: float | None = None  # epoch seconds before which the chunk is not to be sent
    byte_range: str | None = None  # the chunk's bytes of `key` (`bytes=0-99`), packed with others; None: all

    def to_json(self) -> str:
        data = asdict(self)
        data["destination"] = self.destination.value
        for optional in ("download_url", "turn", "not_before", "byte_range"):
            if data[optional] is None:
                data.pop(optional)
        return json.dumps(data)

    @classmethod
    def from_json(cls, body: str) -> ChunkMessage:
        data = json.loads(body)
        return cls(
            job_id=str(data["job_id"]),
            chunk_id=str(data["chunk_id"]),
            destination=Destination(data["destination"]),
            target=str(data["target"]),
            key=str(data["key"]),
            rows=int(data["rows"]),
            envelope=dict(data.get("envelope") or {}),
            download_url=data.get("download_url"),
            turn=data.get("turn"),
            not_before=None if data.get("not_before") is None else float(data["not_before"]),
            byte_range=data.get("byte_range"),
        )


class RowState(StrEnum):
    """Where each input row ends; exactly one per row."""

    SENT = "sent"
    REJECTED = "rejected"
    FAILED = "failed"
    UNCERTAIN = "uncertain"


@dataclass(frozen=True, slots=True)
class RowResult:
    """The final word on one input row, as written to `results/<job>/rows.csv`."""

    row: int
    identity: str
    state: RowState
    answer: str

    def to_json(self) -> str:
        return json.dumps(
            {"row": self.row, "identity": self.identity, "state": self.state.value, "answer": self.answer},
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, line: str | bytes) -> RowResult:
        data = json.loads(line)
        return cls(int(data["row"]), str(data["identity"]), RowState(data["state"]), str(data["answer"]))


class Verdict(StrEnum):
    """What to do after one provider answer."""

    DONE = "done"  # the provider answered for every row (each row sent or failed)
    RETRY = "retry"  # transient and surely not performed: send again later
    UNCERTAIN = "uncertain"  # transient, and the provider may have acted: resend only if it de-duplicates
    FAILED = "failed"  # permanent for the whole request: do not retry
    TOO_LARGE = "too_large"  # the request was refused for its size: split the chunk in halves
    STARTED = "started"  # accepted as a batch the provider finishes later: poll its status (batch_id)


@dataclass(slots=True)
class Outcome:
    """A provider answer, classified; `rows` holds per-row results when the verdict is DONE."""

    verdict: Verdict
    detail: str
    status_code: int | None = None
    retry_after: float | None = None
    rows: list[RowResult] = field(default_factory=list)
    elapsed_ms: float = 0.0  # how long the provider took to answer (the last attempt)
    attempts: int = 1  # how many requests this outcome took (in-invocation retries included)
    batch_id: str | None = None  # STARTED: the provider's id of the batch whose status tells the outcome
    # TOO_LARGE: the row the provider named as the one it refused (a Workshop list it does not know): the
    # chunk splits into that row and the rest, instead of halves.
    isolate_row: int | None = None
    # (ratelimit-limit, ratelimit-remaining) of the answer, where the provider sends them (Mateo)
    ratelimit: tuple[int, int] | None = None


class JobStatus(StrEnum):
    SPLITTING = "splitting"
    SENDING = "sending"
    SETTLING = "settling"
    PLANNED = "planned"  # dry run: validated and planned, nothing sent
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in {
            JobStatus.PLANNED,
            JobStatus.COMPLETED,
            JobStatus.COMPLETED_WITH_ERRORS,
            JobStatus.FAILED,
        }


class ChunkState(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    SPLIT = "split"  # replaced by two halves after a too-large answer

    @property
    def is_settled(self) -> bool:
        return self in {ChunkState.SENT, ChunkState.FAILED, ChunkState.UNCERTAIN, ChunkState.SPLIT}


@dataclass(slots=True)
class Counts:
    """Row counters of a job; `read == sent + rejected + failed + uncertain + planned` once it settles
    (`planned`: rows a dry run would have sent)."""

    read: int = 0
    sent: int = 0
    rejected: int = 0
    failed: int = 0
    uncertain: int = 0
    planned: int = 0
