"""One Logger, Tracer and Metrics for every function (Powertools), created once per container.

The Tracer is Powertools' only where Powertools would trace (in Lambda, POWERTOOLS_TRACE_DISABLED not
true): its constructor imports the X-Ray SDK even when tracing is off, a good share of a cold start. Where
it would not trace (the local stack, tests, tracing switched off), `tracer` is a stand-in with the same
decorators that leaves the handler as it is, which is all a disabled Tracer does for us.

Every log line passes through a redacting formatter: whatever a message or an `extra` carries (a
provider's error text quoting an address, a key someone named after a person), email addresses and phone
numbers leave as `<email>` and `<phone>`. Code still never logs contact data on purpose; this is the net
under it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

_EMAIL = re.compile(r"[^\s\"'<>@,;:()\[\]\\/]+@[^\s\"'<>@,;:()\[\]\\]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+\d[\d ().-]{6,18}\d")


def redact(text: str) -> str:
    """`text` with email addresses and international phone numbers replaced by placeholders."""
    return _PHONE.sub("<phone>", _EMAIL.sub("<email>", text))


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON log format, redacted."""

    def serialize(self, log: Any) -> str:
        return redact(super().serialize(log))


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
