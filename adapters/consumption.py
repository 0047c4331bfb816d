"""Campus-card spending and the two warning lists drawn from it (Jiangsu pilot: campus data shows need and misuse).

A school imports its campus-card spending (CSV in UTF-8/GBK or .xlsx), one row per student, month and category:

- id_number (required): id_number, 身份证号, 身份证号码, 公民身份号码, 证件号码
- month (required; 2025-09, 2025/09, 202509, 2025年9月): month, 月份, 消费月份
- amount (required; CNY, not negative, at most two decimals): amount, 金额, 消费金额
- category (required; canteen/食堂, shop/超市, or any label): category, 类别, 消费类别
- name (optional): name, 姓名

Rows are stored per school, academic year (September to August), student, month and category; a later file with
the same student, month and category corrects the amount. The student is kept as the case key of that academic
year (so spending joins the case index without an ID number), an HMAC of the ID number (for registry outreach), a
masked number and the name if the file carried one (so staff know whom a warning is about).

Warnings compare each student's average monthly spending with the median of the peer group (same school, same
stage) and the profile's `consumption` thresholds: non-applicants below `low_spending_ratio` × median (possible
unidentified need) and aided students above `high_spending_ratio` × median (possible misuse). Groups smaller than
`min_peer_group_size` give no warnings. A warning is advice to staff, never a decision: nothing here touches a case.
"""

from __future__ import annotations

import hashlib
import re
import statistics
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Column, Date, Index, Numeric, String, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from adapters.auth import Principal
from adapters.clock import Clock
from adapters.db import metadata
from adapters.logs import get_logger
from adapters.policies import Profiles
from adapters.registries import (
    Importer,
    ImportRecord,
    Rejection,
    Sheet,
    SubjectKeys,
    cell_text,
    count_stored,
    find_import,
    mask_id,
    read_sheet,
    record_import,
    require_school_scope,
)
from adapters.schools import SchoolRegistry
from domain.errors import InvalidResidentId, RuleViolated, ValidationFailed
from domain.values import Role, case_id_for, validate_academic_year, validate_resident_id
from projections.runner import Projections

log = get_logger("zizhu.consumption")
CONSUMPTION_HEADERS: Mapping[str, tuple[str, ...]] = {
    "id_number": ("id_number", "身份证号", "身份证号码", "公民身份号码", "证件号码"),
    "month": ("month", "月份", "消费月份"),
    "amount": ("amount", "金额", "消费金额"),
    "category": ("category", "类别", "消费类别"),
    "name": ("name", "姓名"),
}
CONSUMPTION_REQUIRED = ("id_number", "month", "amount", "category")
CATEGORY_ALIASES: Mapping[str, str] = {
    "食堂": "canteen", "餐饮": "canteen", "餐费": "canteen", "伙食": "canteen",
    "超市": "shop", "商店": "shop", "购物": "shop", "其他": "other", "其它": "other",
}
# The Chinese school year runs from the autumn term (September) to the summer holiday (August).
SCHOOL_YEAR_FIRST_MONTH = 9
# Statuses in which a case carries a level that aid follows (DOMAIN.md: rated, noticed, confirmed, archived).
AIDED_STATUSES = frozenset({"rated", "in_publicity", "confirmed", "archived"})

consumption_records = Table(
    "consumption_records",
    metadata,
    Column("school_id", String(32), primary_key=True),
    Column("student_key", String(36), primary_key=True),  # the case id this student would have this year
    Column("month", String(7), primary_key=True),
    Column("category", String(32), primary_key=True),
    Column("academic_year", String(9), nullable=False),
    Column("id_key", String(32), nullable=False),
    Column("id_masked", String(18), nullable=False),
    Column("name", String(100)),
    Column("amount", Numeric(12, 2), nullable=False),
    Column("import_id", String(36), nullable=False),
    Column("month_start", Date, nullable=False),
    Index("ix_consumption_school_year", "school_id", "academic_year"),
)


def academic_year_of(day: date) -> str:
    first = day.year if day.month >= SCHOOL_YEAR_FIRST_MONTH else day.year - 1
    return f"{first}-{first + 1}"


def year_start(academic_year: str) -> date:
    return date(int(academic_year[:4]), SCHOOL_YEAR_FIRST_MONTH, 1)


_MONTH_SHAPES = (re.compile(r"^(\d{4})-(\d{1,2})(?:-\d{1,2})?$"), re.compile(r"^(\d{4})/(\d{1,2})(?:/\d{1,2})?$"),
                 re.compile(r"^(\d{4})(\d{2})$"), re.compile(r"^(\d{4})年(\d{1,2})月$"),
                 re.compile(r"^(\d{4})\.(\d{1,2})$"))


def parse_month(value: Any) -> date | None:
    """The first day of the month a cell names; None when it names none."""
    if isinstance(value, datetime | date):
        return date(value.year, value.month, 1)
    text = cell_text(value).split(" ")[0]
    for shape in _MONTH_SHAPES:
        match = shape.match(text)
        if match:
            year, month = int(match.group(1)), int(match.group(2))
            if 1 <= month <= 12 and year >= 1900:
                return date(year, month, 1)
            return None
    return None


def parse_amount(value: Any) -> Decimal | None:
    try:
        amount = Decimal(cell_text(value).replace(",", ""))
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0 or amount.as_tuple().exponent < -2:  # type: ignore[operator]
        return None
    return amount.quantize(Decimal("0.01"))


def normalise_category(text: str) -> str:
    label = text.strip()
    return CATEGORY_ALIASES.get(label, label.lower())[:32]


@dataclass(frozen=True)
class SpendingRow:
    line: int
    student_key: str
    academic_year: str
    month: date
    category: str
    amount: Decimal
    id_key: str
    id_masked: str
    name: str | None


def check_consumption_rows(sheet: Sheet, keys: SubjectKeys) -> tuple[list[SpendingRow], list[Rejection]]:
    accepted: list[SpendingRow] = []
    rejected: list[Rejection] = []
    seen: dict[tuple[str, date, str], int] = {}
    for line, cells in sheet.rows:
        values = {c: cell_text(v) for c, v in cells.items()}
        empty = next((c for c in CONSUMPTION_REQUIRED if not values.get(c)), None)
        if empty is not None:
            rejected.append(Rejection(line, "empty_required_field", f"{empty} is empty", empty))
            continue
        try:
            id_number = validate_resident_id(values["id_number"])
        except InvalidResidentId as exc:
            rejected.append(Rejection(line, "malformed_id_number", exc.detail, "id_number"))
            continue
        month = parse_month(cells["month"])
        if month is None:
            rejected.append(Rejection(line, "malformed_month", "month is not a month like 2025-09", "month"))
            continue
        amount = parse_amount(cells["amount"])
        if amount is None:
            rejected.append(Rejection(line, "malformed_amount",
                                      "amount must be a non-negative CNY amount with at most two decimals",
                                      "amount"))
            continue
        category = normalise_category(values["category"])
        key = (id_number, month, category)
        if key in seen:
            rejected.append(Rejection(line, "duplicate_row",
                                      f"same student, month and category as line {seen[key]}", None))
            continue
        seen[key] = line
        year = academic_year_of(month)
        accepted.append(SpendingRow(line, str(case_id_for(id_number, year)), year, month, category, amount,
                                    keys.id_key(id_number), mask_id(id_number), (values.get("name") or None)))
    return accepted, rejected


def _upsert(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    module: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = module.insert(consumption_records)
    statement = statement.on_conflict_do_update(
        index_elements=["school_id", "student_key", "month", "category"],
        set_={"amount": statement.excluded.amount, "import_id": statement.excluded.import_id,
              "name": func.coalesce(statement.excluded.name, consumption_records.c.name)})
    conn.execute(statement, list(rows))


# ---------------------------------------------------------------------------------------------- warnings


@dataclass(frozen=True)
class Spender:
    """One student's spending in the period, with what the case index says about them."""

    student_key: str
    stage: str
    monthly_average: Decimal
    months: int
    case_status: str | None  # None: no case this academic year
    level: str | None
    display: Mapping[str, Any]

    @property
    def applied(self) -> bool:
        return self.case_status is not None and self.case_status != "withdrawn"

    @property
    def aided(self) -> bool:
        return self.level is not None and self.case_status in AIDED_STATUSES


class NoConsumptionThresholds(RuleViolated):
    code = "no_consumption_thresholds"


@dataclass(frozen=True)
class Thresholds:
    low_ratio: Decimal | None
    high_ratio: Decimal | None
    min_group: int


@dataclass(frozen=True)
class Warnings:
    groups: list[dict[str, Any]]
    low: list[dict[str, Any]]
    high: list[dict[str, Any]]


def _ratio(value: Decimal, median: Decimal) -> Decimal:
    return (value / median).quantize(Decimal("0.01")) if median > 0 else Decimal("0")


def find_warnings(spenders: Iterable[Spender], thresholds: Thresholds) -> Warnings:
    """Per peer group (stage) the median monthly spending; non-applicants far below it and aided students far
    above it, by the profile's ratios. Pure: the same spenders and thresholds always give the same lists."""
    by_stage: dict[str, list[Spender]] = {}
    for spender in spenders:
        by_stage.setdefault(spender.stage, []).append(spender)
    groups: list[dict[str, Any]] = []
    low: list[dict[str, Any]] = []
    high: list[dict[str, Any]] = []
    for stage in sorted(by_stage):
        members = by_stage[stage]
        median = Decimal(statistics.median(s.monthly_average for s in members)).quantize(Decimal("0.01"))
        enough = len(members) >= thresholds.min_group
        groups.append({"stage": stage, "students": len(members), "median_monthly": median,
                       "warnings_given": enough})
        if not enough or median <= 0:
            continue
        for s in sorted(members, key=lambda s: (s.monthly_average, s.student_key)):
            entry = {**s.display, "stage": stage, "monthly_average": s.monthly_average, "months": s.months,
                     "peer_median": median, "ratio": _ratio(s.monthly_average, median)}
            if thresholds.low_ratio is not None and not s.applied \
                    and s.monthly_average < thresholds.low_ratio * median:
                low.append({**entry, "case_status": s.case_status})
            if thresholds.high_ratio is not None and s.aided \
                    and s.monthly_average > thresholds.high_ratio * median:
                high.append({**entry, "level": s.level, "case_status": s.case_status})
    high.sort(key=lambda e: (-e["monthly_average"], str(e.get("case_id"))))
    return Warnings(groups, low, high)


def thresholds_of(consumption: Mapping[str, Decimal]) -> Thresholds:
    low = consumption.get("low_spending_ratio")
    high = consumption.get("high_spending_ratio")
    if low is None and high is None:
        raise NoConsumptionThresholds("this region's policy profile sets no consumption thresholds")
    minimum = consumption.get("min_peer_group_size", Decimal(1))
    return Thresholds(low, high, max(int(minimum), 1))


@dataclass(frozen=True)
class RosterStudent:
    """A student the school knows from its campus-card data (who may never have applied)."""

    student_key: str
    id_key: str
    id_masked: str
    name: str | None


class ConsumptionData:
    def __init__(self, engine: Engine, keys: SubjectKeys, schools: SchoolRegistry, profiles: Profiles,
                 projections: Projections, clock: Clock) -> None:
        self._engine = engine
        self.keys = keys
        self.schools = schools
        self.profiles = profiles
        self.projections = projections
        self.clock = clock

    def import_file(self, principal: Principal, school_id: str, raw: bytes) -> ImportRecord:
        require_school_scope(principal, school_id, self.schools, roles={Role.SCHOOL})
        sha = hashlib.sha256(raw).hexdigest()
        with self._engine.connect() as conn:
            earlier = find_import(conn, "consumption", school_id, sha)
        if earlier is not None:
            return earlier
        sheet = read_sheet(raw, CONSUMPTION_HEADERS, CONSUMPTION_REQUIRED)
        accepted, rejected = check_consumption_rows(sheet, self.keys)
        import_id = str(uuid.uuid4())
        record = ImportRecord(import_id, "consumption", school_id, sha, Importer(principal.sub, principal.role.value),
                              self.clock.now(), len(sheet.rows), len(accepted), len(rejected), 0,
                              [r.as_dict() for r in rejected])
        try:
            with self._engine.begin() as conn:
                _upsert(conn, [{"school_id": school_id, "student_key": r.student_key,
                                "month": r.month.strftime("%Y-%m"), "category": r.category,
                                "academic_year": r.academic_year, "id_key": r.id_key, "id_masked": r.id_masked,
                                "name": r.name[:100] if r.name else None, "amount": r.amount,
                                "import_id": import_id, "month_start": r.month} for r in accepted])
                record.rows_stored = count_stored(conn, consumption_records, import_id)
                record_import(conn, record)
        except IntegrityError:
            with self._engine.connect() as conn:
                earlier = find_import(conn, "consumption", school_id, sha)
            if earlier is None:
                raise
            return earlier
        log.info("consumption_imported", school_id=school_id, import_id=import_id, rows=record.rows_total,
                 accepted=record.rows_accepted, stored=record.rows_stored, rejected=record.rows_rejected)
        return record

    def roster(self, school_id: str, academic_year: str) -> list[RosterStudent]:
        t = consumption_records.c
        query = (select(t.student_key, func.max(t.id_key), func.max(t.id_masked), func.max(t.name))
                 .where(t.school_id == school_id, t.academic_year == academic_year).group_by(t.student_key))
        with self._engine.connect() as conn:
            return [RosterStudent(*row) for row in conn.execute(query)]

    def warnings(self, principal: Principal, school_id: str, *, academic_year: str | None = None,
                 category: str | None = None) -> dict[str, Any]:
        school = require_school_scope(principal, school_id, self.schools,
                                      roles={Role.SCHOOL, Role.BUREAU, Role.AUDITOR})
        year = validate_academic_year(academic_year) if academic_year else academic_year_of(self.clock.today())
        profile = self.profiles.for_region(school.region_code)
        thresholds = thresholds_of(profile.consumption)
        t = consumption_records.c
        query = (select(t.student_key, t.month, func.sum(t.amount).label("total"), func.max(t.id_masked),
                        func.max(t.name))
                 .where(t.school_id == school_id, t.academic_year == year).group_by(t.student_key, t.month))
        if category is not None:
            if not category.strip():
                raise ValidationFailed("category must not be blank", field="category")
            query = query.where(t.category == normalise_category(category))
        months: dict[str, list[Decimal]] = {}
        who: dict[str, tuple[str, str | None]] = {}
        with self._engine.connect() as conn:
            for key, _month, total, masked, name in conn.execute(query):
                months.setdefault(key, []).append(Decimal(total))
                who[key] = (masked, name)
        cases = self._cases(months)
        spenders = []
        for key, totals in months.items():
            case = cases.get(key)
            average = (sum(totals, Decimal(0)) / len(totals)).quantize(Decimal("0.01"))
            display: dict[str, Any] = {"id_masked": who[key][0], "name": who[key][1]}
            if case is not None:
                display.update(case_id=key, name=case["student_name"], class_id=case["class_id"])
            spenders.append(Spender(key, case["stage"] if case else school.stage, average, len(totals),
                                    case["status"] if case else None, case["level"] if case else None, display))
        found = find_warnings(spenders, thresholds)
        return {"school_id": school_id, "academic_year": year, "category": category,
                "profile_version": profile.tag,
                "thresholds": {"low_spending_ratio": thresholds.low_ratio,
                               "high_spending_ratio": thresholds.high_ratio,
                               "min_peer_group_size": thresholds.min_group},
                "peer_groups": found.groups, "low_spending_non_applicants": found.low,
                "high_spending_aided": found.high,
                "advice": "warnings are advice for staff to look into, never a decision on any case"}

    def _cases(self, keys: Collection[str], chunk: int = 500) -> dict[str, dict[str, Any]]:
        self.projections.wait_for("case_index", self.projections.head())
        table = self.projections.active_tables("case_index")["cases"]
        found: dict[str, dict[str, Any]] = {}
        wanted = list(keys)
        with self._engine.connect() as conn:
            for start in range(0, len(wanted), chunk):
                part = wanted[start:start + chunk]
                for row in conn.execute(select(table.c.case_id, table.c.student_name, table.c.class_id,
                                               table.c.stage, table.c.status, table.c.level)
                                        .where(table.c.case_id.in_(part))):
                    found[row.case_id] = dict(row._mapping)
        return found
