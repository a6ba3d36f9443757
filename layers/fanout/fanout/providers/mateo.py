"""Mateo batch journey executions (seed 000): `POST /journey_execution/batch`, at most 500 items.

Each item carries a `deduplication_id` fixed by the job and the row, so Mateo itself refuses to enrol a
contact twice when a chunk is sent again after a lost answer: resending is safe (`dedupes`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from fanout import fields
from fanout.destinations import Destination
from fanout.ids import ROW_DIGITS, row_uuid, row_uuid_prefix
from fanout.models import Contact, Outcome, RowState, StagedRow, Verdict, compact_json
from fanout.providers.base import (
    Code,
    Identification,
    Limits,
    Provider,
    ProviderCall,
    ProviderSecret,
    TextColumns,
    TextItemSource,
    UnreadableAnswer,
    all_rows,
    canonical_uuid,
    is_uuid,
    joined_source,
    json_members_source,
    some_members_lines,
)

if TYPE_CHECKING:  # only the sender, which imports httpx anyway, passes responses in
    import httpx

MAX_ITEMS = 500  # seed 000: "Maximum array length: 500"

# canonical field -> Mateo contact field (seed 000's contact object); the rest goes to `context`.
CONTACT_FIELDS: dict[str, str] = {
    fields.EMAIL: "email",
    fields.PHONE: "sms",
    "whatsapp": "whatsapp",
    "external_id": "external_id",
    "full_name": "full_name",
    "birthday": "birthday",
    "city": "city",
    "country": "country",
    "zipcode": "zipcode",
    "address_line1": "address_line1",
    "address_line2": "address_line2",
    "salutation": "salutation",
}

# Mateo matches contacts on email, whatsapp, sms or external_id (its public docs).
_IDENTIFIERS = (fields.EMAIL, fields.PHONE, "whatsapp", "external_id")


def bearer(secret: ProviderSecret) -> dict[str, str]:
    """Mateo's auth: `Authorization: Bearer <API key>`."""
    return {"Authorization": f"Bearer {secret.token}"}


EXAMPLE_UUID = "3c90c3cc-0d44-4b50-8888-8dd25736052a"  # seeds 000 and 004


def uuid_problem(target: str, what: str) -> str | None:
    if is_uuid(target):
        return None
    return f"'{target}' is not a {what} id: Mateo ids are uuids like {EXAMPLE_UUID}"


def _item(contact: list[str], context: list[str]) -> str:
    """Source of the item's text, from `joined_source` pieces of its contact's and its context's members."""
    return joined_source(
        '{"deduplication_id":"',
        Code("row_prefix"),  # row_uuid(job, number), inline
        Code(f"number:{ROW_DIGITS}"),
        '","contact":{',
        *contact,
        '},"context":{',
        *context,
        "}}",
    )


@dataclass(frozen=True, slots=True)
class _ItemNames:
    """Which variables of a CSV file's row plan fill which members of `to_item`'s item (see Mateo)."""

    contact: list[tuple[str, str]]  # (Mateo contact field, variable), column order
    to_context: list[tuple[str, str]]  # the canonical fields of `context`: left out when empty
    extra: Sequence[tuple[str, str]]  # the columns that travel under their own name: always there
    canonical: Mapping[str, str]

    @property
    def context(self) -> list[tuple[str, str]]:
        """(context key, variable): the extra columns, then the canonical ones."""
        return [*self.extra, *self.to_context]

    @property
    def name_parts(self) -> list[str]:
        return [var for var in (self.canonical.get("first_name"), self.canonical.get("last_name")) if var]

    def filled_row(self) -> list[str]:
        """Every column filled: one string; the full name, when no column fills it, is both parts."""
        parts, full = self.name_parts, self.canonical.get("full_name")
        named = [("full_name", "full_name")] if parts and not full else []
        lines = [f"full_name = {" + ' ' + ".join(parts)}"] if named else []
        members = json_members_source(self.contact + named), json_members_source(self.context)
        return [*lines, "item = " + _item(*members)]

    def any_row(self) -> list[str]:
        """Any other row: the members of the values it has, as `to_item` writes them."""
        contact = [(key, var, False) for key, var in self.contact]
        parts, full = self.name_parts, self.canonical.get("full_name")
        lines = []
        if parts:  # the full name, when no column fills it: whichever of the two parts there are
            name = " + ' ' + ".join(parts) if len(parts) == 2 else parts[0]
            either = " or ".join(parts)
            both = f"{parts[0]} and {parts[1]}" if len(parts) == 2 else parts[0]
            guard = f"'' if {full} else " if full else ""
            lines.append(f"full_name = {guard}({name} if {both} else {either})")
            contact.append(("full_name", "full_name", False))
        context = [(header, var, True) for header, var in self.extra]
        context += [(name, var, False) for name, var in self.to_context]
        return [
            *lines,
            *some_members_lines("contact", contact),
            *some_members_lines("context", context),
            "item = " + _item([Code("contact")], [Code("context")]),
        ]


class Mateo(Provider):
    destination: ClassVar[Destination] = Destination.MATEO
    limits: ClassVar[Limits] = Limits(max_items=MAX_ITEMS)

    def target_problem(self, target: str) -> str | None:
        return uuid_problem(target, "journey")

    def canonical_target(self, target: str) -> str:
        return canonical_uuid(target)  # `journey_id: string<uuid>` (seed 000): 8-4-4-4-12, lower case

    def option_problem(self, options: Mapping[str, str], headers: list[str]) -> str | None:
        return None

    def identify(self, contact: Contact, options: Mapping[str, str]) -> Identification:
        for name in _IDENTIFIERS:
            value = contact.fields.get(name)
            if value:
                return Identification(identity=value)
        return Identification(problem="no email, phone, whatsapp or external_id to match the contact on")

    def to_item(self, contact: Contact, job_id: str, options: Mapping[str, str]) -> dict[str, Any]:
        contact_obj: dict[str, Any] = {}
        context: dict[str, Any] = dict(contact.extra)
        for name, value in contact.fields.items():
            target_field = CONTACT_FIELDS.get(name)
            if target_field:
                contact_obj[target_field] = value
            else:
                context[name] = value
        if "full_name" not in contact_obj:
            # canonical fields hold no empty value: the name is whichever of the two parts there are
            first, last = contact.fields.get("first_name"), contact.fields.get("last_name")
            full = f"{first} {last}" if first and last else first or last
            if full:
                contact_obj["full_name"] = full
        return {
            "deduplication_id": row_uuid(job_id, contact.row),
            "contact": contact_obj,
            "context": context,
        }

    def text_item_source(self, columns: TextColumns) -> TextItemSource | None:
        """`to_item` as source for a CSV file's rows (TextItemSource): the same members in the same order.
        A row that fills every column (the usual one) has its item written as one string."""
        canonical, extra = columns.canonical, columns.extra
        to_context = [(name, var) for name, var in canonical.items() if name not in CONTACT_FIELDS]
        if {name for name, _ in to_context} & {header for header, _ in extra}:
            return None  # a column named like a canonical field it does not fill: to_item merges the two
        contact = [(CONTACT_FIELDS[name], var) for name, var in canonical.items() if name in CONTACT_FIELDS]
        names = _ItemNames(contact, to_context, extra, canonical)
        lines = [
            f"if {' and '.join(canonical.values())}:",  # an identity takes a canonical column
            *(f"    {line}" for line in names.filled_row()),
            "else:",
            *(f"    {line}" for line in names.any_row()),
        ]
        return TextItemSource(
            _IDENTIFIERS, "c", tuple(lines), {"row_prefix": row_uuid_prefix(columns.job_id)}
        )

    def calls(
        self,
        target: str,
        envelope: Mapping[str, Any],
        rows: list[StagedRow],
        secret: ProviderSecret,
        lane: str,
    ) -> Iterator[ProviderCall]:
        # `encode_body({"journey_id": target, "items": [r.item for r in rows]})`, built from each row's
        # staged item text instead of parsing and encoding every item again (a test holds the two equal).
        items = ",".join(r.item_json for r in rows)
        body = f'{{"journey_id":{compact_json(target)},"items":[{items}]}}'.encode()
        url = f"{secret.base_url.rstrip('/')}/journey_execution/batch"
        yield ProviderCall("POST", url, rows, headers=bearer(secret), encoded_body=body)

    def read_answer(self, call: ProviderCall, response: httpx.Response) -> Outcome:
        body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
            raise UnreadableAnswer("not seed 000's {success, queued_count}")
        if body["success"] is not True:
            detail = "Mateo did not confirm the batch (success: false)"
            return Outcome(
                Verdict.FAILED,
                detail,
                response.status_code,
                rows=all_rows(call.rows, RowState.FAILED, detail),
            )
        queued = body.get("queued_count")
        # queued_count counts newly queued items; items Mateo already had (same deduplication_id) are
        # enrolled already, so every row of a confirmed batch is sent.
        answer = f"queued (batch queued_count={queued})"
        return Outcome(
            Verdict.DONE, answer, response.status_code, rows=all_rows(call.rows, RowState.SENT, answer)
        )
