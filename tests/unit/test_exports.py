"""Real-world exports in the languages of the providers' markets map their columns without help: a CRM's
or a spreadsheet's own header names fill email, phone and names, so phone-region and matching=phone work
on them as on an English file (issue 14 item 3). The files are in tests/fixtures/exports."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fanout_local import operations
from fanout_local.cli import app

pytestmark = pytest.mark.unit

EXPORTS = Path(__file__).resolve().parents[1] / "fixtures" / "exports"
JOURNEY = "3c90c3cc-0d44-4b50-8888-8dd25736052a"

# file: (phone region, {field: the header that must fill it})
EXPECTED: dict[str, tuple[str, dict[str, str]]] = {
    "de_crm_semicolon.csv": (
        "DE",
        {"email": "E-Mail-Adresse", "first_name": "Vorname", "last_name": "Nachname", "phone": "Telefon", "city": "Stadt"},
    ),
    "de_outlook_mobile.csv": (
        "DE",
        {"salutation": "Anrede", "first_name": "Vorname", "last_name": "Nachname", "email": "E-Mail", "phone": "Handy", "zipcode": "PLZ", "city": "Ort",
         "address_line1": "Straße", "birthday": "Geburtsdatum", "external_id": "Kundennummer"},
    ),
    "fr_crm.csv": (
        "FR",
        {"salutation": "Civilité", "first_name": "Prénom", "last_name": "Nom", "email": "Adresse e-mail",
         "phone": "Téléphone portable", "zipcode": "Code postal", "city": "Ville", "country": "Pays",
         "external_id": "Numéro client"},
    ),
    "es_hoja.csv": (
        "ES",
        {"first_name": "Nombre", "last_name": "Apellidos", "email": "Correo electrónico", "phone": "Teléfono móvil",
         "city": "Ciudad", "zipcode": "Código postal", "country": "País"},
    ),
    "sv_kundregister.csv": (
        "SE",
        {"first_name": "Förnamn", "last_name": "Efternamn", "email": "E-postadress", "phone": "Mobilnummer",
         "zipcode": "Postnummer", "city": "Ort", "external_id": "Kundnummer"},
    ),
    "pl_eksport.csv": (
        "PL",
        {"first_name": "Imię", "last_name": "Nazwisko", "email": "Adres e-mail", "phone": "Numer telefonu",
         "city": "Miasto", "zipcode": "Kod pocztowy", "external_id": "Numer klienta"},
    ),
    "ru_bitrix_bom.csv": (
        "RU",
        {"last_name": "Фамилия", "first_name": "Имя", "email": "Электронная почта", "phone": "Мобильный телефон",
         "city": "Город", "birthday": "Дата рождения"},
    ),
    "nl_export.csv": (
        "NL",
        {"first_name": "Voornaam", "last_name": "Achternaam", "email": "E-mailadres", "phone": "Mobiel",
         "city": "Woonplaats", "zipcode": "Postcode", "external_id": "Klantnummer"},
    ),
    "en_hubspot.csv": (
        "GB",
        {"external_id": "Record ID", "first_name": "First Name", "last_name": "Last Name", "email": "Email",
         "phone": "Phone Number", "city": "City", "country": "Country/Region"},
    ),
    "en_salesforce.csv": (
        "GB",
        {"salutation": "Salutation", "first_name": "First Name", "last_name": "Last Name",
         "address_line1": "Mailing Street", "city": "Mailing City", "zipcode": "Mailing Zip/Postal Code",
         "country": "Mailing Country", "phone": "Phone", "email": "Email", "birthday": "Birthdate",
         "contact_id": "Contact ID"},
    ),
    "en_mailchimp.csv": (
        "GB",
        {"email": "Email Address", "first_name": "First Name", "last_name": "Last Name", "address_line1": "Address",
         "phone": "Phone Number", "birthday": "Birthday"},
    ),
    "en_google_contacts.csv": (
        "GB",
        {"first_name": "First Name", "last_name": "Last Name", "birthday": "Birthday", "email": "E-mail 1 - Value",
         "phone": "Phone 1 - Value"},
    ),
}  # fmt: skip


def test_every_export_in_the_fixtures_is_checked() -> None:
    assert sorted(p.name for p in EXPORTS.glob("*.csv")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_an_export_maps_its_columns_without_help(name: str) -> None:
    region, expected = EXPECTED[name]
    found = operations.validate_file(EXPORTS / name, f"mateo/{JOURNEY}", {"phone-region": region})
    filled = {field: header for header, field in found.columns.items() if field is not None}

    assert filled == expected
    assert found.problem is None and found.rejections == []


@pytest.mark.parametrize("name", [n for n in EXPECTED if "phone" in EXPECTED[n][1]])
def test_matching_phone_with_the_files_region_works_on_every_export(name: str) -> None:
    region, _expected = EXPECTED[name]
    found = operations.validate_file(
        EXPORTS / name, "altcraft/12", {"matching": "phone", "phone-region": region}
    )
    assert found.rejections == [] and found.problem is None


def test_a_file_maps_its_own_columns_with_the_columns_option(tmp_path: Path) -> None:
    path = tmp_path / "crm.csv"
    path.write_text("Kundennr;Handy;Notiz\nK-1;0151 23456789;vip\nK-2;0160 9876543;\n")
    found = operations.validate_file(
        path,
        "altcraft/12",
        {"columns": "Kundennr:external_id,Handy:phone", "matching": "phone", "phone-region": "DE"},
    )
    assert found.columns == {"Kundennr": "external_id", "Handy": "phone", "Notiz": None}
    assert found.problem is None and found.rows_valid == 2


def test_a_missing_identifier_column_fails_at_once_listing_the_headers_and_how_to_map_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "crm.csv"
    path.write_text("Kundennr;Rufnummer;Notiz\nK-1;0151 23456789;vip\n")
    result = CliRunner().invoke(
        app, ["validate", str(path), "--to", "altcraft/12", "-o", "matching=phone", "-o", "phone-region=DE"]
    )

    assert result.exit_code == 1
    text = " ".join(result.stdout.split())
    assert "the file's columns are Kundennr, Rufnummer, Notiz" in text
    assert "-o columns=HEADER:phone" in text and "x-amz-meta-columns" in text
