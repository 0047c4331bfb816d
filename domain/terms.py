"""School-year dates that policies hang deadlines on: semesters and the spring readjustment window.

The month-day anchors (when each semester ends, when the spring term starts, how long the window stays open) come
from the policy profile; this module only does the calendar arithmetic. An academic year `2025-2026` has semester
`2025-2026-1` (autumn) and `2025-2026-2` (spring); both end in the year's second calendar year.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from datetime import date, timedelta

from domain.errors import RuleViolated, ValidationFailed

SEMESTERS = ("1", "2")
_SEMESTER_SHAPE = re.compile(r"^(\d{4})-(\d{4})-([12])$")


def month_day(value: str, year: int, field: str) -> date:
    """`MM-DD` of a profile in a given year."""
    try:
        month, day = (int(p) for p in value.split("-"))
        return date(year, month, day)
    except ValueError:
        raise RuleViolated(f"the profile's {field} {value!r} is not a MM-DD date", field=field) from None


def parse_semester(value: str, field: str = "semester") -> tuple[str, str]:
    """`2025-2026-1` → ("2025-2026", "1")."""
    match = _SEMESTER_SHAPE.match(value or "")
    if match is None or int(match.group(2)) != int(match.group(1)) + 1:
        raise ValidationFailed("a semester looks like 2025-2026-1 (autumn) or 2025-2026-2 (spring)", field=field)
    return f"{match.group(1)}-{match.group(2)}", match.group(3)


def semester_end(semester: str, ends: Mapping[str, str]) -> date:
    """The last day of a semester: the profile's `semester_ends` anchor in the academic year's second year."""
    year, number = parse_semester(semester)
    anchor = ends.get(number)
    if anchor is None:
        raise RuleViolated("the region's policy profile defines no end for this semester",
                           field="follow_up.semester_ends")
    return month_day(anchor, int(year[5:]), f"follow_up.semester_ends.{number}")


def current_semester(today: date, ends: Mapping[str, str]) -> str:
    """The semester whose end is the first on or after `today` (in the summer holiday: the coming autumn)."""
    for first_year in (today.year - 1, today.year):
        for number in SEMESTERS:
            semester = f"{first_year}-{first_year + 1}-{number}"
            if semester_end(semester, ends) >= today:
                return semester
    raise RuleViolated("the profile's semester ends do not cover today", field="follow_up.semester_ends")


def add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def readjustment_window(academic_year: str, spring_term_start: str, window_months: int) -> tuple[date, date]:
    """From the spring term's first day to the day before the same date `window_months` later, inclusive."""
    second_year = int(academic_year[5:])
    opens = month_day(spring_term_start, second_year, "readjustment.spring_term_start")
    return opens, add_months(opens, window_months) - timedelta(days=1)
