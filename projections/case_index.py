"""The case index: one row per case with where it stands (school, class, status, level, since when).

Serves the review queues (per school and step, oldest first), the case search within scope, and the region
statistics. Keeps only what those queries need: no resident ID number, no household data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Index, Integer, MetaData, String, Table, select
from sqlalchemy.engine import Connection

from projections.bulk import key_in, upsert_rows
from projections.runner import Envelope, View

# Which status each event leaves the case in (None: the event does not move the status).
STATUS_AFTER = {
    "Applied": "applied", "Amended": "applied", "Withdrawn": "withdrawn", "Verified": "verified",
    "Assessed": "assessed", "ClassEvaluated": "evaluated", "Publicized": "in_publicity", "Confirmed": "confirmed",
    "Archived": "archived", "Revoked": "revoked",
}


class CaseIndex(View):
    name: ClassVar[str] = "case_index"
    schema_version: ClassVar[int] = 2

    def define_tables(self, md: MetaData, suffix: str) -> dict[str, Table]:
        table = Table(
            f"case_index{suffix}", md,
            Column("case_id", String(36), primary_key=True),
            Column("academic_year", String(9), nullable=False),
            Column("school_id", String(32), nullable=False),
            Column("school_region", String(6), nullable=False),
            Column("class_id", String(64), nullable=False),
            Column("student_name", String(100), nullable=False),
            Column("stage", String(32), nullable=False),
            Column("status", String(16), nullable=False),
            Column("level", String(32)),
            Column("suggested_level", String(32)),
            Column("departs_from_suggestion", Boolean, nullable=False, default=False),
            Column("data_matched", Boolean, nullable=False, default=False),
            Column("open_objections", Integer, nullable=False, default=0),
            Column("applied_at", DateTime(timezone=True), nullable=False),
            Column("status_since", DateTime(timezone=True), nullable=False),
            Column("updated_at", DateTime(timezone=True), nullable=False),
            Column("version", Integer, nullable=False),
            Column("position", BigInteger, nullable=False),
        )
        # Each index serves one query of projections.queries in its sort order (keyset pages scan a range):
        # a school's queue at a step, the same within one class (evaluators), search by name within a
        # school, and region statistics (covering, so counting never visits the table).
        Index(f"ix_case_index{suffix}_queue", table.c.school_id, table.c.status, table.c.status_since,
              table.c.case_id)
        Index(f"ix_case_index{suffix}_class_queue", table.c.school_id, table.c.class_id, table.c.status,
              table.c.status_since, table.c.case_id)
        Index(f"ix_case_index{suffix}_name", table.c.school_id, table.c.student_name, table.c.case_id)
        Index(f"ix_case_index{suffix}_region", table.c.school_region, table.c.academic_year, table.c.school_id,
              table.c.level, table.c.status)
        return {"cases": table}

    def handle(self, conn: Connection, tables: dict[str, Table], batch: Sequence[Envelope]) -> None:
        table = tables["cases"]
        ids = {e.case_key for e in batch}
        rows: dict[str, dict[str, Any]] = {
            r.case_id: dict(r._mapping) for r in conn.execute(select(table).where(key_in(conn, table.c.case_id, ids)))
        }
        existing = set(rows)
        for envelope in batch:
            self._apply(rows, envelope)
        upsert_rows(conn, table, "case_id", [r for k, r in rows.items() if k not in existing],
                    [r for k, r in rows.items() if k in existing])

    @staticmethod
    def _apply(rows: dict[str, dict[str, Any]], envelope: Envelope) -> None:
        event = envelope.event
        kind = type(event).__name__
        key = envelope.case_key
        if kind == "Applied":
            student = event.form["student"]
            rows[key] = {
                "case_id": key, "academic_year": event.form["academic_year"], "school_id": student["school_id"],
                "school_region": event.school_region, "class_id": student["class_id"],
                "student_name": student["name"], "stage": student["stage"], "status": "applied", "level": None,
                "suggested_level": None, "departs_from_suggestion": False, "data_matched": False,
                "open_objections": 0, "applied_at": envelope.occurred_at, "status_since": envelope.occurred_at,
                "updated_at": envelope.occurred_at, "version": envelope.version, "position": envelope.position,
            }
            return
        row = rows.get(key)
        if row is None:  # an event of a case this view never saw created: nothing to index
            return
        before = row["status"]
        status = STATUS_AFTER.get(kind)
        if kind == "Amended":
            row.update(class_id=event.form["student"]["class_id"], student_name=event.form["student"]["name"],
                       suggested_level=None, data_matched=False)
        elif kind == "Verified":
            row["data_matched"] = event.method == "data_match" and bool(event.confirmed)
        elif kind == "Assessed":
            row["suggested_level"] = event.assessment["suggested_level"]
        elif kind == "Rated":
            row["level"] = _level(event.level)
            row["departs_from_suggestion"] = bool(event.departs_from_suggestion)
            status = "rated" if event.level is not None else "not_identified"
        elif kind == "Objected":
            row["open_objections"] += 1
        elif kind == "ObjectionResolved":
            row["open_objections"] = 0 if event.outcome == "upheld" else max(row["open_objections"] - 1, 0)
            if event.outcome == "upheld":
                row["level"] = _level(event.new_level)
                status = "rated" if event.new_level is not None else "not_identified"
        elif kind == "Readjusted":
            row["level"] = _level(event.level)
            if event.level is None:
                status = "not_identified"
        if status is not None:
            row["status"] = status
            if status != before:
                row["status_since"] = envelope.occurred_at
        row.update(updated_at=envelope.occurred_at, version=envelope.version, position=envelope.position)


def _level(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))
