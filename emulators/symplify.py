"""Symplify (formerly Carma) emulator: the batch journey starter, batch status and single commence.

Clients use the base URL ``http://127.0.0.1:PORT/rest``. Endpoints:

* ``POST /rest/{customerid}/batchtrigger/v2`` with header ``X-Carma-Authentication-Token`` (missing or
  not seeded -> 401 ``{"error": "Unauthorized"}``). Body ``{"entityId": <journey id>, "downloadUrl"?,
  "type"?}``; ``entityId`` is an int (or a digit string), ``type`` if given must be
  ``JOURNEY_COMMENCE``. Unknown customer -> 404 ``{"error": "Customer not found"}``, journey not seeded
  -> 404 ``{"error": "Journey <id> not found"}``.

  - With ``downloadUrl``: the URL must be http(s) on 127.0.0.1/localhost/::1 (the emulator refuses to
    fetch anything else: no SSRF). Its own expiry is checked first - SigV4 ``X-Amz-Date`` +
    ``X-Amz-Expires`` or SigV2 ``Expires`` - because moto serves expired presigned URLs; expired -> 400
    ``{"error": "downloadUrl has expired"}`` and nothing is downloaded. Then the file is downloaded and
    validated (see below), and the batch starts (the answer: below).
  - Without ``downloadUrl``: 200 ``{"uploadUrl": "http://127.0.0.1:PORT/rest/_upload/<token>"}``. A
    ``PUT`` of the file there (``Content-Type: text/plain``, UTF-8; other types -> 415) starts the batch
    (the answer: below). The uploadUrl is valid 12 hours (fixture
    ``upload_url_ttl_seconds``; expired -> 403 ``{"error": "uploadUrl has expired"}``) and, like a
    presigned URL, needs no token and may be used more than once (each PUT starts a batch).
  - Seed 001 shows no answer body for a started batch: both variants answer an empty **200**. A journey
    seeded with ``"trigger_answers_batch_id": true`` answers ``{"batchId": "<uuid>", "status":
    "STARTED"}`` instead — a named option, as no document names that field — so a client can follow
    the batch's status below.

* ``GET /rest/{customerid}/batches/{batchId}`` (same token header) -> ``{"batchId", "status", "rows": N}``,
  unknown -> 404. Clients poll it until ``FINISHED`` or ``ERROR``. ``status`` is ``STARTED`` for the
  first ``batch_polls_until_done`` polls (journey fixture, default 0: done at the first poll), then
  the journey's ``batch_outcome`` (journey fixture, default ``FINISHED``). Seed a journey with
  ``"batch_outcome": "ERROR"`` (e.g. ``POST /_emulator/seed``) to make every batch started for it end
  in ``ERROR``: the trigger/upload still answer 200 ``STARTED``, nothing is recorded as received.
  ``GET /_emulator/received`` adds ``"batches": [{"batchId", "entityId", "rows", "outcome", "polls"}]``,
  every batch started (in order) and how many times its status was read.

* ``POST /rest/{customerid}/journeys/{id}/commence`` (same token header): one contact into a journey
  (PROVIDERS.md: single contacts use this, not the batch starter). The docs we hold give no body, so
  the emulator takes one row of the batch file, ``{"id": <string>, "properties"?: <object>}`` (other
  attributes -> 400), and answers 200 ``{"id": <the contact id>, "entityId": <journey id>}``. Unknown
  customer/journey -> 404 as above. No idempotency: commencing twice counts twice.

File rules: UTF-8 (a BOM is tolerated), one JSON object per line, each exactly ``{"id": <string>,
"properties": <object>}``, blank lines ignored, at least one row. A file starting with ``[`` -> 400
``{"error": "JSON array is not supported; one JSON object per line"}``; other problems -> 400 naming
the line. Symplify has no idempotency: a retried request or upload counts every contact again, and
that is visible in /_emulator/received (target = entityId, identity = the row's ``id``).

Fixture section::

    {"tokens": [...], "upload_url_ttl_seconds": 43200,
     "customers": {"<customerid>": {"journeys": {"<entityId>": {
         "name": "...", "batch_outcome": "FINISHED", "batch_polls_until_done": 0,
         "trigger_answers_batch_id": false}}}}}
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from calendar import timegm
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from emulators.base import Emulator

TOKEN_HEADER = "X-Carma-Authentication-Token"  # noqa: S105 - a header name, not a secret
UPLOAD_URL_TTL_SECONDS = 12 * 3600
DOWNLOAD_TIMEOUT_SECONDS = 10.0
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
JSON_ARRAY_ERROR = "JSON array is not supported; one JSON object per line"
BATCH_OUTCOMES = ("FINISHED", "ERROR")


class SymplifyError(Exception):
    """A request refused with ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Upload:
    customer: str
    entity_id: str
    expires_at: float


def parse_contact_file(raw: bytes) -> list[dict[str, Any]]:
    """Validate a batch file and return its rows; raises SymplifyError(400) on the first problem."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SymplifyError(400, f"file is not valid UTF-8 (byte {exc.start})") from exc
    text = text.removeprefix("\ufeff")
    if text.lstrip().startswith("["):
        raise SymplifyError(400, JSON_ARRAY_ERROR)
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            rows.append(_parse_row(number, line))
    if not rows:
        raise SymplifyError(400, "file contains no contacts")
    return rows


def _parse_row(number: int, line: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SymplifyError(400, f"line {number}: not a JSON object ({exc.msg})") from exc
    if not isinstance(row, dict):
        raise SymplifyError(400, f"line {number}: each line must be a JSON object")
    return check_row(row, f"line {number}: ")


def check_row(row: dict[str, Any], where: str = "", properties_required: bool = True) -> dict[str, Any]:
    """A contact row ``{"id": <string>, "properties": <object>}``; SymplifyError(400) naming the problem."""
    extra = sorted(set(row) - {"id", "properties"})
    if extra:
        raise SymplifyError(400, f"{where}unexpected attribute '{extra[0]}'")
    if not isinstance(row.get("id"), str):
        raise SymplifyError(400, f'{where}"id" must be a string')
    if (properties_required or "properties" in row) and not isinstance(row.get("properties"), dict):
        raise SymplifyError(400, f'{where}"properties" must be an object')
    return row


def url_expiry(url: str) -> float | None:
    """Epoch seconds when a presigned URL expires (SigV4 or SigV2 query), None if it carries none."""
    query = {k.lower(): v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    if "x-amz-date" in query and "x-amz-expires" in query:
        try:
            signed = timegm(time.strptime(query["x-amz-date"], "%Y%m%dT%H%M%SZ"))
            return signed + int(query["x-amz-expires"])
        except ValueError as exc:
            raise SymplifyError(400, "downloadUrl has a malformed X-Amz-Date/X-Amz-Expires") from exc
    if "expires" in query:
        try:
            return float(query["expires"])
        except ValueError as exc:
            raise SymplifyError(400, "downloadUrl has a malformed Expires") from exc
    return None


def check_download_url(url: Any, now: float | None = None) -> str:
    """Refuse non-local, malformed or expired download URLs (SSRF guard + expiry check)."""
    if not isinstance(url, str) or not url:
        raise SymplifyError(400, "downloadUrl must be a non-empty http(s) URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOCAL_HOSTS:
        raise SymplifyError(400, "downloadUrl must be an http(s) URL on 127.0.0.1 or localhost (emulator)")
    expires_at = url_expiry(url)
    if expires_at is not None and (time.time() if now is None else now) > expires_at:
        raise SymplifyError(400, "downloadUrl has expired")
    return url


class SymplifyEmulator(Emulator):
    """Batch trigger, upload URL and batch status (see the module docstring)."""

    name: ClassVar[str] = "symplify"

    def validate_seed(self, section: dict[str, Any]) -> None:
        """customers -> {id: {"journeys": {entityId: {...}}}}."""
        super().validate_seed(section)
        customers = section.get("customers", {})
        if not isinstance(customers, dict):
            raise ValueError("symplify.customers must be an object")
        for key, customer in customers.items():
            if not isinstance(customer, dict) or not isinstance(customer.get("journeys", {}), dict):
                raise ValueError(f"symplify.customers.{key} must be an object with a 'journeys' object")
            for journey_id, journey in customer.get("journeys", {}).items():
                _check_journey_seed(journey_id, journey)

    def reset_state(self) -> None:
        """Forget batches and upload URLs."""
        self.batches: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, _Upload] = {}

    def routes(self) -> list[BaseRoute]:
        """The Symplify endpoints under /rest."""
        return [
            Route("/rest/_upload/{token}", self.upload, methods=["PUT"]),
            Route("/rest/{customerid}/batchtrigger/v2", self.batchtrigger, methods=["POST"]),
            Route("/rest/{customerid}/batches/{batchId}", self.batch_status, methods=["GET"]),
            Route("/rest/{customerid}/journeys/{id}/commence", self.commence, methods=["POST"]),
        ]

    def _authorise(self, request: Request) -> None:
        token = request.headers.get(TOKEN_HEADER)
        if not token or token not in self.tokens:
            raise SymplifyError(401, "Unauthorized")

    def _journeys(self, customer: str) -> dict[str, Any]:
        customers = self.seed_data.get("customers", {})
        if customer not in customers:
            raise SymplifyError(404, "Customer not found")
        return customers[customer].get("journeys", {})

    def _fail(self, exc: SymplifyError) -> Response:
        return self.error(exc.status, exc.message)

    async def batchtrigger(self, request: Request) -> Response:
        """POST /rest/{customerid}/batchtrigger/v2."""
        customer = request.path_params["customerid"]
        try:
            self._authorise(request)
            body = _json_object(await request.body())
            entity_id = _entity_id(body)
            if entity_id not in self._journeys(customer):
                raise SymplifyError(404, f"Journey {entity_id} not found")
            if "downloadUrl" not in body:
                return JSONResponse({"uploadUrl": self._new_upload_url(request, customer, entity_id)})
            url = check_download_url(body["downloadUrl"])
            rows = parse_contact_file(await _download(url))
        except SymplifyError as exc:
            return self._fail(exc)
        return self._started(customer, entity_id, self._start_batch(customer, entity_id, rows))

    def _started(self, customer: str, entity_id: str, started: dict[str, str]) -> Response:
        """The answer to a batch start: seed 001 shows none, so an empty 200; a journey seeded with
        ``"trigger_answers_batch_id": true`` answers ``{"batchId", "status": "STARTED"}`` instead (no
        document names that field: a named option, for following a batch's status)."""
        if self._journeys(customer)[entity_id].get("trigger_answers_batch_id") is True:
            return JSONResponse(started)
        return Response(status_code=200)

    async def upload(self, request: Request) -> Response:
        """PUT /rest/_upload/{token}: the uploadUrl handed out by the entityId-only variant."""
        upload = self.uploads.get(request.path_params["token"])
        try:
            if upload is None:
                raise SymplifyError(404, "Unknown uploadUrl")
            if time.time() > upload.expires_at:
                raise SymplifyError(403, "uploadUrl has expired")
            content_type = request.headers.get("content-type", "")
            media_type, _, params = content_type.partition(";")
            charset = params.strip().lower().removeprefix("charset=").strip('"') if params else "utf-8"
            if media_type.strip().lower() != "text/plain" or charset not in ("utf-8", "utf8"):
                raise SymplifyError(415, "Content-Type must be text/plain (UTF-8)")
            rows = parse_contact_file(await request.body())
        except SymplifyError as exc:
            return self._fail(exc)
        started = self._start_batch(upload.customer, upload.entity_id, rows)
        return self._started(upload.customer, upload.entity_id, started)

    async def batch_status(self, request: Request) -> Response:
        """GET /rest/{customerid}/batches/{batchId}."""
        try:
            self._authorise(request)
            self._journeys(request.path_params["customerid"])
            batch = self.batches.get(request.path_params["batchId"])
            if batch is None or batch["customer"] != request.path_params["customerid"]:
                raise SymplifyError(404, "Batch not found")
        except SymplifyError as exc:
            return self._fail(exc)
        status = batch["outcome"] if batch["polls_left"] <= 0 else "STARTED"
        batch["polls_left"] -= 1
        batch["polls"] += 1
        return JSONResponse({"batchId": batch["batchId"], "status": status, "rows": batch["rows"]})

    async def commence(self, request: Request) -> Response:
        """POST /rest/{customerid}/journeys/{id}/commence: one contact, no batch."""
        journey_id = request.path_params["id"]
        try:
            self._authorise(request)
            if journey_id not in self._journeys(request.path_params["customerid"]):
                raise SymplifyError(404, f"Journey {journey_id} not found")
            row = check_row(_json_body(await request.body()), properties_required=False)
            if not row["id"].strip():
                raise SymplifyError(400, '"id" must identify the contact')
        except SymplifyError as exc:
            return self._fail(exc)
        self.record(journey_id, row["id"])
        entity_id = int(journey_id) if journey_id.isdigit() else journey_id
        return JSONResponse({"id": row["id"], "entityId": entity_id})

    def _new_upload_url(self, request: Request, customer: str, entity_id: str) -> str:
        token = secrets.token_urlsafe(24)
        ttl = float(self.seed_data.get("upload_url_ttl_seconds", UPLOAD_URL_TTL_SECONDS))
        self.uploads[token] = _Upload(customer, entity_id, time.time() + ttl)
        return str(request.url_for("upload", token=token))

    def _start_batch(self, customer: str, entity_id: str, rows: list[dict[str, Any]]) -> dict[str, str]:
        """Register the batch; unless its journey is seeded to end in ERROR, record every row (no
        de-duplication: Symplify has none)."""
        journey = self._journeys(customer)[entity_id]
        outcome = journey.get("batch_outcome", "FINISHED")
        if outcome == "FINISHED":
            for row in rows:
                self.record(entity_id, row["id"])
        batch_id = str(uuid.uuid4())
        self.batches[batch_id] = {
            "batchId": batch_id,
            "outcome": outcome,
            "polls_left": int(journey.get("batch_polls_until_done", 0)),
            "rows": len(rows),
            "customer": customer,
            "entityId": entity_id,
            "polls": 0,
        }
        return {"batchId": batch_id, "status": "STARTED"}

    def received(self) -> dict[str, Any]:
        """The base observation document plus every batch started: its journey, rows, seeded outcome and
        how many times its status was read."""
        document = super().received()
        keys = ("batchId", "entityId", "rows", "outcome", "polls")
        document["batches"] = [{key: batch[key] for key in keys} for batch in self.batches.values()]
        return document


def _check_journey_seed(journey_id: str, journey: Any) -> None:
    if not isinstance(journey, dict):
        raise ValueError(f"symplify journey {journey_id} must be an object")
    if journey.get("batch_outcome", "FINISHED") not in BATCH_OUTCOMES:
        raise ValueError(f"symplify journey {journey_id}: batch_outcome must be FINISHED or ERROR")
    polls = journey.get("batch_polls_until_done", 0)
    if isinstance(polls, bool) or not isinstance(polls, int) or polls < 0:
        raise ValueError(f"symplify journey {journey_id}: batch_polls_until_done must be an integer >= 0")
    if not isinstance(journey.get("trigger_answers_batch_id", False), bool):
        raise ValueError(f"symplify journey {journey_id}: trigger_answers_batch_id must be true or false")


def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SymplifyError(400, "request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise SymplifyError(400, "request body must be a JSON object")
    return body


def _json_object(raw: bytes) -> dict[str, Any]:
    body = _json_body(raw)
    extra = sorted(set(body) - {"entityId", "downloadUrl", "type"})
    if extra:
        raise SymplifyError(400, f"unknown attribute '{extra[0]}'")
    if "type" in body and body["type"] != "JOURNEY_COMMENCE":
        raise SymplifyError(400, "type must be JOURNEY_COMMENCE")
    return body


def _entity_id(body: dict[str, Any]) -> str:
    value = body.get("entityId")
    if isinstance(value, bool) or not (
        isinstance(value, int) or (isinstance(value, str) and value.isdigit())
    ):
        raise SymplifyError(400, "entityId is required and must be the numeric id of a journey")
    return str(value)


async def _download(url: str) -> bytes:
    """GET the contact file; follows no redirects (they could leave loopback) and ignores proxy env."""
    import httpx  # imported here: it is only needed for downloads and costs start-up time

    try:
        async with httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT_SECONDS, trust_env=False) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        raise SymplifyError(400, f"could not download downloadUrl ({type(exc).__name__})") from exc
    if response.status_code != 200:
        raise SymplifyError(400, f"could not download downloadUrl (HTTP {response.status_code})")
    return response.content
