"""Assessment outcomes: per case, what the scoring model suggested and what the school finally decided.

Feeds the model review (adapters/model_review.py): the score and breakdown of the last assessment, the final rating
(after any upheld objection) with its reason, the follow-up findings and any revocation. No resident ID number, no
name, no household data: the breakdown holds item ids, points and the model's short details only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Connection

from projections.bulk import RowCache, fold_per_case
from projections.runner import Envelope, View

TOPICS = ("case.applied", "case.amended", "case.withdrawn", "case.assessed", "case.rated",
          "case.objection_resolved", "case.follow_up_recorded", "case.revoked")
NOT_IDENTIFIED = "not_identified"


def _level(value: Any) -> str:
    if value is None:
        return NOT_IDENTIFIED
    return str(getattr(value, "value", value))


class AssessmentOutcomes(View):
    name: ClassVar[str] = "assessment_outcomes"
    schema_version: ClassVar[int] = 1
    topics: ClassVar[tuple[str, ...]] = TOPICS

    def __init__(self) -> None:
        self.cache: RowCache[dict[str, Any]] = RowCache()

    def define_tables(self, md: MetaData, suffix: str) -> dict[str, Table]:
        table = Table(
            f"assessment_outcomes{suffix}", md,
            Column("case_id", String(36), primary_key=True),
            Column("academic_year", String(9), nullable=False),
            Column("school_id", String(32), nullable=False),
            Column("school_region", String(6), nullable=False),
            Column("withdrawn", Boolean, nullable=False),
            Column("score", String(32)),
            Column("breakdown", JSON),
            Column("suggested_level", String(32)),
            Column("assessed_profile", String(64)),
            Column("final_level", String(32)),
            Column("reason", Text, nullable=False),
            Column("follow_up", String(16)),
            Column("revoked", Boolean, nullable=False),
            Column("dishonest", Boolean, nullable=False),
            Column("version", Integer, nullable=False),
            Column("position", BigInteger, nullable=False),
        )
        Index(f"ix_assessment_outcomes{suffix}_region", table.c.academic_year, table.c.school_region)
        return {"outcomes": table}

    def handle(self, conn: Connection, tables: dict[str, Table], batch: Sequence[Envelope]) -> None:
        fold_per_case(conn, tables["outcomes"], batch, self._apply, self.cache)

    @staticmethod
    def _apply(rows: dict[str, dict[str, Any]], envelope: Envelope) -> None:
        event = envelope.event
        kind = type(event).__name__
        key = envelope.case_key
        if kind == "Applied":
            rows[key] = {"case_id": key, "academic_year": event.form["academic_year"],
                         "school_id": event.form["student"]["school_id"], "school_region": event.school_region,
                         "withdrawn": False, "score": None, "breakdown": None, "suggested_level": None,
                         "assessed_profile": None, "final_level": None, "reason": "", "follow_up": None,
                         "revoked": False, "dishonest": False}
        row = rows.get(key)
        if row is None:
            return
        if kind == "Amended":
            row.update(score=None, breakdown=None, suggested_level=None, assessed_profile=None)
        elif kind == "Withdrawn":
            row["withdrawn"] = True
        elif kind == "Assessed":
            assessment = event.assessment
            row.update(score=str(assessment["score"]), breakdown=[dict(b) for b in assessment["breakdown"]],
                       suggested_level=assessment["suggested_level"] or NOT_IDENTIFIED,
                       assessed_profile=assessment["profile_version"])
        elif kind == "Rated":
            row.update(final_level=_level(event.level), reason=event.reason or "")
        elif kind == "ObjectionResolved" and event.outcome == "upheld":
            row.update(final_level=_level(event.new_level), reason=event.reason or "")
        elif kind == "FollowUpRecorded":
            # One inconsistent finding is what counts, whatever later checks said.
            if row["follow_up"] != "inconsistent":
                row["follow_up"] = event.finding
        elif kind == "Revoked":
            row.update(revoked=True, dishonest=bool(event.dishonest))
        row.update(version=envelope.version, position=envelope.position)
