"""Registry lists from other departments (民政, 乡村振兴, 总工会, 残联, 退役军人) and the record of every import.

A registry list names people in a special group: resident ID number, name, category, valid-from/to and the
department that issued it. They arrive as the departments export them: CSV in UTF-8 (with or without BOM) or GBK,
or .xlsx. Headers may be English or Chinese (case and spaces are ignored).

Columns and their accepted headers:
- id_number (required): id_number, 身份证号, 身份证号码, 公民身份号码, 证件号码
- name (required): name, 姓名
- category (required): category, 类别, 困难类别, 人员类别, 救助类别
- valid_from (required): valid_from, 有效期起, 起始日期, 开始日期, 认定日期
- valid_to (the column is required; an empty cell means open-ended): valid_to, 有效期止, 终止日期, 结束日期
- department (optional; empty means the source): department, source_department, 来源部门, 部门, 认定部门

Categories may be given by their API name (`minimum_living_allowance`) or a common Chinese label (低保); each
source issues only its own categories (SOURCE_CATEGORIES). Dates are YYYY-MM-DD, YYYY/MM/DD, YYYYMMDD or Excel
date cells.

Privacy: ID numbers and names are never stored or logged in clear. Each row is keyed by an HMAC of the ID number
and carries an HMAC of the normalised name for the cross-check, both keyed from ZIZHU_SECRET (so changing the secret
means importing the registries again and rebuilding the `case_keys` view).

A file in the wrong shape (undecodable, empty, a required column missing) is refused whole, naming the column, and
nothing is stored. Otherwise every good row is stored and every bad row reported with its line and reason; the
import and its file hash are recorded in one transaction with the rows. The same file again changes nothing.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import re
import unicodedata
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    func,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from adapters.auth import Principal
from adapters.db import metadata
from adapters.logs import get_logger
from adapters.schools import School, SchoolRegistry, decode_text
from domain.errors import CaseNotFound, Forbidden, InvalidResidentId, ValidationFailed
from domain.values import Category, Role, validate_resident_id

log = get_logger("zizhu.registries")
C = Category
SOURCE_CATEGORIES: Mapping[str, frozenset[Category]] = {
    # Which department's registry can confirm which special group (Guangxi Art. 5, 8(3)).
    "civil_affairs": frozenset({C.MINIMUM_LIVING_ALLOWANCE, C.EXTREME_POVERTY_SUPPORT, C.ORPHAN,
                                C.NEAR_MINIMUM_LIVING, C.EXPENDITURE_HARDSHIP}),
    "rural_revitalisation": frozenset({C.POVERTY_ALLEVIATED, C.MONITORED_HOUSEHOLD}),
    "trade_union": frozenset({C.NEEDY_WORKER_FAMILY}),
    "disability_federation": frozenset({C.DISABLED}),
    "veterans_affairs": frozenset({C.MARTYR_FAMILY}),
}
SOURCES = tuple(SOURCE_CATEGORIES)

CATEGORY_LABELS: Mapping[str, Category] = {
    "低保": C.MINIMUM_LIVING_ALLOWANCE, "最低生活保障": C.MINIMUM_LIVING_ALLOWANCE,
    "低保户": C.MINIMUM_LIVING_ALLOWANCE,
    "低保家庭": C.MINIMUM_LIVING_ALLOWANCE, "最低生活保障家庭": C.MINIMUM_LIVING_ALLOWANCE,
    "特困": C.EXTREME_POVERTY_SUPPORT, "特困供养": C.EXTREME_POVERTY_SUPPORT, "特困人员": C.EXTREME_POVERTY_SUPPORT,
    "特困供养人员": C.EXTREME_POVERTY_SUPPORT,
    "孤儿": C.ORPHAN, "事实无人抚养儿童": C.ORPHAN, "事实无人抚养": C.ORPHAN,
    "低保边缘": C.NEAR_MINIMUM_LIVING, "低保边缘家庭": C.NEAR_MINIMUM_LIVING,
    "支出型困难": C.EXPENDITURE_HARDSHIP, "支出型困难家庭": C.EXPENDITURE_HARDSHIP,
    "脱贫": C.POVERTY_ALLEVIATED, "脱贫户": C.POVERTY_ALLEVIATED, "脱贫家庭": C.POVERTY_ALLEVIATED,
    "脱贫人口": C.POVERTY_ALLEVIATED, "建档立卡": C.POVERTY_ALLEVIATED,
    "监测对象": C.MONITORED_HOUSEHOLD, "防止返贫监测对象": C.MONITORED_HOUSEHOLD,
    "防返贫监测对象": C.MONITORED_HOUSEHOLD,
    "困难职工": C.NEEDY_WORKER_FAMILY, "建档困难职工": C.NEEDY_WORKER_FAMILY, "困难职工家庭": C.NEEDY_WORKER_FAMILY,
    "残疾": C.DISABLED, "残疾人": C.DISABLED, "残疾学生": C.DISABLED, "残疾人子女": C.DISABLED,
    "烈士子女": C.MARTYR_FAMILY, "烈士家属": C.MARTYR_FAMILY, "烈属": C.MARTYR_FAMILY,
}

REGISTRY_HEADERS: Mapping[str, tuple[str, ...]] = {
    "id_number": ("id_number", "身份证号", "身份证号码", "公民身份号码", "证件号码"),
    "name": ("name", "姓名"),
    "category": ("category", "类别", "困难类别", "人员类别", "救助类别"),
    "valid_from": ("valid_from", "有效期起", "起始日期", "开始日期", "认定日期"),
    "valid_to": ("valid_to", "有效期止", "终止日期", "结束日期"),
    "department": ("department", "source_department", "来源部门", "部门", "认定部门"),
}
REGISTRY_REQUIRED_COLUMNS = ("id_number", "name", "category", "valid_from", "valid_to")
REGISTRY_REQUIRED_VALUES = ("id_number", "name", "category", "valid_from")
# An open-ended entry (no valid-to) is stored with this end so the period is part of the primary key.
OPEN_END = date(9999, 12, 31)

data_imports = Table(
    "data_imports",
    metadata,
    Column("import_id", String(36), primary_key=True),
    Column("kind", String(16), nullable=False),  # registry | consumption
    Column("scope", String(40), nullable=False),  # the registry source, or the school of a consumption file
    Column("file_sha256", String(64), nullable=False),
    Column("imported_by", String(100), nullable=False),
    Column("imported_role", String(16), nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Column("rows_total", Integer, nullable=False),
    Column("rows_accepted", Integer, nullable=False),
    Column("rows_rejected", Integer, nullable=False),
    Column("rows_stored", Integer, nullable=False),
    Column("rejections", JSON, nullable=False),
    UniqueConstraint("kind", "scope", "file_sha256", name="uq_data_imports_file"),
)

registry_entries = Table(
    "registry_entries",
    metadata,
    Column("source", String(32), primary_key=True),
    Column("id_key", String(32), primary_key=True),
    Column("category", String(32), primary_key=True),
    Column("valid_from", Date, primary_key=True),
    Column("valid_to", Date, primary_key=True),
    Column("name_key", String(32), nullable=False),
    Column("department", String(200), nullable=False),
    Column("import_id", String(36), nullable=False),
    Index("ix_registry_entries_id_key", "id_key"),
)


# ---------------------------------------------------------------------------------------------- keys


class SubjectKeys:
    """Keyed hashes of ID numbers and names: equal inputs give equal keys, and without the key nothing is learnt."""

    def __init__(self, secret: str) -> None:
        # A key of its own, derived from the secret, so these hashes never equal anything else signed with it.
        self._key = hmac.new(secret.encode(), b"zizhu/registry-subject-key/v1", hashlib.sha256).digest()

    def id_key(self, id_number: str) -> str:
        return hmac.new(self._key, b"id|" + id_number.strip().upper().encode(), hashlib.sha256).hexdigest()[:32]

    def name_key(self, name: str) -> str:
        return hmac.new(self._key, b"name|" + normalise_name(name).encode(), hashlib.sha256).hexdigest()[:32]


_MIDDLE_DOTS = re.compile(r"[·•・‧∙⋅･.．]")


def normalise_name(name: str) -> str:
    """Names compare after width folding, without spaces, with every middle-dot form (少数民族 names) as one."""
    folded = unicodedata.normalize("NFKC", name or "")
    return _MIDDLE_DOTS.sub("·", "".join(folded.split()))


def mask_id(id_number: str) -> str:
    """What a list shown to staff carries instead of the number: region and last four."""
    return f"{id_number[:6]}********{id_number[-4:]}"


# ---------------------------------------------------------------------------------------------- reading files


class FileRefused(ValidationFailed):
    """The file as a whole cannot be read as the expected table; nothing of it is stored."""

    code = "file_refused"


@dataclass(frozen=True)
class Sheet:
    """A file read as a table: canonical column names, and data rows with their line numbers."""

    columns: tuple[str, ...]
    rows: list[tuple[int, dict[str, Any]]]


def _header_key(text: Any) -> str:
    return "".join(str(text or "").replace("\ufeff", "").split()).lower()


def _raw_rows(raw: bytes) -> Iterator[tuple[int, list[Any]]]:
    if raw[:4] == b"PK\x03\x04":
        yield from _xlsx_rows(raw)
        return
    try:
        text = decode_text(raw)
    except ValueError:
        raise FileRefused("the file is neither UTF-8 nor GBK text, nor an .xlsx workbook", field="file") from None
    for line, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        yield line, list(row)


def _xlsx_rows(raw: bytes) -> Iterator[tuple[int, list[Any]]]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except Exception:  # openpyxl raises many kinds for a damaged archive; all mean "cannot be read"
        raise FileRefused("the .xlsx workbook cannot be opened", field="file") from None
    try:
        sheet = workbook.worksheets[0]
        for line, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield line, list(values)
    finally:
        workbook.close()


def read_sheet(raw: bytes, headers: Mapping[str, Sequence[str]], required: Sequence[str]) -> Sheet:
    """Reads CSV (UTF-8, UTF-8 BOM, GBK) or .xlsx; refuses a file that is empty or lacks a required column."""
    if not raw.strip():
        raise FileRefused("the file is empty", field="file")
    aliases = {_header_key(alias): canonical for canonical, names in headers.items() for alias in names}
    rows = _raw_rows(raw)
    positions: dict[str, int] = {}
    for _, values in rows:
        if not any(cell_text(v) for v in values):
            continue  # leading blank lines
        for index, value in enumerate(values):
            canonical = aliases.get(_header_key(value))
            if canonical is not None and canonical not in positions:
                positions[canonical] = index
        break
    for column in required:
        if column not in positions:
            accepted = " / ".join(headers[column])
            raise FileRefused(f"missing column {column} (accepted headers: {accepted})", field=column,
                              column=column)
    data: list[tuple[int, dict[str, Any]]] = []
    for line, values in rows:
        if not any(cell_text(v) for v in values):
            continue
        data.append((line, {c: values[i] if i < len(values) else None for c, i in positions.items()}))
    if not data:
        raise FileRefused("the file has a header but no data rows", field="file")
    return Sheet(tuple(positions), data)


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


_DATE_SHAPES = (re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$"), re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$"),
                re.compile(r"^(\d{4})\.(\d{1,2})\.(\d{1,2})$"), re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
                re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日$"))


def parse_day(value: Any) -> date | None:
    """A date cell in any of the shapes departments export; None when it is not a date."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = cell_text(value)
    text = text.split(" ")[0] if " " in text else text  # "2025-01-01 00:00:00" from spreadsheets saved as CSV
    for shape in _DATE_SHAPES:
        match = shape.match(text)
        if match:
            try:
                return date(*(int(g) for g in match.groups()))
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class Rejection:
    line: int
    reason: str  # malformed_id_number | duplicate_row | unknown_category | dates_out_of_order | ...
    detail: str
    column: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "reason": self.reason, "detail": self.detail, "column": self.column}


def resolve_category(text: str, source: str) -> Category | None:
    """The category a cell names, if this source issues it."""
    key = text.strip()
    category = CATEGORY_LABELS.get(key)
    if category is None:
        try:
            category = Category(key.lower())
        except ValueError:
            return None
    return category if category in SOURCE_CATEGORIES[source] else None


@dataclass(frozen=True)
class RegistryRow:
    line: int
    id_key: str
    name_key: str
    category: str
    valid_from: date
    valid_to: date
    department: str


def check_registry_rows(sheet: Sheet, source: str, keys: SubjectKeys) -> tuple[list[RegistryRow], list[Rejection]]:
    """Each row accepted or rejected with its reason; reasons never quote the ID number or the name."""
    accepted: list[RegistryRow] = []
    rejected: list[Rejection] = []
    seen: dict[tuple[str, str, date, date], int] = {}
    for line, cells in sheet.rows:
        values = {c: cell_text(v) for c, v in cells.items()}
        empty = next((c for c in REGISTRY_REQUIRED_VALUES if not values.get(c)), None)
        if empty is not None:
            rejected.append(Rejection(line, "empty_required_field", f"{empty} is empty", empty))
            continue
        try:
            id_number = validate_resident_id(values["id_number"])
        except InvalidResidentId as exc:
            rejected.append(Rejection(line, "malformed_id_number", exc.detail, "id_number"))
            continue
        category = resolve_category(values["category"], source)
        if category is None:
            allowed = ", ".join(sorted(c.value for c in SOURCE_CATEGORIES[source]))
            rejected.append(Rejection(line, "unknown_category",
                                      f"category {values['category'][:40]!r} is not one {source} issues "
                                      f"(allowed: {allowed})", "category"))
            continue
        valid_from = parse_day(cells.get("valid_from"))
        if valid_from is None:
            rejected.append(Rejection(line, "malformed_date", "valid_from is not a date", "valid_from"))
            continue
        valid_to = OPEN_END
        if values.get("valid_to"):
            parsed = parse_day(cells.get("valid_to"))
            if parsed is None:
                rejected.append(Rejection(line, "malformed_date", "valid_to is not a date", "valid_to"))
                continue
            valid_to = parsed
        if valid_to < valid_from:
            rejected.append(Rejection(line, "dates_out_of_order",
                                      f"valid_to {valid_to} is before valid_from {valid_from}", "valid_to"))
            continue
        id_key = keys.id_key(id_number)
        key = (id_key, category.value, valid_from, valid_to)
        if key in seen:
            rejected.append(Rejection(line, "duplicate_row",
                                      f"same ID number, category and period as line {seen[key]}", None))
            continue
        seen[key] = line
        accepted.append(RegistryRow(line, id_key, keys.name_key(values["name"]), category.value, valid_from,
                                    valid_to, values.get("department") or source))
    return accepted, rejected


# ---------------------------------------------------------------------------------------------- storing


@dataclass(frozen=True)
class Importer:
    """Who imports: the token subject and role, or the operator at the command line."""

    sub: str
    role: str


@dataclass
class ImportRecord:
    import_id: str
    kind: str
    scope: str
    file_sha256: str
    imported_by: Importer
    imported_at: datetime
    rows_total: int
    rows_accepted: int
    rows_rejected: int
    rows_stored: int
    rejections: list[dict[str, Any]] = field(default_factory=list)
    already_imported: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"import_id": self.import_id, "kind": self.kind, "scope": self.scope,
                "file_sha256": self.file_sha256,
                "imported_by": {"sub": self.imported_by.sub, "role": self.imported_by.role},
                "imported_at": self.imported_at.isoformat(), "rows": self.rows_total,
                "accepted": self.rows_accepted, "rejected": self.rejections, "rejected_count": self.rows_rejected,
                "stored": self.rows_stored, "already_imported": self.already_imported}


def _record_from_row(row: Any, *, already: bool) -> ImportRecord:
    return ImportRecord(row.import_id, row.kind, row.scope, row.file_sha256,
                        Importer(row.imported_by, row.imported_role), row.imported_at, row.rows_total,
                        row.rows_accepted, row.rows_rejected, row.rows_stored, list(row.rejections),
                        already_imported=already)


def find_import(conn: Connection, kind: str, scope: str, sha: str) -> ImportRecord | None:
    row = conn.execute(select(data_imports).where(data_imports.c.kind == kind, data_imports.c.scope == scope,
                                                  data_imports.c.file_sha256 == sha)).first()
    return _record_from_row(row, already=True) if row is not None else None


def insert_ignoring_duplicates(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Bulk insert where a row already present (same primary key) is left as it is: re-imports add nothing."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(postgresql.insert(table).on_conflict_do_nothing(), list(rows))
    elif dialect == "sqlite":
        conn.execute(sqlite.insert(table).on_conflict_do_nothing(), list(rows))
    else:  # pragma: no cover - only the two supported stores exist
        raise RuntimeError(f"unsupported database {dialect}")


def record_import(conn: Connection, record: ImportRecord) -> None:
    conn.execute(insert(data_imports).values(
        import_id=record.import_id, kind=record.kind, scope=record.scope, file_sha256=record.file_sha256,
        imported_by=record.imported_by.sub[:100], imported_role=record.imported_by.role,
        imported_at=record.imported_at, rows_total=record.rows_total, rows_accepted=record.rows_accepted,
        rows_rejected=record.rows_rejected, rows_stored=record.rows_stored, rejections=record.rejections))


def count_stored(conn: Connection, table: Table, import_id: str) -> int:
    return int(conn.execute(select(func.count()).select_from(table)
                            .where(table.c.import_id == import_id)).scalar_one())


class UnknownSource(ValidationFailed):
    code = "unknown_source"


@dataclass(frozen=True)
class EntryView:
    """One registry entry as the matcher sees it (keys only; no ID number, no name)."""

    source: str
    category: str
    valid_from: date
    valid_to: date | None
    name_key: str
    department: str


class RegistryStore:
    """Imports registry lists and answers which entries exist for a set of subject keys."""

    def __init__(self, engine: Engine, keys: SubjectKeys) -> None:
        self._engine = engine
        self.keys = keys

    def import_file(self, raw: bytes, *, source: str, by: Importer, now: datetime) -> ImportRecord:
        if source not in SOURCE_CATEGORIES:
            raise UnknownSource(f"unknown registry source {source!r}; known: {', '.join(SOURCES)}", field="source")
        sha = hashlib.sha256(raw).hexdigest()
        with self._engine.connect() as conn:
            earlier = find_import(conn, "registry", source, sha)
        if earlier is not None:
            return earlier
        sheet = read_sheet(raw, REGISTRY_HEADERS, REGISTRY_REQUIRED_COLUMNS)
        accepted, rejected = check_registry_rows(sheet, source, self.keys)
        import_id = str(uuid.uuid4())
        record = ImportRecord(import_id, "registry", source, sha, by, now, len(sheet.rows), len(accepted),
                              len(rejected), 0, [r.as_dict() for r in rejected])
        try:
            with self._engine.begin() as conn:
                insert_ignoring_duplicates(conn, registry_entries, [
                    {"source": source, "id_key": r.id_key, "category": r.category, "valid_from": r.valid_from,
                     "valid_to": r.valid_to, "name_key": r.name_key, "department": r.department[:200],
                     "import_id": import_id} for r in accepted])
                record.rows_stored = count_stored(conn, registry_entries, import_id)
                record_import(conn, record)
        except IntegrityError:
            # The same file imported at the same moment by someone else: theirs stands, ours is that one.
            with self._engine.connect() as conn:
                earlier = find_import(conn, "registry", source, sha)
            if earlier is None:
                raise
            return earlier
        log.info("registry_imported", source=source, import_id=import_id, rows=record.rows_total,
                 accepted=record.rows_accepted, stored=record.rows_stored, rejected=record.rows_rejected)
        return record

    def imports(self, source: str | None = None, limit: int = 100) -> list[ImportRecord]:
        query = select(data_imports).where(data_imports.c.kind == "registry")
        if source is not None:
            query = query.where(data_imports.c.scope == source)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(data_imports.c.imported_at.desc()).limit(limit)).all()
        return [_record_from_row(r, already=False) for r in rows]

    def entries_for(self, id_keys: Collection[str], chunk: int = 500) -> dict[str, list[EntryView]]:
        """Every entry of the given subjects, whatever its period (the matcher decides what is in force)."""
        found: dict[str, list[EntryView]] = {}
        keys = list(dict.fromkeys(id_keys))
        t = registry_entries.c
        with self._engine.connect() as conn:
            for start in range(0, len(keys), chunk):
                part = keys[start:start + chunk]
                for row in conn.execute(select(registry_entries).where(t.id_key.in_(part))
                                        .order_by(t.id_key, t.source, t.category, t.valid_from)):
                    found.setdefault(row.id_key, []).append(EntryView(
                        row.source, row.category, row.valid_from,
                        None if row.valid_to == OPEN_END else row.valid_to, row.name_key, row.department))
        return found

    def entries_of(self, id_key: str) -> list[EntryView]:
        return self.entries_for([id_key]).get(id_key, [])


def describe_headers() -> Iterable[str]:
    """The accepted headers, one line per column (for help texts)."""
    for column, names in REGISTRY_HEADERS.items():
        yield f"{column}: {', '.join(names)}"


# ---------------------------------------------------------------------------------------------- school scope


class NotInScope(CaseNotFound):
    """A school or region outside the caller's scope answers as if it did not exist."""


def require_school_scope(principal: Principal, school_id: str, schools: SchoolRegistry,
                         roles: Collection[Role]) -> School:
    """The school, if the caller's role may do this and the school lies in their scope (else 403 / 404)."""
    school = schools.get(school_id)
    if principal.role in {Role.SCHOOL, Role.EVALUATOR} and principal.school != school_id:
        raise NotInScope("no such school")
    if school is None:
        raise NotInScope("no such school")
    if principal.role is Role.BUREAU and not (principal.region_prefix
                                              and school.region_code.startswith(principal.region_prefix)):
        raise NotInScope("no such school")
    if principal.role is Role.APPLICANT:
        raise NotInScope("no such school")
    if principal.role not in roles:
        raise Forbidden(f"the {principal.role.value} role cannot do this")
    return school
