"""Workshop emulator: the documented rules and error messages of the enroll endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from emulators.testing import AdminClient

pytestmark = pytest.mark.integration


@pytest.fixture
def enroll(urls: dict[str, str], http: httpx.Client, tokens: dict[str, str]) -> Callable[..., httpx.Response]:
    """POST /journeys/{journey}/enroll with the demo token (or ``token=``)."""

    def post(
        body: Any, journey: str = "jrn_welcome", token: str | None = tokens["workshop"]
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return http.post(f"{urls['workshop']}/journeys/{journey}/enroll", json=body, headers=headers)

    return post


def test_missing_or_invalid_token_is_401(enroll: Callable[..., httpx.Response]) -> None:
    for token in (None, "wrong"):
        response = enroll({"contact_email_addresses": ["a@x.io"]}, token=token)
        assert response.status_code == 401
        assert response.json() == {"error": "Unauthorized"}


def test_unknown_journey_is_404(enroll: Callable[..., httpx.Response]) -> None:
    response = enroll({"contact_email_addresses": ["a@x.io"]}, journey="jrn_nope")
    assert response.status_code == 404
    assert response.json() == {"error": "Journey not found"}


def test_draft_journey_is_422(enroll: Callable[..., httpx.Response]) -> None:
    response = enroll({"contact_email_addresses": ["a@x.io"]}, journey="jrn_draft")
    assert response.status_code == 422
    assert response.json() == {
        "error": "Journey must be in 'on' state to enroll people. Current state: draft"
    }


@pytest.mark.parametrize("body", [{}, {"contact_email_addresses": [], "list_email_addresses": []}])
def test_no_emails_is_422_with_base_shape(
    enroll: Callable[..., httpx.Response], body: dict[str, Any]
) -> None:
    response = enroll(body)
    assert response.status_code == 422
    assert response.json() == {
        "error": {
            "base": ["at least one of contact_email_addresses or list_email_addresses must be provided"]
        }
    }


def test_limits_are_422(enroll: Callable[..., httpx.Response], admin: AdminClient) -> None:
    too_many = enroll({"contact_email_addresses": [f"c{i}@x.io" for i in range(1001)]})
    assert too_many.status_code == 422
    assert "contact_email_addresses" in too_many.json()["error"]
    too_many_lists = enroll({"list_email_addresses": [f"l{i}@x.io" for i in range(101)]})
    assert too_many_lists.status_code == 422
    assert "list_email_addresses" in too_many_lists.json()["error"]
    assert (
        enroll({"contact_email_addresses": [f"c{i}@x.io" for i in range(1000)]}).json()["enrolled_count"]
        == 1000
    )
    wrong_type = enroll({"contact_email_addresses": "a@x.io"})
    assert wrong_type.status_code == 422
    assert wrong_type.json() == {"error": {"contact_email_addresses": ["must be an array of strings"]}}


def test_unknown_and_duplicate_lists_are_422(enroll: Callable[..., httpx.Response]) -> None:
    unknown = enroll({"list_email_addresses": ["nonexistent@company.com"]})
    assert unknown.status_code == 422
    assert unknown.json() == {"error": "No list found with email address: nonexistent@company.com"}
    duplicate = enroll({"list_email_addresses": [" Duplicate@Company.com"]})
    assert duplicate.status_code == 422
    assert duplicate.json() == {
        "error": "Multiple lists (2) found with email address: duplicate@company.com. "
        "Please ensure each list has a unique email address."
    }


def test_normalised_deduplicated_and_already_enrolled_on_second_call(
    enroll: Callable[..., httpx.Response], admin: AdminClient
) -> None:
    body = {
        "contact_email_addresses": ["  Bob@Company.com ", "bob@company.com", "not-an-email"],
        "list_email_addresses": ["team@company.com"],
    }
    first = enroll(body)
    assert first.status_code == 200
    assert first.json() == {
        "enrolled_count": 2,  # bob (once, also a team member) and alice
        "not_enrolled": {"not_found": ["not-an-email"], "already_enrolled": [], "recently_completed": []},
    }
    second = enroll(body)
    assert second.json() == {
        "enrolled_count": 0,
        "not_enrolled": {
            "not_found": ["not-an-email"],
            "already_enrolled": ["bob@company.com", "alice@company.com"],
            "recently_completed": [],
        },
    }
    assert admin.targets("workshop") == {"jrn_welcome": {"bob@company.com": 1, "alice@company.com": 1}}


def test_explicit_contacts_and_seeded_journey(
    enroll: Callable[..., httpx.Response], admin: AdminClient
) -> None:
    admin.seed(
        "workshop",
        {"journeys": {"jrn_test": {"state": "on", "contacts": ["x@y.io"], "recently_completed": ["r@y.io"]}}},
    )
    response = enroll({"contact_email_addresses": ["x@y.io", "r@y.io", "z@y.io"]}, journey="jrn_test")
    assert response.json() == {
        "enrolled_count": 1,
        "not_enrolled": {"not_found": ["r@y.io", "z@y.io"], "already_enrolled": [], "recently_completed": []},
    }
    admin.seed("workshop", {"journeys": {"jrn_test": {"contacts": ["r@y.io"]}}})  # arrays are unioned
    response = enroll({"contact_email_addresses": ["r@y.io"]}, journey="jrn_test")
    assert response.json()["not_enrolled"]["recently_completed"] == ["r@y.io"]
