"""AWS's own errors, on demand, and what IAM denied: a WSGI layer in front of the local moto server.

`--aws-faults "dynamodb=0.1,s3=0.05,sqs=0.05" --seed 7` answers that share of the functions' calls to
each service with an error AWS really returns for it, in the service's own wire format, before moto
sees the call (so the call had no effect, as with AWS's throttling and conflicts):

| service  | errors                                                                                   |
| -------- | ---------------------------------------------------------------------------------------- |
| dynamodb | TransactWriteItems: TransactionCanceledException with a TransactionConflict reason;       |
|          | single-item writes: TransactionConflictException; any call: ThrottlingException,          |
|          | ProvisionedThroughputExceededException, InternalServerError (500)                         |
| s3       | 503 SlowDown, 500 InternalError                                                           |
| sqs      | 500 InternalError, ThrottlingException                                                    |

`dynamodb_conflict_ms=M` adds conflicts where two writers really collide: a TransactWriteItems holds
its items for M milliseconds after it is answered, as a transaction in progress does on AWS, and any
other write that touches one of them meanwhile (another transaction: TransactionCanceledException with a
TransactionConflict reason at that item; a single-item write: TransactionConflictException) is refused.
moto serves one request at a time, so without it two writers never overlap.

Only calls signed with a function's role credentials (temporary keys, as Lambda hands a function) are
faulted: the event runner stands in for Lambda's own pollers, and the CLI and tests for an operator.
Every call is counted per service, and every call IAM refused (403 AccessDenied), per action, at
`GET /_fanout/stats`; `POST /_fanout/faults` sets the rates and the seed.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SERVICES = ("dynamodb", "s3", "sqs")
ADMIN_PREFIX = "/_fanout/"
TEMPORARY_KEY_PREFIX = "ASIA"  # what STS hands an assumed role (Lambda's function credentials)
DYNAMODB_SINGLE_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}


CONFLICT_WINDOW = "dynamodb_conflict_ms"


def parse_fault_rates(spec: str) -> dict[str, float]:
    """`"dynamodb=0.1,s3=0.05"` → `{"dynamodb": 0.1, "s3": 0.05}`; ValueError naming what is wrong."""
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        service, sep, value = part.partition("=")
        if sep and service == CONFLICT_WINDOW:
            try:
                rates[CONFLICT_WINDOW] = float(value)
            except ValueError:
                raise ValueError(f"--aws-faults: {CONFLICT_WINDOW}={value!r} is not milliseconds") from None
            continue
        if not sep or service not in SERVICES:
            raise ValueError(
                f"--aws-faults: {part!r} is not SERVICE=SHARE with SERVICE one of {', '.join(SERVICES)},"
                f" or {CONFLICT_WINDOW}=MILLISECONDS"
            )
        try:
            share = float(value)
        except ValueError:
            raise ValueError(f"--aws-faults: {value!r} is not a number between 0 and 1") from None
        if not 0 <= share <= 1:
            raise ValueError(f"--aws-faults: {service}={value} is not a share between 0 and 1")
        rates[service] = share
    return rates


@dataclass(frozen=True)
class AwsError:
    """One AWS error answer: HTTP status, headers and body, as the service sends it."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    code: str


def _json_error(
    status: int, error_type: str, message: str, extra: Mapping[str, Any] | None = None
) -> AwsError:
    namespace, _, code = error_type.rpartition("#")
    body = json.dumps({"__type": error_type, "message": message, **(extra or {})}).encode()
    headers = [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-RequestId", str(uuid.uuid4()))]
    if namespace.endswith("sqs"):
        # SQS's JSON protocol also names the query-protocol error code, which botocore reads first.
        headers.append(("x-amzn-query-error", f"{code};{'Receiver' if status >= 500 else 'Sender'}"))
    return AwsError(status, tuple(headers), body, code)


def _xml_error(status: int, code: str, message: str) -> AwsError:
    request_id = uuid.uuid4().hex[:16].upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>{uuid.uuid4().hex}</HostId></Error>"
    ).encode()
    return AwsError(status, (("Content-Type", "application/xml"),), body, code)


def _sqs_query_error(status: int, code: str, message: str) -> AwsError:
    kind = "Receiver" if status >= 500 else "Sender"
    body = (
        '<?xml version="1.0"?><ErrorResponse><Error>'
        f"<Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message>"
        f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    ).encode()
    return AwsError(status, (("Content-Type", "text/xml"),), body, code)


def dynamodb_errors(operation: str, body: bytes) -> list[AwsError]:
    """What DynamoDB answers `operation` when it is busy or another writer holds the item."""
    ddb = "com.amazonaws.dynamodb.v20120810#"
    errors = [
        _json_error(
            400,
            "com.amazon.coral.availability#ThrottlingException",
            "Rate of requests exceeds the allowed throughput.",
        ),
        _json_error(
            400,
            ddb + "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.",
        ),
        _json_error(500, ddb + "InternalServerError", "Internal server error"),
    ]
    if operation == "TransactWriteItems":
        try:
            items = len(json.loads(body or b"{}").get("TransactItems", [])) or 1
        except ValueError:
            items = 1
        reasons = [{"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}]
        reasons += [{"Code": "None"}] * (items - 1)
        names = ", ".join(r["Code"] for r in reasons)
        conflict = _json_error(
            400,
            ddb + "TransactionCanceledException",
            f"Transaction cancelled, please refer cancellation reasons for specific reasons [{names}]",
            {"CancellationReasons": reasons},
        )
        errors += [conflict, conflict]  # the error a transaction meets most under contention
    elif operation in DYNAMODB_SINGLE_WRITES:
        errors.append(
            _json_error(400, ddb + "TransactionConflictException", "Transaction is ongoing for the item")
        )
    return errors


def s3_errors() -> list[AwsError]:
    return [
        _xml_error(503, "SlowDown", "Please reduce your request rate."),
        _xml_error(500, "InternalError", "We encountered an internal error. Please try again."),
    ]


def sqs_errors(json_protocol: bool) -> list[AwsError]:
    if json_protocol:
        return [
            _json_error(
                500, "com.amazonaws.sqs#InternalError", "We encountered an internal error. Please try again."
            ),
            _json_error(400, "com.amazonaws.sqs#ThrottlingException", "Rate exceeded"),
        ]
    return [
        _sqs_query_error(500, "InternalError", "We encountered an internal error. Please try again."),
        _sqs_query_error(400, "ThrottlingException", "Rate exceeded"),
    ]


@dataclass(frozen=True)
class Caller:
    """Who signed a request, read from its SigV4 Authorization header."""

    service: str
    access_key: str
    operation: str

    @property
    def is_function(self) -> bool:
        return self.access_key.startswith(TEMPORARY_KEY_PREFIX)


def caller_of(environ: Mapping[str, Any]) -> Caller | None:
    """None for unsigned requests (a presigned URL, moto's own API)."""
    auth = str(environ.get("HTTP_AUTHORIZATION", ""))
    scope = auth.partition("Credential=")[2].partition(",")[0].split("/")
    if len(scope) < 4:
        return None
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    operation = target.rpartition(".")[2] if target else f"{environ.get('REQUEST_METHOD', '')}"
    return Caller(service=scope[3], access_key=scope[0], operation=operation)


@dataclass
class FaultPlan:
    """Rates per service and the seeded choice of which calls fail and how."""

    rates: dict[str, float] = field(default_factory=dict)
    seed: int | None = None
    _random: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    _held: dict[str, float] = field(default_factory=dict)  # item → until when a transaction holds it

    def error_for(self, caller: Caller, environ: Mapping[str, Any], body: bytes) -> AwsError | None:
        conflict = self._conflict(caller, body)
        if conflict is not None:
            return conflict
        share = self.rates.get(caller.service, 0.0)
        if share <= 0 or self._random.random() >= share:
            return None
        if caller.service == "dynamodb":
            choices = dynamodb_errors(caller.operation, body)
        elif caller.service == "s3":
            choices = s3_errors()
        elif caller.service == "sqs":
            choices = sqs_errors("json" in str(environ.get("CONTENT_TYPE", "")))
        else:
            return None
        return self._random.choice(choices)

    def _conflict(self, caller: Caller, body: bytes) -> AwsError | None:
        """A write that meets an item another transaction still holds (see CONFLICT_WINDOW)."""
        window = self.rates.get(CONFLICT_WINDOW, 0.0) / 1000
        if window <= 0 or caller.service != "dynamodb":
            return None
        if caller.operation != "TransactWriteItems" and caller.operation not in DYNAMODB_SINGLE_WRITES:
            return None
        items = _written_items(caller.operation, body)
        now = time.monotonic()
        busy = [self._held.get(item, 0.0) > now for item in items]
        if any(busy):
            if caller.operation != "TransactWriteItems":
                return _json_error(
                    400,
                    "com.amazonaws.dynamodb.v20120810#TransactionConflictException",
                    "Transaction is ongoing for the item",
                )
            reasons = [
                {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
                if b
                else {"Code": "None"}
                for b in busy
            ]
            names = ", ".join(r["Code"] for r in reasons)
            return _json_error(
                400,
                "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                f"Transaction cancelled, please refer cancellation reasons for specific reasons [{names}]",
                {"CancellationReasons": reasons},
            )
        if caller.operation == "TransactWriteItems":
            for item in items:
                self._held[item] = now + window
            if len(self._held) > 10_000:
                self._held = {k: v for k, v in self._held.items() if v > now}
        return None


def _written_items(operation: str, body: bytes) -> list[str]:
    """The items a DynamoDB write names, as "table|key" strings, in request order."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return []
    if operation == "TransactWriteItems":
        entries = [next(iter(e.values())) for e in request.get("TransactItems", []) if e]
    else:
        entries = [request]
    found = []
    for entry in entries:
        key = entry.get("Key") or {k: v for k, v in (entry.get("Item") or {}).items() if k in ("pk", "sk")}
        found.append(f"{entry.get('TableName')}|{json.dumps(key, sort_keys=True)}")
    return found


@dataclass
class AwsStats:
    """Counted by the server: calls per service, faults injected per service, IAM denials per action."""

    calls: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    fault_codes: Counter[str] = field(default_factory=Counter)
    denied: Counter[str] = field(default_factory=Counter)

    def as_dict(self, iam_enforced: bool) -> dict[str, Any]:
        return {
            "iam_enforced": iam_enforced,
            "access_denied": sum(self.denied.values()),
            "access_denied_by_action": dict(self.denied),
            "calls": dict(self.calls),
            "faults_injected": dict(self.faults),
            "fault_codes": dict(self.fault_codes),
        }


def iam_enforced() -> bool:
    """Whether moto checks every request against IAM now (its initial no-auth allowance is spent)."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    return bool(ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT)


StartResponse = Callable[..., Any]


class ObservedAws:
    """The WSGI app behind it, with faults injected and calls, faults and denials counted."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.plan = FaultPlan()
        self.stats = AwsStats()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith(ADMIN_PREFIX):
            return self._admin(path, environ, start_response)
        caller = caller_of(environ)
        if caller is not None and caller.is_function and self.plan.rates:
            body = _read_body(environ)
            with self._lock:
                error = self.plan.error_for(caller, environ, body)
                self.stats.calls[caller.service] += 1
                if error is not None:
                    self.stats.faults[caller.service] += 1
                    self.stats.fault_codes[f"{caller.service}:{error.code}"] += 1
            if error is not None:
                start_response(f"{error.status} {_REASONS.get(error.status, 'Error')}", list(error.headers))
                return [error.body]
        elif caller is not None:
            with self._lock:
                self.stats.calls[caller.service] += 1
        status_seen: list[str] = []

        def recording_start_response(status: str, headers: Any, *args: Any) -> Any:
            status_seen.append(status)
            return start_response(status, headers, *args)

        chunks = list(self.app(environ, recording_start_response))
        if status_seen and status_seen[0].startswith("403") and caller is not None:
            text = b"".join(chunks)
            if b"AccessDenied" in text:
                with self._lock:
                    self.stats.denied[f"{caller.service}:{caller.operation}"] += 1
        return chunks

    def _admin(self, path: str, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if path == ADMIN_PREFIX + "faults" and environ.get("REQUEST_METHOD") == "POST":
            config = json.loads(_read_body(environ) or b"{}")
            with self._lock:
                self.plan = FaultPlan(rates=dict(config.get("rates", {})), seed=config.get("seed"))
            return _json_answer(start_response, {"rates": self.plan.rates, "seed": self.plan.seed})
        if path == ADMIN_PREFIX + "stats":
            with self._lock:
                return _json_answer(start_response, self.stats.as_dict(iam_enforced()))
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error": "unknown admin path"}']


_REASONS = {400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body, read once and put back for the app behind."""
    import io

    cached = environ.get("fanout.body")
    if cached is not None:
        return bytes(cached)
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["fanout.body"] = body
    environ["wsgi.input"] = io.BytesIO(body)
    return bytes(body)


def _json_answer(start_response: StartResponse, payload: Mapping[str, Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(payload).encode()]
