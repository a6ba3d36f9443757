"""Header names -> canonical contact fields, and the one place that normalises values.

Headers match case-, accent- and punctuation-insensitively, in the usual names of CRM and spreadsheet
exports in the providers' markets' languages ("E-Mail", "email_address", "E-Mail-Adresse", "Courriel",
"Электронная почта" are all `email`); a file may name its own mapping (the `columns` option). A column that no alias claims travels on under its own name (Mateo `context`, Symplify
`properties`, Altcraft `data`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping

EMAIL = "email"
PHONE = "phone"

# canonical field -> aliases, written as a person (or a CRM, or a spreadsheet) would, in the languages of the
# providers' markets: English, German, French, Spanish, Swedish, Norwegian, Danish, Finnish, Polish,
# Russian, Dutch, Italian, Portuguese. Matching ignores case, accents and punctuation (see `squash`), so
# "E-Mail-Adresse", "e_mail_adresse" and "EmailAdresse" are one alias; an alias may belong to one field only.
ALIASES: dict[str, tuple[str, ...]] = {
    EMAIL: (
        "email", "e-mail", "emailAddress", "email_address", "mail", "email address", "e-mail 1 - value",
        "email 1", "primary email", "work email", "person - email", "contact email",
        # de
        "e-mail-adresse", "mail-adresse", "mailadresse", "elektronische post",
        # fr
        "courriel", "adresse e-mail", "adresse mail", "adresse électronique", "mél", "adresse courriel",
        # es / it / pt
        "correo", "correo electrónico", "dirección de correo", "dirección de correo electrónico",
        "posta elettronica", "indirizzo email", "endereço de email", "endereço de e-mail",
        # sv / no / da / fi
        "e-post", "e-postadress", "epost", "epostadress", "mejl", "mejladress", "e-postadresse",
        "sähköposti", "sähköpostiosoite",
        # pl
        "adres e-mail", "adres email", "poczta", "poczta e-mail",
        # ru
        "электронная почта", "эл. почта", "эл почта", "почта", "e-mail адрес", "адрес электронной почты",
        "емейл", "имейл", "емайл",
        # nl
        "e-mailadres", "emailadres", "mailadres",
    ),
    PHONE: (
        "phone", "mobile", "sms", "phones", "phone_number", "mobile_phone", "cell", "msisdn", "telephone",
        "tel", "mobile number", "mobile phone number", "cell phone", "cellphone", "phone 1 - value",
        "person - phone", "contact phone",
        # de
        "telefon", "telefonnummer", "handy", "handynummer", "mobil", "mobilnummer", "mobiltelefon",
        "mobilfunknummer", "rufnummer mobil",
        # fr
        "téléphone", "numéro de téléphone", "téléphone portable", "portable", "tél", "tél portable",
        "numéro de portable", "téléphone mobile",
        # es / it / pt
        "teléfono", "teléfono móvil", "móvil", "celular", "número de teléfono", "número de móvil",
        "telefono cellulare", "cellulare", "telemóvel", "número de telefone", "telefone",
        # sv / no / da / fi
        "mobiltelefonnummer", "tfn", "telefonnr", "mobilnr", "puhelin", "puhelinnumero", "matkapuhelin",
        # pl
        "numer telefonu", "telefon komórkowy", "komórka", "nr telefonu", "nr tel", "telefon kontaktowy",
        # ru
        "телефон", "мобильный", "мобильный телефон", "номер телефона", "тел", "сотовый", "сотовый телефон",
        "моб. телефон", "моб телефон",
        # nl
        "telefoon", "telefoonnummer", "mobiel", "mobiel nummer", "mobiele telefoon", "mobielnummer", "gsm",
    ),
    "first_name": (
        "first_name", "firstname", "_fname", "fname", "given_name", "first name", "first",
        "vorname", "prénom", "nombre", "förnamn", "fornavn", "etunimi", "nome", "imię", "имя", "voornaam",
    ),
    "last_name": (
        "last_name", "lastname", "_lname", "lname", "surname", "family_name", "last",
        "nachname", "familienname", "nom", "nom de famille", "apellido", "apellidos", "primer apellido",
        "efternamn", "etternavn", "efternavn", "sukunimi", "cognome", "sobrenome", "apelido", "nazwisko",
        "фамилия", "achternaam",
    ),
    "full_name": (
        "full_name", "fullname", "name", "display_name", "contact name", "vollständiger name",
        "nom complet", "nombre completo", "fullständigt namn", "namn", "fullt navn", "navn", "nimi",
        "nome completo", "imię i nazwisko", "фио", "полное имя", "volledige naam", "naam",
    ),
    "external_id": (
        "external_id", "externalid", "customer_id", "user_id", "record id", "customer number",
        "customer no", "client id", "crm id",
        "kundennummer", "kundennr", "kunden-nr", "kunden id", "numéro client", "n° client", "id client",
        "référence client", "número de cliente", "id cliente", "kundnummer", "kundnr", "kund-id",
        "kundenummer", "asiakasnumero", "codice cliente", "numer klienta", "id klienta", "nr klienta",
        "номер клиента", "id клиента", "код клиента", "klantnummer", "klant id", "klantnr",
    ),
    "contact_id": ("contact_id", "contactid"),
    "profile_id": ("profile_id", "profileid"),
    "id": ("id",),
    "whatsapp": ("whatsapp",),
    "list_email": ("list_email", "list_email_address", "list"),
    "birthday": (
        "birthday", "birth_date", "date_of_birth", "dob", "birthdate", "geburtstag", "geburtsdatum",
        "date de naissance", "fecha de nacimiento", "födelsedatum", "födelsedag", "fødselsdato",
        "syntymäaika", "data di nascita", "data de nascimento", "data urodzenia", "дата рождения",
        "день рождения", "geboortedatum",
    ),
    "city": (
        "city", "town", "mailing city", "stadt", "ort", "wohnort", "ville", "ciudad", "localidad",
        "poblacion", "stad", "postort", "poststed", "kaupunki", "città", "cidade", "miasto",
        "miejscowość", "город", "населенный пункт", "plaats", "woonplaats",
    ),
    "country": (
        "country", "country/region", "mailing country", "land", "pays", "país", "maa", "paese", "kraj",
        "страна",
    ),
    "zipcode": (
        "zipcode", "zip", "postcode", "postal_code", "zip code", "mailing zip/postal code",
        "zip/postal code", "plz", "postleitzahl", "code postal", "código postal", "cp", "postnummer",
        "postinumero", "cap", "kod pocztowy", "почтовый индекс", "индекс",
    ),
    "address_line1": (
        "address_line1", "address", "street", "mailing street", "street address", "address 1",
        "address line 1", "straße", "strasse", "straße und hausnummer", "adresse", "anschrift",
        "dirección", "domicilio", "gatuadress", "adress", "gateadresse", "katuosoite", "indirizzo",
        "endereço", "ulica", "adres", "адрес", "улица", "straat",
    ),
    "address_line2": ("address_line2", "address 2", "address line 2"),
    "salutation": (
        "salutation", "title", "anrede", "civilité", "tratamiento", "saludo", "tilltal", "zwrot",
        "обращение", "aanhef",
    ),
    # message content (mateo-message)
    "subject": ("subject",),
    "text": ("text", "body"),
    "html": ("html",),
    "template_id": ("template_id",),
    "placeholder_values": ("placeholder_values", "placeholders"),
    "send_after": ("send_after",),
}  # fmt: skip


def squash(name: str) -> str:
    """`E-Mail Address` -> `emailaddress`, `Téléphone` -> `telephone`, `Мобильный` -> `мобилныи`: the form
    headers are compared in (case, accents and anything not a letter or digit dropped, in any script)."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    return "".join(char for char in decomposed if char.isalnum())


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
# The local part: at most 64 characters, none of them an @, whitespace, a control character or RFC 5322
# "specials" that need quoting; dots may not start or end it, nor come in pairs (RFC 5322 dot-atom).
# Written as the characters it refuses, searched for: less than half the cost of matching every character
# against the class it allows (136 against 300 ns on the bench's addresses, timeit).
_NOT_IN_LOCAL_PART = re.compile(r"[@\s\x00-\x1f\"(),:;<>\[\\\]]")
# The domain: at most 253 characters, labels of letters, digits and inner hyphens, a top-level label of
# letters.
_DOMAIN = re.compile(r"(?=.{1,253}\Z)(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}")
DOMAIN_CACHE_SIZE = 4096  # domains whose answer is remembered (a file's addresses share a few domains)
_DOMAINS: dict[str, bool] = {}


def normalise_email(value: str) -> str | None:
    """Trimmed, lower-cased email, or None when it is not an email address.

    The local part and the domain are checked apart: a file's addresses share a few domains, whose answers
    are remembered (a plain dict emptied at DOMAIN_CACHE_SIZE, so memory stays flat), and the domain's
    expression is most of the cost of the whole check."""
    email = value.strip().lower()
    local, at, domain = email.partition("@")  # the local part holds no @: the first one is the one
    if (
        not at
        or not 0 < len(local) <= 64
        or _NOT_IN_LOCAL_PART.search(local) is not None
        or ".." in local
        or local[0] == "."
        or local[-1] == "."
    ):
        return None
    good = _DOMAINS.get(domain)
    if good is None:
        if len(_DOMAINS) >= DOMAIN_CACHE_SIZE:
            _DOMAINS.clear()
        good = _DOMAINS[domain] = _DOMAIN.fullmatch(domain) is not None
    return email if good else None


def normalise_phone(value: str, region: str | None) -> str | None:
    """E.164 (`+46701234567`), or None when not a valid number (a number without +CC needs `region`).

    Validation is exact (phonenumbers' metadata, see fanout.phones). phonenumbers is imported at the first
    number: the senders, which import this module for field names only, never load it.
    """
    return (_E164 or _load_e164())(value, region)


def phone_normaliser() -> Callable[[str, str | None], str | None]:
    """`normalise_phone` itself, for a loop over many numbers: phonenumbers loaded now, no call between."""
    return _E164 or _load_e164()


_E164: Callable[[str, str | None], str | None] | None = None  # fanout.phones.e164, once imported


def _load_e164() -> Callable[[str, str | None], str | None]:
    global _E164
    from fanout.phones import e164

    _E164 = e164
    return e164
