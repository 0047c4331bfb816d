"""Working-day arithmetic of the public-notice window on the official calendar, and schedule files (no I/O)."""

from __future__ import annotations

import json
from datetime import date

import pytest

from adapters.calendar import (
    CalendarUnknown,
    ScheduleFileError,
    YearSchedule,
    notice_window,
    package_schedule,
    package_years,
    parse_schedule,
)


def known(year: int) -> YearSchedule:
    schedule = package_schedule(year)
    if schedule is None:
        raise CalendarUnknown(f"{year} unknown", year=year)
    return schedule


def window(starts_on: str, days: int = 5) -> tuple[str, str]:
    first, last = notice_window(date.fromisoformat(starts_on), days, known)
    return first.isoformat(), last.isoformat()


def test_package_covers_2025_and_2026_but_not_2027() -> None:
    years = package_years()
    assert 2025 in years and 2026 in years
    assert 2027 not in years and package_schedule(2027) is None


def test_national_day_2025_holidays_do_not_count_and_the_adjusted_sunday_does() -> None:
    # Fri 26 Sep, Sun 28 Sep (调休上班), Mon 29, Tue 30, then 1–8 Oct off, Thu 9 Oct.
    assert window("2025-09-26") == ("2025-09-26", "2025-10-09")


def test_a_window_asked_to_start_on_a_saturday_opens_on_the_adjusted_sunday() -> None:
    assert window("2025-09-27") == ("2025-09-28", "2025-10-10")


def test_a_window_asked_to_start_in_the_holiday_opens_on_the_first_working_day_after_it() -> None:
    # Thu 9, Fri 10, Sat 11 Oct (调休上班), Mon 13, Tue 14.
    assert window("2025-10-01") == ("2025-10-09", "2025-10-14")


def test_spring_festival_2026_holidays_do_not_count_and_the_adjusted_saturdays_do() -> None:
    schedule = known(2026)
    assert date(2026, 2, 14) in schedule.workdays and date(2026, 2, 28) in schedule.workdays
    assert all(date(2026, 2, d) in schedule.holidays for d in range(15, 24))
    # Thu 12, Fri 13, Sat 14 (调休上班), then 15–23 off, Tue 24, Wed 25.
    assert window("2026-02-12") == ("2026-02-12", "2026-02-25")
    # Opening inside the holiday: Tue 24 … Fri 27 and Sat 28 (调休上班).
    assert window("2026-02-16") == ("2026-02-24", "2026-02-28")


def test_a_window_crosses_new_year_2026_with_its_adjusted_sunday() -> None:
    # Mon 29, Tue 30, Wed 31 Dec; 1–3 Jan off; Sun 4 Jan (调休上班); Mon 5 Jan.
    assert window("2025-12-29") == ("2025-12-29", "2026-01-05")


def test_an_ordinary_week_is_monday_to_friday() -> None:
    assert window("2025-09-15") == ("2025-09-15", "2025-09-19")
    assert window("2025-09-13", 1) == ("2025-09-15", "2025-09-15")


def test_a_window_reaching_into_an_unknown_year_is_refused_not_guessed() -> None:
    with pytest.raises(CalendarUnknown) as refused:
        window("2026-12-28")
    assert refused.value.code == "calendar_unknown" and refused.value.context["year"] == 2027


def test_a_window_that_ends_before_the_unknown_year_needs_nothing_of_it() -> None:
    assert window("2026-12-24") == ("2026-12-24", "2026-12-30")


def test_a_loaded_schedule_drives_the_window_in_its_year() -> None:
    loaded = parse_schedule(json.dumps({
        "year": 2027, "source": "test", "holidays": ["2027-01-01", {"date": "2027-01-04", "name": "元旦"}],
        "workdays": ["2027-01-09"]}).encode(), "2027.json")

    def schedule_of(year: int) -> YearSchedule:
        return loaded if year == 2027 else known(year)

    # Thu 31 Dec 2026; Fri 1 Jan and Mon 4 Jan off; Tue 5, Wed 6, Thu 7, Fri 8; then Sat 9 (调休上班).
    first, last = notice_window(date(2026, 12, 31), 5, schedule_of)
    assert (first, last) == (date(2026, 12, 31), date(2027, 1, 8))
    assert notice_window(date(2027, 1, 8), 2, schedule_of) == (date(2027, 1, 8), date(2027, 1, 9))


def test_csv_schedule_in_gbk_with_chinese_kinds() -> None:
    text = "date,kind,name\n2027-10-01,休,国庆节\n2027-10-02,holiday,国庆节\n2027-09-26,班,\n"
    schedule = parse_schedule(text.encode("gbk"), "2027.csv")
    assert schedule.year == 2027
    assert schedule.holidays == {date(2027, 10, 1), date(2027, 10, 2)}
    assert schedule.workdays == {date(2027, 9, 26)}
    assert dict(schedule.names)[date(2027, 10, 1)] == "国庆节"


@pytest.mark.parametrize(("name", "content", "message"), [
    ("a.json", '{"year": 2027, "holidays": ["2028-01-01"]}', "not in 2027"),
    ("a.json", '{"year": 2027, "holidays": ["2027-01-01"], "workdays": ["2027-01-05"]}', "weekday"),
    ("a.json", '{"year": 2027, "holidays": ["2027-01-01", "2027-01-01"]}', "twice"),
    ("a.json", '{"year": 2027, "holidays": []}', "no holidays"),
    ("a.json", '{"year": "2027"}', "year"),
    ("a.json", "[1, 2]", "object"),
    ("a.json", '{"year": 2027, "holidays": ["1 Jan"]}', "holidays[0]"),
    ("a.csv", "date,kind\n2027-01-01,off\n", "line 2"),
    ("a.csv", "day,kind\n2027-01-01,holiday\n", "header"),
    ("a.csv", "date,kind\n2027-01-01,holiday\n2028-01-01,holiday\n", "one year"),
    ("a.txt", "", ".json or .csv"),
])
def test_a_malformed_schedule_file_is_refused_naming_the_problem(name: str, content: str, message: str) -> None:
    with pytest.raises(ScheduleFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_schedule(content.encode(), name)
