"""The case keys view: each case's registry subject key, for matching cases against registry lists in bulk.

One row per case: the keyed hash of the student's ID number and name (the same HMAC the registry import uses, so
rows join on it; never the number or the name itself), the school and academic year, the application date, and
the categories claimed and confirmed. It serves the school-wide verification by data matching (which registry
entries to fetch) and the outreach list (资助找人: registry entries for students who did not claim the category).

The view needs the subject key, so it is built with one (`all_views(secret)`); changing ZIZHU_SECRET means
importing the registries again and `zizhu rebuild --projection case_keys`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Boolean, Column, Date, Index, MetaData, String, Table
from sqlalchemy.engine import Connection

from adapters.registries import SubjectKeys
from domain.case import local_date
from projections.bulk import RowCache, fold_per_case
from projections.runner import Envelope, View

TOPICS = ("case.applied", "case.amended", "case.verified", "case.withdrawn")


def joined(values: Sequence[str]) -> str:
    return ",".join(sorted(set(values)))


def split(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


class CaseKeys(View):
    name: ClassVar[str] = "case_keys"
    schema_version: ClassVar[int] = 1
    topics: ClassVar[tuple[str, ...]] = TOPICS

    def __init__(self, keys: SubjectKeys) -> None:
        self.keys = keys
        self.cache: RowCache[dict[str, Any]] = RowCache()

    def define_tables(self, md: MetaData, suffix: str) -> dict[str, Table]:
        table = Table(
            f"case_keys{suffix}", md,
            Column("case_id", String(36), primary_key=True),
            Column("id_key", String(32), nullable=False),
            Column("name_key", String(32), nullable=False),
            Column("school_id", String(32), nullable=False),
            Column("academic_year", String(9), nullable=False),
            Column("applied_on", Date, nullable=False),
            Column("claimed", String(400), nullable=False),
            Column("confirmed", String(400), nullable=False),
            Column("verified_method", String(16)),
            Column("withdrawn", Boolean, nullable=False),
            Column("position", BigInteger, nullable=False),
        )
        Index(f"ix_case_keys{suffix}_school", table.c.school_id, table.c.academic_year)
        Index(f"ix_case_keys{suffix}_id_key", table.c.id_key)
        return {"keys": table}

    def handle(self, conn: Connection, tables: dict[str, Table], batch: Sequence[Envelope]) -> None:
        fold_per_case(conn, tables["keys"], batch, self._apply, self.cache)

    def _apply(self, rows: dict[str, dict[str, Any]], envelope: Envelope) -> None:
        event = envelope.event
        kind = type(event).__name__
        key = envelope.case_key
        if kind == "Applied":
            student = event.form["student"]
            rows[key] = {
                "case_id": key, "id_key": self.keys.id_key(student["id_number"]),
                "name_key": self.keys.name_key(student["name"]), "school_id": student["school_id"],
                "academic_year": event.form["academic_year"], "applied_on": local_date(envelope.occurred_at),
                "claimed": joined(event.form.get("claimed_categories", [])), "confirmed": "",
                "verified_method": None, "withdrawn": False, "position": envelope.position,
            }
            return
        row = rows.get(key)
        if row is None:
            return
        if kind == "Amended":
            # An amendment sends the case back to verification: what was confirmed no longer stands.
            row.update(name_key=self.keys.name_key(event.form["student"]["name"]),
                       claimed=joined(event.form.get("claimed_categories", [])), confirmed="",
                       verified_method=None)
        elif kind == "Verified":
            row.update(confirmed=joined([c["category"] for c in event.confirmed]), verified_method=event.method)
        elif kind == "Withdrawn":
            row["withdrawn"] = True
        row["position"] = envelope.position
