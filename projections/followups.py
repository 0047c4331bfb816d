"""Follow-up checks per school and semester (Guangxi Art. 9): what was drawn, what has been checked, by when.

From each `FollowUpSample.Drawn`: the sample (seed, deadline) and per level the population, the profile's share
and the required count, and one row per drawn case. Each `FollowUpRecorded` marks the case's row in its latest
sample as checked (first date, number of checks, last finding). The school view reads completion per level
against the required count and the deadline from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    select,
)
from sqlalchemy.engine import Connection

from projections.runner import Envelope, View

TOPICS = ("follow_up_sample.drawn", "case.follow_up_recorded")


class FollowUps(View):
    name: ClassVar[str] = "follow_ups"
    schema_version: ClassVar[int] = 1
    topics: ClassVar[tuple[str, ...]] = TOPICS

    def define_tables(self, md: MetaData, suffix: str) -> dict[str, Table]:
        samples = Table(
            f"follow_up_samples{suffix}", md,
            Column("sample_id", String(36), primary_key=True),
            Column("school_id", String(32), nullable=False),
            Column("school_region", String(6), nullable=False),
            Column("semester", String(11), nullable=False),
            Column("seed", String(64), nullable=False),
            Column("deadline", Date, nullable=False),
            Column("profile_version", String(64), nullable=False),
            Column("drawn_at", DateTime(timezone=True), nullable=False),
            Column("position", BigInteger, nullable=False),
        )
        Index(f"ix_follow_up_samples{suffix}_school", samples.c.school_id, samples.c.semester)
        strata = Table(
            f"follow_up_strata{suffix}", md,
            Column("sample_id", String(36), primary_key=True),
            Column("level", String(32), primary_key=True),
            Column("rate", String(8), nullable=False),
            Column("population", Integer, nullable=False),
            Column("required", Integer, nullable=False),
        )
        checks = Table(
            f"follow_up_checks{suffix}", md,
            Column("sample_id", String(36), primary_key=True),
            Column("case_id", String(36), primary_key=True),
            Column("level", String(32), nullable=False),
            Column("sample_position", BigInteger, nullable=False),
            Column("checks", Integer, nullable=False),
            Column("first_checked_on", Date),
            Column("last_finding", String(16)),
            Column("inconsistent", Boolean, nullable=False),
        )
        Index(f"ix_follow_up_checks{suffix}_case", checks.c.case_id, checks.c.sample_position)
        return {"samples": samples, "strata": strata, "checks": checks}

    def handle(self, conn: Connection, tables: dict[str, Table], batch: Sequence[Envelope]) -> None:
        samples, strata, checks = tables["samples"], tables["strata"], tables["checks"]
        recorded = {e.case_key for e in batch if type(e.event).__name__ == "FollowUpRecorded"}
        # Every known selection of the cases checked in this batch; the latest sample of a case is the one a
        # check belongs to.
        rows: dict[tuple[str, str], dict[str, Any]] = {
            (r.sample_id, r.case_id): dict(r._mapping)
            for r in conn.execute(select(checks).where(checks.c.case_id.in_(recorded)))
        } if recorded else {}
        existing = set(rows)
        latest: dict[str, tuple[str, str]] = {}
        for key, _row in sorted(rows.items(), key=lambda kv: kv[1]["sample_position"]):
            latest[key[1]] = key
        for envelope in batch:
            event = envelope.event
            if type(event).__name__ == "Drawn":
                sample_id = envelope.case_key
                conn.execute(samples.insert().values(
                    sample_id=sample_id, school_id=event.school_id, school_region=event.school_region,
                    semester=event.semester, seed=event.seed, deadline=event.deadline,
                    profile_version=event.profile_version, drawn_at=envelope.occurred_at,
                    position=envelope.position))
                conn.execute(strata.insert(), [
                    {"sample_id": sample_id, "level": s["name"], "rate": s["rate"],
                     "population": len(s["population"]), "required": s["required"]} for s in event.strata
                ])
                for stratum in event.strata:
                    for case_id in stratum["drawn"]:
                        rows[(sample_id, case_id)] = {
                            "sample_id": sample_id, "case_id": case_id, "level": stratum["name"],
                            "sample_position": envelope.position, "checks": 0, "first_checked_on": None,
                            "last_finding": None, "inconsistent": False,
                        }
                        latest[case_id] = (sample_id, case_id)
                continue
            selection = latest.get(envelope.case_key)
            if selection is None:  # cannot happen: a case is drawn (and its sample stored) before it is checked
                continue
            row = rows[selection]
            row["checks"] += 1
            row["first_checked_on"] = row["first_checked_on"] or event.checked_on
            row["last_finding"] = event.finding
            row["inconsistent"] = row["inconsistent"] or event.finding == "inconsistent"
        new = [r for k, r in rows.items() if k not in existing]
        if new:
            conn.execute(checks.insert(), new)
        changed = [{**r, "b_sample_id": k[0], "b_case_id": k[1]} for k, r in rows.items() if k in existing]
        if changed:
            columns: dict[str, Any] = {c.name: bindparam(c.name) for c in checks.columns
                                       if c.name not in {"sample_id", "case_id"}}
            conn.execute(checks.update().where(and_(checks.c.sample_id == bindparam("b_sample_id"),
                                                    checks.c.case_id == bindparam("b_case_id")))
                         .values(columns), changed)
