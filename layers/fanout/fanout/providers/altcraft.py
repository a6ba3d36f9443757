"""Altcraft import_and_start_batch (seed 003): ≤ 10,000 profiles and ≤ 10 MB of body per call.

The token travels in the body. Errors come in the body's `error` field (0 is success); a body over
10 MB is answered `error: 400, error_debug: "http: request body too large"`, which splits the chunk.
Altcraft does not de-duplicate: a call that may have reached it is never resent automatically.
"""

from __future__ import annotations

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
    all_rows,
    classify_status,
    retry_after_seconds,
)

if TYPE_CHECKING:  # only the sender, which imports httpx anyway, passes responses in
    import httpx

MAX_PROFILES = 10_000  # seed 003: "not recommended to transfer more than 10,000 profiles in one request"
MAX_BODY_BYTES = 10 * 1024 * 1024  # seed 003: "The request body is limited by default to 10MB"
MATCHING_MODES = ("email", "email_profile", "phone", "profile_id", "custom")
TOO_LARGE = "request body too large"

# canonical field -> Altcraft profile data field (seed 003's examples); other columns keep their names.
DATA_NAMES = {fields.EMAIL: "email", fields.PHONE: "phones", "first_name": "_fname", "last_name": "_lname"}


def matching(options: Mapping[str, str]) -> str:
    return options.get("matching", "email")


class Altcraft(Provider):
    destination: ClassVar[Destination] = Destination.ALTCRAFT
    limits: ClassVar[Limits] = Limits(
        max_items=MAX_PROFILES, max_body_bytes=MAX_BODY_BYTES, envelope_bytes=4096
    )

    def target_problem(self, target: str) -> str | None:
        if target.isascii() and target.isdigit() and int(target) > 0:
            return None
        return f"'{target}' is not an Altcraft workflow id: it must be a positive integer such as 12"

    def option_problem(self, options: Mapping[str, str], headers: list[str]) -> str | None:
        mode = matching(options)
        if mode not in MATCHING_MODES:
            return f"file option matching='{mode}' is not one of {', '.join(MATCHING_MODES)}"
        if mode == "custom":
            name = options.get("field-name")
            if not name:
                return (
                    "matching=custom needs the file option field-name (the custom profile field to match on)"
                )
            if name not in headers:
                return f"matching=custom on field-name '{name}', but the file has no column '{name}'"
        return None

    def identify(self, contact: Contact, options: Mapping[str, str]) -> Identification:
        mode = matching(options)
        if mode in ("email", "email_profile"):
            value = contact.fields.get(fields.EMAIL)
        elif mode == "phone":
            value = contact.fields.get(fields.PHONE)
        elif mode == "profile_id":
            value = contact.fields.get("profile_id")
        else:
            name = options.get("field-name", "")
            raw = contact.extra.get(name, contact.fields.get(name))
            value = str(raw) if raw not in (None, "") else None
        if not value:
            column = (
                options.get("field-name", "") if mode == "custom" else ("phone" if mode == "phone" else mode)
            )
            return Identification(
                problem=f"matching={mode} needs a value in the {column} column", column=column
            )
        return Identification(identity=value)

    def to_item(self, contact: Contact, job_id: str, options: Mapping[str, str]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, value in contact.fields.items():
            if name != "profile_id":
                data[DATA_NAMES.get(name, name)] = value
        data.update(contact.extra)
        item: dict[str, Any] = {"data": data}
        if matching(options) == "profile_id":
            item["profile_id"] = contact.fields["profile_id"]
        return item

    def envelope(self, target: str, options: Mapping[str, str]) -> dict[str, Any]:
        env: dict[str, Any] = {"workflow_id": int(target), "matching": matching(options), "format": "json"}
        if matching(options) == "custom":
            env["field_name"] = options["field-name"]
        if options.get("skip-triggers", "").lower() in {"1", "true", "yes"}:
            env["skip_triggers"] = True
        return env

    def calls(
        self,
        target: str,
        envelope: Mapping[str, Any],
        rows: list[StagedRow],
        secret: ProviderSecret,
        lane: str,
    ) -> Iterator[ProviderCall]:
        body = {"token": secret.token, **envelope, "data": [r.item for r in rows]}
        url = f"{secret.base_url.rstrip('/')}/workflows/import_and_start_batch"
        yield ProviderCall("POST", url, rows, body)

    def outcome(self, call: ProviderCall, response: httpx.Response) -> Outcome:
        # Throttling and server errors follow the shared policy whatever the body says (a 502 from a
        # gateway may have been performed); otherwise Altcraft reports errors in the body's `error`.
        if classify_status(response.status_code, response.headers) in (Verdict.RETRY, Verdict.UNCERTAIN):
            return super().outcome(call, response)
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "error" in body and body.get("error") != 0:
            return self._body_error(call, response, body)
        return super().outcome(call, response)

    def _body_error(self, call: ProviderCall, response: httpx.Response, body: dict[str, Any]) -> Outcome:
        code = body.get("error")
        text = f"Altcraft error {code}: {body.get('error_text', '')} {body.get('error_debug', '')}".strip()
        if TOO_LARGE in str(body.get("error_debug", "")) or response.status_code == 413:
            return Outcome(Verdict.TOO_LARGE, text, response.status_code)
        # Transient HTTP statuses never get here (see outcome); a throttling code in the body is retried.
        if code == 429:
            return Outcome(Verdict.RETRY, text, response.status_code, retry_after_seconds(response.headers))
        return Outcome(
            Verdict.FAILED, text, response.status_code, rows=all_rows(call.rows, RowState.FAILED, text)
        )

    def read_answer(self, call: ProviderCall, response: httpx.Response) -> Outcome:
        body = response.json()
        if not isinstance(body, dict) or body.get("error") != 0:
            text = f"Altcraft gave no success code: {str(body)[:200]}"
            return Outcome(
                Verdict.FAILED, text, response.status_code, rows=all_rows(call.rows, RowState.FAILED, text)
            )
        results = body.get("result") or []
        rows = []
        for index, row in enumerate(call.rows):
            entry = results[index] if index < len(results) and isinstance(results[index], dict) else {}
            profile = entry.get("profile_id")
            rows.append(
                RowResult(
                    row.row, row.identity, RowState.SENT, f"profile_id {profile}" if profile else "engaged"
                )
            )
        return Outcome(Verdict.DONE, body.get("error_text", "ok"), response.status_code, rows=rows)
