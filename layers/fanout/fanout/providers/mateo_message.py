"""Mateo send_message (seed 004): one message per call, several rows per SQS message.

Every message carries an `id` fixed by the job and the row, but no document says Mateo refuses a reused
id (seed 004 and its public docs document no idempotency for send_message): a message whose answer was
lost (a timeout, a 5xx, a connection reset after sending) is `uncertain` and never sent again on our own
(`fanout.providers.outcomes`). A documented refusal (400, 401, 403, 404) fails only its own row: each call
carries one row.
Postal channels (file option `postal=true`): the recipient has `contact_id` and no `handle`, as the seed
requires.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from fanout import fields
from fanout.destinations import Destination
from fanout.ids import row_uuid
from fanout.models import Contact, Outcome, RowResult, RowState, StagedRow, Verdict
from fanout.providers.base import (
    Identification,
    Limits,
    Provider,
    ProviderCall,
    ProviderSecret,
    UnreadableAnswer,
    canonical_uuid,
    is_uuid,
)
from fanout.providers.mateo import EXAMPLE_UUID, bearer, uuid_problem
from fanout.sizing import rows_per_message

if TYPE_CHECKING:  # only the sender, which imports httpx anyway, passes responses in
    import httpx

CONTENT_FIELDS = ("subject", "text", "html", "template_id", "send_after")
_OPTION_CONTENT = {"subject": "subject", "template-id": "template_id", "text": "text", "html": "html"}


def canonical_date_time(value: str) -> str:
    """`send_after` as seed 004's `string<date-time>` (RFC 3339, e.g. 2023-11-07T05:31:56Z): a date, a time
    and a zone, given in UTC; ValueError for anything else (a date alone, a time without a zone)."""
    text = value.strip()
    if len(text) < 16 or text[10] not in "Tt ":
        raise ValueError(text)
    moment = datetime.fromisoformat(text.replace("z", "Z"))
    if moment.tzinfo is None:
        raise ValueError(text)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def value_problem(contact: Contact) -> Identification | None:
    """A row value Mateo would refuse (seed 004: `send_after` string<date-time>, `template_id` string<uuid>),
    named with its column, so the row is rejected at the split rather than failed at send time."""
    template = contact.fields.get("template_id")
    if template and not is_uuid(template):
        problem = f"template_id '{template}' is not a Mateo template id (a uuid like {EXAMPLE_UUID})"
        return Identification(problem=problem, column="template_id", value=template)
    send_after = contact.fields.get("send_after")
    if send_after:
        try:
            canonical_date_time(send_after)
        except ValueError:
            problem = (
                f"send_after '{send_after}' is not a date-time with a zone, e.g. 2023-11-07T05:31:56Z"
                " (or 2023-11-07T06:31:56+01:00)"
            )
            return Identification(problem=problem, column="send_after", value=send_after)
    return None


def is_postal(options: Mapping[str, str]) -> bool:
    return options.get("postal", "").lower() in {"1", "true", "yes"}


class MateoMessage(Provider):
    destination: ClassVar[Destination] = Destination.MATEO_MESSAGE
    limits: ClassVar[Limits] = Limits(max_items=1)
    rows_per_message: ClassVar[int | None] = rows_per_message(Destination.MATEO_MESSAGE)  # fanout.sizing

    def target_problem(self, target: str) -> str | None:
        return uuid_problem(target, "channel")

    def canonical_target(self, target: str) -> str:
        return canonical_uuid(target)  # `from: string<uuid>` (seed 004)

    def option_problem(self, options: Mapping[str, str], headers: list[str]) -> str | None:
        template = options.get("template-id")
        if template and uuid_problem(template, "template"):
            return f"file option template-id: {uuid_problem(template, 'template')}"
        return None

    def identify(self, contact: Contact, options: Mapping[str, str]) -> Identification:
        refused = value_problem(contact)
        if refused is not None:
            return refused
        if is_postal(options):
            contact_id = contact.fields.get("contact_id")
            if not contact_id:
                return Identification(problem="postal messages need a contact_id column (and no handle)")
            return Identification(identity=contact_id)
        handle = contact.fields.get(fields.EMAIL) or contact.fields.get(fields.PHONE)
        if not handle:
            return Identification(problem="no email or phone to send the message to")
        has_content = any(contact.fields.get(f) for f in ("text", "html", "template_id")) or any(
            options.get(o) for o in ("template-id", "text", "html")
        )
        if not has_content:
            return Identification(
                problem="no message content: add a text, html or template_id column, or set the file option template-id"
            )
        return Identification(identity=handle)

    def to_item(self, contact: Contact, job_id: str, options: Mapping[str, str]) -> dict[str, Any]:
        recipient: dict[str, Any]
        if is_postal(options):
            recipient = {"contact_id": contact.fields["contact_id"]}
        else:
            recipient = {"handle": contact.fields.get(fields.EMAIL) or contact.fields.get(fields.PHONE)}
        full = contact.fields.get("full_name") or " ".join(
            p for p in (contact.fields.get("first_name"), contact.fields.get("last_name")) if p
        )
        if full:
            recipient["full_name"] = full
        message: dict[str, Any] = {"id": row_uuid(job_id, contact.row, "message"), "to": [recipient]}
        for option, name in _OPTION_CONTENT.items():
            if options.get(option):
                message[name] = options[option]
        for name in CONTENT_FIELDS:
            if contact.fields.get(name):
                message[name] = contact.fields[name]
        if message.get("template_id"):
            message["template_id"] = canonical_uuid(message["template_id"])
        if message.get("send_after"):
            message["send_after"] = canonical_date_time(message["send_after"])
        placeholders = contact.fields.get("placeholder_values")
        if placeholders:
            message["placeholder_values"] = [p.strip() for p in placeholders.split("|")]
        return message

    def calls(
        self,
        target: str,
        envelope: Mapping[str, Any],
        rows: list[StagedRow],
        secret: ProviderSecret,
        lane: str,
    ) -> Iterator[ProviderCall]:
        url = f"{secret.base_url.rstrip('/')}/send_message"
        for row in rows:
            yield ProviderCall("POST", url, [row], {"from": target, **row.item}, bearer(secret))

    def read_answer(self, call: ProviderCall, response: httpx.Response) -> Outcome:
        row = call.rows[0]
        body = response.json()
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict):
            raise UnreadableAnswer("not seed 004's {conversation, message, recipients, actions}")
        status = message.get("status")
        answer = f"message {message.get('id')} {status if isinstance(status, str) else 'accepted'}"
        return Outcome(
            Verdict.DONE,
            answer,
            response.status_code,
            rows=[RowResult(row.row, row.identity, RowState.SENT, answer)],
        )
