"""Value types of the domain: statuses, levels, categories, actors, resident ID numbers and case IDs."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date
from enum import Enum
from typing import TypeVar

from domain.errors import InvalidResidentId, ValidationFailed


class Status(Enum):
    APPLIED = "applied"
    VERIFIED = "verified"
    ASSESSED = "assessed"
    EVALUATED = "evaluated"
    RATED = "rated"
    IN_PUBLICITY = "in_publicity"
    CONFIRMED = "confirmed"
    ARCHIVED = "archived"
    WITHDRAWN = "withdrawn"
    REVOKED = "revoked"
    NOT_IDENTIFIED = "not_identified"


class Level(Enum):
    """The three identification levels, most difficult first (特别困难, 比较困难, 一般困难)."""

    ESPECIALLY_DIFFICULT = "especially_difficult"
    DIFFICULT = "difficult"
    GENERALLY_DIFFICULT = "generally_difficult"

    @property
    def rank(self) -> int:
        """0 is the most difficult; a lower rank means more need."""
        return LEVEL_RANK[self]


# Level.rank by lookup: scoring compares ranks several times per assessment, and listing the enum each time cost
# more than the rest of a comparison.
LEVEL_RANK: dict[Level, int] = {level: i for i, level in enumerate(Level)}

NOT_IDENTIFIED = "not_identified"


class Category(Enum):
    """Special-group categories (特殊群体, Guangxi Art. 7(2))."""

    POVERTY_ALLEVIATED = "poverty_alleviated"
    MONITORED_HOUSEHOLD = "monitored_household"
    MINIMUM_LIVING_ALLOWANCE = "minimum_living_allowance"
    EXTREME_POVERTY_SUPPORT = "extreme_poverty_support"
    ORPHAN = "orphan"
    DISABLED = "disabled"
    MARTYR_FAMILY = "martyr_family"
    NEEDY_WORKER_FAMILY = "needy_worker_family"
    NEAR_MINIMUM_LIVING = "near_minimum_living"
    EXPENDITURE_HARDSHIP = "expenditure_hardship"


class Stage(Enum):
    PRESCHOOL = "preschool"
    PRIMARY = "primary"
    JUNIOR_SECONDARY = "junior_secondary"
    SENIOR_SECONDARY = "senior_secondary"
    SECONDARY_VOCATIONAL = "secondary_vocational"
    HIGHER_VOCATIONAL = "higher_vocational"
    UNDERGRADUATE = "undergraduate"
    POSTGRADUATE = "postgraduate"


class Role(Enum):
    APPLICANT = "applicant"
    EVALUATOR = "evaluator"
    SCHOOL = "school"
    BUREAU = "bureau"
    AUDITOR = "auditor"
    SYSTEM = "system"


class VerificationMethod(Enum):
    DATA_MATCH = "data_match"
    DOCUMENT = "document"
    MANUAL = "manual"


@dataclass(frozen=True)
class Actor:
    """Who did something: the token subject and the role they acted in."""

    sub: str
    role: Role

    def as_dict(self) -> dict[str, str]:
        return {"sub": self.sub, "role": self.role.value}


E = TypeVar("E", bound=Enum)


def parse_enum(enum_cls: type[E], value: object, field: str) -> E:
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum_cls)
        raise ValidationFailed(f"unknown value {value!r}; allowed: {allowed}", field=field) from None


def parse_level_or_none(value: object, field: str) -> Level | None:
    """A rating's level, or None for 'not_identified'."""
    if value == NOT_IDENTIFIED:
        return None
    return parse_enum(Level, value, field)


# GB 11643-1999: weights and check characters of the 18-character citizen identity number.
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_ID_SHAPE = re.compile(r"^[1-9]\d{5}(\d{4})(\d{2})(\d{2})\d{3}[\dX]$")
_PROVINCE_CODES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54,
     61, 62, 63, 64, 65, 71, 81, 82}
)


def check_digit(first17: str) -> str:
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def validate_resident_id(value: str, field: str = "id_number", *, today: date | None = None) -> str:
    """Returns the normalised ID number (upper-case X) or raises InvalidResidentId naming what is wrong."""
    if not isinstance(value, str):
        raise InvalidResidentId("resident ID number must be a string", field=field)
    number = value.strip().upper()
    match = _ID_SHAPE.match(number)
    if len(number) != 18 or match is None:
        raise InvalidResidentId("resident ID number must be 18 characters: 17 digits and a check digit or X",
                                field=field)
    if int(number[:2]) not in _PROVINCE_CODES:
        raise InvalidResidentId("resident ID number has no valid province code", field=field)
    year, month, day = (int(g) for g in match.groups())
    try:
        born = date(year, month, day)
    except ValueError:
        raise InvalidResidentId("resident ID number has no real birth date", field=field) from None
    if born.year < 1900 or (today is not None and born > today):
        raise InvalidResidentId("resident ID number has an impossible birth date", field=field)
    if check_digit(number[:17]) != number[17]:
        raise InvalidResidentId("resident ID number check digit is wrong", field=field)
    return number


def birth_date_of(id_number: str) -> date:
    return date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))


CASE_NAMESPACE = uuid.UUID("3f1b1d7e-8a6c-5b8e-9a51-7a0f6c2d4e11")
_YEAR_SHAPE = re.compile(r"^(\d{4})-(\d{4})$")


def validate_academic_year(value: str, field: str = "academic_year") -> str:
    match = _YEAR_SHAPE.match(value or "")
    if match is None or int(match.group(2)) != int(match.group(1)) + 1:
        raise ValidationFailed("academic year must look like 2025-2026 (consecutive years)", field=field)
    return value


def case_id_for(id_number: str, academic_year: str) -> uuid.UUID:
    """One case per student per academic year: the ID is derived, so a second application is recognised."""
    return uuid.uuid5(CASE_NAMESPACE, f"{id_number.upper()}|{academic_year}")
