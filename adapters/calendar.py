"""The official Chinese working-day calendar and the public-notice window counted on it.

A day is a working day when it is Monday to Friday and not a statutory holiday, or when it is a weekend day the
State Council has made a working day (调休上班). The `chinesecalendar` package carries the published schedules for
the years it knows; for any other year an administrator loads the official schedule from a file
(`zizhu calendar load FILE`) into the `calendar_days` table. A loaded year takes precedence over the package, so a
late official correction can be applied without waiting for a package release. A year that neither knows is never
guessed: computing a window that reaches into it raises `CalendarUnknown`.

Window rule (the README's "Public notice" section): the window opens on `starts_on` if that is a working day, else
on the next working day; it lasts N working days counting the first; `ends_on` is its last working day.

File formats for `zizhu calendar load`:
- JSON: `{"year": 2027, "source": "国办发明电〔2026〕…", "holidays": ["2027-01-01", …],
  "workdays": ["2027-02-06", …]}`; list items may also be `{"date": "2027-01-01", "name": "元旦"}`.
- CSV (UTF-8 or GBK): header `date,kind[,name]`, `kind` is `holiday` (or 休) or `workday` (or 班).
Only days that differ from the Monday-to-Friday pattern are listed: holidays (weekday or weekend days inside the
holiday period) and adjusted weekend working days.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Date, DateTime, Integer, String, Table, delete, insert, select
from sqlalchemy.engine import Engine

from adapters.db import metadata
from adapters.schools import decode_text
from domain.errors import RuleViolated

calendar_years = Table(
    "calendar_years",
    metadata,
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("source", String(300), nullable=False),
    Column("holidays", Integer, nullable=False),
    Column("workdays", Integer, nullable=False),
    Column("loaded_at", DateTime(timezone=True), nullable=False),
)
calendar_days = Table(
    "calendar_days",
    metadata,
    Column("day", Date, primary_key=True),
    Column("year", Integer, nullable=False, index=True),
    Column("kind", String(8), nullable=False),  # holiday | workday
    Column("name", String(100), nullable=False, default=""),
)

# A notice is a matter of days or weeks; a walk longer than this means a broken schedule, not a long notice.
MAX_WALK_DAYS = 400
KIND_ALIASES = {"holiday": "holiday", "休": "holiday", "workday": "workday", "班": "workday"}


class CalendarUnknown(RuleViolated):
    """The working days of a year are not known: neither the package nor a loaded schedule covers it."""

    code = "calendar_unknown"


class ScheduleFileError(ValueError):
    """A schedule file is malformed; the message names the line or field so an administrator can fix it."""


@dataclass(frozen=True)
class YearSchedule:
    """One year's official exceptions to the Monday-to-Friday week."""

    year: int
    holidays: frozenset[date]
    workdays: frozenset[date]
    source: str
    names: tuple[tuple[date, str], ...] = ()

    def is_working_day(self, day: date) -> bool:
        if day.year != self.year:
            raise ValueError(f"{day} is not in {self.year}")
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5


def package_schedule(year: int) -> YearSchedule | None:
    """The `chinesecalendar` package's data for `year`, or None when the package does not cover it."""
    from chinese_calendar import constants

    covered = {d.year for d in constants.holidays}
    if year not in covered:
        return None
    holidays = frozenset(d for d in constants.holidays if d.year == year)
    workdays = frozenset(d for d in constants.workdays if d.year == year and d.weekday() >= 5)
    names = tuple(sorted((d, str(n)) for d, n in constants.holidays.items() if d.year == year))
    return YearSchedule(year, holidays, workdays, "chinesecalendar", names)


def package_years() -> list[int]:
    from chinese_calendar import constants

    return sorted({d.year for d in constants.holidays})


def notice_window(starts_on: date, working_days: int,
                  schedule_of: Callable[[int], YearSchedule]) -> tuple[date, date]:
    """(first, last) working day of a window of `working_days` working days that opens on or after `starts_on`.

    `schedule_of(year)` answers a year's schedule or raises CalendarUnknown; it is asked only for the years the
    walk actually reaches, so a window inside a known year never depends on the next one being known."""
    if working_days < 1:
        raise ValueError("a notice window lasts at least one working day")
    schedules: dict[int, YearSchedule] = {}

    def working(day: date) -> bool:
        if day.year not in schedules:
            schedules[day.year] = schedule_of(day.year)
        return schedules[day.year].is_working_day(day)

    day = starts_on
    first: date | None = None
    counted = 0
    for _ in range(MAX_WALK_DAYS):
        if working(day):
            if first is None:
                first = day
            counted += 1
            if counted == working_days:
                return first, day
        day += timedelta(days=1)
    raise ValueError(f"no window of {working_days} working days within {MAX_WALK_DAYS} days of {starts_on}")


# ---------------------------------------------------------------------------------------------- schedule files


def parse_schedule(raw: bytes, filename: str) -> YearSchedule:
    """Reads a JSON or CSV schedule file (chosen by the file name's suffix) and checks it."""
    suffix = Path(filename).suffix.lower()
    try:
        text = decode_text(raw)
    except ValueError as exc:
        raise ScheduleFileError(str(exc)) from None
    if suffix == ".json":
        return _parse_json(text)
    if suffix == ".csv":
        return _parse_csv(text)
    raise ScheduleFileError("the file must be .json or .csv")


def _day(value: Any, where: str) -> date:
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ScheduleFileError(f"{where}: {value!r} is not a date like 2027-01-01") from None


def _parse_json(text: str) -> YearSchedule:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScheduleFileError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ScheduleFileError("the JSON must be an object with year, holidays and workdays")
    year = data.get("year")
    if not isinstance(year, int):
        raise ScheduleFileError("year: must be a number like 2027")
    entries: list[tuple[date, str, str]] = []
    for kind, key in (("holiday", "holidays"), ("workday", "workdays")):
        items = data.get(key, [])
        if not isinstance(items, list):
            raise ScheduleFileError(f"{key}: must be a list of dates")
        for i, item in enumerate(items):
            where = f"{key}[{i}]"
            if isinstance(item, dict):
                entries.append((_day(item.get("date"), where), kind, str(item.get("name") or "")))
            else:
                entries.append((_day(item, where), kind, ""))
    return _check(entries, year, str(data.get("source") or "loaded file"))


def _parse_csv(text: str) -> YearSchedule:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if "date" not in header or "kind" not in header:
        raise ScheduleFileError("the CSV header must be date,kind[,name]")
    entries: list[tuple[date, str, str]] = []
    for line, row in enumerate(reader, start=2):
        clean = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        kind = KIND_ALIASES.get(clean.get("kind", "").lower())
        if kind is None:
            raise ScheduleFileError(f"line {line}: kind must be holiday or workday, not {clean.get('kind')!r}")
        entries.append((_day(clean.get("date"), f"line {line}"), kind, clean.get("name", "")))
    years = {d.year for d, _, _ in entries}
    if len(years) != 1:
        raise ScheduleFileError(f"a file holds one year's schedule; found {sorted(years) or 'no dates'}")
    return _check(entries, years.pop(), "loaded file")


def _check(entries: Iterable[tuple[date, str, str]], year: int, source: str) -> YearSchedule:
    holidays: set[date] = set()
    workdays: set[date] = set()
    names: dict[date, str] = {}
    for day, kind, name in entries:
        if day.year != year:
            raise ScheduleFileError(f"{day} is not in {year}")
        if day in holidays or day in workdays:
            raise ScheduleFileError(f"{day} is listed twice")
        if kind == "workday":
            if day.weekday() < 5:
                raise ScheduleFileError(f"{day} is a weekday: only weekend days become adjusted workdays")
            workdays.add(day)
        else:
            holidays.add(day)
        if name:
            names[day] = name
    if not holidays:
        raise ScheduleFileError(f"no holidays listed for {year}: every official schedule has some")
    return YearSchedule(year, frozenset(holidays), frozenset(workdays), source[:300], tuple(sorted(names.items())))


# ---------------------------------------------------------------------------------------------- the calendar


class WorkingCalendar:
    """Working days from loaded schedules (first) and the package; refuses years neither covers."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def loaded_schedule(self, year: int) -> YearSchedule | None:
        with self._engine.connect() as conn:
            head = conn.execute(select(calendar_years).where(calendar_years.c.year == year)).first()
            if head is None:
                return None
            rows = conn.execute(select(calendar_days).where(calendar_days.c.year == year)).all()
        return YearSchedule(
            year,
            frozenset(r.day for r in rows if r.kind == "holiday"),
            frozenset(r.day for r in rows if r.kind == "workday"),
            head.source,
            tuple(sorted((r.day, r.name) for r in rows if r.name)),
        )

    def schedule(self, year: int) -> YearSchedule:
        found = self.loaded_schedule(year) or package_schedule(year)
        if found is None:
            raise CalendarUnknown(
                f"the official working-day calendar for {year} is not known; an administrator loads that "
                f"year's schedule with `zizhu calendar load FILE` before a notice window may reach into it",
                year=year)
        return found

    def is_working_day(self, day: date) -> bool:
        return self.schedule(day.year).is_working_day(day)

    def window(self, starts_on: date, working_days: int) -> tuple[date, date]:
        return notice_window(starts_on, working_days, self.schedule)

    def load(self, schedule: YearSchedule) -> None:
        """Stores (or replaces) one year's schedule atomically."""
        names = dict(schedule.names)
        rows = [{"day": d, "year": schedule.year, "kind": "holiday", "name": names.get(d, "")}
                for d in sorted(schedule.holidays)]
        rows += [{"day": d, "year": schedule.year, "kind": "workday", "name": names.get(d, "")}
                 for d in sorted(schedule.workdays)]
        with self._engine.begin() as conn:
            conn.execute(delete(calendar_days).where(calendar_days.c.year == schedule.year))
            conn.execute(delete(calendar_years).where(calendar_years.c.year == schedule.year))
            conn.execute(insert(calendar_years).values(
                year=schedule.year, source=schedule.source, holidays=len(schedule.holidays),
                workdays=len(schedule.workdays), loaded_at=datetime.now(UTC)))
            conn.execute(insert(calendar_days), rows)

    def load_file(self, path: Path) -> YearSchedule:
        schedule = parse_schedule(path.read_bytes(), path.name)
        self.load(schedule)
        return schedule

    def loaded_years(self) -> list[int]:
        with self._engine.connect() as conn:
            return sorted(int(y) for y in conn.execute(select(calendar_years.c.year)).scalars())
