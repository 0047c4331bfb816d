"""The notice view: where each case stands with respect to public notice, holding only what may be shown.

One row per case. It serves three readers, none of which may see more than the public notice shows:
- the notice board (`GET /v1/schools/{id}/publicity`): name, grade/class and level of the cases in publicity;
- the deadline job: windows in publicity with their `ends_on` and count of open objections;
- the archive export: which cases of a school and year are confirmed or archived (the export then loads each
  case from the event store for the archive's columns).
By construction the table has no column for the resident ID number, special-group category, address, phone,
date of birth or parents: those never enter it, so no query on it can show them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Column, Date, Index, Integer, MetaData, String, Table, select
from sqlalchemy.engine import Connection

from projections.bulk import RowCache, fold_per_case
from projections.runner import Envelope, View

# The events that move a case on or off the board; every other event leaves this view untouched.
TOPICS = (
    "case.applied", "case.amended", "case.withdrawn", "case.rated", "case.publicized", "case.publicity_exempted",
    "case.objected", "case.objection_resolved", "case.confirmed", "case.archived", "case.readjusted",
    "case.revoked",
)
# A board entry: exactly what Guangxi Art. 8(5) allows inside the school (name, grade/class, level), and the
# window it is shown in. No case id either: it is derived from the resident ID number.
BOARD_FIELDS = ("name", "grade_class", "level", "starts_on", "ends_on")


class Notices(View):
    name: ClassVar[str] = "notices"
    schema_version: ClassVar[int] = 1
    topics: ClassVar[tuple[str, ...]] = TOPICS

    def __init__(self) -> None:
        self.cache: RowCache[dict[str, Any]] = RowCache()

    def define_tables(self, md: MetaData, suffix: str) -> dict[str, Table]:
        table = Table(
            f"notices{suffix}", md,
            Column("case_id", String(36), primary_key=True),
            Column("academic_year", String(9), nullable=False),
            Column("school_id", String(32), nullable=False),
            Column("class_id", String(64), nullable=False),
            Column("student_name", String(100), nullable=False),
            Column("level", String(32)),
            # applied | rated | in_publicity | confirmed | archived | closed (withdrawn, revoked, not identified)
            Column("status", String(16), nullable=False),
            Column("exempted", Integer, nullable=False, default=0),
            Column("notice_id", String(64)),
            Column("starts_on", Date),
            Column("ends_on", Date),
            Column("open_objections", Integer, nullable=False, default=0),
            Column("version", Integer, nullable=False),
            Column("position", BigInteger, nullable=False),
        )
        Index(f"ix_notices{suffix}_board", table.c.school_id, table.c.status, table.c.class_id)
        Index(f"ix_notices{suffix}_due", table.c.status, table.c.ends_on)
        Index(f"ix_notices{suffix}_year", table.c.school_id, table.c.academic_year, table.c.status)
        return {"notices": table}

    def handle(self, conn: Connection, tables: dict[str, Table], batch: Sequence[Envelope]) -> None:
        fold_per_case(conn, tables["notices"], batch, _apply, self.cache)


def _apply(rows: dict[str, dict[str, Any]], envelope: Envelope) -> None:
    event = envelope.event
    kind = type(event).__name__
    key = envelope.case_key
    if kind == "Applied":
        student = event.form["student"]
        rows[key] = {
            "case_id": key, "academic_year": event.form["academic_year"], "school_id": student["school_id"],
            "class_id": student["class_id"], "student_name": student["name"], "level": None, "status": "applied",
            "exempted": 0, "notice_id": None, "starts_on": None, "ends_on": None, "open_objections": 0,
            "version": envelope.version, "position": envelope.position,
        }
        return
    row = rows.get(key)
    if row is None:  # a case this view never saw created (cannot happen from position 0): nothing to show
        return
    if kind == "Amended":
        row.update(class_id=event.form["student"]["class_id"], student_name=event.form["student"]["name"],
                   status="applied")
    elif kind == "Rated":
        row.update(level=_level(event.level), status="rated" if event.level is not None else "closed")
    elif kind == "Publicized":
        row.update(status="in_publicity", notice_id=str(event.notice_id), starts_on=_date(event.starts_on),
                   ends_on=_date(event.ends_on), open_objections=0)
    elif kind == "PublicityExempted":
        row["exempted"] = 1
    elif kind == "Objected":
        row["open_objections"] += 1
    elif kind == "ObjectionResolved":
        if event.outcome == "upheld":
            # Re-rated: off the board until a new window opens for the new level.
            row.update(level=_level(event.new_level), open_objections=0,
                       status="rated" if event.new_level is not None else "closed")
        else:
            row["open_objections"] = max(row["open_objections"] - 1, 0)
    elif kind == "Confirmed":
        row["status"] = "confirmed"
    elif kind == "Archived":
        row["status"] = "archived"
    elif kind == "Readjusted":
        row["level"] = _level(event.level)
        if event.level is None:
            row["status"] = "closed"
    elif kind in {"Withdrawn", "Revoked"}:
        row.update(status="closed", open_objections=0)
    row.update(version=envelope.version, position=envelope.position)


def _level(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def board_entries(conn: Connection, table: Table, school_id: str, today: date) -> list[dict[str, Any]]:
    """The notice board of one school on `today`: cases whose window is open that day, by class and name."""
    query = (select(table.c.student_name, table.c.class_id, table.c.level, table.c.starts_on, table.c.ends_on)
             .where(table.c.school_id == school_id, table.c.status == "in_publicity",
                    table.c.starts_on <= today, table.c.ends_on >= today)
             .order_by(table.c.class_id, table.c.student_name, table.c.ends_on))
    return [dict(zip(BOARD_FIELDS, (r.student_name, r.class_id, r.level, r.starts_on, r.ends_on), strict=True))
            for r in conn.execute(query)]
