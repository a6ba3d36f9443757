"""Header names -> canonical contact fields, and the one place that normalises values.

Headers match case- and punctuation-insensitively ("E-Mail", "email_address", "emailAddress" are all
`email`). A column that no alias claims travels on under its own name (Mateo `context`, Symplify
`properties`, Altcraft `data`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

EMAIL = "email"
PHONE = "phone"
PHONE_CACHE_SIZE = 4096  # distinct phone strings remembered (a few hundred KB)

# canonical field -> aliases, written as a person would; matching strips case and punctuation.
ALIASES: dict[str, tuple[str, ...]] = {
    EMAIL: ("email", "e-mail", "emailAddress", "email_address", "mail", "email address"),
    PHONE: (
        "phone",
        "mobile",
        "sms",
        "phones",
        "phone_number",
        "mobile_phone",
        "cell",
        "msisdn",
        "telephone",
    ),
    "first_name": ("first_name", "firstname", "_fname", "fname", "given_name", "first name"),
    "last_name": ("last_name", "lastname", "_lname", "lname", "surname", "family_name"),
    "full_name": ("full_name", "fullname", "name", "display_name"),
    "external_id": ("external_id", "externalid", "customer_id", "user_id"),
    "contact_id": ("contact_id", "contactid"),
    "profile_id": ("profile_id", "profileid"),
    "id": ("id",),
    "whatsapp": ("whatsapp",),
    "list_email": ("list_email", "list_email_address", "list"),
    "birthday": ("birthday", "birth_date", "date_of_birth", "dob"),
    "city": ("city", "town"),
    "country": ("country",),
    "zipcode": ("zipcode", "zip", "postcode", "postal_code"),
    "address_line1": ("address_line1", "address", "street"),
    "address_line2": ("address_line2",),
    "salutation": ("salutation", "title"),
    # message content (mateo-message)
    "subject": ("subject",),
    "text": ("text", "body"),
    "html": ("html",),
    "template_id": ("template_id",),
    "placeholder_values": ("placeholder_values", "placeholders"),
    "send_after": ("send_after",),
}

_PUNCT = re.compile(r"[^0-9a-z]+")


def squash(name: str) -> str:
    """`E-Mail Address` -> `emailaddress`: the form headers are compared in."""
    return _PUNCT.sub("", name.casefold())


_BY_SQUASHED: dict[str, str] = {squash(alias): canon for canon, names in ALIASES.items() for alias in names}


class HeaderMap:
    """Maps each file header to a canonical field, or to None when it travels on under its own name.

    `overrides` (from a routes entry's column mapping) win over aliases. When two headers claim the same
    canonical field, the first keeps it and the second travels on, so nothing is lost. JSON rows may
    bring new keys at any row; they are mapped when first seen.
    """

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self._explicit = {squash(k): v for k, v in (overrides or {}).items()}
        self._map: dict[str, str | None] = {}
        self._taken: set[str] = set()

    def add(self, headers: Iterable[str]) -> None:
        for header in headers:
            self.field(header)

    def field(self, header: str) -> str | None:
        """The canonical field of `header`, or None."""
        if header in self._map:
            return self._map[header]
        key = squash(header)
        canon = self._explicit.get(key) or _BY_SQUASHED.get(key)
        if canon is not None and canon in self._taken:
            canon = None
        if canon is not None:
            self._taken.add(canon)
        self._map[header] = canon
        return canon

    def as_dict(self) -> dict[str, str | None]:
        return dict(self._map)


# Pragmatic syntax check: one @, no whitespace or control characters, a dotted domain of sane labels.
_EMAIL = re.compile(
    r"^[^@\s\x00-\x1f\"(),:;<>\[\\\]]{1,64}@(?=.{1,253}$)(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}$"
)


def normalise_email(value: str) -> str | None:
    """Trimmed, lower-cased email, or None when it is not an email address."""
    email = value.strip().lower()
    # Dots may not start or end the local part, nor come in pairs (RFC 5322 dot-atom).
    if not _EMAIL.match(email) or ".." in email or email.startswith(".") or ".@" in email:
        return None
    return email


@lru_cache(maxsize=PHONE_CACHE_SIZE)
def normalise_phone(value: str, region: str | None) -> str | None:
    """E.164 (`+46701234567`), or None when not a valid number (a number without +CC needs `region`).

    Validation is exact (phonenumbers' metadata, see fanout.phones) and the most costly step of a row;
    a file that repeats a number (a shared switchboard, a family's landline, the same person on two
    lists) pays it once per distinct string. The cache is bounded, so memory stays flat. phonenumbers
    is imported here, at the first number: the senders, which import this module for field names only,
    never load it.
    """
    from fanout.phones import e164

    return e164(value, region)
