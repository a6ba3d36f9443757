"""Workshop journeys enroll (seed 002): ≤ 1000 contact emails, ≤ 100 list emails per call.

Lists travel in their own calls (lane `l`) so one unknown list cannot block the contacts. Workshop
refuses to enrol someone twice (`already_enrolled`), so resending after a lost answer is safe; that
answer is read as sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from fanout import fields
from fanout.destinations import Destination
from fanout.models import Contact, Outcome, RowResult, RowState, StagedRow, Verdict
from fanout.providers.base import (
    Identification,
    Limits,
    Provider,
    ProviderCall,
    ProviderSecret,
    TextColumns,
    TextItemSource,
    UnreadableAnswer,
    all_rows,
    error_text,
)

if TYPE_CHECKING:  # only the sender, which imports httpx anyway, passes responses in
    import httpx

MAX_CONTACT_EMAILS = 1000  # seed 002
MAX_LIST_EMAILS = 100  # seed 002
_JOURNEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# seed 002's 422s that refuse a whole call for one list email: "No list found with email address: X",
# "Multiple lists (2) found with email address: X. Please ensure each list has a unique email address."
_ONE_LIST = re.compile(r"(?:No list|Multiple lists \(\d+\)) found with email address: (\S+?)(?:\.\s|\.?$)")

# not_enrolled reason -> (row state, what a person should know)
REASONS: dict[str, tuple[RowState, str]] = {
    "already_enrolled": (RowState.SENT, "already enrolled in this journey"),
    "not_found": (RowState.FAILED, "not_found: no active Workshop contact has this email"),
    "recently_completed": (RowState.FAILED, "recently_completed: finished this journey within 12 hours"),
}


class Workshop(Provider):
    destination: ClassVar[Destination] = Destination.WORKSHOP
    limits: ClassVar[Limits] = Limits(max_items=MAX_CONTACT_EMAILS)
    lane_limits: ClassVar[dict[str, int]] = {"c": MAX_CONTACT_EMAILS, "l": MAX_LIST_EMAILS}

    def target_problem(self, target: str) -> str | None:
        if _JOURNEY_ID.match(target):
            return None
        return f"'{target}' is not a Workshop journey id (letters, digits, _ and - only)"

    def option_problem(self, options: Mapping[str, str], headers: list[str]) -> str | None:
        return None

    def lane(self, contact: Contact) -> str:
        return "c" if contact.fields.get(fields.EMAIL) else "l"

    def text_item_source(self, columns: TextColumns) -> TextItemSource | None:
        """`to_item` as source for a CSV file's rows (TextItemSource): a row with an email, in the contacts
        lane; a list's email (no contact email) takes `to_item`."""
        email = columns.canonical.get(fields.EMAIL)
        if email is None:
            return None
        return TextItemSource((fields.EMAIL,), "c", (f"item = esc({email})",), {})

    def identify(self, contact: Contact, options: Mapping[str, str]) -> Identification:
        email = contact.fields.get(fields.EMAIL) or contact.fields.get("list_email")
        if not email:
            return Identification(problem="no email (or list_email) to enroll")
        return Identification(identity=email)

    def to_item(self, contact: Contact, job_id: str, options: Mapping[str, str]) -> str:
        return contact.fields.get(fields.EMAIL) or contact.fields["list_email"]

    def calls(
        self,
        target: str,
        envelope: Mapping[str, Any],
        rows: list[StagedRow],
        secret: ProviderSecret,
        lane: str,
    ) -> Iterator[ProviderCall]:
        key = "contact_email_addresses" if lane == "c" else "list_email_addresses"
        headers = {"Authorization": f"Bearer {secret.token}"}
        if secret.workshop_version:
            headers["Workshop-Version"] = secret.workshop_version
        url = f"{secret.base_url.rstrip('/')}/journeys/{target}/enroll"
        yield ProviderCall("POST", url, rows, {key: [r.item for r in rows]}, headers)

    def outcome(self, call: ProviderCall, response: httpx.Response) -> Outcome:
        """A list call refused (422) for one list email isolates that list: the chunk splits into it and
        the rest (nothing was enrolled: a 422 is a documented refusal), so the other lists are enrolled and
        only that row fails, with Workshop's words."""
        if response.status_code == 422 and len(call.rows) > 1 and _is_lists(call):
            detail = error_text(response)
            found = _ONE_LIST.search(detail)
            if found:
                named = found.group(1).strip().lower()
                row = next((r.row for r in call.rows if str(r.item).strip().lower() == named), None)
                return Outcome(Verdict.TOO_LARGE, detail, response.status_code, isolate_row=row)
        return super().outcome(call, response)

    def read_answer(self, call: ProviderCall, response: httpx.Response) -> Outcome:
        body = response.json()
        enrolled, not_enrolled = _enroll_answer(body)
        if _is_lists(call):
            answer = f"list enrolled ({enrolled} contacts enrolled by this call)"
            return Outcome(
                Verdict.DONE, answer, response.status_code, rows=all_rows(call.rows, RowState.SENT, answer)
            )
        reasons: dict[str, str] = {}
        for why, emails in not_enrolled.items():
            for email in emails:
                reasons[email.strip().lower()] = why
        results = []
        for row in call.rows:
            reason = reasons.get(str(row.item).strip().lower())
            if reason is None:
                results.append(RowResult(row.row, row.identity, RowState.SENT, "enrolled"))
            else:
                state, text = REASONS.get(reason, (RowState.FAILED, reason))
                results.append(RowResult(row.row, row.identity, state, text))
        return Outcome(Verdict.DONE, f"enrolled_count={enrolled}", response.status_code, rows=results)


def _is_lists(call: ProviderCall) -> bool:
    return "list_email_addresses" in (call.json_body or {})


def _enroll_answer(body: Any) -> tuple[int, dict[str, list[str]]]:
    """`enrolled_count` and `not_enrolled` of seed 002's answer; UnreadableAnswer for any other shape."""
    if not isinstance(body, dict):
        raise UnreadableAnswer("not seed 002's {enrolled_count, not_enrolled} object")
    enrolled = body.get("enrolled_count")
    not_enrolled = body.get("not_enrolled", {})
    if not isinstance(enrolled, int) or isinstance(enrolled, bool) or not isinstance(not_enrolled, dict):
        raise UnreadableAnswer("enrolled_count is not an integer or not_enrolled is not an object")
    for emails in not_enrolled.values():
        if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
            raise UnreadableAnswer("a not_enrolled reason is not an array of emails")
    return enrolled, not_enrolled
