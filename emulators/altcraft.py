"""Altcraft emulator: ``POST /api/v1.1/workflows/import_and_start_batch`` (seed 003) and its sibling
``POST /api/v1.1/workflows/import_and_start_batch_task`` (PROVIDERS.md).

Clients use the base URL ``http://127.0.0.1:PORT/api/v1.1``.

Altcraft reports outcomes in the body's ``error`` field (0 OK, 400 bad request, 401 token required,
403 forbidden). The emulator answers **HTTP 200** for every such application-level outcome, as the
provider does, with ``{"error": <code>, "error_text": "..."}`` (plus ``error_debug`` where useful).
Exceptions: a body over 10 MiB (Content-Length, or the raw bytes actually read, before any parsing)
gets **HTTP 413** with exactly ``{"error": 400, "error_debug": "http: request body too large",
"error_text": "Invalid request"}`` (its XML form when the Content-Type is XML); injected faults use
their own HTTP statuses with ``{"error": <status>, "error_text": ...}`` (always JSON).

Formats (seed 003 shows each example as JSON and as XML): a body with an XML Content-Type or starting
with ``<`` is read as Altcraft XML (see emulators/altcraft_xml.py) and answered in XML, exactly like the
seed's XML examples; anything else is JSON and answered in JSON. ``format`` (optional) must name the
body's format ("json" or "xml"), else 400.

Request rules: ``token`` in the body or ``Authorization: Bearer <token>`` (PROVIDERS.md; the body's
token wins when both are sent; missing -> 401 ``Token required``, not seeded -> 403 ``Access
denied``); ``workflow_id`` an int of a seeded workflow; ``matching`` one of email (default),
email_profile, phone, profile_id, custom (custom needs ``field_name``); ``data`` a non-empty array of
``{"data": {...}}``, each profile carrying its mode's identifier as seed 003 words it (see
``profile_identity``): ``data.email`` (for email also ``_subscriptions[].email``), ``phone`` and
``profile_id`` (24 hex) beside ``data``, or the custom field inside ``data``.
Optional ``skip_triggers``/``skip_invalid_subscriptions``/``detect_geo`` must be booleans, ``content``
an object. Unknown top-level keys are ignored (as Go's JSON decoder does).

Success: ``{"error": 0, "error_text": "Successful operation", "result": [{"profile_id": "<24 hex>"}, ...]}``
one per profile in request order; the id is stable per identity (a hash of it, or the given
profile_id). There is no de-duplication: every call engages every profile again, and
/_emulator/received counts it again (target = workflow_id, identity = lower-cased email / phone /
profile_id / custom value).

``import_and_start_batch_task`` takes the same request with the same limits and validation but does
not wait: it answers ``{"error": 0, "error_text": "Successful operation", "result": {"task_id":
"<24 hex>"}}`` (PROVIDERS.md names only ``task_id``; the ``result`` envelope is the emulator's reading
of Altcraft's other answers). The emulated task runs at once: its profiles are in /_emulator/received
when the answer arrives.

Tariff (error 402, PROVIDERS.md): with fixture ``tariff_profile_limit`` N, a request that would take the
profiles engaged since the last reset over N is refused whole with ``{"error": 402, "error_text":
"Tariff limit exceeded"}`` (nothing engaged). No limit by default.

Fixture section: ``{"tokens": [...], "workflows": {"<workflow_id>": {"name": "..."}}, "max_body_bytes": N,
"tariff_profile_limit": N}`` (`max_body_bytes` optional: lowers the 10 MB body limit for tests).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from emulators import altcraft_xml
from emulators.base import Emulator, bearer_token, normalize_phone

MAX_BODY_BYTES = 10 * 1024 * 1024
MATCHING_MODES = ("email", "email_profile", "phone", "profile_id", "custom")
FORMATS = ("json", "xml")
SUCCESS_TEXT = "Successful operation"
TOO_LARGE_BODY = {
    "error": 400,
    "error_debug": "http: request body too large",
    "error_text": "Invalid request",
}
_PROFILE_ID_RE = re.compile(r"^[0-9a-f]{24}$")
_STATUS_TEXT = {
    400: "Invalid request",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


class AltcraftError(Exception):
    """An outcome reported in the body's ``error`` field (HTTP 200)."""

    def __init__(self, code: int, text: str, debug: str | None = None) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.debug = debug

    def body(self) -> dict[str, Any]:
        """The JSON body Altcraft sends for this error."""
        body: dict[str, Any] = {"error": self.code, "error_text": self.text}
        if self.debug:
            body["error_debug"] = self.debug
        return body


def profile_id_for(identity: str) -> str:
    """A stable 24-hex profile id (Mongo ObjectId-sized) for an identity."""
    return hashlib.blake2b(identity.encode("utf-8"), digest_size=12).hexdigest()


def profile_identity(index: int, entry: dict[str, Any], matching: str, field_name: str | None) -> str:
    """The identifier a profile carries for the matching mode (seed 003); AltcraftError(400) if none.

    Seed 003's words, per mode: ``email``/``email_profile`` — the profile's ``email`` (its examples put it
    in ``data``; ``email`` also from ``_subscriptions``); ``phone`` — the ``phone`` parameter; ``profile_id``
    — the ``profile_id`` parameter (24 hex); ``custom`` — ``field_name`` for the request and the value in
    the profile's data under that name (its example), or the ``field_value`` parameter. In a batch each
    ``data[]`` entry carries one profile's parameters beside its ``data``: ``{"profile_id": "...", "data":
    {...}}``. An XML ``<data>`` element has no sibling per profile, so there the parameter is one of its
    children.
    """
    where = f"data[{index}]"
    profile = entry["data"]
    params = entry if entry.get("format") != "xml" else profile
    if matching in ("email", "email_profile"):
        email = profile.get("email")
        if not email and matching == "email":
            subscriptions = profile.get("_subscriptions")
            if isinstance(subscriptions, list):
                email = next(
                    (s.get("email") for s in subscriptions if isinstance(s, dict) and s.get("email")), None
                )
        if not isinstance(email, str) or not email.strip():
            raise AltcraftError(400, f'{where}.data: email is required for matching "{matching}"')
        return email.strip().lower()
    if matching == "phone":
        phone = params.get("phone")
        if not isinstance(phone, str) or not phone.strip():
            raise AltcraftError(400, f'{where}: phone is required for matching "phone"')
        return normalize_phone(phone)
    if matching == "profile_id":
        profile_id = params.get("profile_id")
        if not isinstance(profile_id, str) or not _PROFILE_ID_RE.match(profile_id):
            raise AltcraftError(400, f"{where}: profile_id (24 hex characters) is required")
        return profile_id
    value = profile.get(field_name or "", params.get("field_value"))
    if value is None or value == "":
        raise AltcraftError(
            400, f'{where}.data: custom field "{field_name}" is required for matching "custom"'
        )
    return value if isinstance(value, str) else json.dumps(value)


def parse_body(raw: bytes, body_format: str) -> Any:
    """The request parameters of a JSON or XML body; AltcraftError(400) if it does not parse."""
    if body_format == "xml":
        try:
            return altcraft_xml.parse_request(raw)
        except altcraft_xml.XmlError as exc:
            raise AltcraftError(400, "Invalid request", str(exc)) from exc
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AltcraftError(400, "Invalid request", f"invalid JSON: {exc}") from exc


def check_format(body: dict[str, Any], body_format: str) -> None:
    """``format`` (default: the body's own format) must be json or xml and match the body."""
    declared = body.get("format", body_format)
    if declared not in FORMATS:
        raise AltcraftError(400, "Invalid request", 'format must be "json" or "xml"')
    if declared != body_format:
        raise AltcraftError(400, "Invalid request", f'format "{declared}" but the body is {body_format}')


def validate_request(
    body: Any,
    tokens: set[str],
    workflows: dict[str, Any],
    header_token: str | None,
    body_format: str = "json",
) -> tuple:
    """Check a parsed request; returns (workflow_id, matching, field_name, profiles)."""
    if not isinstance(body, dict):
        raise AltcraftError(400, "Invalid request", f"request body must be a {body_format.upper()} object")
    check_format(body, body_format)
    token = body.get("token") or header_token
    if not token:
        raise AltcraftError(401, "Token required")
    if token not in tokens:
        raise AltcraftError(403, "Access denied")
    workflow_id = body.get("workflow_id")
    if workflow_id is None:
        raise AltcraftError(400, "workflow_id is required")
    if isinstance(workflow_id, bool) or not isinstance(workflow_id, int):
        raise AltcraftError(400, "workflow_id must be an integer")
    if str(workflow_id) not in workflows:
        raise AltcraftError(400, f"Workflow {workflow_id} not found")
    matching = body.get("matching", "email")
    if matching not in MATCHING_MODES:
        raise AltcraftError(400, f"matching must be one of {', '.join(MATCHING_MODES)}")
    field_name = body.get("field_name")
    if matching == "custom" and (not isinstance(field_name, str) or not field_name):
        raise AltcraftError(400, 'field_name is required for matching "custom"')
    for flag in ("skip_triggers", "skip_invalid_subscriptions", "detect_geo"):
        if flag in body and not isinstance(body[flag], bool):
            raise AltcraftError(400, f"{flag} must be a boolean")
    if "content" in body and not isinstance(body["content"], dict):
        raise AltcraftError(400, "content must be an object")
    data = body.get("data")
    if not isinstance(data, list) or not data:
        raise AltcraftError(400, 'data must be a non-empty array of {"data": {...}} profiles')
    profiles = []
    for index, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("data"), dict):
            raise AltcraftError(400, f'data[{index}] must be an object {{"data": {{...}}}}')
        profiles.append(entry if body_format == "json" else {"data": entry["data"], "format": "xml"})
    return workflow_id, matching, field_name, profiles


class AltcraftEmulator(Emulator):
    """import_and_start_batch (see the module docstring)."""

    name: ClassVar[str] = "altcraft"

    def validate_seed(self, section: dict[str, Any]) -> None:
        """Workflow keys must be integers (as strings, JSON object keys)."""
        super().validate_seed(section)
        for key in section.get("workflows", {}):
            if not str(key).isdigit():
                raise ValueError(f"altcraft.workflows key {key!r} must be an integer workflow id")
        limit = section.get("tariff_profile_limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError("altcraft.tariff_profile_limit must be an integer >= 0 (or absent)")

    def reset_state(self) -> None:
        """Forget how many profiles were engaged (the tariff count)."""
        self.engaged = 0

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """Fault/HTTP-level errors in Altcraft's shape."""
        return {"error": status, "error_text": _STATUS_TEXT.get(status, message), "error_debug": message}

    def routes(self) -> list[BaseRoute]:
        """The import_and_start_batch endpoint and its _task sibling under /api/v1.1."""
        return [
            Route(
                "/api/v1.1/workflows/import_and_start_batch", self.import_and_start_batch, methods=["POST"]
            ),
            Route(
                "/api/v1.1/workflows/import_and_start_batch_task",
                self.import_and_start_batch_task,
                methods=["POST"],
            ),
        ]

    async def import_and_start_batch(self, request: Request) -> Response:
        """POST /api/v1.1/workflows/import_and_start_batch: waits, answers a profile_id per profile."""
        return await self._import_and_start(request, wait=True)

    async def import_and_start_batch_task(self, request: Request) -> Response:
        """POST /api/v1.1/workflows/import_and_start_batch_task: answers a task_id at once."""
        return await self._import_and_start(request, wait=False)

    async def _import_and_start(self, request: Request, wait: bool) -> Response:
        content_type = request.headers.get("content-type", "")
        # `max_body_bytes` in the seed lowers the documented 10 MB limit, so tests can provoke the refusal
        # (and a client's split-and-retry) without building 10 MB bodies.
        raw = await _read_limited(request, int(self.seed_data.get("max_body_bytes", MAX_BODY_BYTES)))
        if raw is None:
            return _answer(TOO_LARGE_BODY, "xml" if altcraft_xml.is_xml(b"", content_type) else "json", 413)
        body_format = "xml" if altcraft_xml.is_xml(raw, content_type) else "json"
        try:
            workflow_id, matching, field_name, profiles = validate_request(
                parse_body(raw, body_format),
                self.tokens,
                self.seed_data.get("workflows", {}),
                bearer_token(request),
                body_format,
            )
            identities = [profile_identity(i, p, matching, field_name) for i, p in enumerate(profiles)]
            self._check_tariff(len(identities))
        except AltcraftError as exc:
            return _answer(exc.body(), body_format)
        result = self._engage(str(workflow_id), matching, identities)
        answer = result if wait else {"task_id": secrets.token_hex(12)}
        return _answer({"error": 0, "error_text": SUCCESS_TEXT, "result": answer}, body_format)

    def _check_tariff(self, profiles: int) -> None:
        limit = self.seed_data.get("tariff_profile_limit")
        if limit is not None and self.engaged + profiles > limit:
            debug = f"the tariff allows {limit} profiles; {self.engaged} engaged already"
            raise AltcraftError(402, "Tariff limit exceeded", debug)

    def _engage(self, workflow_id: str, matching: str, identities: list[str]) -> list[dict[str, str]]:
        """Record every profile (no de-duplication) and return its profile_id, in request order."""
        self.engaged += len(identities)
        result = []
        for identity in identities:
            self.record(workflow_id, identity)
            result.append({"profile_id": identity if matching == "profile_id" else profile_id_for(identity)})
        return result


def _answer(body: dict[str, Any], body_format: str, status: int = 200) -> Response:
    """The answer in the request's format (JSON, or XML as seed 003 shows it)."""
    if body_format == "xml":
        return Response(altcraft_xml.render(body), status_code=status, media_type=altcraft_xml.MEDIA_TYPE)
    return JSONResponse(body, status_code=status)


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The raw body, or None as soon as it (or its Content-Length) exceeds ``limit`` bytes."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None  # uvicorn discards the unread rest, the connection stays usable
        chunks.append(chunk)
    return b"".join(chunks)
