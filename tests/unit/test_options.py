"""The file options: one model for S3 metadata, a routes entry and `-o`; what it does not accept is refused
with the known options, and what it accepts is read one way everywhere."""

from __future__ import annotations

import pytest

from fanout.options import KNOWN_OPTIONS, OptionsError, normalise

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"skip-triggers": "on"}, {"skip-triggers": "true"}),
        ({"postal": "on"}, {"postal": "true"}),
        ({"Dry-Run": "ON"}, {"dry-run": "true"}),
        ({"dry_run": "true"}, {"dry-run": "true"}),
        ({"dry_run": True}, {"dry-run": "true"}),  # a YAML boolean in a routes file
        ({"dry-run": "off"}, {"dry-run": "false"}),
        ({"tolerated_invalid_percent": " 5 "}, {"tolerated-invalid-percent": "5"}),
        ({"tolerated-invalid-percent": 2.5}, {"tolerated-invalid-percent": "2.5"}),
        ({"phone-region": "de"}, {"phone-region": "DE"}),
        ({"only-new": "yes", "resend": "1"}, {"only-new": "true", "resend": "true"}),
        ({"columns": "Kundennr:external_id,Handy:phone"}, {"columns": "Kundennr:external_id,Handy:phone"}),
    ],
)
def test_every_spelling_of_an_option_reads_one_way(raw: dict[str, object], expected: dict[str, str]) -> None:
    assert normalise(raw) == expected


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (
            {"tolerated-invalid-percent": "1_0"},
            "tolerated-invalid-percent='1_0' must be a number from 0 to 100",
        ),
        ({"tolerated-invalid-percent": "1e1"}, "tolerated-invalid-percent='1e1' must be a number"),
        (
            {"tolerated-invalid-percent": "150"},
            "tolerated-invalid-percent='150' must be a number from 0 to 100",
        ),
        ({"postal": "maybe"}, "postal='maybe' must be true or false"),
        ({"dry-run": "please"}, "dry-run='please' must be true or false"),
        (
            {"matching": "name"},
            "matching='name' must be one of email, email_profile, phone, profile_id, custom",
        ),
        ({"phone-region": "XX"}, "phone-region='XX' is not a region code"),
        ({"columns": "Handy"}, "'Handy' must look like HEADER:field"),
        ({"columns": "Handy:mobile_phone"}, "'mobile_phone' (for column 'Handy') is not a field"),
        ({"colour": "blue"}, "unknown file option(s) colour"),
    ],
)
def test_what_the_model_does_not_accept_is_refused_with_the_known_options(
    raw: dict[str, object], fragment: str
) -> None:
    with pytest.raises(OptionsError) as caught:
        normalise(raw, "the routes entry for inbox/x/")
    message = str(caught.value)

    assert fragment in message
    assert "the routes entry for inbox/x/" in message
    assert all(name in message for name in KNOWN_OPTIONS)
