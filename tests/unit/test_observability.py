"""Log lines never carry an email address, a phone number or a token, whatever code passes in."""

from __future__ import annotations

import io
import json
import logging

import pytest
from aws_lambda_powertools import Logger

from fanout.observability import RedactingFormatter, logger, redact

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("No list found with email address: team@company.com", "No list found with email address: <email>"),
        ("call +46 70-123 45 67 now", "call <phone> now"),
        ("key inbox/mateo/x/anna.svensson+vip@example.co.uk.csv", "key inbox/mateo/x/<email>"),
        (
            "job j-0123456789abcdef settled: 4 rows, 2026-11-26T18:00:00Z",
            "job j-0123456789abcdef settled: 4 rows, 2026-11-26T18:00:00Z",
        ),
        ("'иван@пример.рф' is not valid", "'<email>' is not valid"),
        ("row 3: 用户@例子.中国 and jürgen@münchen.de", "row 3: <email> and <email>"),
        ("δοκιμή@παράδειγμα.δοκιμή", "<email>"),
        ("ada@xn--e1afmkfd.xn--p1ai", "<email>"),
        ("key inbox/workshop/jrn_welcome/0701234567.csv", "key inbox/workshop/jrn_welcome/<phone>.csv"),
        ("call 070-123 45 67 or (555) 123-4567", "call <phone> or <phone>"),
        ("٠٧٠١٢٣٤٥٦٧", "<phone>"),  # Arabic-Indic digits are digits too
        (
            "already sent by job j-1234567890123456 on 2026-11-26 18:00:00; 12 of 40 rows (30.0%)",
            "already sent by job j-1234567890123456 on 2026-11-26 18:00:00; 12 of 40 rows (30.0%)",
        ),
    ],
)
def test_redact_hides_contact_details_and_keeps_the_rest(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_log_line_with_contact_data_in_extra_is_redacted() -> None:
    buffer = io.StringIO()
    log = Logger(
        service="test", logger_formatter=RedactingFormatter(), logger_handler=logging.StreamHandler(buffer)
    )
    log.info("provider said", extra={"reason": "not_found: bob@example.com", "phone": "+46701234567"})
    line = json.loads(buffer.getvalue().strip().splitlines()[-1])
    assert line["reason"] == "not_found: <email>"
    assert line["phone"] == "<phone>"


def test_every_function_logs_through_the_redacting_formatter() -> None:
    assert isinstance(logger.registered_formatter, RedactingFormatter)
    assert logger.handlers
    assert all(isinstance(h.formatter, RedactingFormatter) for h in logger.handlers)


def test_numbers_the_code_logs_are_not_taken_for_phones() -> None:
    buffer = io.StringIO()
    log = Logger(
        service="test-numbers",
        logger_formatter=RedactingFormatter(),
        logger_handler=logging.StreamHandler(buffer),
    )
    log.info("split", extra={"rows_read": 10_000_000, "elapsed_ms": 123456789.5})
    line = json.loads(buffer.getvalue().strip().splitlines()[-1])
    assert (line["rows_read"], line["elapsed_ms"]) == (10_000_000, 123456789.5)
