"""Symplify batch journey starter (seed 001): the whole file as NDJSON, fetched by Symplify itself.

The splitter writes `{"id", "properties"}` a line (UTF-8, never a JSON array), presigns a GET for it and
puts the URL in the chunk's envelope as `downloadUrl`; the sender makes one call with `entityId`.
Symplify has no idempotency key: a call that may have reached it is never resent automatically.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from fanout import fields
from fanout.destinations import Destination
from fanout.models import Contact, Outcome, RowState, StagedRow, Verdict
from fanout.providers.base import Identification, Limits, Provider, ProviderCall, ProviderSecret, all_rows

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

    def target_problem(self, target: str) -> str | None:
        if _ENTITY_ID.match(target):
            return None
        return f"'{target}' is not a Symplify journey id (entityId): it must be a number such as 1001"

    def option_problem(self, options: Mapping[str, str], headers: list[str]) -> str | None:
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
        customer = secret.customer_id or ""
        url = f"{secret.base_url.rstrip('/')}/{customer}/batchtrigger/v2"
        headers = {secret.auth_header or AUTH_HEADER: secret.token}
        body = {"entityId": int(target), "downloadUrl": envelope["downloadUrl"]}
        yield ProviderCall("POST", url, rows, body, headers)

    def read_answer(self, call: ProviderCall, response: httpx.Response) -> Outcome:
        try:
            body = response.json()
        except ValueError:
            body = {}
        batch = body.get("batchId") if isinstance(body, dict) else None
        answer = f"in Symplify batch {batch}" if batch else "accepted by Symplify's batch starter"
        return Outcome(
            Verdict.DONE, answer, response.status_code, rows=all_rows(call.rows, RowState.SENT, answer)
        )
