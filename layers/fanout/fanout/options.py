"""The file options: one definition (names, aliases, types, allowed values) for every place a file's options
come from: S3 user metadata (`x-amz-meta-<name>`), a routes entry's `options:`, and the CLI's `-o`.

Names match case-insensitively with `-`, `_` or a space between words (`dry-run`, `dry_run`, `Dry Run`).
Yes/no options take true/false, yes/no, on/off, 1/0. Anything the model does not accept (an unknown name, a
value of the wrong type or outside the allowed ones) is an `OptionsError` naming it, with the known options;
the job then fails before a row is read, and nothing is sent.

What crosses to the rest of the code is `FileOptions.as_strings()`: the options that were given, under their
canonical (kebab-case) names, with canonical values ("true"/"false", "10", "SE"), so every reader sees one
spelling.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import quote, unquote

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from fanout import fields

_TRUE = frozenset({"1", "true", "yes", "on", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "n", ""})
_PERCENT = re.compile(r"\d{1,3}(\.\d+)?")  # digits only: float() would read "1_0" as 10, "1e1" as 10
DEFAULT_TOLERATED_INVALID_PERCENT = 10.0  # a deployment may change it (TOLERATED_INVALID_PERCENT)
MATCHING_MODES = ("email", "email_profile", "phone", "profile_id", "custom")


class OptionsError(ValueError):
    """A file option is unknown or has a value the model does not accept; the message names the fix."""


def _yes_no(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("must be true or false (yes/no, on/off and 1/0 are read too)")


def _percent(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number from 0 to 100")
    text = str(value).strip()
    if not _PERCENT.fullmatch(text) or not 0 <= float(text) <= 100:
        raise ValueError("must be a number from 0 to 100, written with digits only (e.g. 5 or 2.5)")
    return float(text)


def _region(value: Any) -> str:
    import phonenumbers  # here, not at cold start: only a file with a phone-region needs it

    region = str(value).strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError("is not a region code; use two letters such as SE or GB")
    return region


def _columns(value: Any) -> dict[str, str]:
    """`Kundennr:external_id,Handy:phone` (or a mapping) -> {header: field}; each field must be one the
    providers know. Headers may be percent-encoded (S3 metadata carries ASCII only)."""
    if isinstance(value, Mapping):
        pairs = [(str(k), str(v)) for k, v in value.items()]
    else:
        pairs = []
        for part in str(value).split(","):
            if not part.strip():
                continue
            header, sep, name = part.rpartition(":")
            if not sep or not header.strip():
                raise ValueError(f"'{part.strip()}' must look like HEADER:field, e.g. Handy:phone")
            pairs.append((unquote(header.strip()), name.strip()))
    mapping = {}
    for header, name in pairs:
        if name not in fields.ALIASES:
            raise ValueError(
                f"'{name}' (for column '{header}') is not a field; use one of {', '.join(fields.ALIASES)}"
            )
        mapping[header] = name
    return mapping


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError("must be text")
    return str(value).strip()


YesNo = Annotated[bool, BeforeValidator(_yes_no)]
Percent = Annotated[float, BeforeValidator(_percent)]
Region = Annotated[str, BeforeValidator(_region)]
Columns = Annotated[dict[str, str], BeforeValidator(_columns)]
Text = Annotated[str, BeforeValidator(_text)]


class FileOptions(BaseModel):
    """Every option a file may carry, with its type and allowed values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dry_run: YesNo = False  # validate and plan, send nothing
    tolerated_invalid_percent: Percent | None = None  # the share of invalid rows a file may have
    phone_region: Region | None = None  # the country of numbers written without +CC
    matching: Literal["email", "email_profile", "phone", "profile_id", "custom"] | None = None  # Altcraft
    field_name: Text | None = None  # Altcraft matching=custom: the profile field to match on
    skip_triggers: YesNo = False  # Altcraft: import without starting the workflow's triggers
    template_id: Text | None = None  # Mateo message
    subject: Text | None = None  # Mateo message
    text: Text | None = None  # Mateo message
    html: Text | None = None  # Mateo message
    postal: YesNo = False  # Mateo message: a postal message to contact_id
    columns: Columns = {}  # the file's own column mapping: HEADER:field,...
    resend: YesNo = False  # send a file whose content was already sent to the same destination/target
    only_new: YesNo = False  # skip contacts an earlier job already sent to the same destination/target

    def as_strings(self) -> dict[str, str]:
        """The options given, canonical names and values (what Route.options and the job record hold)."""
        out: dict[str, str] = {}
        for name in sorted(self.model_fields_set):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, float):
                text = f"{value:g}"
            elif isinstance(value, dict):
                text = ",".join(f"{quote(h, safe=' ')}:{f}" for h, f in value.items())
            else:
                text = str(value)
            out[name.replace("_", "-")] = text
        return out


KNOWN_OPTIONS: tuple[str, ...] = tuple(name.replace("_", "-") for name in FileOptions.model_fields)


def canonical_name(name: str) -> str:
    """`Dry_Run`, `dry run`, `DRY-RUN` -> `dry-run`."""
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def parse_options(raw: Mapping[str, Any], source: str = "the file options") -> FileOptions:
    """`raw` (any of the accepted spellings) as FileOptions; OptionsError naming every problem and the
    known options. `source` says where the options came from ("the object's metadata", "the routes entry
    for inbox/x/", "-o")."""
    named: dict[str, Any] = {}
    for key, value in raw.items():
        named[canonical_name(str(key)).replace("-", "_")] = value
    unknown = sorted(n.replace("_", "-") for n in named if n not in FileOptions.model_fields)
    if unknown:
        raise OptionsError(
            f"unknown file option(s) {', '.join(unknown)} in {source}; known: {', '.join(KNOWN_OPTIONS)}"
        )
    try:
        return FileOptions.model_validate(named)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]).replace("_", "-") if error["loc"] else "?"
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "literal_error":
                message = f"must be one of {', '.join(MATCHING_MODES)}"
            problems.append(f"file option {name}='{named.get(name.replace('-', '_'))}' {message}")
        raise OptionsError(
            f"{'; '.join(problems)} (in {source}; known options: {', '.join(KNOWN_OPTIONS)})"
        ) from None


def normalise(raw: Mapping[str, Any], source: str = "the file options") -> dict[str, str]:
    """`parse_options(raw, source).as_strings()`: raw options in, canonical ones out."""
    return parse_options(raw, source).as_strings()


def columns_of(options: Mapping[str, str]) -> dict[str, str]:
    """The `columns` option of canonical options as {header: field} ({} when none)."""
    value = options.get("columns")
    return _columns(value) if value else {}


def yes(options: Mapping[str, str], name: str) -> bool:
    """Whether the yes/no option `name` of canonical options is on."""
    return options.get(name) == "true"
