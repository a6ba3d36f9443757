"""Symplify batch journey starter (seed 001): the whole file as NDJSON, fetched by Symplify itself.

The splitter writes `{"id", "properties"}` a line (UTF-8, never a JSON array), presigns a GET for it and
puts the URL in the chunk's envelope as `downloadUrl`; the sender makes one call with `entityId`.
Symplify has no idempotency key: a call that may have reached it is never resent automatically.

Seed 001 shows no answer body for the download variant: "Symplify will immediately download the file and
start the batch". So a 2xx whose body is empty or a JSON object without a `batchId` means the starter
accepted the file: its rows end `sent` ("accepted by Symplify's batch starter"), and nothing is polled or
sent again. This is the choice that cannot send twice: `uncertain` would invite a
`fanout redrive --include-uncertain` of a batch Symplify said it started. Should an answer carry a
`batchId` (PROVIDERS.md names the status endpoint, no document names the field in the trigger's
answer), the batch is followed: its rows are sent once `GET /{customerid}/batches/{batchId}` says
`FINISHED`, failed on `ERROR`. Any other 2xx body (HTML, a JSON array) cannot be read: `uncertain`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from fanout import fields
from fanout.destinations import Destination
from fanout.models import Contact, Outcome, RowState, StagedRow, Verdict
from fanout.providers.base import (
    Identification,
    Limits,
    Provider,
    ProviderCall,
    ProviderSecret,
    UnreadableAnswer,
    all_rows,
)

if TYPE_CHECKING:  # only the sender, which imports httpx anyway, passes responses in
    import httpx

AUTH_HEADER = "X-Carma-Authentication-Token"  # PROVIDERS.md; overridable in the secret
_ENTITY_ID = re.compile(r"^\d{1,18}$")

# canonical field -> property name in the seed's example rows; other columns keep their own names.
PROPERTY_NAMES = {
    fields.EMAIL: "emailAddress",
    "first_name": "firstname",
    "last_name": "lastname",
    fields.PHONE: "mobile",
}


class Symplify(Provider):
    destination: ClassVar[Destination] = Destination.SYMPLIFY
    # One call carries the whole file; there is no documented row limit for the download.
    limits: ClassVar[Limits] = Limits(max_items=2**62)
    whole_file: ClassVar[bool] = True
    follows_batches: ClassVar[bool] = True

    def target_problem(self, target: str) -> str | None:
        if _ENTITY_ID.match(target):
            return None
        return f"'{target}' is not a Symplify journey id (entityId): it must be a number such as 1001"

    def option_problem(self, options: Mapping[str, str], headers: list[str]) -> str | None:
        return None

    def secret_problem(self, secret: ProviderSecret) -> str | None:
        # Every Symplify URL carries the customer id (`/{customerid}/batchtrigger/v2`); without it the call
        # would go to `/rest//batchtrigger/v2`.
        if secret.customer_id is None or not str(secret.customer_id).strip():
            return 'has no customer_id: add {"customer_id": "<your Symplify customer id>"} to it'
        return None

    def identify(self, contact: Contact, options: Mapping[str, str]) -> Identification:
        value = (
            contact.fields.get("id") or contact.fields.get("external_id") or contact.fields.get(fields.EMAIL)
        )
        if not value:
            return Identification(problem="no id, external_id or email to identify the contact to Symplify")
        return Identification(identity=value)

    def to_item(self, contact: Contact, job_id: str, options: Mapping[str, str]) -> dict[str, Any]:
        identity = (
            contact.fields.get("id") or contact.fields.get("external_id") or contact.fields[fields.EMAIL]
        )
        properties: dict[str, Any] = {}
        for name, value in contact.fields.items():
            if name != "id":
                properties[PROPERTY_NAMES.get(name, name)] = value
        properties.update(contact.extra)
        return {"id": identity, "properties": properties}

    def calls(
        self,
        target: str,
        envelope: Mapping[str, Any],
        rows: list[StagedRow],
        secret: ProviderSecret,
        lane: str,
    ) -> Iterator[ProviderCall]:
        customer = quote(str(secret.customer_id or "").strip(), safe="")
        url = f"{secret.base_url.rstrip('/')}/{customer}/batchtrigger/v2"
        headers = {secret.auth_header or AUTH_HEADER: secret.token}
        body = {"entityId": int(target), "downloadUrl": envelope["downloadUrl"]}
        yield ProviderCall("POST", url, rows, body, headers)

    def read_answer(self, call: ProviderCall, response: httpx.Response) -> Outcome:
        body = response.json() if response.content.strip() else {}
        if not isinstance(body, dict):
            raise UnreadableAnswer("a trigger's answer is empty or a JSON object")
        batch = body.get("batchId")
        if batch is not None and not isinstance(batch, str | int):
            raise UnreadableAnswer("batchId is neither a string nor a number")
        if batch is not None and str(batch).strip():
            detail = f"Symplify batch {batch} started"
            return Outcome(Verdict.STARTED, detail, response.status_code, batch_id=str(batch).strip())
        answer = "accepted by Symplify's batch starter (no batch id to follow)"
        return Outcome(
            Verdict.DONE, answer, response.status_code, rows=all_rows(call.rows, RowState.SENT, answer)
        )

    def status_call(self, target: str, batch_id: str, secret: ProviderSecret) -> ProviderCall:
        customer = quote(str(secret.customer_id or "").strip(), safe="")
        url = f"{secret.base_url.rstrip('/')}/{customer}/batches/{quote(batch_id, safe='')}"
        headers = {secret.auth_header or AUTH_HEADER: secret.token}
        return ProviderCall("GET", url, [], None, headers, status_of=batch_id)

    def read_status(self, call: ProviderCall, response: httpx.Response) -> Outcome:
        """`{"status": "FINISHED" | "ERROR" | <anything else: still running>, ...}`; an ERROR's reason is
        taken from the body when it gives one (the docs we hold name no field for it)."""
        body = response.json()
        status = body.get("status") if isinstance(body, dict) else None
        state = str(status).strip().upper() if status is not None else ""
        batch = call.status_of
        if state == "FINISHED":
            return Outcome(Verdict.DONE, f"in Symplify batch {batch}", response.status_code)
        if state == "ERROR":
            reason = _reason(body)
            detail = f"Symplify batch {batch} ended in ERROR" + (f": {reason}" if reason else "")
            return Outcome(Verdict.FAILED, detail, response.status_code)
        return Outcome(
            Verdict.STARTED, f"Symplify batch {batch} is {state or 'not finished'}", response.status_code
        )


def _reason(body: dict[str, Any]) -> str:
    """The first message-like field of an ERROR status, short."""
    for key in ("message", "error", "errorMessage", "reason", "detail", "description"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:300]
    return ""
