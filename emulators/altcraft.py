"""Altcraft emulator: ``POST /api/v1.1/workflows/import_and_start_batch`` (seed 003).

Clients use the base URL ``http://127.0.0.1:PORT/api/v1.1``.

Altcraft reports outcomes in the body's ``error`` field (0 OK, 400 bad request, 401 token required,
403 forbidden). The emulator answers **HTTP 200** for every such application-level outcome, as the
provider does, with ``{"error": <code>, "error_text": "..."}`` (plus ``error_debug`` where useful).
Exceptions: a body over 10 MiB (Content-Length, or the raw bytes actually read, before any parsing)
gets **HTTP 413** with exactly ``{"error": 400, "error_debug": "http: request body too large",
"error_text": "Invalid request"}``; injected faults use their own HTTP statuses with
``{"error": <status>, "error_text": ...}``.

Request rules: ``token`` in the body or ``Authorization: Bearer`` (missing -> 401 ``Token required``,
not seeded -> 403 ``Access denied``); ``format`` "json" (default; "xml" or an XML body -> 400, only json
is emulated); ``workflow_id`` an int of a seeded workflow; ``matching`` one of email (default),
email_profile, phone, profile_id, custom (custom needs ``field_name``); ``data`` a non-empty array of
``{"data": {...}}``, each profile carrying its mode's identifier: ``email`` (for email also
``_subscriptions[].email``), ``phones``/``phone``, ``profile_id`` (24 hex), or the custom field.
Optional ``skip_triggers``/``skip_invalid_subscriptions``/``detect_geo`` must be booleans, ``content``
an object. Unknown top-level keys are ignored (as Go's JSON decoder does).

Success: ``{"error": 0, "error_text": "Successful operation", "result": [{"profile_id": "<24 hex>"}, ...]}``
one per profile in request order; the id is stable per identity (a hash of it, or the given
profile_id). There is no de-duplication: every call engages every profile again, and
/_emulator/received counts it again (target = workflow_id, identity = lower-cased email / phone /
profile_id / custom value).

Fixture section: ``{"tokens": [...], "workflows": {"<workflow_id>": {"name": "..."}}, "max_body_bytes": N}``
(`max_body_bytes` optional: lowers the 10 MB body limit for tests).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from emulators.base import Emulator, bearer_token, normalize_phone

MAX_BODY_BYTES = 10 * 1024 * 1024
MATCHING_MODES = ("email", "email_profile", "phone", "profile_id", "custom")
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


def profile_identity(index: int, profile: dict[str, Any], matching: str, field_name: str | None) -> str:
    """The identifier a profile carries for the matching mode; AltcraftError(400) if it has none."""
    where = f"data[{index}].data"
    if matching in ("email", "email_profile"):
        email = profile.get("email")
        if not email and matching == "email":
            subscriptions = profile.get("_subscriptions")
            if isinstance(subscriptions, list):
                email = next(
                    (s.get("email") for s in subscriptions if isinstance(s, dict) and s.get("email")), None
                )
        if not isinstance(email, str) or not email.strip():
            raise AltcraftError(400, f'{where}: email is required for matching "{matching}"')
        return email.strip().lower()
    if matching == "phone":
        phone = profile.get("phones", profile.get("phone"))
        if isinstance(phone, list):
            phone = phone[0] if phone else None
        if not isinstance(phone, str) or not phone.strip():
            raise AltcraftError(400, f'{where}: phones is required for matching "phone"')
        return normalize_phone(phone)
    if matching == "profile_id":
        profile_id = profile.get("profile_id")
        if not isinstance(profile_id, str) or not _PROFILE_ID_RE.match(profile_id):
            raise AltcraftError(400, f"{where}: profile_id (24 hex characters) is required")
        return profile_id
    value = profile.get(field_name or "")
    if value is None or value == "":
        raise AltcraftError(400, f'{where}: custom field "{field_name}" is required for matching "custom"')
    return value if isinstance(value, str) else json.dumps(value)


def validate_request(
    body: Any, tokens: set[str], workflows: dict[str, Any], header_token: str | None
) -> tuple:
    """Check a parsed request; returns (workflow_id, matching, field_name, profiles)."""
    if not isinstance(body, dict):
        raise AltcraftError(400, "Invalid request", "request body must be a JSON object")
    if body.get("format", "json") != "json":
        raise AltcraftError(400, "Invalid request", 'only format "json" is emulated')
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
        profiles.append(entry["data"])
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

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """Fault/HTTP-level errors in Altcraft's shape."""
        return {"error": status, "error_text": _STATUS_TEXT.get(status, message), "error_debug": message}

    def routes(self) -> list[BaseRoute]:
        """The import_and_start_batch endpoint under /api/v1.1."""
        return [
            Route("/api/v1.1/workflows/import_and_start_batch", self.import_and_start_batch, methods=["POST"])
        ]

    async def import_and_start_batch(self, request: Request) -> Response:
        """POST /api/v1.1/workflows/import_and_start_batch."""
        # `max_body_bytes` in the seed lowers the documented 10 MB limit, so tests can provoke the refusal
        # (and a client's split-and-retry) without building 10 MB bodies.
        raw = await _read_limited(request, int(self.seed_data.get("max_body_bytes", MAX_BODY_BYTES)))
        if raw is None:
            return JSONResponse(TOO_LARGE_BODY, status_code=413)
        try:
            if "xml" in request.headers.get("content-type", "") or raw.lstrip().startswith(b"<"):
                raise AltcraftError(400, "Invalid request", 'only format "json" is emulated, not XML')
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise AltcraftError(400, "Invalid request", f"invalid JSON: {exc}") from exc
            workflow_id, matching, field_name, profiles = validate_request(
                body, self.tokens, self.seed_data.get("workflows", {}), bearer_token(request)
            )
            identities = [profile_identity(i, p, matching, field_name) for i, p in enumerate(profiles)]
        except AltcraftError as exc:
            return JSONResponse(exc.body())
        result = []
        for identity in identities:
            self.record(str(workflow_id), identity)
            result.append({"profile_id": identity if matching == "profile_id" else profile_id_for(identity)})
        return JSONResponse({"error": 0, "error_text": "Successful operation", "result": result})


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
