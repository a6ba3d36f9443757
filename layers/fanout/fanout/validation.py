"""Turning a raw row into a contact the destination can take, or a rejection a person can act on."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from fanout import fields
from fanout.models import (
    STAGED_LINE_HEAD,
    STAGED_LINE_IDENTITY,
    STAGED_LINE_ITEM,
    Contact,
    Rejection,
    Route,
    json_text,
)
from fanout.providers.base import Code, Provider, TextColumns, joined_source
from fanout.reading import FileInfo, RawRow

MAX_VALUE_CHARS = 10_000  # one cell; a longer one is a broken file, not a contact detail
_UNSEEN: Any = object()  # a header the validator has not mapped yet
# The column `fanout report --rejected` adds to a file's rejected rows: a file fixed and dropped again with
# it is read as before, the column never sent.
REASON_COLUMN = "rejection_reason"
EMAIL_FIELDS = (fields.EMAIL, "list_email")  # the canonical fields normalised as email addresses

# A CSV row that passes, planned in one call by its file's row plan from its TextRow: (row, identity, staged
# line, the item's bytes in a request body). A plan answers None for every other row: `validate` decides it.
PlannedRow = tuple[int, str, str, int]
RowPlan = Callable[[int, list[str], int], PlannedRow | None]


def _text(value: object) -> str | None:
    """A scalar as text; None for nested objects and lists, which no provider field takes."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value).strip()
    return None


def _kept_as_is(route: Route) -> str | None:
    """The column an Altcraft custom match names (file option field-name): it keeps its own name, since
    the provider looks it up, and sends it, under that name, so no alias may rename it."""
    return route.options.get("field-name") if route.options.get("matching") == "custom" else None


def column_mapping(route: Route, headers: list[str]) -> dict[str, str | None]:
    """Each header -> the canonical field it fills, or None when it travels on under its own name: the
    mapping RowValidator applies."""
    header_map = fields.HeaderMap(route.columns)
    as_is = _kept_as_is(route)
    return {h: None if h == as_is else header_map.field(h) for h in headers if h != REASON_COLUMN}


class RowValidator:
    """Validates rows for one route: identifiers present and well-formed, values normalised."""

    def __init__(self, route: Route, provider: Provider, headers: list[str], text_rows: bool = False) -> None:
        self._route = route
        self._provider = provider
        self._options = route.options
        self._region = (route.options.get("phone-region") or "").upper() or None
        self._map = fields.HeaderMap(route.columns)
        self._as_is = _kept_as_is(route)
        self._map.add(h for h in headers if h != self._as_is)
        self._fields: dict[str, str | None] = {}
        self._headers = headers
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

    def row_plan(self, job_id: str) -> tuple[str, RowPlan] | None:
        """The lane and the row plan of this CSV file (`compile_row_plan`), or None: a file not read as text
        rows, or a provider without a TextItemSource."""
        if self._text_rows is None:
            return None
        return compile_row_plan(
            self._headers, self._field_of, self._provider, job_id, self._options, self._region
        )

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
                if header == REASON_COLUMN:
                    continue
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
        for name in EMAIL_FIELDS:
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
            if header == REASON_COLUMN:  # added by `fanout report --rejected`: never sent
                continue
            lines.append(f"    extra[{header!r}] = {var}.strip()")
        else:
            lines += [f"    {var} = {var}.strip()", f"    if {var}:", f"        canon[{name!r}] = {var}"]
    lines.append("    return canon, extra")
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)  # noqa: S102 - the source is built here from repr()'d names only
    convert: TextRows = namespace["convert"]
    return convert


def compile_row_plan(
    headers: list[str],
    field_of: Callable[[str], str | None],
    provider: Provider,
    job_id: str,
    options: Mapping[str, str],
    region: str | None,
) -> tuple[str, RowPlan] | None:
    """One function for the rows of a CSV file with these `headers` that pass, generated once per file: it
    strips the cells, normalises email and phone (fields.normalise_email, normalise_phone), takes the
    identity and writes the staged line with the provider's item (its TextItemSource), all without a
    Contact, a dict of fields or the item as objects. It takes a TextRow and answers None as soon as the
    row is not plainly valid (a malformed value, no identity, a value too long), and that row takes
    `RowValidator.validate` and `to_item`, which word its rejection: the rules stay theirs, and a test
    holds the plan's lines to theirs. None when the provider has no TextItemSource."""
    if len(set(headers)) != len(headers):
        return None
    names = [f"v{i}" for i in range(len(headers))]
    canonical: dict[str, str] = {}
    extra: list[tuple[str, str]] = []
    for header, var in zip(headers, names, strict=True):
        name = field_of(header)
        if name is not None:
            canonical[name] = var
        elif header != REASON_COLUMN:  # added by `fanout report --rejected`: never sent
            extra.append((header, var))
    source = provider.text_item_source(TextColumns(canonical, extra, job_id, options))
    identity = [canonical[name] for name in source.identity if name in canonical] if source else []
    if source is None or not identity:
        return None
    lines = [
        "def plan(number, cells, size):",
        f"    if size > {MAX_VALUE_CHARS}:",
        "        return None",
        f"    ({', '.join(names)},) = cells",
    ]
    lines += [f"    {var} = {var}.strip()" for var in [*canonical.values(), *(var for _, var in extra)]]
    checks = [(canonical[name], "email({})") for name in EMAIL_FIELDS if name in canonical]
    if fields.PHONE in canonical:
        checks.append((canonical[fields.PHONE], "phone({}, region)"))
    for var, call in checks:
        lines += [
            f"    if {var}:",
            f"        {var} = {call.format(var)}",
            f"        if {var} is None:",
            "            return None",
        ]
    lines += [f"    identity = {' or '.join(identity)}", "    if not identity:", "        return None"]
    lines += [f"    {line}" for line in source.lines]
    line = joined_source(
        STAGED_LINE_HEAD,
        Code("number"),
        STAGED_LINE_IDENTITY,
        Code("esc(identity)"),
        STAGED_LINE_ITEM,
        Code("item"),
        "}",
    )
    lines.append(f"    return number, identity, {line}, len(item) + 1")
    namespace: dict[str, Any] = {
        **source.names,
        "email": fields.normalise_email,
        "phone": fields.phone_normaliser(),
        "region": region,
        "esc": json_text,
    }
    exec("\n".join(lines), namespace)  # noqa: S102 - built here from repr()'d names and the provider's source
    return source.lane, namespace["plan"]


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
    """Whole-file option problems the options model cannot see alone (checked before any row): what the
    destination needs of the options and the file's columns together. `options` are canonical
    (fanout.options has checked each name, type and value)."""
    return provider.option_problem(options, headers)


# Values that pass any field's check: what a row would hold if every column it has were filled.
_PROBE_VALUES = {
    fields.EMAIL: "probe@example.com",
    "list_email": "probe@example.com",
    fields.PHONE: "+46701234567",
}


def missing_field_problem(provider: Provider, route: Route, headers: list[str]) -> str | None:
    """When no row of a file with these `headers` could ever be identified (the destination needs a field
    no column fills, whatever the rows hold): the destination's reason, the file's headers and how to map
    one; None otherwise. Asked once, of a row with every column filled."""
    if not headers:
        return None
    mapping = column_mapping(route, headers)
    canon = {name: _PROBE_VALUES.get(name, "x") for name in mapping.values() if name is not None}
    extra: dict[str, object] = {header: "x" for header, name in mapping.items() if name is None}
    ident = provider.identify(Contact(0, "", canon, extra), route.options)
    if ident.identity is not None:
        return None
    field = ident.column if ident.column in fields.ALIASES else "FIELD"
    return (
        f"{ident.problem or 'no identifier'}, and no column of the file fills it: the file's columns are"
        f" {', '.join(headers)}. Map one with the file option columns, e.g. -o columns=HEADER:{field}"
        f" (S3 metadata x-amz-meta-columns: HEADER:{field}, or columns: in a routes entry)"
    )


def file_problem(provider: Provider, route: Route, info: FileInfo) -> str | None:
    """Whole-file problems found before any row: the options against the file's columns, and (for a CSV
    file, whose header names every column) a field the destination needs that no column fills."""
    return options_problem(provider, route.options, info.columns) or (
        missing_field_problem(provider, route, info.columns) if info.format == "csv" else None
    )
