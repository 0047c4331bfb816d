"""Home-visit coverage (Jiangsu pilot 二(二)1: one home visit per family per year, full coverage).

A family is a household, not a case: two siblings (in one school or two) are one family and one visit covers both.
The family is identified from the application form, in this order (the first present wins):
1. `household.household_number`: the household register's number (户口簿户号), as the school records it;
2. `household.guardian_id_number`: the guardian's resident ID number;
3. otherwise the student alone is the family (nothing on the form ties them to a sibling).
The view keeps only a keyed hash of that basis (adapters.person_keys), never the number itself. Coverage of a
school in a year: the families of its identified cases (confirmed or archived), and which of them have a visit
in that year recorded on any of the family's cases, at this school or another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Column, Date, Index, Integer, MetaData, String, Table
from sqlalchemy.engine import Connection

from adapters.person_keys import PersonKeys
from projections.bulk import select_rows
from projections.ledger import STATUS_TOPICS, track_status, write
from projections.runner import Envelope, View


def family_basis(form: Mapping[str, Any]) -> str:
    """What identifies the student's family (see the module's docstring for the order)."""
    household = form.get("household") or {}
    number = str(household.get("household_number") or "").strip()
    if number:
        return f"household:{number}"
    guardian = str(household.get("guardian_id_number") or "").strip()
    if guardian:
        return f"guardian:{guardian}"
    return f"student:{form['student']['id_number']}"


class HomeVisits(View):
    name: ClassVar[str] = "home_visits"
    schema_version: ClassVar[int] = 1
    topics: ClassVar[tuple[str, ...]] = (*STATUS_TOPICS, "case.home_visited")

    def __init__(self, keys: PersonKeys) -> None:
        self.keys = keys

    def define_tables(self, md: MetaData, suffix: str) -> dict[str, Table]:
        cases = Table(
            f"home_visit_cases{suffix}", md,
            Column("case_id", String(36), primary_key=True),
            Column("academic_year", String(9), nullable=False),
            Column("school_id", String(32), nullable=False),
            Column("school_region", String(6), nullable=False),
            Column("family_key", String(32), nullable=False),
            Column("status", String(16), nullable=False),
            Column("level", String(32)),
            Column("position", BigInteger, nullable=False),
        )
        Index(f"ix_home_visit_cases{suffix}_school", cases.c.school_id, cases.c.academic_year, cases.c.status)
        Index(f"ix_home_visit_cases{suffix}_family", cases.c.family_key, cases.c.academic_year)
        visits = Table(
            f"home_visit_visits{suffix}", md,
            Column("case_id", String(36), primary_key=True),
            Column("version", Integer, primary_key=True),
            Column("visited_on", Date, nullable=False),
            Column("recorded_by", String(100), nullable=False),
        )
        return {"cases": cases, "visits": visits}

    def handle(self, conn: Connection, tables: dict[str, Table], batch: Sequence[Envelope]) -> None:
        cases_table = tables["cases"]
        ids = {e.case_key for e in batch}
        rows: dict[str, dict[str, Any]] = select_rows(conn, cases_table, "case_id", ids)
        existing = set(rows)
        visits = []
        for envelope in batch:
            event, key = envelope.event, envelope.case_key
            kind = type(event).__name__
            if kind == "Applied":
                rows[key] = {"case_id": key, "academic_year": event.form["academic_year"],
                             "school_id": event.form["student"]["school_id"], "school_region": event.school_region,
                             "family_key": "", "status": "applied", "level": None}
            row = rows.get(key)
            if row is None:
                continue
            if kind in {"Applied", "Amended"}:
                row["family_key"] = self.keys.family(family_basis(event.form))
            elif kind == "HomeVisited":
                visits.append({"case_id": key, "version": envelope.version, "visited_on": event.visited_on,
                               "recorded_by": event.actor["sub"]})
            track_status(row, kind, event)
            row["position"] = envelope.position
        write(conn, cases_table, rows, existing, "case_id")
        if visits:
            conn.execute(tables["visits"].insert(), visits)
