"""Value types: resident ID numbers (GB 11643-1999), academic years, enums parsed from input, case IDs."""

from __future__ import annotations

from datetime import date

import pytest

from domain.errors import InvalidResidentId, ValidationFailed
from domain.values import (
    Level,
    Stage,
    birth_date_of,
    check_digit,
    parse_enum,
    parse_level_or_none,
    validate_academic_year,
    validate_resident_id,
)
from tests.support import id_number


def test_a_valid_number_passes_and_comes_back_normalised() -> None:
    # The standard's own worked example, with a lower-case check character and stray spaces.
    assert validate_resident_id(" 11010519491231002x ") == "11010519491231002X"
    assert validate_resident_id(id_number(5)) == id_number(5)
    assert check_digit("11010519491231002") == "X"


def _with_check(first17: str) -> str:
    return first17 + check_digit(first17)


@pytest.mark.parametrize(("number", "words"), [
    ("45010320100101001", "18 characters"),  # 17 characters
    ("4501032010010100111", "18 characters"),  # 19 characters
    ("45010320100101001A", "18 characters"),  # a letter other than X
    ("45010320100101X011", "18 characters"),  # X before the end
    ("0" + id_number(1)[1:], "18 characters"),  # region codes never start with 0
    (_with_check("99010320100101001"), "province code"),
    (_with_check("45010320100230001"), "real birth date"),  # 30 February
    (_with_check("45010320101301001"), "real birth date"),  # month 13
    (_with_check("45010318991231001"), "impossible birth date"),
    (id_number(1)[:-1] + ("0" if id_number(1)[-1] != "0" else "1"), "check digit"),
])
def test_a_wrong_number_is_refused_saying_what_is_wrong(number: str, words: str) -> None:
    with pytest.raises(InvalidResidentId) as caught:
        validate_resident_id(number, "student.id_number")
    assert words in caught.value.detail
    assert caught.value.field == "student.id_number" and caught.value.code == "invalid_resident_id"


def test_a_birth_date_after_today_is_refused_only_when_today_is_given() -> None:
    future = _with_check("45010320300101001")
    assert validate_resident_id(future) == future
    with pytest.raises(InvalidResidentId, match="impossible birth date"):
        validate_resident_id(future, today=date(2025, 9, 15))
    assert birth_date_of(future) == date(2030, 1, 1)


def test_a_number_that_is_not_text_is_refused() -> None:
    with pytest.raises(InvalidResidentId):
        validate_resident_id(450103201001010011)  # type: ignore[arg-type]


@pytest.mark.parametrize(("year", "ok"), [("2025-2026", True), ("2025-2027", False), ("2025/2026", False),
                                          ("25-26", False), ("", False)])
def test_an_academic_year_is_two_consecutive_years(year: str, ok: bool) -> None:
    if ok:
        assert validate_academic_year(year) == year
    else:
        with pytest.raises(ValidationFailed) as caught:
            validate_academic_year(year)
        assert caught.value.field == "academic_year"


def test_enums_are_parsed_from_input_naming_the_field_and_the_allowed_values() -> None:
    assert parse_enum(Stage, "primary", "student.stage") is Stage.PRIMARY
    assert parse_enum(Stage, Stage.PRIMARY, "student.stage") is Stage.PRIMARY
    with pytest.raises(ValidationFailed) as caught:
        parse_enum(Stage, "kindergarten", "student.stage")
    assert caught.value.field == "student.stage" and "preschool" in caught.value.detail
    assert parse_level_or_none("not_identified", "level") is None
    assert parse_level_or_none("difficult", "level") is Level.DIFFICULT
    with pytest.raises(ValidationFailed):
        parse_level_or_none("very_difficult", "level")


def test_levels_rank_from_most_to_least_difficult() -> None:
    assert [level.rank for level in Level] == [0, 1, 2]
    assert min(Level, key=lambda level: level.rank) is Level.ESPECIALLY_DIFFICULT
