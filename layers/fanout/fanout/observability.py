"""One Logger, Tracer and Metrics for every function (Powertools), created once per container.

The Tracer is Powertools' only where Powertools would trace (in Lambda, POWERTOOLS_TRACE_DISABLED not
true): its constructor imports the X-Ray SDK even when tracing is off, a good share of a cold start. Where
it would not trace (the local stack, tests, tracing switched off), `tracer` is a stand-in with the same
decorators that leaves the handler as it is, which is all a disabled Tracer does for us.

Every log line passes through a redacting formatter: whatever text a message or an `extra` carries (a
provider's error text quoting an address, a key someone named after a person), anything shaped like an
email address (in any script: `иван@пример.рф`) or a phone number (seven or more digits, with or without
+CC and the usual separators, in any script's digits) leaves as `<email>` and `<phone>`. Numbers the code
logs as numbers (counts, timings) are not text and stay. Code still never logs contact data on purpose,
and logs an object key by its hash (`key_ref`), never its name; redaction is the net under it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

# An email in any script: a local part, @, dotted labels, and a top-level domain of letters (any script) or
# punycode (xn--...).
_EMAIL = re.compile(r"[^\s\"'<>@,;:()\[\]\\/]+@(?:[^\s\"'<>@,;:()\[\]\\/.]+\.)+(?:xn--[\w-]+|[^\W\d_]{2,})")
# A phone number: 7 to 19 digits (\d is every script's digits), maybe a leading +, with spaces, dots,
# dashes or brackets between; not part of a longer word nor a job id (j-<hex>), not an ISO date.
_PHONE = re.compile(r"(?<![\w+])(?<!j-)(?!\d{4}-\d\d-\d\d)(?:\+\s?|\(\s?)?\d(?:[\s().-]{0,2}\d){6,18}(?!\w)")
# Log fields that are ours, never contact data (a job id may be all digits).
_OURS = frozenset(
    {"job_id", "chunk_id", "bucket", "timestamp", "xray_trace_id", "function_request_id", "location"}
)


def redact(text: str) -> str:
    """`text` with email addresses and phone numbers (any script) replaced by placeholders."""
    return _PHONE.sub("<phone>", _EMAIL.sub("<email>", text))


def _redacted(value: Any) -> Any:
    """Every text in a log record redacted; numbers, booleans and our own ids left as they are."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: (v if k in _OURS else _redacted(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return redact(str(value))


def key_ref(key: str) -> str:
    """How a log line names an object key: a short hash (a key may be named after a person or hold a
    number); `fanout status` shows the key itself to whoever may read the job."""
    return "key#" + hashlib.blake2b(key.encode(), digest_size=6).hexdigest()


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON log format, every text in it redacted."""

    def serialize(self, log: Any) -> str:
        return super().serialize(_redacted(log))


F = TypeVar("F", bound=Callable[..., Any])


class NoTracer:
    """What a Tracer that does not trace amounts to: its decorators hand the function back unchanged."""

    disabled = True

    def capture_lambda_handler(self, lambda_handler: F | None = None, **options: bool | None) -> Any:
        return lambda_handler if lambda_handler is not None else _unchanged

    def capture_method(self, method: F | None = None, **options: bool | None) -> Any:
        return method if method is not None else _unchanged


def _unchanged[F: Callable[..., Any]](function: F) -> F:
    return function


def tracing() -> bool:
    """Whether Powertools' Tracer would trace here: Powertools' own rule (POWERTOOLS_TRACE_DISABLED, and
    only inside Lambda, not under `sam local` or Chalice), read from the environment at cold start."""
    return not Tracer._is_tracer_disabled()


logger = Logger(service="journey-fanout", logger_formatter=RedactingFormatter())
tracer: Tracer | NoTracer = Tracer(service="journey-fanout") if tracing() else NoTracer()
metrics = Metrics(namespace="JourneyFanout", service="journey-fanout")
