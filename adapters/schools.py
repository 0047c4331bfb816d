"""The school registry: which school is where (its region code decides the province's policy profile)."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Column, DateTime, String, Table, func, insert, select, update
from sqlalchemy.engine import Engine

from adapters.db import metadata
from domain.values import Stage

schools_table = Table(
    "schools",
    metadata,
    Column("school_id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("region_code", String(6), nullable=False, index=True),
    Column("stage", String(32), nullable=False),
    Column("updated_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
)
COLUMNS = ("school_id", "name", "region_code", "stage")


@dataclass(frozen=True)
class School:
    school_id: str
    name: str
    region_code: str
    stage: str


@dataclass
class ImportResult:
    inserted: int
    updated: int
    rejected: list[tuple[int, str]]


def decode_text(raw: bytes) -> str:
    """CSV files from Chinese offices come as UTF-8 (often with BOM) or GBK; anything else is refused."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ValueError("file is neither UTF-8 nor GBK text")


# How long a school read from the registry is reused by this process without asking again (every application
# names its school). An import in this process takes effect at once; one in another process (`zizhu schools
# import`) within this time. A school not found is always asked again, so a newly imported one is never missed.
SCHOOL_RECHECK_SECONDS = 30.0


class SchoolRegistry:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._known: dict[str, tuple[float, School]] = {}

    def get(self, school_id: str) -> School | None:
        known = self._known.get(school_id)
        now = time.monotonic()
        if known is not None and now - known[0] < SCHOOL_RECHECK_SECONDS:
            return known[1]
        with self._engine.connect() as conn:
            row = conn.execute(select(schools_table).where(schools_table.c.school_id == school_id)).first()
        if row is None:
            self._known.pop(school_id, None)
            return None
        school = School(row.school_id, row.name, row.region_code, row.stage)
        self._known[school_id] = (now, school)
        return school

    def count(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(schools_table)).scalar_one())

    def import_csv(self, raw: bytes, *, known_provinces: set[str]) -> ImportResult:
        """Upserts rows; a row with a bad value is reported and skipped, a file in the wrong shape is refused."""
        text = decode_text(raw)
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise ValueError(f"missing column(s): {', '.join(missing)}; expected {','.join(COLUMNS)}")
        rows: dict[str, dict[str, str]] = {}
        rejected: list[tuple[int, str]] = []
        for raw_row in reader:
            # The reader's own count of physical lines: blank lines it skips and quoted line breaks inside a
            # field would shift an enumerate() and send the administrator to the wrong line.
            line = reader.line_num
            row = {k.strip(): (v or "").strip() for k, v in raw_row.items() if k}
            reason = self._check(row, known_provinces)
            if reason:
                rejected.append((line, reason))
            elif row["school_id"] in rows:
                rejected.append((line, f"duplicate school_id {row['school_id']}"))
            else:
                rows[row["school_id"]] = {c: row[c] for c in COLUMNS}
        inserted = updated = 0
        with self._engine.begin() as conn:
            existing = set(conn.execute(select(schools_table.c.school_id)
                                        .where(schools_table.c.school_id.in_(list(rows)))).scalars())
            for school_id, row in rows.items():
                if school_id in existing:
                    conn.execute(update(schools_table).where(schools_table.c.school_id == school_id)
                                 .values(**row, updated_at=func.now()))
                    updated += 1
                else:
                    conn.execute(insert(schools_table).values(**row))
                    inserted += 1
        self._known.clear()
        return ImportResult(inserted, updated, rejected)

    @staticmethod
    def _check(row: dict[str, str], known_provinces: set[str]) -> str:
        if not row.get("school_id"):
            return "school_id is empty"
        if not row.get("name"):
            return "name is empty"
        code = row.get("region_code", "")
        if not (len(code) == 6 and code.isdigit()):
            return f"region_code {code!r} is not a six-digit code"
        if code[:2] not in known_provinces:
            return f"no policy profile covers province {code[:2]}"
        if row.get("stage") not in {s.value for s in Stage}:
            return f"unknown stage {row.get('stage')!r}"
        return ""

    def import_file(self, path: Path, *, known_provinces: set[str]) -> ImportResult:
        return self.import_csv(path.read_bytes(), known_provinces=known_provinces)
