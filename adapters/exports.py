"""The archive export (建档备案): a school's confirmed list for one academic year in the layout of the national
student-aid system's import sheet (附表2), as .xlsx or .csv, and the `Archived` events that file the cases.

The export's id is derived from (school, academic year), so exporting again names the same export: the cases
already archived by it are listed again (same rows) and archived nothing twice; cases confirmed since are added
and archived under the same id. All the `Archived` events of one export are appended in one store transaction.

Which cases: the notices view lists the school's confirmed and archived cases of the year; each is then loaded
from the event store (the view holds no ID number by design) and its status checked there.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from openpyxl import Workbook
from openpyxl.styles import Font
from sqlalchemy import select

from adapters.auth import Principal, require_command
from adapters.cases import CaseService
from adapters.schools import School
from domain.case import StudentCase
from domain.errors import CaseNotFound, Conflict, Forbidden
from domain.values import Role, Status, validate_academic_year
from projections.runner import Projections

EXPORT_NAMESPACE = uuid.UUID("6b0f6a52-1d0e-5c83-9f4e-2d7a3c1b9e40")
SHEET_TITLE = "附表2"
HEADING = "家庭经济困难学生认定名单"
COLUMNS = ("序号", "姓名", "身份证件类型", "身份证件号", "学校", "学段", "年级班级", "认定等级", "困难身份类型",
           "认定日期", "认定学年", "公示情况", "建档批次号")
LEVEL_NAMES = {"especially_difficult": "特别困难", "difficult": "比较困难", "generally_difficult": "一般困难"}
CATEGORY_NAMES = {
    "poverty_alleviated": "脱贫家庭学生", "monitored_household": "监测对象家庭学生",
    "minimum_living_allowance": "最低生活保障家庭学生", "extreme_poverty_support": "特困供养学生",
    "orphan": "孤儿（含事实无人抚养儿童）", "disabled": "残疾学生及残疾人子女", "martyr_family": "烈士子女",
    "needy_worker_family": "建档困难职工家庭学生", "near_minimum_living": "低保边缘家庭学生",
    "expenditure_hardship": "支出型困难家庭学生",
}
STAGE_NAMES = {
    "preschool": "学前教育", "primary": "小学", "junior_secondary": "初中", "senior_secondary": "普通高中",
    "secondary_vocational": "中等职业教育", "higher_vocational": "高等职业教育", "undergraduate": "本科",
    "postgraduate": "研究生",
}
EXEMPTION_GROUNDS = {"sufficient_basis": "免于公示（认定依据充分）", "low_amount": "免于公示（资助金额较低）",
                     "urgent": "免于公示（资助情况紧急）"}
# A spreadsheet application would run a cell starting with these as a formula (CSV injection).
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def export_id_for(school_id: str, academic_year: str) -> str:
    return f"nx-{uuid.uuid5(EXPORT_NAMESPACE, f'{school_id}|{academic_year}')}"


@dataclass(frozen=True)
class NationalExport:
    export_id: str
    school_id: str
    academic_year: str
    rows: list[dict[str, str | int]]
    newly_archived: int
    position: int | None

    @property
    def filename(self) -> str:
        return f"附表2_{self.school_id}_{self.academic_year}"


class ExportService:
    def __init__(self, cases: CaseService, projections: Projections) -> None:
        self.cases = cases
        self.projections = projections

    def national(self, principal: Principal, school_id: str, academic_year: str) -> NationalExport:
        academic_year = validate_academic_year(academic_year)
        school = self._require_export_scope(principal, school_id)
        export_id = export_id_for(school_id, academic_year)
        # Read-your-writes on the view: every confirmation already in the log is listed.
        self.projections.wait_for("notices", self.projections.head())
        listed = self._concluded(school_id, academic_year)
        found = self.cases.store.get_many(listed)  # one query per 500 cases
        cases = [c for c in (found.get(i) for i in listed) if isinstance(c, StudentCase)
                 and c.school_id == school_id and c.academic_year == academic_year
                 and c.status in {Status.CONFIRMED, Status.ARCHIVED}]
        to_archive = [c for c in cases if c.status is Status.CONFIRMED]
        position = None
        if to_archive:
            now = self.cases.clock.now()
            for case in to_archive:
                require_command(principal, case, "archive")
                case.archive(export_id=export_id, actor=principal.actor, now=now)
            try:
                recordings = self.cases.store.save(*to_archive)
            except IntegrityError:
                raise Conflict("a concurrent change to one of these cases won; nothing was archived; export "
                               "again") from None
            position = max((r.notification.id for r in recordings), default=None)
        rows = _rows(sorted(cases, key=_order), school)
        return NationalExport(export_id, school_id, academic_year, rows, len(to_archive), position)

    def _require_export_scope(self, principal: Principal, school_id: str) -> School:
        school = self.cases.schools.get(school_id)
        if principal.role not in {Role.SCHOOL, Role.BUREAU}:
            raise Forbidden("only the school aid office or its education bureau exports the archive list")
        if school is None:
            raise CaseNotFound("no such school")
        if principal.role is Role.SCHOOL and principal.school != school_id:
            raise CaseNotFound("no such school")
        if principal.role is Role.BUREAU and not (
            principal.region_prefix and school.region_code.startswith(principal.region_prefix)
        ):
            raise CaseNotFound("no such school")
        return school

    def _concluded(self, school_id: str, academic_year: str) -> list[UUID]:
        notices = self.projections.active_tables("notices")["notices"]
        query = select(notices.c.case_id).where(notices.c.school_id == school_id,
                                                notices.c.academic_year == academic_year,
                                                notices.c.status.in_(("confirmed", "archived")))
        with self.projections.engine.connect() as conn:
            return [UUID(r) for r in conn.execute(query).scalars()]


def _order(case: StudentCase) -> tuple[str, str, str]:
    return (case.class_id, str(case.form["student"]["name"]), case.applicant_id_number)


def _rows(cases: Sequence[StudentCase], school: School) -> list[dict[str, str | int]]:
    rows: list[dict[str, str | int]] = []
    for number, case in enumerate(cases, start=1):
        student = case.form["student"]
        level = case.level.value if case.level else ""
        categories = "、".join(CATEGORY_NAMES.get(c, c) for c in case.confirmed_categories)
        noticed = (EXEMPTION_GROUNDS.get(case.exemption["ground"], "免于公示") if case.exemption
                   else "公示无异议")
        rows.append({
            "序号": number,
            "姓名": str(student["name"]),
            "身份证件类型": "居民身份证",
            "身份证件号": case.applicant_id_number,
            "学校": school.name,
            "学段": STAGE_NAMES.get(str(student["stage"]), str(student["stage"])),
            "年级班级": case.class_id,
            "认定等级": LEVEL_NAMES.get(level, level),
            "困难身份类型": categories,
            "认定日期": _iso(case.confirmed_on),
            "认定学年": case.academic_year,
            "公示情况": noticed,
            "建档批次号": case.export_id or "",
        })
    return rows


def _iso(value: date | None) -> str:
    return value.isoformat() if value else ""


def _safe(value: str | int) -> str | int:
    if isinstance(value, str) and value.startswith(FORMULA_LEADS):
        return "'" + value
    return value


def to_csv(export: NationalExport) -> bytes:
    """UTF-8 with BOM, which spreadsheet applications in Chinese locales open without garbling."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in export.rows:
        writer.writerow([_safe(row[c]) for c in COLUMNS])
    return buffer.getvalue().encode("utf-8-sig")


def to_xlsx(export: NationalExport) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None  # a new workbook always has one sheet
    sheet.title = SHEET_TITLE
    sheet.append(list(COLUMNS))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in export.rows:
        # ID numbers stay text: as numbers a spreadsheet would round their last digits away.
        sheet.append([_safe(row[c]) for c in COLUMNS])
    for column, width in zip("ABCDEFGHIJKLM", (6, 12, 12, 22, 28, 12, 12, 10, 24, 12, 11, 24, 42), strict=True):
        sheet.column_dimensions[column].width = width
    sheet.freeze_panes = "A2"
    workbook.properties.title = f"{HEADING} {export.school_id} {export.academic_year}"
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
