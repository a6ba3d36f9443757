"""Phone numbers to E.164: phonenumbers' answer, reached faster for the usual shape of a number.

Most files write numbers internationally, `+CC` then digits with spaces, dashes, dots or brackets
(`+46 70-123 45 67`). For those, `e164` reads the country code and checks the number against the
region's patterns itself, with phonenumbers' own metadata compiled once per country code, instead of
running phonenumbers' general parser (about a quarter of the cost of a whole row). It decides only what
it can decide exactly as phonenumbers does and hands everything else to phonenumbers: a number without
`+`, a national number starting with 0 or with the region's national prefix, a non-geographic country
code, letters, extensions, anything unusual. A test compares the two on generated numbers of every
region.

The rules it follows are phonenumbers' (`parse`, `is_valid_number`, `format_number(E164)`):
- the country code is the shortest prefix of one to three digits that is a known calling code;
- the region is the only one of that code, or, for a shared code (+1, +7, +44...), the first region
  whose leading digits match or, lacking those, whose patterns the number matches;
- a number is valid in a region when it matches the region's general description and at least one
  number type (fixed line, mobile, toll free, ...), each with its possible lengths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache, lru_cache

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata
from phonenumbers.phonemetadata import PhoneNumberDesc

# `+`, then digits and the separators people type; 6 to 17 digits in all (the parser takes more: those
# go to it). A separator may not end the number, and nothing may come before the `+`.
_INTERNATIONAL = re.compile(r"\+[1-9][0-9 ().\-]*[0-9]")
_MIN_DIGITS, _MAX_DIGITS = 6, 17
_NON_GEO = "001"
_TYPES = (  # every number type phonenumbers' _number_type_helper checks; any match makes a number valid
    "mobile",
    "fixed_line",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
)


@dataclass(frozen=True, slots=True)
class _Desc:
    """A number description: its pattern, compiled, and its possible lengths (empty: any)."""

    pattern: re.Pattern[str]
    lengths: frozenset[int]

    def matches(self, national: str) -> bool:
        if self.lengths and len(national) not in self.lengths:
            return False
        return self.pattern.fullmatch(national) is not None


@dataclass(frozen=True, slots=True)
class _Region:
    leading_digits: re.Pattern[str] | None
    general: _Desc
    types: tuple[_Desc, ...]
    # The same rule flattened: per national-number length, one pattern that is the general description
    # (a lookahead) and any type whose possible lengths allow that length. One regex call a number.
    by_length: dict[int, re.Pattern[str]] = field(default_factory=dict)
    any_length: re.Pattern[str] | None = None  # for lengths no description names (all of them "any")

    def is_valid(self, national: str) -> bool:
        pattern = self.by_length.get(len(national), self.any_length)
        return pattern is not None and pattern.fullmatch(national) is not None


def _flattened(
    general: _Desc, types: tuple[_Desc, ...]
) -> tuple[dict[int, re.Pattern[str]], re.Pattern[str] | None]:
    """`_Region.by_length` and `any_length` for these descriptions (see `_Region`)."""

    def pattern_for(length: int | None) -> re.Pattern[str] | None:
        if length is not None and general.lengths and length not in general.lengths:
            return None
        if length is None and general.lengths:
            return None
        usable = [d for d in types if not d.lengths or (length is not None and length in d.lengths)]
        if not usable:
            return None
        alternatives = "|".join(f"(?:{d.pattern.pattern})" for d in usable)
        return re.compile(f"(?=(?:{general.pattern.pattern})\\Z)(?:{alternatives})")

    lengths = set(general.lengths).union(*(d.lengths for d in types))
    by_length = {n: p for n in sorted(lengths) if (p := pattern_for(n)) is not None}
    return by_length, pattern_for(None)


@dataclass(frozen=True, slots=True)
class _CallingCode:
    # the main region's national prefix for parsing: its literal digits (with "0") when it is plain digits,
    # else the pattern
    national_starts: tuple[str, ...]
    national_prefix: re.Pattern[str] | None
    regions: tuple[_Region, ...]
    # a code of one region: that region's patterns by length (`_Region.by_length`, `any_length`), which
    # `e164` applies itself (most numbers are of such a code)
    only: dict[int, re.Pattern[str]] | None = None
    only_any: re.Pattern[str] | None = None

    def valid(self, national: str) -> bool:
        """Whether `national` is a valid number of this calling code, once `e164` has made sure
        phonenumbers' parser would read it as it is (it starts with no national prefix to strip)."""
        if len(self.regions) == 1:
            return self.regions[0].is_valid(national)
        for region in self.regions:
            if region.leading_digits is not None:
                if region.leading_digits.match(national):
                    return region.is_valid(national)
            elif region.is_valid(national):
                return True
        return False


def _desc(desc: PhoneNumberDesc | None) -> _Desc | None:
    if desc is None or not desc.national_number_pattern:
        return None
    return _Desc(re.compile(desc.national_number_pattern), frozenset(desc.possible_length or ()))


def _region(code: str) -> _Region | None:
    metadata = PhoneMetadata.metadata_for_region(code, None)
    general = _desc(metadata.general_desc) if metadata is not None else None
    if metadata is None or general is None:
        return None
    types = tuple(d for d in (_desc(getattr(metadata, name)) for name in _TYPES) if d is not None)
    leading = re.compile(metadata.leading_digits) if metadata.leading_digits is not None else None
    by_length, any_length = _flattened(general, types)
    return _Region(leading, general, types, by_length, any_length)


@cache
def _calling_code(code: int) -> _CallingCode | None:
    """The compiled rules of calling code `code`; None for one this module leaves to phonenumbers."""
    names = COUNTRY_CODE_TO_REGION_CODE.get(code, ())
    if not names or _NON_GEO in names:
        return None
    regions = [_region(name) for name in names]
    if any(region is None for region in regions):
        return None
    main = PhoneMetadata.metadata_for_region(names[0], None)
    prefix = main.national_prefix_for_parsing if main is not None else None
    kept = tuple(r for r in regions if r is not None)
    only = (kept[0].by_length, kept[0].any_length) if len(kept) == 1 else (None, None)
    if prefix and prefix.isdigit():  # the pattern matches exactly these digits at the start
        return _CallingCode(("0", prefix), None, kept, *only)
    return _CallingCode(("0",), re.compile(prefix) if prefix else None, kept, *only)


# Calling codes as the digits after `+` start (`"46"`), to find a number's code without int() a try.
_CODES: dict[str, int] = {str(code): code for code in COUNTRY_CODE_TO_REGION_CODE}
# By a number's first three digits: the length of the calling code they start with and its compiled rules
# (None: no code, or one left to phonenumbers); filled as numbers are met, at most 900 entries.
_RULES: dict[str, tuple[int, _CallingCode | None]] = {}


def _rules(digits: str) -> tuple[int, _CallingCode | None]:
    """The length of the calling code `digits` start with and its rules (None: not decided here)."""
    head = digits[:3]
    found = _RULES.get(head)
    if found is None:
        found = _RULES[head] = _code_of(head)
    return found


def _code_of(head: str) -> tuple[int, _CallingCode | None]:
    for size in (1, 2, 3):  # the digits start with no 0 (_INTERNATIONAL), as no calling code does
        code = _CODES.get(head[:size], 0)
        if code:
            return size, _calling_code(code)
    return 0, None


def e164(value: str, region: str | None = None) -> str | None:
    """`value` in E.164 (`+46701234567`), or None when it is not a valid number; a number without `+CC`
    is read as one of `region` (None: such numbers are invalid).

    Decided here, inline, for the usual international number (see the module); every other one, and
    every one these rules do not decide exactly as phonenumbers would, by phonenumbers' parser."""
    digits = value[1:]
    # `+` and ASCII digits, the first not 0: what _INTERNATIONAL takes, known without it (its call is about
    # 200 ns of the check's 1.5 µs on the bench's numbers); anything else is held to the pattern, and its
    # separators dropped
    if value[:1] != "+" or not (digits.isascii() and digits.isdigit()) or digits[0] == "0":
        if not _INTERNATIONAL.fullmatch(value):
            return _parsed_e164(value, region)
        # (str.translate costs ~2 µs a call; five replaces far less)
        digits = digits.replace(" ", "").replace("-", "").replace("(", "").replace(")", "").replace(".", "")
    if not _MIN_DIGITS <= len(digits) <= _MAX_DIGITS:
        return _parsed_e164(value, region)
    found = _RULES.get(digits[:3])  # `_rules`, inline
    size, rules = found if found is not None else _rules(digits)
    if rules is None:
        return _parsed_e164(value, region)
    national = digits[size:]
    # `_CallingCode.verdict`, inline for the usual code of one region
    if national.startswith(rules.national_starts) or (
        rules.national_prefix is not None and rules.national_prefix.match(national)
    ):
        return _parsed_e164(value, region)
    only = rules.only
    if only is not None:
        pattern = only.get(len(national), rules.only_any)
        valid = pattern is not None and pattern.fullmatch(national) is not None
    else:
        valid = rules.valid(national)
    return "+" + digits if valid else None


def _parse_e164(value: str, region: str | None) -> str | None:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# What phonenumbers' parser answered, by (value, region): a file that repeats a number the fast path
# cannot decide (a shared switchboard written nationally, a family's landline) pays the parser, about
# 20 µs, once per distinct string, and memory stays bounded. The fast path, a few times cheaper than a
# lookup here, remembers nothing.
PARSED_CACHE_SIZE = 4096
_parsed_e164 = lru_cache(maxsize=PARSED_CACHE_SIZE)(_parse_e164)


def e164_by_parser(value: str, region: str | None = None) -> str | None:
    """`e164` without the fast path: phonenumbers alone (the reference the tests compare with)."""
    return _parse_e164(value, region)
