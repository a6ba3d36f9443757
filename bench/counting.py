"""Counting what a process asks of AWS: every boto3 API call, turned into the units AWS bills.

`CallCounter.install()` wraps botocore's one funnel for API calls (`BaseClient._make_api_call`), so every
client the layer makes is counted in process, with no change to the code under test. Billing units:

* S3: PUT-class (PutObject, CreateMultipartUpload, UploadPart, CompleteMultipartUpload, CopyObject,
  List*) and GET-class (GetObject, HeadObject) requests; presigning makes no request.
* SQS: one request per call and per 64 KB of payload (SendMessageBatch bodies counted).
* DynamoDB on demand: write units = 1 per KB of item (PutItem measured exactly; UpdateItem and the items
  of TransactWriteItems counted as one item of at most 1 KB each, transactions doubled); read units =
  1 per 4 KB read strongly consistently (half eventually consistent), transactions doubled. Item sizes
  follow DynamoDB's rule (attribute names plus values, UTF-8).
* EventBridge: one event per PutEvents entry (per 64 KB). Secrets Manager: one call per call.

Egress (the provider calls' request bytes) is not an AWS API call: bench/shim counts it per invocation.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

KB = 1024
SQS_PAYLOAD_UNIT = 64 * KB
S3_PUT_CLASS = frozenset(
    {
        "PutObject",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "CopyObject",
        "ListObjects",
        "ListObjectsV2",
        "ListObjectVersions",
        "ListMultipartUploads",
        "ListParts",
    }
)
S3_GET_CLASS = frozenset({"GetObject", "HeadObject"})


@dataclass(slots=True)
class Usage:
    """Billable quantities, summed over a run (see the module docstring for how each is counted)."""

    lambda_gb_seconds: float = 0.0
    lambda_requests: float = 0
    sqs_requests: float = 0
    s3_put_requests: float = 0
    s3_get_requests: float = 0
    dynamodb_write_units: float = 0.0
    dynamodb_read_units: float = 0.0
    eventbridge_events: float = 0
    secrets_calls: float = 0
    egress_gb: float = 0.0  # bytes sent to providers over the internet, in GB of 2**30 bytes

    def add(self, other: Usage) -> Usage:
        """The sum of two usages (a new object)."""
        mine, theirs = asdict(self), asdict(other)
        return Usage(**{name: mine[name] + theirs[name] for name in mine})

    def scaled(self, factor: float) -> Usage:
        """Every quantity times `factor` (e.g. per 1,000,000 contacts from a run of fewer)."""
        return Usage(**{name: value * factor for name, value in asdict(self).items()})

    def to_dict(self) -> dict[str, float]:
        return {name: round(float(value), 6) for name, value in asdict(self).items()}


def attribute_size(value: Mapping[str, Any]) -> int:
    """Bytes DynamoDB bills for one attribute value (typed, as the low-level API sends it)."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(str(raw).encode("utf-8"))
    if kind == "N":
        digits = str(raw).lstrip("-").replace(".", "").lstrip("0") or "0"
        return 1 + math.ceil(len(digits) / 2)
    if kind == "B":
        return len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode("utf-8")) + 1 + attribute_size(v) for k, v in raw.items())
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in raw)
    return len(json.dumps(raw).encode("utf-8"))  # sets: near enough


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """Bytes of one DynamoDB item: each attribute's name plus its value."""
    return sum(len(name.encode("utf-8")) + attribute_size(value) for name, value in item.items())


def write_units(item_bytes: int) -> float:
    return float(max(1, math.ceil(item_bytes / KB)))


def read_units(item_bytes: int, consistent: bool) -> float:
    units = float(max(1, math.ceil(item_bytes / (4 * KB))))
    return units if consistent else units / 2


def _sqs_units(operation: str, params: Mapping[str, Any]) -> int:
    if operation == "SendMessageBatch":
        payload = sum(len(str(e.get("MessageBody", "")).encode("utf-8")) for e in params.get("Entries", []))
        return max(1, math.ceil(payload / SQS_PAYLOAD_UNIT))
    if operation == "SendMessage":
        return max(1, math.ceil(len(str(params.get("MessageBody", "")).encode("utf-8")) / SQS_PAYLOAD_UNIT))
    return 1


def _dynamodb(usage: Usage, operation: str, params: Mapping[str, Any], answer: Mapping[str, Any]) -> None:
    consistent = bool(params.get("ConsistentRead"))
    if operation == "PutItem":
        usage.dynamodb_write_units += write_units(item_size(params["Item"]))
    elif operation in ("UpdateItem", "DeleteItem"):
        usage.dynamodb_write_units += 1.0
    elif operation == "TransactWriteItems":
        usage.dynamodb_write_units += 2.0 * len(params.get("TransactItems", []))
    elif operation == "BatchWriteItem":
        usage.dynamodb_write_units += sum(len(v) for v in params.get("RequestItems", {}).values())
    elif operation == "GetItem":
        usage.dynamodb_read_units += read_units(item_size(answer.get("Item", {})), consistent)
    elif operation in ("Query", "Scan"):
        size = sum(item_size(i) for i in answer.get("Items", []))
        usage.dynamodb_read_units += read_units(size, consistent)
    elif operation == "TransactGetItems":
        usage.dynamodb_read_units += 2.0 * len(params.get("TransactItems", []))


def record(usage: Usage, service: str, operation: str, params: Mapping[str, Any], answer: Any) -> None:
    """Add one API call's billable units to `usage`."""
    answer = answer if isinstance(answer, Mapping) else {}
    if service == "s3":
        if operation in S3_PUT_CLASS:
            usage.s3_put_requests += 1
        elif operation in S3_GET_CLASS:
            usage.s3_get_requests += 1
    elif service == "sqs":
        usage.sqs_requests += _sqs_units(operation, params)
    elif service == "dynamodb":
        _dynamodb(usage, operation, params, answer)
    elif service == "events" and operation == "PutEvents":
        usage.eventbridge_events += len(params.get("Entries", []))
    elif service == "secretsmanager":
        usage.secrets_calls += 1


Filter = Callable[[str, str, Mapping[str, Any], Any], bool]


class CallCounter:
    """Counts every boto3 API call made in this process while installed (thread-safe); with `only`, just
    the calls it accepts (service, operation, parameters, answer)."""

    def __init__(self, only: Filter | None = None) -> None:
        self._only = only
        self.calls: Counter[str] = Counter()
        self.usage = Usage()
        self._lock = threading.Lock()
        self._original: Callable[..., Any] | None = None

    def install(self) -> CallCounter:
        """Start counting; idempotent. Returns self."""
        if self._original is not None:
            return self
        original = BaseClient._make_api_call  # type: ignore[attr-defined]
        counter = self

        def counted(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
            service = client.meta.service_model.endpoint_prefix
            try:
                answer = original(client, operation, params)
            except ClientError:
                # Refused calls are billed too: an S3 GET of a missing key, a failed conditional write.
                counter.observe(service, operation, params, None)
                raise
            counter.observe(service, operation, params, answer)
            return answer

        self._original = original
        BaseClient._make_api_call = counted  # type: ignore[attr-defined]
        return self

    def uninstall(self) -> None:
        """Stop counting and put botocore back as it was."""
        if self._original is not None:
            BaseClient._make_api_call = self._original  # type: ignore[attr-defined]
            self._original = None

    def observe(self, service: str, operation: str, params: Mapping[str, Any], answer: Any) -> None:
        """Count one call (the hook calls this; tests may too)."""
        if self._only is not None and not self._only(service, operation, params, answer):
            return
        with self._lock:
            self.calls[f"{service}:{operation}"] += 1
            record(self.usage, service, operation, params, answer)

    def snapshot(self) -> dict[str, Any]:
        """Calls by `service:Operation` and the billable usage so far."""
        with self._lock:
            return {"calls": dict(sorted(self.calls.items())), "usage": self.usage.to_dict()}

    def take(self) -> dict[str, Any]:
        """`snapshot()`, then start again from zero (one record per Lambda invocation)."""
        with self._lock:
            taken = {"calls": dict(sorted(self.calls.items())), "usage": self.usage.to_dict()}
            self.calls = Counter()
            self.usage = Usage()
        return taken
