"""The integrity register (诚信记录): dishonesty records of students and guardians, kept across years and schools.

Keyed by the person's keyed hash (adapters.person_keys: HMAC under ZIZHU_SECRET), never by the ID number: the
plain number has no column here. Records come from `IntegrityViolationRecorded` (on its own, or right after a
dishonest `Revoked`). The persons each case names are how a school's right to ask about a person is decided (only
persons on its own cases): the student is on the case's row (`student_key`), and a second table links the others
to the cases they appear on (the guardian when the form names one by `household.guardian_id_number`, and whoever
a record was made against).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Boolean, Column, Date, Index, Integer, MetaData, String, Table, Text, and_
from sqlalchemy.engine import Connection

from adapters.person_keys import PersonKeys
from domain.case import local_date
from projections.bulk import RowCache, insert_missing_rows, insert_rows
from projections.ledger import write
from projections.runner import Envelope, View

TOPICS = ("case.applied", "case.amended", "case.revoked", "case.integrity_violation_recorded")


def guardian_id(form: Mapping[str, Any]) -> str | None:
    """The guardian's resident ID number, where the form carries one (`household.guardian_id_number`)."""
    value = (form.get("household") or {}).get("guardian_id_number")
    text = str(value or "").strip().upper()
    return text or None


class IntegrityRegister(View):
    name: ClassVar[str] = "integrity_register"
    # 2: the student's key on the case's row (one row per application, not two); on SQLite WITHOUT ROWID tables.
    schema_version: ClassVar[int] = 2
    topics: ClassVar[tuple[str, ...]] = TOPICS

    def __init__(self, keys: PersonKeys) -> None:
        self.keys = keys
        self.cache: RowCache[dict[str, Any]] = RowCache()  # the cases' rows, kept between batches

    def define_tables(self, md: MetaData, suffix: str) -> dict[str, Table]:
        records = Table(
            f"integrity_records{suffix}", md,
            Column("record_id", String(48), primary_key=True),  # case id and event version
            Column("person_key", String(64), nullable=False),
            Column("person", String(16), nullable=False),
            Column("description", Text, nullable=False),
            Column("recorded_on", Date, nullable=False),
            Column("source", String(16), nullable=False),  # revocation | violation
            Column("case_id", String(36), nullable=False),
            Column("academic_year", String(9), nullable=False),
            Column("school_id", String(32), nullable=False),
            Column("school_region", String(6), nullable=False),
            Column("recorded_by_role", String(16), nullable=False),
            Column("position", BigInteger, nullable=False),
        )
        Index(f"ix_integrity_records{suffix}_person", records.c.person_key, records.c.recorded_on)
        links = Table(
            f"integrity_links{suffix}", md,
            Column("person_key", String(64), primary_key=True),
            Column("case_id", String(36), primary_key=True),
            Column("role", String(16), primary_key=True),  # guardian | recorded
            Column("school_id", String(32), nullable=False),
            Column("school_region", String(6), nullable=False),
            sqlite_with_rowid=False,
        )
        Index(f"ix_integrity_links{suffix}_school", links.c.person_key, links.c.school_id)
        cases = Table(
            f"integrity_cases{suffix}", md,
            Column("case_id", String(36), primary_key=True),
            Column("student_key", String(64), nullable=False),
            Column("academic_year", String(9), nullable=False),
            Column("school_id", String(32), nullable=False),
            Column("school_region", String(6), nullable=False),
            Column("guardian_key", String(64)),
            Column("revoked_version", Integer),  # a dishonest revocation's version: the next record comes from it
            Column("dishonest", Boolean, nullable=False),
            sqlite_with_rowid=False,
        )
        Index(f"ix_integrity_cases{suffix}_student", cases.c.student_key, cases.c.school_id)
        return {"records": records, "links": links, "cases": cases}

    def handle(self, conn: Connection, tables: dict[str, Table], batch: Sequence[Envelope]) -> None:
        records, links, cases_table = tables["records"], tables["links"], tables["cases"]
        ids = {e.case_key for e in batch}
        cases = self.cache.rows(conn, cases_table, "case_id", ids)
        existing = set(cases)
        new_records: list[dict[str, Any]] = []
        new_links: dict[tuple[str, str, str], dict[str, Any]] = {}
        dropped_links: list[tuple[str, str, str]] = []
        for envelope in batch:
            event, key = envelope.event, envelope.case_key
            kind = type(event).__name__
            if kind == "Applied":
                student = event.form["student"]
                cases[key] = {"case_id": key, "student_key": self.keys.person(student["id_number"]),
                              "academic_year": event.form["academic_year"], "school_id": student["school_id"],
                              "school_region": event.school_region, "guardian_key": None, "revoked_version": None,
                              "dishonest": False}
            case = cases.get(key)
            if case is None:
                continue
            if kind in {"Applied", "Amended"}:
                guardian = guardian_id(event.form)
                guardian_key = self.keys.person(guardian) if guardian else None
                if case["guardian_key"] and case["guardian_key"] != guardian_key:
                    dropped_links.append((case["guardian_key"], key, "guardian"))
                    new_links.pop((case["guardian_key"], key, "guardian"), None)
                if guardian_key:
                    new_links[(guardian_key, key, "guardian")] = self._link(guardian_key, key, "guardian", case)
                case["guardian_key"] = guardian_key
            elif kind == "Revoked" and event.dishonest:
                case.update(revoked_version=envelope.version, dishonest=True)
            elif kind == "IntegrityViolationRecorded":
                person = self.keys.person(event.id_number)
                from_revocation = case["revoked_version"] == envelope.version - 1
                new_records.append({
                    "record_id": f"{key}:{envelope.version}", "person_key": person, "person": event.person,
                    "description": event.description, "recorded_on": local_date(envelope.occurred_at),
                    "source": "revocation" if from_revocation else "violation", "case_id": key,
                    "academic_year": case["academic_year"], "school_id": case["school_id"],
                    "school_region": case["school_region"], "recorded_by_role": event.actor["role"],
                    "position": envelope.position,
                })
                new_links[(person, key, "recorded")] = self._link(person, key, "recorded", case)
        written = {k: cases[k] for k in cases if k in ids}
        write(conn, cases_table, written, existing, "case_id")
        self.cache.keep(cases_table, written)
        for person_key, case_id, role in dropped_links:
            conn.execute(links.delete().where(and_(links.c.person_key == person_key, links.c.case_id == case_id,
                                                   links.c.role == role)))
        insert_missing_rows(conn, links, list(new_links.values()))
        insert_rows(conn, records, new_records)

    @staticmethod
    def _link(person_key: str, case_id: str, role: str, case: Mapping[str, Any]) -> dict[str, Any]:
        return {"person_key": person_key, "case_id": case_id, "role": role, "school_id": case["school_id"],
                "school_region": case["school_region"]}
