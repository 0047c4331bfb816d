"""Bureau spot checks per region: each check's draw (seed, formula, due date) and each drawn case's assignment and
finding, so a bureau sees results and what is overdue without loading every check from the log."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Column, Date, DateTime, Index, Integer, MetaData, String, Table, Text, and_, update
from sqlalchemy.engine import Connection

from projections.runner import Envelope, View

TOPICS = ("spot_check.drawn", "spot_check.assigned", "spot_check.result_recorded")


class SpotChecks(View):
    name: ClassVar[str] = "spot_checks"
    schema_version: ClassVar[int] = 1
    topics: ClassVar[tuple[str, ...]] = TOPICS

    def define_tables(self, md: MetaData, suffix: str) -> dict[str, Table]:
        checks = Table(
            f"spot_checks{suffix}", md,
            Column("check_id", String(36), primary_key=True),
            Column("region_code", String(6), nullable=False),
            Column("academic_year", String(9), nullable=False),
            Column("seed", String(64), nullable=False),
            Column("due_on", Date, nullable=False),
            Column("formula", Text, nullable=False),  # JSON of the profile parameters the draw used
            Column("profile_version", String(64), nullable=False),
            Column("school_population", Integer, nullable=False),
            Column("drawn_by", String(100), nullable=False),
            Column("drawn_at", DateTime(timezone=True), nullable=False),
            Column("position", BigInteger, nullable=False),
        )
        Index(f"ix_spot_checks{suffix}_region", checks.c.region_code, checks.c.academic_year)
        items = Table(
            f"spot_check_items{suffix}", md,
            Column("check_id", String(36), primary_key=True),
            Column("case_id", String(36), primary_key=True),
            Column("school_id", String(32), nullable=False),
            Column("school_cases", Integer, nullable=False),  # the school's population the cases were drawn from
            Column("inspector", String(100)),
            Column("finding", String(16)),
            Column("checked_on", Date),
            Column("recorded_by", String(100)),
        )
        return {"checks": checks, "items": items}

    def handle(self, conn: Connection, tables: dict[str, Table], batch: Sequence[Envelope]) -> None:
        checks, items = tables["checks"], tables["items"]
        # Assignments and findings touch rows one by one; spot checks are rare and small, so plain statements do.
        for envelope in batch:
            event, check_id = envelope.event, envelope.case_key
            kind = type(event).__name__
            if kind == "Drawn":
                conn.execute(checks.insert().values(
                    check_id=check_id, region_code=event.region_code, academic_year=event.academic_year,
                    seed=event.seed, due_on=event.due_on, formula=json.dumps(event.formula, sort_keys=True),
                    profile_version=event.profile_version, school_population=len(event.school_population),
                    drawn_by=event.actor["sub"], drawn_at=envelope.occurred_at, position=envelope.position))
                rows: list[dict[str, Any]] = [
                    {"check_id": check_id, "case_id": case_id, "school_id": school["school_id"],
                     "school_cases": len(school["population"]), "inspector": None, "finding": None,
                     "checked_on": None, "recorded_by": None}
                    for school in event.schools for case_id in school["drawn"]
                ]
                if rows:
                    conn.execute(items.insert(), rows)
            elif kind == "Assigned":
                conn.execute(update(items).where(and_(items.c.check_id == check_id,
                                                      items.c.case_id.in_(list(event.case_ids))))
                             .values(inspector=event.inspector))
            elif kind == "ResultRecorded":
                conn.execute(update(items).where(and_(items.c.check_id == check_id,
                                                      items.c.case_id == event.case_id))
                             .values(finding=event.finding, checked_on=event.checked_on,
                                     recorded_by=event.actor["sub"]))
