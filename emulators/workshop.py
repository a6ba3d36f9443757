"""Workshop emulator: ``POST /api/v1/journeys/{id}/enroll`` (seed 002).

Clients use the base URL ``http://127.0.0.1:PORT/api/v1``; an optional ``Workshop-Version`` header is
accepted and ignored.

Checks, in order: ``Authorization: Bearer <token>`` (missing/invalid -> 401 ``{"error": "Unauthorized"}``);
body must be a JSON object (else 400 ``{"error": "Invalid JSON"}``); journey seeded (404
``{"error": "Journey not found"}``) and in state ``on`` (422 ``{"error": "Journey must be in 'on' state to
enroll people. Current state: <state>"}``); ``contact_email_addresses`` / ``list_email_addresses`` arrays
of strings (else 422 ``{"error": {"<param>": ["must be an array of strings"]}}``), at most 1000 / 100
entries (else 422 ``{"error": {"<param>": ["is too long (maximum is 1000 entries)"]}}``), at least one
non-empty (else 422 ``{"error": {"base": [...]}}``); each list email must match exactly one list (422
``No list found with email address: X`` / ``Multiple lists (N) found with email address: X. Please
ensure each list has a unique email address.``).

Emails are trimmed and lower-cased, duplicates (also across lists) collapse to one. Per email:
not an active contact -> ``not_found`` (only reported for contact_email_addresses; list members are
always active contacts), already enrolled in this journey (seeded ``enrolled`` or by an earlier
call: this is Workshop's server-side de-duplication) -> ``already_enrolled``, in the journey's
``recently_completed`` -> ``recently_completed``, else enrolled. Always 200 with
``{"enrolled_count": N, "not_enrolled": {"not_found": [...], "already_enrolled": [...],
"recently_completed": [...]}}``, even when N is 0.

Fixture section::

    {"tokens": [...],
     "journeys": {"<id>": {"state": "on" | "draft" | ..., "contacts": "any" | ["active emails"],
                           "enrolled": [...], "recently_completed": [...]}},
     "lists": {"<list email>": ["member emails"] | [["members of list 1"], ["members of list 2"]]}}

``"contacts": "any"`` (the default) makes every syntactically valid email an active contact. A list
value that is an array of arrays means several lists share that email (to provoke the 422).
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from emulators.base import Emulator, bearer_token

MAX_CONTACT_EMAILS = 1000
MAX_LIST_EMAILS = 100
NO_EMAILS_ERROR = "at least one of contact_email_addresses or list_email_addresses must be provided"
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class WorkshopError(Exception):
    """A request refused with ``{"error": <detail>}``."""

    def __init__(self, status: int, detail: str | dict[str, list[str]]) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail


def normalize_email(value: str) -> str:
    """Workshop's normalisation: trimmed and lower-cased."""
    return value.strip().lower()


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _email_param(body: dict[str, Any], name: str, maximum: int) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WorkshopError(422, {name: ["must be an array of strings"]})
    if len(value) > maximum:
        raise WorkshopError(422, {name: [f"is too long (maximum is {maximum} entries)"]})
    return _unique([normalize_email(v) for v in value])


class WorkshopEmulator(Emulator):
    """Journey enrolment with Workshop's per-email outcomes (see the module docstring)."""

    name: ClassVar[str] = "workshop"

    def validate_seed(self, section: dict[str, Any]) -> None:
        """Journeys need a state; contacts is "any" or a list; list values are lists (of lists)."""
        super().validate_seed(section)
        for key, journey in section.get("journeys", {}).items():
            if not isinstance(journey, dict) or not isinstance(journey.get("state", "on"), str):
                raise ValueError(f"workshop.journeys.{key} must be an object with a string 'state'")
            contacts = journey.get("contacts", "any")
            if contacts != "any" and not isinstance(contacts, list):
                raise ValueError(f'workshop.journeys.{key}.contacts must be "any" or an array of emails')
        for key, members in section.get("lists", {}).items():
            if not isinstance(members, list):
                raise ValueError(f"workshop.lists.{key} must be an array of emails or of arrays")

    def reset_state(self) -> None:
        """Enrolments revert to the seeded ``enrolled`` emails."""
        self.enrolled: dict[str, set[str]] = {}

    def routes(self) -> list[BaseRoute]:
        """The enroll endpoint under /api/v1."""
        return [Route("/api/v1/journeys/{id}/enroll", self.enroll, methods=["POST"])]

    async def enroll(self, request: Request) -> Response:
        """POST /api/v1/journeys/{id}/enroll."""
        journey_id = request.path_params["id"]
        try:
            if bearer_token(request) not in self.tokens:  # None/"" are never tokens
                raise WorkshopError(401, "Unauthorized")
            body = _json_object(await request.body())
            journey = self.seed_data.get("journeys", {}).get(journey_id)
            if journey is None:
                raise WorkshopError(404, "Journey not found")
            state = journey.get("state", "on")
            if state != "on":
                raise WorkshopError(
                    422, f"Journey must be in 'on' state to enroll people. Current state: {state}"
                )
            contacts = _email_param(body, "contact_email_addresses", MAX_CONTACT_EMAILS)
            list_emails = _email_param(body, "list_email_addresses", MAX_LIST_EMAILS)
            if not contacts and not list_emails:
                raise WorkshopError(422, {"base": [NO_EMAILS_ERROR]})
            members = [m for list_email in list_emails for m in self._list_members(list_email)]
        except WorkshopError as exc:
            return JSONResponse({"error": exc.detail}, status_code=exc.status)
        return JSONResponse(self._enroll(journey_id, journey, contacts, members))

    def _list_members(self, list_email: str) -> list[str]:
        lists = {normalize_email(k): v for k, v in self.seed_data.get("lists", {}).items()}
        members = lists.get(list_email)
        if members is None:
            raise WorkshopError(422, f"No list found with email address: {list_email}")
        if members and all(isinstance(m, list) for m in members):
            if len(members) > 1:
                raise WorkshopError(
                    422,
                    f"Multiple lists ({len(members)}) found with email address: {list_email}. "
                    "Please ensure each list has a unique email address.",
                )
            members = members[0]
        return [normalize_email(m) for m in members if isinstance(m, str)]

    def _enroll(
        self, journey_id: str, journey: dict[str, Any], contacts: list[str], members: list[str]
    ) -> dict[str, Any]:
        active = journey.get("contacts", "any")
        active_set = None if active == "any" else {normalize_email(e) for e in active}
        recent = {normalize_email(e) for e in journey.get("recently_completed", [])}
        enrolled = self.enrolled.setdefault(
            journey_id, {normalize_email(e) for e in journey.get("enrolled", [])}
        )
        outcome: dict[str, list[str]] = {"not_found": [], "already_enrolled": [], "recently_completed": []}
        count = 0
        from_contacts = set(contacts)
        for email in _unique(contacts + members):
            valid = bool(_EMAIL_RE.match(email))
            if email in from_contacts and not (valid and (active_set is None or email in active_set)):
                outcome["not_found"].append(email)
            elif not valid:
                continue  # list members are not reported (seed: not_found covers contact emails only)
            elif email in enrolled:
                outcome["already_enrolled"].append(email)
            elif email in recent:
                outcome["recently_completed"].append(email)
            else:
                enrolled.add(email)
                count += 1
                self.record(journey_id, email)
        return {"enrolled_count": count, "not_enrolled": outcome}


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise WorkshopError(400, "Invalid JSON") from exc
    if not isinstance(body, dict):
        raise WorkshopError(400, "Invalid JSON")
    return body
