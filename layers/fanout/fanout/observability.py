"""One Logger, Tracer and Metrics for every function (Powertools), created once per container.

Every log line passes through a redacting formatter: whatever a message or an `extra` carries (a
provider's error text quoting an address, a key someone named after a person), email addresses and phone
numbers leave as `<email>` and `<phone>`. Code still never logs contact data on purpose; this is the net
under it.
"""

from __future__ import annotations

import re
from typing import Any

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


logger = Logger(service="journey-fanout", logger_formatter=RedactingFormatter())
tracer = Tracer(service="journey-fanout")
metrics = Metrics(namespace="JourneyFanout", service="journey-fanout")
