"""The one interface every provider module implements, and the one policy that classifies answers.

A provider module owns its limits, its field mapping, how a request is built from a staged chunk and how
an answer is read. The splitter and the sender only speak to this interface, so a sixth provider is one
new module here (plus a template block and an emulator).
"""

from __future__ import annotations

import json
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from fanout.destinations import Destination
from fanout.models import (
    Contact,
    Outcome,
    RowResult,
    RowState,
    StagedRow,
    Verdict,
    compact_json,
    json_text,
)
from fanout.providers.outcomes import NothingHappened, nothing_happened, transport_verdict

if TYPE_CHECKING:
    import httpx


class ProviderSecret(BaseModel):
    """The destination's Secrets Manager secret: where the provider is and how to authenticate."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)  # built at first use

    base_url: str
    token: str
    customer_id: str | None = None  # Symplify
    auth_header: str | None = None  # Symplify: X-Carma-Authentication-Token unless overridden
    workshop_version: str | None = None  # Workshop's optional Workshop-Version header


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """One HTTP request to a provider and the staged rows it speaks for."""

    method: str
    url: str
    rows: list[StagedRow]
    json_body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # The provider batch whose status this call reads (a GET with no effect), or None for a call that sends.
    status_of: str | None = None
    # The JSON body already encoded, exactly as `encode_body` would encode it, for a provider that builds
    # it from its rows' staged item text (Mateo's batch); `json_body` is then None.
    encoded_body: bytes | None = field(default=None, repr=False)

    def content(self) -> bytes | None:
        """The request body's bytes as sent, or None for a call without a body (a status GET)."""
        if self.encoded_body is not None:
            return self.encoded_body
        return None if self.json_body is None else encode_body(self.json_body)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one provider call may carry; the splitter's chunker obeys these."""

    max_items: int
    max_body_bytes: int | None = None
    envelope_bytes: int = 0  # room kept for the request's own fields (ids, token) around the items


# Not frozen: a frozen dataclass sets each field through object.__setattr__, and one is made a row.
@dataclass(slots=True)
class Identification:
    """The identity of a contact for this destination, or why there is none (one a row: a plain
    dataclass, not a validated model)."""

    identity: str | None = None
    problem: str | None = None
    column: str = ""
    value: str = ""


def classify_transport_error(exc: httpx.HTTPError) -> Verdict:
    """A request that never connected surely had no effect; one that was sent may have (the table)."""
    return transport_verdict(exc)


class UnreadableAnswer(ValueError):
    """A 2xx (or body-coded) answer whose body is not of the shape the provider's document shows."""


_KEY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
_JSON_TYPES: dict[type, str] = {dict: "object", list: "array", str: "string", bool: "boolean"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def body_shape(response: httpx.Response) -> str:
    """What an answer's body looks like — its kind, size and field names with their JSON types — and never
    what it says: no value, and no key that is not a plain field name (an email could be a key)."""
    content = response.content
    if not content.strip():
        return "an empty body"
    try:
        body = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        kind = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
        return f"{len(content)} bytes of {kind}, not JSON"
    if isinstance(body, dict):
        named = sorted(k for k in body if _KEY_NAME.fullmatch(k))
        fields_text = ", ".join(f"{k}: {_json_type(body[k])}" for k in named)
        others = len(body) - len(named)
        more = f" and {others} other keys" if others else ""
        return f"a JSON object {{{fields_text}}}{more}"
    if isinstance(body, list):
        return f"a JSON array of {len(body)} items"
    return f"a JSON {_json_type(body)}"


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` in seconds (delta form; an HTTP date is read as 'a minute')."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return 60.0


def error_text(response: httpx.Response, limit: int = 300) -> str:
    """The provider's error message, short and without echoing the request."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"HTTP {response.status_code}"
    if isinstance(body, dict):
        for key in ("message", "error_text", "error", "detail"):
            if body.get(key):
                message = body[key]
                text = message if isinstance(message, str) else json.dumps(message, ensure_ascii=False)
                return f"HTTP {response.status_code}: {text}"[:limit]
    return f"HTTP {response.status_code}"


def all_rows(rows: list[StagedRow], state: RowState, answer: str) -> list[RowResult]:
    """The same result for every row of a call."""
    return [RowResult(r.row, r.identity, state, answer) for r in rows]


def encode_body(body: Any) -> bytes:
    """The bytes of a JSON request body, exactly as sent; the chunker sizes items with the same rule."""
    return compact_json(body).encode("utf-8")


def encoded_size(item: Any) -> int:
    """How many bytes `item` adds to a request body (compact JSON is ASCII: one byte a character)."""
    return len(compact_json(item))


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def canonical_uuid(value: str) -> str:
    """A uuid in its canonical form (lower case, 8-4-4-4-12), whatever notation it came in: upper case, no
    dashes, braces or a `urn:uuid:` prefix all name the same 128 bits, so the canonical form names the same
    thing — and it is the form a `string<uuid>` field is checked against. ValueError if not a uuid."""
    return str(uuid.UUID(value.strip()))


@dataclass(frozen=True, slots=True)
class TextItemSource:
    """A provider's `identify` and `to_item` for the rows of one CSV file, as Python source that
    `fanout.validation` compiles into the file's row plan (the rows that pass take it; every other row,
    and every file of a provider without one, takes `identify` and `to_item`).

    `identity`: the canonical fields, in the order `identify` tries them, whose first filled one is the
    contact's identity; `lane`: the lane of every such contact. `lines` set the variable `item` to
    exactly `compact_json(to_item(contact, ...))`, from the column variables `text_item_source` was given
    and `number` (the row), and `esc` (a str as JSON text, `models.json_text`: the row plan has it, as
    `json_members_source` and `some_members_lines` write it); `names`: any other globals they use. A test
    holds the two to the same text.
    """

    identity: tuple[str, ...]
    lane: str
    lines: tuple[str, ...]
    names: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TextColumns:
    """A CSV file's columns as its row plan holds them, for `Provider.text_item_source`."""

    # each canonical field a column fills -> the variable holding its normalised value ("" in a row that
    # leaves it empty), in column order
    canonical: Mapping[str, str]
    # (header, variable) of each column that travels on under its own name, in column order
    extra: Sequence[tuple[str, str]]
    job_id: str
    options: Mapping[str, str]


class Code(str):
    """A Python expression in `joined_source`'s pieces (a plain str there is text)."""

    __slots__ = ()


def joined_source(*pieces: str) -> str:
    """Python source of one string made of `pieces` at once: each plain str as text, each Code's value
    (a str) in its place. Adjacent literals, so Python builds it as one f-string."""
    return " ".join(
        f"f'{{{piece}}}'" if isinstance(piece, Code) else repr(piece) for piece in pieces if piece
    )


def json_members_source(members: Sequence[tuple[str, str]]) -> list[str]:
    """`joined_source` pieces of JSON object members `"key":value` for (key, variable holding a str)."""
    pieces: list[str] = []
    for at, (key, var) in enumerate(members):
        pieces += [("," if at else "") + json_text(key) + ":", Code(f"esc({var})")]
    return pieces


def some_members_lines(name: str, members: Sequence[tuple[str, str, bool]]) -> list[str]:
    """Source lines that set `name` to the text of the JSON object members `"key":value` of (key, variable
    holding a str, always), in order: a member whose value is "" is left out unless `always`."""
    lines = [f"{name} = []"]
    for key, var, always in members:
        append = f"{name}.append({json_text(key) + ':'!r} + esc({var}))"
        lines.append(append if always else f"if {var}: {append}")
    return [*lines, f"{name} = ','.join({name})"]


class Provider(ABC):
    """One destination's request building, answer parsing and limits."""

    destination: ClassVar[Destination]
    limits: ClassVar[Limits]
    # True when one call carries the whole file (Symplify downloads it from a link): the splitter stages it.
    whole_file: ClassVar[bool] = False
    # How many rows an SQS message carries when each row is its own call (mateo-message).
    rows_per_message: ClassVar[int | None] = None
    # True when an accepted call only starts a batch whose outcome the provider reports later (Symplify):
    # `read_answer` answers STARTED with the batch id, and `status_call` / `read_status` follow it up.
    # Such a provider makes one call a chunk.
    follows_batches: ClassVar[bool] = False

    @property
    def answers(self) -> NothingHappened:
        """This provider's row of the "proves nothing happened" table (fanout.providers.outcomes)."""
        return nothing_happened(self.destination)

    @property
    def dedupes(self) -> bool:
        """True when the provider itself ignores a resend of something it already did (Mateo's
        deduplication_id, Workshop's already_enrolled): a chunk that may have reached it can be resent."""
        return self.answers.dedupes

    @abstractmethod
    def target_problem(self, target: str) -> str | None:
        """Why `target` cannot be this destination's target id, or None when it can."""

    def canonical_target(self, target: str) -> str:
        """`target` as the provider's documents write it (called once `target_problem` found none)."""
        return target

    def secret_problem(self, secret: ProviderSecret) -> str | None:
        """What the destination's secret lacks for this provider to be called at all, or None."""
        return None

    @abstractmethod
    def option_problem(self, options: Mapping[str, str], headers: list[str]) -> str | None:
        """Why the file options (or the file's columns) cannot work for this destination, or None."""

    @abstractmethod
    def identify(self, contact: Contact, options: Mapping[str, str]) -> Identification:
        """The identity this destination matches the contact on, or what is missing."""

    @abstractmethod
    def to_item(self, contact: Contact, job_id: str, options: Mapping[str, str]) -> Any:
        """The provider's item for one contact, exactly as the seed's schema wants it."""

    def lane(self, contact: Contact) -> str:
        """Which request family the contact travels in (`c` contacts; Workshop has `l` lists)."""
        return "c"

    def text_item_source(self, columns: TextColumns) -> TextItemSource | None:
        """This provider's items for the rows of one CSV file as source (see TextItemSource), or None (the
        default): its rows take `to_item`."""
        return None

    def envelope(self, target: str, options: Mapping[str, str]) -> dict[str, Any]:
        """Request fields shared by every call of a job (e.g. Altcraft `matching`)."""
        return {}

    @abstractmethod
    def calls(
        self,
        target: str,
        envelope: Mapping[str, Any],
        rows: list[StagedRow],
        secret: ProviderSecret,
        lane: str,
    ) -> Iterator[ProviderCall]:
        """The HTTP requests that send `rows` (one for a batch API, one per row for messages)."""

    @abstractmethod
    def read_answer(self, call: ProviderCall, response: httpx.Response) -> Outcome:
        """Turn a 2xx answer (or a body-level error) into an Outcome with a result per row."""

    def status_call(self, target: str, batch_id: str, secret: ProviderSecret) -> ProviderCall:
        """The request that reads the status of a batch `read_answer` said was STARTED."""
        raise NotImplementedError(f"{self.destination.value} does not follow batches")

    def read_status(self, call: ProviderCall, response: httpx.Response) -> Outcome:
        """A 2xx batch status: DONE (every row sent), FAILED (the batch failed: `detail` says why) or
        STARTED (not finished yet). Rows are the sender's to fill in: the call carries none."""
        raise NotImplementedError(f"{self.destination.value} does not follow batches")

    def outcome(self, call: ProviderCall, response: httpx.Response) -> Outcome:
        """Classify any answer: the "nothing happened" table first, then the provider's own reading."""
        if call.status_of is not None:
            return self._status_outcome(call, response, self.answers.status_verdict(response.status_code))
        verdict = self.answers.status_verdict(response.status_code)
        if verdict is None:
            return self.read_or_uncertain(call, response)
        return self.refused(call, response, verdict)

    def read_or_uncertain(self, call: ProviderCall, response: httpx.Response) -> Outcome:
        """`read_answer`, or — for an answer of a shape the document does not show — UNCERTAIN: the
        provider may have acted and we cannot tell (resent only where it de-duplicates). Logged with the
        status and the body's shape, never its contents."""
        try:
            return self.read_answer(call, response)
        except (ValueError, TypeError, KeyError, AttributeError):
            return self.unreadable(response)

    def unreadable(self, response: httpx.Response) -> Outcome:
        """The one rule for an answer that cannot be read."""
        from fanout.observability import logger  # here: the CLI imports the providers and logs nothing

        shape = body_shape(response)
        logger.warning(
            "provider answer cannot be read",
            extra={"destination": self.destination.value, "status": response.status_code, "shape": shape},
        )
        detail = f"HTTP {response.status_code} with an answer that cannot be read ({shape})"
        return Outcome(Verdict.UNCERTAIN, detail, response.status_code)

    def refused(self, call: ProviderCall, response: httpx.Response, verdict: Verdict) -> Outcome:
        """A non-2xx answer with its table verdict; the rows of a permanent refusal fail."""
        detail = error_text(response)
        outcome = Outcome(verdict, detail, response.status_code, retry_after_seconds(response.headers))
        if verdict is Verdict.FAILED:
            outcome.rows = all_rows(call.rows, RowState.FAILED, detail)
        return outcome

    def _status_outcome(
        self, call: ProviderCall, response: httpx.Response, verdict: Verdict | None
    ) -> Outcome:
        """A status read has no effect, so any transient answer is simply read again later (RETRY); a
        refusal (401, 404, ...) leaves the batch's outcome unknown (UNCERTAIN), never failed."""
        if verdict is None:
            try:
                return self.read_status(call, response)
            except (ValueError, TypeError, KeyError, AttributeError):
                detail = (
                    f"HTTP {response.status_code} with a status that cannot be read ({body_shape(response)})"
                )
                return Outcome(Verdict.RETRY, detail)
        detail = error_text(response)
        if verdict in (Verdict.FAILED, Verdict.TOO_LARGE) or (
            verdict is Verdict.UNCERTAIN and 400 <= response.status_code < 500
        ):
            detail = f"could not read the status of {self.destination.value} batch {call.status_of}: {detail}"
            return Outcome(Verdict.UNCERTAIN, detail, response.status_code)
        return Outcome(Verdict.RETRY, detail, response.status_code, retry_after_seconds(response.headers))
