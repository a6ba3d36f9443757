"""Turning a raw row into a contact the destination can take, or a rejection a person can act on."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from fanout import fields
from fanout.models import Contact, Rejection, Route
from fanout.providers.base import Provider
from fanout.reading import RawRow

MAX_VALUE_CHARS = 10_000  # one cell; a longer one is a broken file, not a contact detail
# What dry-run may say (routing.is_dry_run takes 1/true/yes): anything else, say "on", is refused rather
# than read as "no" and sent for real.
_UNSEEN: Any = object()  # a header the validator has not mapped yet
_YES_NO = frozenset({"", "1", "true", "yes", "0", "false", "no"})


def _text(value: object) -> str | None:
    """A scalar as text; None for nested objects and lists, which no provider field takes."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value).strip()
    return None


class RowValidator:
    """Validates rows for one route: identifiers present and well-formed, values normalised."""

    def __init__(self, route: Route, provider: Provider, headers: list[str], text_rows: bool = False) -> None:
        self._route = route
        self._provider = provider
        self._options = route.options
        self._region = (route.options.get("phone-region") or "").upper() or None
        self._map = fields.HeaderMap(route.columns)
        # The column an Altcraft custom match names (file option field-name) keeps its own name: the
        # provider looks it up, and sends it, under that name, so no alias may rename it.
        self._as_is = route.options.get("field-name") if route.options.get("matching") == "custom" else None
        self._map.add(h for h in headers if h != self._as_is)
        self._fields: dict[str, str | None] = {}
        # CSV: every row's fields are `headers`, in order, all text. Their mapping is then compiled once
        # into one function (`_compile_text_rows`); it does what the loop in `validate` does, cell by cell.
        self._text_rows = _compile_text_rows(headers, self._field_of) if text_rows and headers else None

    def _field_of(self, header: str) -> str | None:
        """The canonical field `header` fills (None: it travels on under its own name), remembered: the
        row loop asks for every cell."""
        name = self._fields.get(header, _UNSEEN)
        if name is _UNSEEN:
            name = None if header == self._as_is else self._map.field(header)
            self._fields[header] = name
        return name

    def validate(self, raw: RawRow) -> Contact | Rejection:
        if raw.error:
            return Rejection(raw.number, raw.error)
        # A row shorter than one value may be cannot hold a value too long: no cell needs measuring.
        if self._text_rows is not None and 0 < raw.size <= MAX_VALUE_CHARS:
            canon, extra = self._text_rows(raw.fields)
            return self._finish(raw.number, canon, extra)
        return self._validate_any(raw)

    def _validate_any(self, raw: RawRow) -> Contact | Rejection:
        canon: dict[str, str] = {}
        extra: dict[str, object] = {}
        fields_get, field_of = self._fields.get, self._field_of
        for header, value in raw.fields.items():
            name = fields_get(header, _UNSEEN)
            if name is _UNSEEN:
                name = field_of(header)
            if name is None:  # travels on as it is (nested values too)
                if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
                    return Rejection(
                        raw.number, f"value is longer than {MAX_VALUE_CHARS} characters", header, value[:40]
                    )
                extra[header] = value.strip() if isinstance(value, str) else value
                continue
            # Every CSV cell is a str: spare it _text's type checks (this loop runs for each cell).
            text = value.strip() if type(value) is str else _text(value)
            if text is None:
                return Rejection(raw.number, f"{header} must be a single value, not a list or object", header)
            if len(text) > MAX_VALUE_CHARS:
                return Rejection(
                    raw.number, f"value is longer than {MAX_VALUE_CHARS} characters", header, text[:40]
                )
            if text:
                canon[name] = text
        return self._finish(raw.number, canon, extra)

    def _finish(self, number: int, canon: dict[str, str], extra: dict[str, object]) -> Contact | Rejection:
        problem = self._normalise(canon)
        if problem is not None:
            return Rejection(number, problem[0], problem[1], problem[2])
        contact = Contact(number, "", canon, extra)
        ident = self._provider.identify(contact, self._options)
        if ident.identity is None:
            return Rejection(number, ident.problem or "no identifier", ident.column, ident.value)
        contact.identity = ident.identity
        return contact

    def _header_of(self, name: str) -> str:
        """The file's header that filled canonical field `name` (for a rejection)."""
        return next((h for h, n in self._fields.items() if n == name), name)

    def _normalise(self, canon: dict[str, str]) -> tuple[str, str, str] | None:
        """Normalise email and phone in place; (reason, the file's column, value) when one is malformed."""
        for name in (fields.EMAIL, "list_email"):
            email = canon.get(name)
            if email is not None:
                normal = fields.normalise_email(email)
                if normal is None:
                    reason = f"'{email}' is not a valid email address{_invisible_hint(email)}"
                    return (reason, self._header_of(name), email)
                canon[name] = normal
        phone = canon.get(fields.PHONE)
        if phone is not None:
            normal = fields.normalise_phone(phone, self._region)
            if normal is None:
                hint = (
                    ""
                    if phone.startswith("+") or self._region
                    else " (no country code: write +CC or set the file option phone-region, e.g. SE)"
                )
                return (
                    f"'{phone}' is not a valid phone number{hint}",
                    self._header_of(fields.PHONE),
                    phone,
                )
            canon[fields.PHONE] = normal
        return None


TextRows = Callable[[dict[str, Any]], tuple[dict[str, str], dict[str, object]]]


def _compile_text_rows(headers: list[str], field_of: Callable[[str], str | None]) -> TextRows:
    """One function for rows whose fields are `headers`, in order, all str (CSV), with the result of
    `RowValidator._validate_any`'s loop for such a row of no overlong value: (canonical fields, extra).
    Generated once per file; per row it unpacks the values and strips each, with no per-cell lookups."""
    names = [f"v{i}" for i in range(len(headers))]
    lines = [
        "def convert(fields):",
        f"    ({', '.join(names)},) = fields.values()",
        "    canon = {}",
        "    extra = {}",
    ]
    for header, var in zip(headers, names, strict=True):
        name = field_of(header)
        if name is None:
            lines.append(f"    extra[{header!r}] = {var}.strip()")
        else:
            lines += [f"    {var} = {var}.strip()", f"    if {var}:", f"        canon[{name!r}] = {var}"]
    lines.append("    return canon, extra")
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)  # noqa: S102 - the source is built here from repr()'d names only
    convert: TextRows = namespace["convert"]
    return convert


def _invisible_hint(value: str) -> str:
    """Why a value that looks right is refused: a character nobody sees (a zero-width space or a BOM pasted
    from a spreadsheet, a control character), named so it can be found; "" when there is none."""
    for char in value:
        if unicodedata.category(char) in ("Cf", "Cc", "Co", "Cn"):
            return f" (it holds the invisible character U+{ord(char):04X})"
    return ""


def duplicate(row: int, first: int, identity: str = "") -> Rejection:
    return Rejection(row, f"duplicate of row {first}", "", identity)


def options_problem(provider: Provider, options: Mapping[str, str], headers: list[str]) -> str | None:
    """Whole-file option problems (checked before any row)."""
    percent = options.get("tolerated-invalid-percent")
    if percent is not None:
        try:
            value = float(percent)
        except ValueError:
            return f"file option tolerated-invalid-percent='{percent}' is not a number"
        if not 0 <= value <= 100:
            return f"file option tolerated-invalid-percent={percent} must be between 0 and 100"
    dry_run = options.get("dry-run")
    if dry_run is not None and dry_run.lower() not in _YES_NO:
        return f"file option dry-run='{dry_run}' must be true or false"
    # An unknown region would make every number without +CC "not a valid phone number", row by row.
    region = options.get("phone-region")
    if region:
        import phonenumbers  # here, not at cold start (the numbers load it at the first one: fields.py)

        if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            return (
                f"file option phone-region='{region}' is not a region code; use two letters such as SE or GB"
            )
    return provider.option_problem(options, headers)
