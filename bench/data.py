"""Realistic contacts files for the benchmarks, generated here so every run measures the same bytes.

Each row is one distinct, valid contact: a unique email (mixed case, as people type them), a unique
mobile number from one of eight countries (E.164 or written with spaces), first and last names (some
non-ASCII), and five columns no provider field claims outright (city, country, plan, signup_date,
loyalty_points). The same rows are written as CSV or as NDJSON; the file depends only on `rows` and
`seed`.
"""

from __future__ import annotations

import csv
import json
import random
import unicodedata
from collections.abc import Iterator
from pathlib import Path

HEADER: tuple[str, ...] = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "city",
    "country",
    "plan",
    "signup_date",
    "loyalty_points",
)
EXTRA_COLUMNS = HEADER[4:]
FORMATS = ("csv", "ndjson")

FIRST_NAMES = (
    "Anna", "Erik", "Åsa", "Lars", "Sofia", "Jörg", "Marie", "José", "Liam", "Emma", "Noah", "Olivia",
    "Björn", "Zoë", "Mateo", "Chloé", "Ingrid", "Pedro", "Aino", "Mikkel", "Freja", "Hugo", "Léa", "Sven",
)  # fmt: skip
LAST_NAMES = (
    "Svensson", "Müller", "Jansen", "Smith", "Dubois", "García", "Hansen", "Virtanen", "Johansson",
    "de Vries", "Schmidt", "Martin", "López", "Nilsen", "Korhonen", "O'Brien", "Lindqvist", "Bauer",
)  # fmt: skip


def _fold(name: str) -> str:
    """`Åsa` -> `Asa`, `O'Brien` -> `OBrien`: a name as it appears in an email address."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return "".join(c for c in plain if c.isalnum())


_FIRST_ASCII = tuple(map(_fold, FIRST_NAMES))
_LAST_ASCII = tuple(map(_fold, LAST_NAMES))
DOMAINS = ("example.com", "mail.example.org", "example.net", "Example.se", "corp.example.de")
PLANS = ("free", "basic", "gold", "platinum")

# (country, city, E.164 prefix, subscriber digits after it): every number of these shapes is a valid
# mobile number for phonenumbers, so no row is rejected and every phone is normalised for real.
PHONE_PLANS: tuple[tuple[str, str, str, int], ...] = (
    ("SE", "Stockholm", "+4670", 7),
    ("DE", "Berlin", "+49151", 8),
    ("NL", "Amsterdam", "+3161", 7),
    ("US", "San Francisco", "+1415", 7),
    ("FR", "Paris", "+3366", 7),
    ("ES", "Madrid", "+3461", 7),
    ("NO", "Oslo", "+479", 7),
    ("FI", "Helsinki", "+35840", 7),
)
_MIX = 7_919  # a prime: spreads consecutive rows over the subscriber range, still one-to-one


def phone_number(index: int) -> str:
    """The E.164 mobile number of row `index` (0-based); distinct for distinct rows."""
    _country, _city, prefix, digits = PHONE_PLANS[index % len(PHONE_PLANS)]
    space = 10 ** (digits - 1) * 8  # subscriber numbers starting with 2..9 (US exchanges need it)
    subscriber = 2 * 10 ** (digits - 1) + (index // len(PHONE_PLANS) * _MIX) % space
    return f"{prefix}{subscriber}"


def _spaced(e164: str, prefix: str) -> str:
    """`+46701234567` -> `+4670 123 45 67`: how people write numbers in a spreadsheet."""
    rest = e164[len(prefix) :]
    return f"{prefix} {rest[:3]} {rest[3:5]} {rest[5:]}"


def contact(index: int, rng: random.Random) -> dict[str, str | int]:
    """Row `index` as column -> value (loyalty_points is a number; the CSV writes it as text)."""
    first_at = rng.randrange(len(FIRST_NAMES))
    last_at = rng.randrange(len(LAST_NAMES))
    country, city, prefix, _digits = PHONE_PLANS[index % len(PHONE_PLANS)]
    e164 = phone_number(index)
    return {
        "email": f"{_FIRST_ASCII[first_at]}.{_LAST_ASCII[last_at]}.{index}@{DOMAINS[index % len(DOMAINS)]}",
        "phone": e164 if rng.random() < 0.7 else _spaced(e164, prefix),
        "first_name": FIRST_NAMES[first_at],
        "last_name": LAST_NAMES[last_at],
        "city": city,
        "country": country,
        "plan": PLANS[rng.randrange(len(PLANS))],
        "signup_date": f"20{rng.randrange(15, 25)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
        "loyalty_points": rng.randrange(0, 20_000),
    }


def contacts(rows: int, seed: int = 7) -> Iterator[dict[str, str | int]]:
    """`rows` distinct valid contacts, always the same ones for the same `seed`."""
    rng = random.Random(seed)
    for index in range(rows):
        yield contact(index, rng)


def write_file(path: Path, rows: int, file_format: str, seed: int = 7) -> Path:
    """Write `rows` contacts to `path` as CSV (with a header) or NDJSON; returns `path`."""
    if file_format not in FORMATS:
        raise ValueError(f"unknown format {file_format!r}; one of {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as out:
        if file_format == "csv":
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(HEADER)
            writer.writerows(row.values() for row in contacts(rows, seed))
        else:
            dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
            out.writelines(dumps(row) + "\n" for row in contacts(rows, seed))
    return path


def data_file(directory: Path, rows: int, file_format: str, seed: int = 7) -> Path:
    """The file for (`rows`, `file_format`, `seed`) in `directory`, generated on first use."""
    path = directory / f"contacts-{rows}-{seed}.{file_format}"
    if not path.exists():
        partial = path.with_suffix(path.suffix + ".part")
        write_file(partial, rows, file_format, seed)
        partial.replace(path)
    return path
