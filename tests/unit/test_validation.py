"""fanout.validation: each row becomes a contact the destination can match, or a rejection that names
the row, the column and the value at fault and says what to do about it."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from fanout.destinations import Destination
from fanout.models import Contact, Rejection, Route, compact_json, staged_line
from fanout.providers import provider_for
from fanout.reading import RawRow
from fanout.validation import MAX_VALUE_CHARS, REASON_COLUMN, RowValidator, duplicate, options_problem

pytestmark = pytest.mark.unit

TARGETS = {
    Destination.MATEO: "3c90c3cc-0d44-4b50-8888-8dd25736052a",
    Destination.MATEO_MESSAGE: "6a1f1d3e-2b7c-4e0a-9d45-1c2b3a4d5e6f",
    Destination.SYMPLIFY: "1001",
    Destination.WORKSHOP: "jrn_welcome",
    Destination.ALTCRAFT: "12",
}


def check(
    destination: Destination,
    row: Mapping[str, object],
    options: Mapping[str, str] | None = None,
    columns: Mapping[str, str] | None = None,
    number: int = 7,
) -> Contact | Rejection:
    """Validate one row whose headers are its keys."""
    route = Route(destination, TARGETS[destination], dict(options or {}), dict(columns or {}))
    validator = RowValidator(route, provider_for(destination), list(row))
    return validator.validate(RawRow(number, dict(row)))


def contact(result: Contact | Rejection) -> Contact:
    assert isinstance(result, Contact), result
    return result


def rejection(result: Contact | Rejection) -> Rejection:
    assert isinstance(result, Rejection), result
    return result


# --- each destination's identifier rule ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "identity"),
    [
        ({"email": "A@Example.com", "phone": "+46701234567", "external_id": "k-1"}, "a@example.com"),
        ({"email": "", "phone": "+46 70 123 45 67", "external_id": "k-1"}, "+46701234567"),
        ({"whatsapp": "+46701234567", "external_id": "k-1"}, "+46701234567"),
        ({"first_name": "Ada", "external_id": "k-1"}, "k-1"),
    ],
)
def test_mateo_matches_on_email_then_phone_then_whatsapp_then_external_id(
    row: dict[str, str], identity: str
) -> None:
    assert contact(check(Destination.MATEO, row)).identity == identity


def test_mateo_rejects_a_row_with_nothing_to_match_on() -> None:
    found = rejection(check(Destination.MATEO, {"first_name": "Ada", "city": "Malmö"}))
    assert found.row == 7
    assert "email" in found.reason and "phone" in found.reason and "external_id" in found.reason


def test_mateo_message_goes_to_the_email_or_phone_and_needs_content() -> None:
    by_email = contact(check(Destination.MATEO_MESSAGE, {"email": "ADA@example.com", "text": "Hello"}))
    by_phone = contact(check(Destination.MATEO_MESSAGE, {"phone": "+46701234567", "html": "<p>Hi</p>"}))
    by_option = contact(
        check(
            Destination.MATEO_MESSAGE,
            {"email": "ada@example.com"},
            {"template-id": "3c90c3cc-0d44-4b50-8888-8dd25736052a"},
        )
    )

    assert (by_email.identity, by_phone.identity, by_option.identity) == (
        "ada@example.com",
        "+46701234567",
        "ada@example.com",
    )


def test_mateo_message_without_any_content_says_how_to_add_some() -> None:
    found = rejection(check(Destination.MATEO_MESSAGE, {"email": "ada@example.com", "text": ""}))
    assert "no message content" in found.reason
    assert "template-id" in found.reason


def test_mateo_message_without_a_recipient_is_rejected() -> None:
    found = rejection(check(Destination.MATEO_MESSAGE, {"full_name": "Ada", "text": "Hello"}))
    assert "email or phone" in found.reason


def test_a_postal_message_is_matched_on_contact_id_not_on_a_handle() -> None:
    postal = {"postal": "true"}
    sent = contact(
        check(Destination.MATEO_MESSAGE, {"contact_id": "ct-42", "email": "ada@example.com"}, postal)
    )
    refused = rejection(check(Destination.MATEO_MESSAGE, {"email": "ada@example.com", "text": "x"}, postal))

    assert sent.identity == "ct-42"
    assert "contact_id" in refused.reason


@pytest.mark.parametrize(
    ("row", "identity"),
    [
        ({"id": "42", "external_id": "k-1", "email": "ada@example.com"}, "42"),
        ({"id": "", "external_id": "k-1", "email": "ada@example.com"}, "k-1"),
        ({"id": "", "external_id": "", "email": "Ada@Example.com"}, "ada@example.com"),
    ],
)
def test_symplify_identifies_a_contact_by_id_then_external_id_then_email(
    row: dict[str, str], identity: str
) -> None:
    assert contact(check(Destination.SYMPLIFY, row)).identity == identity


def test_symplify_rejects_a_row_without_id_external_id_or_email() -> None:
    found = rejection(check(Destination.SYMPLIFY, {"firstname": "Bruce"}))
    assert "id" in found.reason and "email" in found.reason


def test_workshop_enrolls_a_contact_by_email_and_a_list_by_its_list_email() -> None:
    person = contact(check(Destination.WORKSHOP, {"email": " User1@Example.com "}))
    team = contact(check(Destination.WORKSHOP, {"list_email": "Team@Company.com"}))
    workshop = provider_for(Destination.WORKSHOP)

    assert (person.identity, workshop.lane(person)) == ("user1@example.com", "c")
    assert (team.identity, workshop.lane(team)) == ("team@company.com", "l")


def test_workshop_rejects_a_row_without_an_email() -> None:
    found = rejection(check(Destination.WORKSHOP, {"first_name": "Ada", "phone": "+46701234567"}))
    assert "email" in found.reason


@pytest.mark.parametrize(
    ("options", "row", "identity"),
    [
        ({}, {"email": "Ada@Example.com", "phone": "+46701234567"}, "ada@example.com"),
        ({"matching": "email_profile"}, {"email": "ada@example.com"}, "ada@example.com"),
        ({"matching": "phone"}, {"email": "ada@example.com", "phone": "+7 900 123-45-67"}, "+79001234567"),
        ({"matching": "profile_id"}, {"profile_id": "5f19953a03e4227216278ba4"}, "5f19953a03e4227216278ba4"),
        (
            {"matching": "custom", "field-name": "CRM_ID"},
            {"email": "a@example.com", "CRM_ID": "00066"},
            "00066",
        ),
    ],
)
def test_altcraft_matches_on_the_files_matching_mode(
    options: dict[str, str], row: dict[str, str], identity: str
) -> None:
    assert contact(check(Destination.ALTCRAFT, row, options)).identity == identity


@pytest.mark.parametrize(
    ("options", "row", "column"),
    [
        ({}, {"phone": "+46701234567"}, "email"),
        ({"matching": "phone"}, {"email": "ada@example.com"}, "phone"),
        ({"matching": "profile_id"}, {"email": "ada@example.com"}, "profile_id"),
        (
            {"matching": "custom", "field-name": "CRM_ID"},
            {"email": "ada@example.com", "CRM_ID": ""},
            "CRM_ID",
        ),
    ],
)
def test_altcraft_rejects_a_row_missing_its_matching_value_and_names_the_column(
    options: dict[str, str], row: dict[str, str], column: str
) -> None:
    found = rejection(check(Destination.ALTCRAFT, row, options))
    assert found.column == column
    assert column in found.reason


def test_altcraft_custom_matching_on_a_column_an_alias_would_claim_keeps_the_column() -> None:
    # `customer_id` is an alias of external_id; matched on by name, it must reach Altcraft by that name.
    options = {"matching": "custom", "field-name": "customer_id"}
    found = contact(
        check(Destination.ALTCRAFT, {"email": "ada@example.com", "customer_id": "00066"}, options)
    )
    item = provider_for(Destination.ALTCRAFT).to_item(found, "j-1", options)

    assert found.identity == "00066"
    assert item["data"]["customer_id"] == "00066"


# --- actionable reasons -------------------------------------------------------------------------------


def test_a_malformed_email_is_rejected_with_the_files_column_and_value() -> None:
    found = rejection(check(Destination.MATEO, {"E-Mail": "ada(at)example.com"}, number=12))

    assert found == Rejection(
        12, "'ada(at)example.com' is not a valid email address", "E-Mail", "ada(at)example.com"
    )


def test_a_malformed_list_email_is_rejected_with_its_column() -> None:
    found = rejection(check(Destination.WORKSHOP, {"List Email": "team-at-company"}))
    assert (found.column, found.value) == ("List Email", "team-at-company")


def test_a_national_phone_number_is_rejected_with_a_hint_to_set_phone_region() -> None:
    found = rejection(check(Destination.MATEO, {"Mobile": "070-123 45 67"}))

    assert (found.column, found.value) == ("Mobile", "070-123 45 67")
    assert "phone-region" in found.reason and "+CC" in found.reason


def test_phone_region_lets_national_numbers_through_whatever_its_case() -> None:
    found = contact(check(Destination.MATEO, {"phone": "070-123 45 67"}, {"phone-region": "se"}))
    assert found.fields["phone"] == "+46701234567"


def test_an_invalid_phone_with_a_country_code_gets_no_region_hint() -> None:
    found = rejection(check(Destination.MATEO, {"phone": "+46 70"}))
    assert "phone-region" not in found.reason
    assert "'+46 70' is not a valid phone number" in found.reason


def test_a_row_the_reader_could_not_read_is_rejected_with_the_readers_reason() -> None:
    route = Route(Destination.MATEO, TARGETS[Destination.MATEO])
    validator = RowValidator(route, provider_for(Destination.MATEO), ["email"])
    found = validator.validate(RawRow(9, {}, error="row 9 has 3 cells but the header has 2"))

    assert found == Rejection(9, "row 9 has 3 cells but the header has 2")


@pytest.mark.parametrize("nested", [{"home": "ada@example.com"}, ["ada@example.com", "ada@work.example"]])
def test_a_nested_json_value_where_a_single_value_is_due_is_rejected(nested: object) -> None:
    found = rejection(check(Destination.MATEO, {"email": nested, "external_id": "k-1"}))

    assert found.column == "email"
    assert "single value" in found.reason


def test_nested_json_in_a_column_no_provider_field_takes_travels_on_intact() -> None:
    tags = {"tier": "gold", "interests": ["hiking", "jazz"]}
    found = contact(check(Destination.MATEO, {"email": "ada@example.com", "preferences": tags}))
    assert found.extra == {"preferences": tags}


def test_json_numbers_and_booleans_are_read_as_text() -> None:
    found = contact(check(Destination.MATEO, {"external_id": 12345, "email_marketing_opt_in": True}))
    assert found.identity == "12345"
    assert found.extra == {"email_marketing_opt_in": True}


@pytest.mark.parametrize("header", ["email", "notes"])
def test_an_absurdly_long_value_is_rejected_with_a_short_excerpt(header: str) -> None:
    row = {"external_id": "k-1", header: "x" * (MAX_VALUE_CHARS + 1)}
    found = rejection(check(Destination.MATEO, row))

    assert found.column == header
    assert str(MAX_VALUE_CHARS) in found.reason
    assert 0 < len(found.value) <= 200


def test_a_long_value_within_the_limit_is_kept() -> None:
    notes = "n" * MAX_VALUE_CHARS
    assert contact(check(Destination.MATEO, {"external_id": "k-1", "notes": notes})).extra == {"notes": notes}


def test_values_are_trimmed_and_empty_cells_left_out() -> None:
    found = contact(check(Destination.MATEO, {"email": " ada@example.com ", "city": "", "notes": "  vip  "}))
    assert found.fields == {"email": "ada@example.com"}
    assert found.extra == {"notes": "vip"}


def test_a_second_email_column_travels_on_with_its_value() -> None:
    row = {"E-Mail": "Ada@Example.com", "emailAddress": "ada.work@example.com"}
    found = contact(check(Destination.SYMPLIFY, row))

    assert found.fields == {"email": "ada@example.com"}
    assert found.extra == {"emailAddress": "ada.work@example.com"}


def test_a_routes_column_mapping_names_the_identifier() -> None:
    found = contact(check(Destination.MATEO, {"Kundnummer": "K-77"}, columns={"Kundnummer": "external_id"}))
    assert found.identity == "K-77"


# --- whole-file options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "options", "headers", "fragment"),
    [
        (Destination.ALTCRAFT, {"matching": "fuzzy"}, ["email"], "matching='fuzzy' is not one of"),
        (
            Destination.ALTCRAFT,
            {"matching": "custom"},
            ["email", "CRM_ID"],
            "needs the file option field-name",
        ),
        (
            Destination.ALTCRAFT,
            {"matching": "custom", "field-name": "CRM_ID"},
            ["email"],
            "no column 'CRM_ID'",
        ),
        (Destination.MATEO_MESSAGE, {"template-id": "welcome"}, ["email"], "template-id"),
    ],
)
def test_an_unworkable_file_option_is_refused_before_any_row(
    destination: Destination, options: dict[str, str], headers: list[str], fragment: str
) -> None:
    problem = options_problem(provider_for(destination), options, headers)
    assert problem is not None and fragment in problem


def test_workable_file_options_pass() -> None:
    options = {"tolerated-invalid-percent": "2.5", "matching": "custom", "field-name": "CRM_ID"}
    assert options_problem(provider_for(Destination.ALTCRAFT), options, ["email", "CRM_ID"]) is None


# --- duplicates (the check itself: tests/unit/test_dedup.py) ----------------------------------------


def test_a_duplicate_is_rejected_with_the_row_it_repeats() -> None:
    assert duplicate(9, 3) == Rejection(9, "duplicate of row 3")


# --- the compiled path for CSV rows is the same validator ---------------------------------------------

_HEADER_POOL = [
    "email", "E-Mail", "first_name", "Vorname", "phone", "mobile", "external_id", "city", "Notes",
    "whatsapp", "last_name", "company", "", "x y", "'quote\"d", "Telefon", REASON_COLUMN,
]  # fmt: skip
_VALUE_POOL = [
    "", " ", "ada@example.com", " ADA@Example.COM ", "not-an-email", "+46 70-123 45 67", "0701234567",
    "+1 (202) 555-0143", "Åsa Öberg", "\u200bzero@width.se", "x" * 50, "  padded  ", "+44 20 7946 0958",
    "1", "bob@exa mple.com",
]  # fmt: skip


@pytest.mark.parametrize("destination", [Destination.MATEO, Destination.ALTCRAFT, Destination.WORKSHOP])
@pytest.mark.parametrize("seed", range(6))
def test_csv_rows_get_the_same_answer_from_the_compiled_path(destination: Destination, seed: int) -> None:
    import random

    rng = random.Random(seed)
    headers = rng.sample(_HEADER_POOL, rng.randint(1, 8))
    region = rng.choice(["", "SE", "DE"])
    route = Route(destination, "7", {"phone-region": region} if region else {})
    provider = provider_for(destination)
    plain = RowValidator(route, provider, headers)
    compiled = RowValidator(route, provider, headers, text_rows=True)
    for number in range(1, 300):
        cells = [rng.choice(_VALUE_POOL) for _ in headers]
        size = sum(map(len, cells)) + len(cells)
        raw = RawRow(number, dict(zip(headers, cells, strict=True)), None, size)
        assert compiled.validate(raw) == plain.validate(raw)


_PLAN_HEADERS = [
    *_HEADER_POOL, "full_name", "Name", "Nachname", "list_email", "first name", "country", "plan", "birthday",
    "profile_id", "phones", "_fname", "data",
]  # fmt: skip
_PLAN_VALUES = [*_VALUE_POOL, "Zoë", "O'Brien", 'say "hi"', "back\\slash", "tab\there", "\x7f", "€", "🙂"]


_PLANNED = [
    (Destination.MATEO, {}),
    (Destination.WORKSHOP, {}),
    (Destination.ALTCRAFT, {}),
    (Destination.ALTCRAFT, {"matching": "email_profile"}),
    (Destination.ALTCRAFT, {"matching": "phone"}),
    (Destination.ALTCRAFT, {"matching": "profile_id"}),
]


@pytest.mark.parametrize(("destination", "options"), _PLANNED)
def test_a_csv_files_row_plan_stages_exactly_what_validate_and_to_item_stage(
    destination: Destination, options: dict[str, str]
) -> None:
    import random

    provider = provider_for(destination)
    planned = files = 0
    for seed in range(60):
        rng = random.Random(seed)
        headers = rng.sample(_PLAN_HEADERS, rng.randint(1, 10))
        region = rng.choice(["", "SE", "DE"])
        route = Route(
            destination, TARGETS[destination], {**options, **({"phone-region": region} if region else {})}
        )
        plain = RowValidator(route, provider, headers)
        compiled = RowValidator(route, provider, headers, text_rows=True).row_plan("j-1")
        if compiled is None:
            continue
        files += 1
        lane, plan = compiled
        for number in range(1, 200):
            cells = [rng.choice(_PLAN_VALUES) for _ in headers]
            size = sum(map(len, cells)) + len(cells)
            answer = plain.validate(RawRow(number, dict(zip(headers, cells, strict=True)), None, size))
            if isinstance(answer, Rejection) or provider.lane(answer) != lane:
                assert plan(number, cells, size) is None  # the reference path decides it
                continue
            item_json = compact_json(provider.to_item(answer, "j-1", route.options))
            line = staged_line(number, answer.identity, item_json)
            assert plan(number, cells, size) == (number, answer.identity, line, len(item_json) + 1)
            planned += 1
    assert files >= 5 and planned >= 100, (files, planned)  # the plan is exercised, not a rare path


def test_the_reason_column_of_a_fixed_file_is_sent_by_neither_path() -> None:
    # `fanout report --rejected` adds rejection_reason; the file, fixed and dropped again as it is, must
    # not send that column to the provider, whether its rows are read as CSV text or as JSON values.
    headers = ["email", REASON_COLUMN, "plan"]
    route = Route(Destination.MATEO, TARGETS[Destination.MATEO])
    raw = RawRow(
        1, {"email": "ada@example.com", REASON_COLUMN: "duplicate of row 1", "plan": "gold"}, None, 40
    )
    for text_rows in (False, True):
        found = contact(
            RowValidator(route, provider_for(Destination.MATEO), headers, text_rows).validate(raw)
        )
        assert found.extra == {"plan": "gold"}, f"text_rows={text_rows}"


# --- Mateo message values Mateo would refuse (seed 004): rejected at the split, with the row's reason ---


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("send_after", "tomorrow", "send_after 'tomorrow' is not a date-time with a zone"),
        ("send_after", "2026-12-01", "send_after '2026-12-01' is not a date-time with a zone"),
        ("send_after", "2026-12-01T09:00:00", "is not a date-time with a zone, e.g. 2023-11-07T05:31:56Z"),
        ("template_id", "welcome-mail", "template_id 'welcome-mail' is not a Mateo template id (a uuid like"),
    ],
)
def test_a_message_value_mateo_would_refuse_rejects_the_row_naming_it(
    column: str, value: str, reason: str
) -> None:
    row = {"email": "ada@example.com", "text": "Hello", column: value}
    refused = rejection(check(Destination.MATEO_MESSAGE, row))

    assert reason in refused.reason
    assert (refused.row, refused.column, refused.value) == (7, column, value)


def test_message_values_are_sent_in_the_form_mateos_schema_checks() -> None:
    row = {
        "email": "ada@example.com",
        "template_id": "{3C90C3CC-0D44-4B50-8888-8DD25736052A}",
        "send_after": "2026-12-01 10:30:00+01:00",
    }
    good = contact(check(Destination.MATEO_MESSAGE, row))
    item = provider_for(Destination.MATEO_MESSAGE).to_item(good, "j-1", {})

    assert item["template_id"] == "3c90c3cc-0d44-4b50-8888-8dd25736052a"
    assert item["send_after"] == "2026-12-01T09:30:00Z"
