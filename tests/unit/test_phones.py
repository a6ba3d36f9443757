"""The fast E.164 path answers exactly what phonenumbers' parser answers, for every region's numbers."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fanout import phones
from fanout.phones import e164, e164_by_parser

pytestmark = pytest.mark.unit

_TYPES = [t for t in vars(phonenumbers.PhoneNumberType).values() if isinstance(t, int)]
_FORMATS = (phonenumbers.PhoneNumberFormat.E164, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def _examples() -> list[str]:
    """Example numbers of every type of every region, written as E.164 and as people write them."""
    written: list[str] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in _TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                written.extend(phonenumbers.format_number(number, f) for f in _FORMATS)
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            written.append(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return written


def _mutations(number: str, rng: random.Random) -> list[str]:
    """Near misses of a valid number: a digit changed, one dropped, one added, a national 0 inserted,
    separators moved."""
    digits = [i for i, c in enumerate(number) if c.isdigit()]
    out = []
    for _ in range(4):
        i = rng.choice(digits[1:]) if len(digits) > 1 else digits[0]
        out.append(number[:i] + str(rng.randrange(10)) + number[i + 1 :])
    i = rng.choice(digits)
    out.append(number[:i] + number[i + 1 :])
    out.append(number + str(rng.randrange(10)))
    compact = "+" + "".join(c for c in number if c.isdigit())
    out.append(compact[:3] + "0" + compact[3:])
    out.append(compact[:2] + " (0) " + compact[2:])
    out.append(" ".join(compact[k : k + 3] for k in range(0, len(compact), 3)))
    out.append(compact[:4] + "-" + compact[4:8] + "." + compact[8:])
    return out


EXAMPLES = _examples()


def test_every_regions_example_numbers_read_as_phonenumbers_reads_them() -> None:
    assert len(EXAMPLES) > 1500  # every region, every type: the comparison covers the world
    different = {n: (e164(n), e164_by_parser(n)) for n in EXAMPLES if e164(n) != e164_by_parser(n)}
    assert different == {}
    assert sum(e164(n) is not None for n in EXAMPLES) > 1000  # and most of them are valid numbers


def test_near_misses_of_every_region_are_judged_as_phonenumbers_judges_them() -> None:
    rng = random.Random(7)
    samples = [m for n in EXAMPLES for m in _mutations(n, rng)]
    different = {n: (e164(n), e164_by_parser(n)) for n in samples if e164(n) != e164_by_parser(n)}
    assert different == {}
    answers = [e164(n) for n in samples]
    assert any(a is None for a in answers)
    assert any(a is not None for a in answers)


@settings(max_examples=3000, deadline=None)
# and digits that are not ASCII (Arabic-Indic, fullwidth, superscript): str.isdigit takes them
@given(st.text(alphabet="+0123456789 ().-x\u0664\uff14\u00b2", min_size=1, max_size=24))
def test_any_typed_number_gets_the_parsers_answer(text: str) -> None:
    assert e164(text) == e164_by_parser(text)


@settings(max_examples=2000, deadline=None)
@given(
    st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)),
    st.text(alphabet="0123456789", min_size=4, max_size=14),
)
def test_any_digits_after_any_calling_code_get_the_parsers_answer(code: int, digits: str) -> None:
    text = f"+{code} {digits}"
    assert e164(text) == e164_by_parser(text)


@pytest.mark.parametrize(
    ("written", "region", "expected"),
    [
        ("+46 70-123 45 67", None, "+46701234567"),
        ("+1 (415) 555-2671", None, "+14155552671"),
        ("+44 7911 123456", None, "+447911123456"),
        ("+44 (0) 7911 123456", None, "+447911123456"),  # the national 0: left to the parser, same answer
        ("070-123 45 67", "SE", "+46701234567"),  # no +CC: the region decides
        ("070-123 45 67", None, None),
        ("+46 70", None, None),
        ("+999 1234567", None, None),  # no such calling code
    ],
)
def test_numbers_as_people_write_them(written: str, region: str | None, expected: str | None) -> None:
    assert e164(written, region) == expected


def test_digits_of_other_scripts_leave_the_rules_cache_bounded() -> None:
    # `+` and digits str.isdigit takes but are not ASCII (Arabic-Indic, fullwidth, ...): the parser's
    # answer, and the rules kept by a number's first three digits stay at most the 900 ASCII heads,
    # whatever a file holds
    others = [c for c in map(chr, range(0x660, 0x1_0000)) if c.isdigit() and not c.isascii()]
    rng = random.Random(3)
    numbers = ["+" + "".join(rng.choice(others) for _ in range(11)) for _ in range(3_000)]
    assert all(e164(n) == e164_by_parser(n) for n in numbers[:200])
    for number in numbers:
        e164(number)
    assert len(phones._RULES) <= 900
