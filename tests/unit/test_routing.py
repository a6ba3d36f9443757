"""fanout.routing: a file goes where its key, its metadata or the routes file says, and a file that can
go nowhere is refused with a message that says exactly what to change."""

from __future__ import annotations

import json

import pytest
import yaml

from fanout.destinations import Destination
from fanout.models import Route
from fanout.routing import (
    RouteError,
    decode_key,
    is_dry_run,
    options_from_metadata,
    parse_routes,
    route_from_key,
    routes_for_key,
)

pytestmark = pytest.mark.unit

JOURNEY = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
CHANNEL = "6a1f1d3e-2b7c-4e0a-9d45-1c2b3a4d5e6f"

ROUTES = {
    "routes": [
        {
            "prefix": "inbox/vip-weekly/",
            "destinations": [
                {"destination": "mateo", "target": JOURNEY, "columns": {"Kundnummer": "external_id"}},
                {"destination": "workshop", "target": "jrn_welcome", "options": {"phone-region": "SE"}},
                {"destination": "altcraft", "target": "12", "options": {"matching": "phone"}},
            ],
            "options": {"tolerated-invalid-percent": "5", "phone-region": "NO"},
        },
        {"prefix": "inbox/vip", "destinations": [{"destination": "symplify", "target": "1001"}]},
        {
            "prefix": "inbox/vip-weekly/nordics/",
            "destinations": [{"destination": "symplify", "target": "2002"}],
        },
    ]
}


def route_error(key: str, options: dict[str, str] | None = None, routes: list | None = None) -> str:
    with pytest.raises(RouteError) as caught:
        routes_for_key(key, options or {}, routes or [])
    return str(caught.value)


# --- the key names its own route ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "destination", "target"),
    [
        (f"inbox/mateo/{JOURNEY}/contacts.csv", Destination.MATEO, JOURNEY),
        (f"inbox/mateo-message/{CHANNEL}/march.ndjson", Destination.MATEO_MESSAGE, CHANNEL),
        ("inbox/symplify/1001/contacts.csv", Destination.SYMPLIFY, "1001"),
        ("inbox/workshop/jrn_welcome-2/contacts.csv.gz", Destination.WORKSHOP, "jrn_welcome-2"),
        ("inbox/altcraft/12/contacts.json", Destination.ALTCRAFT, "12"),
        (f"inbox/mateo/{JOURNEY}/2025/03/contacts.csv", Destination.MATEO, JOURNEY),
    ],
)
def test_the_key_names_destination_and_target(key: str, destination: Destination, target: str) -> None:
    options = {"phone-region": "SE"}
    assert routes_for_key(key, options, []) == [Route(destination, target, options)]


@pytest.mark.parametrize(
    "written",
    [
        "3C90C3CC-0D44-4B50-8888-8DD25736052A",
        "3c90c3cc0d444b5088888dd25736052a",
        "{3c90c3cc-0d44-4b50-8888-8dd25736052a}",
        "urn:uuid:3c90c3cc-0d44-4b50-8888-8dd25736052a",
    ],
)
@pytest.mark.parametrize("destination", [Destination.MATEO, Destination.MATEO_MESSAGE])
def test_a_mateo_id_in_any_uuid_notation_is_sent_in_its_canonical_form(
    destination: Destination, written: str
) -> None:
    # Mateo checks `string<uuid>`: 8-4-4-4-12, lower case. Every notation names the same 128 bits.
    (route,) = routes_for_key(f"inbox/{destination.value}/{written}/contacts.csv", {}, [])
    assert route.target == "3c90c3cc-0d44-4b50-8888-8dd25736052a"
    routes = [
        {"prefix": "inbox/vip/", "destinations": [{"destination": destination.value, "target": written}]}
    ]
    (route,) = routes_for_key("inbox/vip/contacts.csv", {}, routes)
    assert route.target == "3c90c3cc-0d44-4b50-8888-8dd25736052a"


def test_event_keys_are_url_decoded() -> None:
    assert decode_key("inbox/mateo/x/March+contacts+%C3%A5%C3%A4%C3%B6%2B1.csv") == (
        "inbox/mateo/x/March contacts åäö+1.csv"
    )


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("inbox/mateo/not-a-uuid/contacts.csv", "'not-a-uuid' is not a journey id"),
        ("inbox/mateo/12345/contacts.csv", "'12345' is not a journey id"),
        ("inbox/mateo-message/journey-1/contacts.csv", "'journey-1' is not a channel id"),
        ("inbox/altcraft/abc/contacts.csv", "'abc' is not an Altcraft workflow id"),
        ("inbox/altcraft/-3/contacts.csv", "'-3' is not an Altcraft workflow id"),
        ("inbox/altcraft/0/contacts.csv", "'0' is not an Altcraft workflow id"),
        ("inbox/altcraft/1.5/contacts.csv", "'1.5' is not an Altcraft workflow id"),
        ("inbox/altcraft/١٢/contacts.csv", "is not an Altcraft workflow id"),
        ("inbox/symplify/journey-a/contacts.csv", "'journey-a' is not a Symplify journey id"),
        ("inbox/symplify/12a/contacts.csv", "'12a' is not a Symplify journey id"),
        ("inbox/workshop/jrn welcome/contacts.csv", "'jrn welcome' is not a Workshop journey id"),
    ],
)
def test_a_wrong_shaped_target_is_refused_with_what_the_target_must_look_like(
    key: str, fragment: str
) -> None:
    destination = key.split("/")[1]
    message = route_error(key)

    assert message.startswith(f"wrong target for {destination}: ")
    assert fragment in message


def test_a_mateo_target_error_shows_what_a_uuid_looks_like() -> None:
    assert "uuids like 3c90c3cc-0d44-4b50-8888-8dd25736052a" in route_error("inbox/mateo/42/contacts.csv")


def test_an_unknown_destination_is_refused_with_the_known_ones() -> None:
    message = route_error("inbox/mailchimp/123/contacts.csv")

    assert "no route for 'mailchimp'" in message
    assert all(d.value in message for d in Destination)
    assert "routes-file entry for the prefix inbox/mailchimp/" in message


@pytest.mark.parametrize("key", ["inbox/mateo/contacts.csv", f"inbox/mateo/{JOURNEY}/"])
def test_a_key_without_target_or_file_says_how_the_key_must_look(key: str) -> None:
    assert "use inbox/mateo/<target>/<file>" in route_error(key)


def test_an_empty_target_is_refused() -> None:
    assert (
        route_error("inbox/workshop//contacts.csv")
        == "no target in the key: use inbox/workshop/<target>/<file>"
    )


def test_a_key_outside_the_inbox_is_refused() -> None:
    assert route_error(f"outbox/mateo/{JOURNEY}/contacts.csv") == "the key must start with inbox/"


def test_a_key_naming_a_destination_ignores_the_routes_file() -> None:
    routes = [{"prefix": "inbox/", "destinations": [{"destination": "symplify", "target": "1"}]}]
    assert routes_for_key("inbox/altcraft/12/c.csv", {}, routes) == [Route(Destination.ALTCRAFT, "12", {})]


# --- per-file options from metadata -------------------------------------------------------------------


def test_metadata_options_are_read_whatever_their_case_or_separator() -> None:
    metadata = {
        "Dry-Run": "true",
        "tolerated_invalid_percent": " 5 ",
        "PHONE-REGION": "SE",
        "matching": "phone",
    }
    assert options_from_metadata(metadata) == {
        "dry-run": "true",
        "tolerated-invalid-percent": "5",
        "phone-region": "SE",
        "matching": "phone",
    }


def test_an_unknown_option_is_refused_with_its_name_and_the_known_ones() -> None:
    with pytest.raises(RouteError) as caught:
        options_from_metadata({"phone-region": "SE", "colour": "blue", "dryrun": "1"})
    message = str(caught.value)

    assert message.startswith("unknown file option(s) colour, dryrun in the object's metadata; known: ")
    assert "dry-run" in message and "tolerated-invalid-percent" in message


@pytest.mark.parametrize("value", ["true", "TRUE", "yes", "1", "on"])
def test_dry_run_by_metadata(value: str) -> None:
    assert is_dry_run(f"inbox/mateo/{JOURNEY}/c.csv", options_from_metadata({"dry-run": value}))


@pytest.mark.parametrize("options", [{}, {"dry-run": "false"}, {"dry-run": "no"}, {"dry-run": ""}])
def test_no_dry_run_unless_asked(options: dict[str, str]) -> None:
    assert not is_dry_run(f"inbox/mateo/{JOURNEY}/c.csv", options_from_metadata(options))


def test_a_routes_entry_dry_run_is_a_dry_run_whatever_its_spelling() -> None:
    routes = [
        {
            "prefix": "inbox/x/",
            "options": {"dry_run": "true"},
            "destinations": [{"destination": "altcraft", "target": "12", "options": {"skip_triggers": True}}],
        }
    ]
    (route,) = routes_for_key("inbox/x/a.csv", {}, routes)

    assert is_dry_run("inbox/x/a.csv", route.options)
    assert route.options["skip-triggers"] == "true"


def test_a_routes_entry_with_an_unknown_option_fails_with_the_known_ones() -> None:
    routes = [
        {
            "prefix": "inbox/x/",
            "options": {"dry_run": "true", "colour": "blue"},
            "destinations": [{"destination": "workshop", "target": "jrn_welcome"}],
        }
    ]
    message = route_error("inbox/x/a.csv", routes=routes)

    assert message.startswith("unknown file option(s) colour in the routes entry for inbox/x/; known: ")
    assert "dry-run" in message


def test_a_files_own_column_mapping_by_metadata() -> None:
    (route,) = routes_for_key(
        "inbox/workshop/jrn_welcome/k.csv",
        options_from_metadata({"columns": "Kundennr:external_id,Handy:phone"}),
        [],
    )
    assert route.columns == {"Kundennr": "external_id", "Handy": "phone"}


def test_dry_run_by_the_dryrun_prefix_routes_like_the_real_key() -> None:
    key = f"dryrun/inbox/mateo/{JOURNEY}/contacts.csv"

    assert is_dry_run(key, {})
    assert routes_for_key(key, {}, []) == routes_for_key(key.removeprefix("dryrun/"), {}, [])


# --- routes file --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dump", [yaml.safe_dump, json.dumps], ids=["yaml", "json"])
def test_a_routes_entry_sends_one_prefix_to_several_destinations(dump) -> None:  # type: ignore[no-untyped-def]
    routes = parse_routes(dump(ROUTES))
    found = routes_for_key("inbox/vip-weekly/2025-03-04.csv", {}, routes)

    assert found == [
        Route(
            Destination.MATEO,
            JOURNEY,
            {"tolerated-invalid-percent": "5", "phone-region": "NO"},
            {"Kundnummer": "external_id"},
        ),
        Route(Destination.WORKSHOP, "jrn_welcome", {"tolerated-invalid-percent": "5", "phone-region": "SE"}),
        Route(
            Destination.ALTCRAFT,
            "12",
            {"tolerated-invalid-percent": "5", "phone-region": "NO", "matching": "phone"},
        ),
    ]


def test_the_files_own_metadata_wins_over_the_routes_defaults() -> None:
    found = routes_for_key("inbox/vip-weekly/a.csv", {"phone-region": "FI"}, ROUTES["routes"])
    assert {route.options["phone-region"] for route in found} == {"FI"}


def test_the_longest_matching_prefix_wins() -> None:
    assert routes_for_key("inbox/vip-weekly/nordics/a.csv", {}, ROUTES["routes"]) == [
        Route(Destination.SYMPLIFY, "2002", {})
    ]
    assert routes_for_key("inbox/vip-monthly/a.csv", {}, ROUTES["routes"]) == [
        Route(Destination.SYMPLIFY, "1001", {})
    ]


def test_a_missing_routes_entry_says_which_prefix_to_add() -> None:
    message = route_error("inbox/newsletter/a.csv", routes=ROUTES["routes"])
    assert message.startswith("no route for 'newsletter': use inbox/<destination>/<target>/<file>")
    assert message.endswith("or add a routes-file entry for the prefix inbox/newsletter/")


def test_a_routes_entry_with_a_wrong_target_is_refused() -> None:
    routes = [{"prefix": "inbox/x/", "destinations": [{"destination": "altcraft", "target": "twelve"}]}]
    assert route_error("inbox/x/a.csv", routes=routes).startswith("wrong target for altcraft: 'twelve'")


def test_a_routes_entry_with_an_unknown_destination_is_refused() -> None:
    routes = [{"prefix": "inbox/x/", "destinations": [{"destination": "hubspot", "target": "1"}]}]
    assert route_error("inbox/x/a.csv", routes=routes).startswith("unknown destination 'hubspot': use one of")


def test_a_routes_entry_without_destinations_is_refused() -> None:
    routes = [{"prefix": "inbox/x/", "destinations": []}]
    assert (
        route_error("inbox/x/a.csv", routes=routes) == "the routes entry for inbox/x/ lists no destinations"
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("routes: [unclosed", "not valid YAML/JSON"),
        ("{}", "needs a top-level 'routes:' list"),
        ("routes: inbox/x/", "needs a top-level 'routes:' list"),
        ("- prefix: inbox/x/", "needs a top-level 'routes:' list"),
    ],
)
def test_a_broken_routes_file_is_refused_with_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(RouteError, match=fragment):
        parse_routes(text)


def test_route_from_key_leaves_unknown_destinations_to_the_routes_file() -> None:
    assert route_from_key("inbox/vip-weekly/nordics/a.csv", {}) is None


def test_a_column_mapping_of_non_ascii_headers_travels_percent_encoded_in_metadata() -> None:
    from fanout.options import normalise

    metadata = normalise({"columns": "Телефон:phone,Kundennr:external_id"})  # what `fanout submit` puts
    assert metadata["columns"].isascii()
    (route,) = routes_for_key("inbox/workshop/jrn_welcome/k.csv", options_from_metadata(metadata), [])
    assert route.columns == {"Телефон": "phone", "Kundennr": "external_id"}
