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
    joined_source,
    json_members_source,
    retry_after_seconds,
    some_members_lines,
)
from fanout.providers.outcomes import THROTTLED

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


# the canonical field each matching mode on one matches on (profile_id: its own)
_MATCHED_FIELD = {"email": fields.EMAIL, "email_profile": fields.EMAIL, "phone": fields.PHONE}


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
        if mode != "custom":
            value = contact.fields.get(_MATCHED_FIELD.get(mode, mode))
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

    def text_item_source(self, columns: TextColumns) -> TextItemSource | None:
        """`to_item` as source for a CSV file's rows (TextItemSource), for the matching modes on a canonical
        field (custom matches on a column as it is: its rows take `to_item`)."""
        canonical, extra, mode = columns.canonical, columns.extra, matching(columns.options)
        identity = _MATCHED_FIELD.get(mode, mode)
        if identity not in canonical or mode == "custom":
            return None
        data = [(DATA_NAMES.get(name, name), var) for name, var in canonical.items() if name != "profile_id"]
        if {key for key, _ in data} & {header for header, _ in extra}:
            return None  # a column named like a data field it does not fill: to_item merges the two
        # the phone or profile id matched on, beside `data`
        beside = (
            [",", *json_members_source([(mode, canonical[identity])])]
            if mode in ("phone", "profile_id")
            else []
        )
        filled = joined_source('{"data":{', *json_members_source([*data, *extra]), "}", *beside, "}")
        some = some_members_lines("data", [(k, v, False) for k, v in data] + [(k, v, True) for k, v in extra])
        lines = [
            f"if {' and '.join(canonical.values())}:",
            f"    item = {filled}",
            "else:",
            *(f"    {line}" for line in some),
            f"    item = {joined_source('{"data":{', Code('data'), '}', *beside, '}')}",
        ]
        return TextItemSource((identity,), "c", tuple(lines), {})

    def to_item(self, contact: Contact, job_id: str, options: Mapping[str, str]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, value in contact.fields.items():
            if name != "profile_id":
                data[DATA_NAMES.get(name, name)] = value
        data.update(contact.extra)
        item: dict[str, Any] = {"data": data}
        # Seed 003's parameters of the matching modes: `profile_id` and `phone` travel beside the profile's
        # data (as the request's own parameters do in the single-profile request); `email` is the profile's
        # own field (its email example), `custom` names field_name once and keeps the value in data.
        mode = matching(options)
        if mode == "profile_id":
            item["profile_id"] = contact.fields["profile_id"]
        elif mode == "phone":
            item["phone"] = contact.fields[fields.PHONE]
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
        """The table's HTTP verdicts first (429 retried, 413 split, a 5xx may have been performed); any other
        answer is read by its body's `error` code, which Altcraft reports its outcome in (a string "0" as
        well as 0)."""
        status = response.status_code
        verdict = self.answers.status_verdict(status)
        if verdict is not None and (verdict is not Verdict.UNCERTAIN or status >= 500):
            return self.refused(call, response, verdict)
        try:
            code = error_code(response.json())
        except ValueError:
            return self.unreadable(response)
        if code == 0:
            if verdict is not None:  # a 4xx that says "success": not an answer we can read
                return self.unreadable(response)
            return self.read_or_uncertain(call, response)
        return self._body_error(call, response, response.json(), code)

    def _body_error(
        self, call: ProviderCall, response: httpx.Response, body: dict[str, Any], code: int
    ) -> Outcome:
        text = f"Altcraft error {code}: {body.get('error_text', '')} {body.get('error_debug', '')}".strip()
        if TOO_LARGE in str(body.get("error_debug", "")):
            return Outcome(Verdict.TOO_LARGE, text, response.status_code)
        if code == THROTTLED:
            return Outcome(Verdict.RETRY, text, response.status_code, retry_after_seconds(response.headers))
        if code in self.answers.body_refusals:
            return Outcome(
                Verdict.FAILED, text, response.status_code, rows=all_rows(call.rows, RowState.FAILED, text)
            )
        # An error code no document lists: Altcraft may have acted on part of the batch.
        return Outcome(Verdict.UNCERTAIN, text, response.status_code)

    def read_answer(self, call: ProviderCall, response: httpx.Response) -> Outcome:
        body = response.json()
        if error_code(body) != 0:
            raise UnreadableAnswer("no success code")
        results = body.get("result")
        if not isinstance(results, list):
            results = []
        rows = []
        for index, row in enumerate(call.rows):
            entry = results[index] if index < len(results) and isinstance(results[index], dict) else {}
            profile = entry.get("profile_id")
            rows.append(
                RowResult(
                    row.row,
                    row.identity,
                    RowState.SENT,
                    f"profile_id {profile}" if isinstance(profile, str) and profile else "engaged",
                )
            )
        text = body.get("error_text")
        return Outcome(Verdict.DONE, text if isinstance(text, str) else "ok", response.status_code, rows=rows)


def error_code(body: Any) -> int:
    """The `error` code of an Altcraft answer: an integer, or digits in a string ("0"); UnreadableAnswer
    when the body has none."""
    code = body.get("error") if isinstance(body, dict) else None
    if isinstance(code, str) and code.strip().lstrip("-").isdigit():
        return int(code.strip())
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    raise UnreadableAnswer("no integer error code")
