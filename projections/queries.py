"""Queries on the read models, always within the caller's scope: review queues, case search, region statistics.

Every answer comes from the case index (or its counts table); nothing here touches the event log. Pages are
keyset-paginated: the cursor carries the sort key of the last row, so a page costs one index range scan however
deep the reader has paged, and rows that move meanwhile are neither skipped nor repeated.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, and_, func, literal, select, true, tuple_
from sqlalchemy.engine import Row

from adapters.auth import Principal
from adapters.clock import Clock
from adapters.schools import SchoolRegistry
from domain.errors import CaseNotFound, Forbidden, ValidationFailed
from domain.values import Level, Role, Status, case_id_for
from projections.case_index import NO_LEVEL
from projections.runner import Projections, as_utc

PAGE_DEFAULT = 50
PAGE_MAX = 100
STAGES = tuple(s.value for s in Status)
LEVELS = tuple(lv.value for lv in Level)
ACADEMIC_YEAR = re.compile(r"^\d{4}-\d{4}$")
REGION_CODE = re.compile(r"^\d{6}$")
NATIONAL = "100000"  # GB/T 2260's code for the country as a whole
FIRST_YEAR = 2000  # applicants find their cases by derived id: one per academic year since this one


@dataclass(frozen=True)
class CaseRow:
    """One case as the read model knows it (no resident ID number, no household data)."""

    id: str
    academic_year: str
    school_id: str
    class_id: str
    student_name: str
    stage: str
    status: str
    level: str | None
    suggested_level: str | None
    data_matched: bool
    open_objections: int
    status_since: datetime
    version: int
    waited_seconds: int


@dataclass(frozen=True)
class Page:
    items: list[CaseRow]
    next_cursor: str | None


@dataclass(frozen=True)
class CountRow:
    school_id: str
    academic_year: str
    level: str | None
    status: str
    count: int


@dataclass(frozen=True)
class Statistics:
    region_code: str
    academic_year: str | None
    rows: list[CountRow]

    @property
    def total(self) -> int:
        return sum(r.count for r in self.rows)

    def by(self, key: str) -> dict[str, int]:
        totals: dict[str, int] = {}
        for row in self.rows:
            name = getattr(row, key) or "none"
            totals[name] = totals.get(name, 0) + row.count
        return dict(sorted(totals.items()))


def region_prefix(code: str) -> str:
    """450000 is the province (45), 450100 a city (4501), 450103 a county (450103); 100000 the whole country."""
    if code == NATIONAL:
        return ""
    while code.endswith("00") and len(code) > 2:
        code = code[:-2]
    return code


def region_range(prefix: str) -> tuple[str, str]:
    """Region codes under a prefix as a closed range, which a B-tree index answers (a LIKE may not)."""
    return prefix.ljust(6, "0"), prefix.ljust(6, "9")


def encode_cursor(*key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        key = None
    if not isinstance(key, list) or len(key) != size or not all(isinstance(k, str) for k in key):
        raise ValidationFailed("cursor is not one this service handed out", field="cursor")
    return key


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= PAGE_MAX:
        raise ValidationFailed(f"limit must be between 1 and {PAGE_MAX}", field="limit")


def _check_choice(value: str | None, allowed: Sequence[str], field: str) -> None:
    if value is not None and value not in allowed:
        raise ValidationFailed(f"{field} must be one of {', '.join(allowed)}", field=field)


def _check_year(value: str | None) -> None:
    if value is not None and not ACADEMIC_YEAR.match(value):
        raise ValidationFailed("academic_year looks like 2025-2026", field="academic_year")


class ReadModels:
    """The query side: one method per question a user asks of the views."""

    def __init__(self, projections: Projections, schools: SchoolRegistry, clock: Clock) -> None:
        self.projections = projections
        self.schools = schools
        self.clock = clock

    def _cases(self) -> Table:
        return self.projections.active_tables("case_index")["cases"]

    # ------------------------------------------------------------------------------------------ scope

    def _require_school_scope(self, principal: Principal, school_id: str) -> None:
        """A school outside the caller's scope answers as if it did not exist."""
        role = principal.role
        if role in {Role.SCHOOL, Role.EVALUATOR}:
            if principal.school != school_id:
                raise CaseNotFound("no such school")
            return
        if role is Role.APPLICANT:
            raise Forbidden("applicants have no review queue")
        school = self.schools.get(school_id)
        if school is None:
            raise CaseNotFound("no such school")
        if role is Role.BUREAU and not (principal.region_prefix
                                        and school.region_code.startswith(principal.region_prefix)):
            raise CaseNotFound("no such school")

    def _scope_filter(self, principal: Principal, cases: Table) -> ColumnElement[bool]:
        role = principal.role
        if role in {Role.AUDITOR, Role.SYSTEM}:
            return true()
        if role is Role.SCHOOL:
            return cases.c.school_id == principal.school
        if role is Role.EVALUATOR:
            return and_(cases.c.school_id == principal.school, cases.c.class_id == principal.class_id)
        if role is Role.BUREAU and principal.region_prefix:
            low, high = region_range(principal.region_prefix)
            return cases.c.school_region.between(low, high)
        if role is Role.APPLICANT and principal.student:
            # The index keeps no ID numbers: an applicant's cases are found by their derived ids.
            this_year = self.clock.today().year
            ids = [str(case_id_for(principal.student, f"{y}-{y + 1}"))
                   for y in range(FIRST_YEAR, this_year + 2)]
            return cases.c.case_id.in_(ids)
        return literal(False)

    # ------------------------------------------------------------------------------------------ questions

    def queue(self, principal: Principal, school_id: str, *, stage: str, class_id: str | None = None,
              level: str | None = None, academic_year: str | None = None, limit: int = PAGE_DEFAULT,
              cursor: str | None = None) -> Page:
        """Cases waiting at one step of one school, oldest first (by when they reached that step)."""
        query = self.queue_query(principal, school_id, stage=stage, class_id=class_id, level=level,
                                 academic_year=academic_year, limit=limit, cursor=cursor)
        rows = self._fetch(query)
        now = self.clock.now()
        items = [self._row(r, now) for r in rows[:limit]]
        last = items[-1] if len(rows) > limit else None
        return Page(items, encode_cursor(last.status_since.isoformat(), last.id) if last else None)

    def queue_query(self, principal: Principal, school_id: str, *, stage: str, class_id: str | None = None,
                    level: str | None = None, academic_year: str | None = None, limit: int = PAGE_DEFAULT,
                    cursor: str | None = None) -> Select[Any]:
        """The statement `queue` runs (one more row than the page, to know whether another page follows)."""
        _check_choice(stage, STAGES, "stage")
        _check_choice(level, LEVELS, "level")
        _check_year(academic_year)
        _check_limit(limit)
        self._require_school_scope(principal, school_id)
        if principal.role is Role.EVALUATOR:
            if class_id is not None and class_id != principal.class_id:
                raise CaseNotFound("no such class")
            class_id = principal.class_id
        cases = self._cases()
        query = select(cases).where(cases.c.school_id == school_id, cases.c.status == stage)
        if class_id is not None:
            query = query.where(cases.c.class_id == class_id)
        if level is not None:
            query = query.where(cases.c.level == level)
        if academic_year is not None:
            query = query.where(cases.c.academic_year == academic_year)
        if cursor is not None:
            since, after = decode_cursor(cursor, 2)
            try:
                moment = as_utc(datetime.fromisoformat(since))
            except ValueError:
                raise ValidationFailed("cursor is not one this service handed out", field="cursor") from None
            key = tuple_(literal(moment, cases.c.status_since.type), literal(after))
            query = query.where(tuple_(cases.c.status_since, cases.c.case_id) > key)
        return query.order_by(cases.c.status_since, cases.c.case_id).limit(limit + 1)

    def search(self, principal: Principal, *, name: str | None = None, class_id: str | None = None,
               level: str | None = None, status: str | None = None, school_id: str | None = None,
               academic_year: str | None = None, limit: int = PAGE_DEFAULT, cursor: str | None = None) -> Page:
        """Cases in the caller's scope matching every filter given, by student name."""
        query = self.search_query(principal, name=name, class_id=class_id, level=level, status=status,
                                  school_id=school_id, academic_year=academic_year, limit=limit, cursor=cursor)
        rows = self._fetch(query)
        now = self.clock.now()
        items = [self._row(r, now) for r in rows[:limit]]
        last = items[-1] if len(rows) > limit else None
        return Page(items, encode_cursor(last.student_name, last.id) if last else None)

    def search_query(self, principal: Principal, *, name: str | None = None, class_id: str | None = None,
                     level: str | None = None, status: str | None = None, school_id: str | None = None,
                     academic_year: str | None = None, limit: int = PAGE_DEFAULT,
                     cursor: str | None = None) -> Select[Any]:
        _check_choice(status, STAGES, "status")
        _check_choice(level, LEVELS, "level")
        _check_year(academic_year)
        _check_limit(limit)
        if name is not None and not name.strip():
            raise ValidationFailed("name must not be blank", field="name")
        cases = self._cases()
        query = select(cases).where(self._scope_filter(principal, cases))
        if name is not None:
            fragment = name.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(cases.c.student_name.like(f"%{fragment}%", escape="\\"))
        for column, value in (("class_id", class_id), ("level", level), ("status", status),
                              ("school_id", school_id), ("academic_year", academic_year)):
            if value is not None:
                query = query.where(cases.c[column] == value)
        if cursor is not None:
            after_name, after_id = decode_cursor(cursor, 2)
            query = query.where(tuple_(cases.c.student_name, cases.c.case_id) > tuple_(literal(after_name),
                                                                                    literal(after_id)))
        return query.order_by(cases.c.student_name, cases.c.case_id).limit(limit + 1)

    def statistics(self, principal: Principal, region_code: str, *,
                   academic_year: str | None = None) -> Statistics:
        """Case counts per school, academic year, level and status under a region code."""
        rows = self._fetch(self.statistics_query(principal, region_code, academic_year=academic_year))
        return Statistics(region_code, academic_year, [
            CountRow(r.school_id, r.academic_year, None if r.level == NO_LEVEL else r.level, r.status, int(r.n))
            for r in rows])

    def statistics_query(self, principal: Principal, region_code: str, *, academic_year: str | None = None,
                         from_cases: bool = False) -> Select[Any]:
        """The counts under a region from the view's counts table, or (`from_cases`, for checking and for the
        benchmark that decided to keep counts) by counting the case rows themselves."""
        if not REGION_CODE.match(region_code):
            raise ValidationFailed("region_code is a 6-digit administrative division code", field="region_code")
        _check_year(academic_year)
        prefix = region_prefix(region_code)
        if principal.role is Role.BUREAU:
            if not (principal.region_prefix and prefix.startswith(principal.region_prefix)):
                raise CaseNotFound("no such region")
        elif principal.role is not Role.AUDITOR:
            raise Forbidden(f"the {principal.role.value} role cannot read region statistics")
        low, high = region_range(prefix)
        if from_cases:
            cases = self._cases()
            query = (select(cases.c.school_id, cases.c.academic_year, cases.c.level, cases.c.status,
                            func.count().label("n"))
                     .where(cases.c.school_region.between(low, high))
                     .group_by(cases.c.school_id, cases.c.academic_year, cases.c.level, cases.c.status))
            if academic_year is not None:
                query = query.where(cases.c.academic_year == academic_year)
            return query.order_by(cases.c.school_id, cases.c.academic_year, cases.c.level, cases.c.status)
        counts = self.projections.active_tables("case_index")["counts"]
        query = (select(counts.c.school_id, counts.c.academic_year, counts.c.level, counts.c.status, counts.c.n)
                 .where(counts.c.school_region.between(low, high), counts.c.n > 0))
        if academic_year is not None:
            query = query.where(counts.c.academic_year == academic_year)
        return query.order_by(counts.c.school_id, counts.c.academic_year, counts.c.level, counts.c.status)

    # ------------------------------------------------------------------------------------------ plumbing

    def _fetch(self, query: Any) -> list[Row[Any]]:
        with self.projections.engine.connect() as conn:
            return list(conn.execute(query).all())

    def _row(self, row: Row[Any], now: datetime) -> CaseRow:
        since = as_utc(row.status_since)
        waited = max(int((now - since).total_seconds()), 0)
        return CaseRow(id=row.case_id, academic_year=row.academic_year, school_id=row.school_id,
                       class_id=row.class_id, student_name=row.student_name, stage=row.stage, status=row.status,
                       level=row.level, suggested_level=row.suggested_level, data_matched=bool(row.data_matched),
                       open_objections=int(row.open_objections), status_since=since, version=int(row.version),
                       waited_seconds=waited)
