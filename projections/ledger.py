"""The aid ledger: per case, what was granted (regular and emergency), disbursed, ordered back and recovered.

One row per case, with the case's school, region, year, status and level, so that the same table answers the
school's aid list (identified cases with their level's target), the under-aid list (below target), and the
ledger totals per case, school and region. A revoked case keeps its row (its money still has to be accounted for)
but leaves every aid list.

Money is kept in integer fen (分): sums in SQL are exact on both stores (SQLite has no decimal type), and the
query side turns fen back into Decimal. `apply_money` is the whole arithmetic, a pure function of the events, so
property tests exercise exactly what the view runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, select
from sqlalchemy.engine import Connection

from domain.case import EMERGENCY_PROGRAMME
from projections.bulk import upsert_rows
from projections.runner import Envelope, View

# Which status each event leaves the case in (the same rules as the case index; Rated and the others that may
# end a case decide per event below).
STATUS_AFTER = {
    "Applied": "applied", "Amended": "applied", "Withdrawn": "withdrawn", "Verified": "verified",
    "Assessed": "assessed", "ClassEvaluated": "evaluated", "Publicized": "in_publicity", "Confirmed": "confirmed",
    "Archived": "archived", "Revoked": "revoked",
}
STATUS_TOPICS = (
    "case.applied", "case.amended", "case.withdrawn", "case.verified", "case.assessed", "case.class_evaluated",
    "case.rated", "case.publicized", "case.objection_resolved", "case.confirmed", "case.archived",
    "case.readjusted", "case.revoked",
)
MONEY_TOPICS = ("case.aid_granted", "case.funds_disbursed", "case.funds_recovery_ordered", "case.funds_recovered")
IDENTIFIED = ("confirmed", "archived")
MONEY_FIELDS = ("granted_fen", "granted_regular_fen", "emergency_fen", "disbursed_fen", "recovery_ordered_fen",
                "recovered_fen")
CENT = Decimal("0.01")


def to_fen(amount: Decimal) -> int:
    """Exact: amounts carry at most two decimals (the domain refuses more)."""
    return int((Decimal(amount) * 100).to_integral_exact())


def to_cny(fen: int) -> Decimal:
    return (Decimal(int(fen)) / 100).quantize(CENT)


def level_value(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def track_status(row: dict[str, Any], kind: str, event: Any) -> None:
    """Moves a row's `status` and `level` as the case's events do."""
    status = STATUS_AFTER.get(kind)
    if kind == "Rated":
        row["level"] = level_value(event.level)
        status = "rated" if event.level is not None else "not_identified"
    elif kind == "ObjectionResolved" and event.outcome == "upheld":
        row["level"] = level_value(event.new_level)
        status = "rated" if event.new_level is not None else "not_identified"
    elif kind == "Readjusted":
        row["level"] = level_value(event.level)
        if event.level is None:
            status = "not_identified"
    if status is not None:
        row["status"] = status


def apply_money(row: dict[str, Any], kind: str, event: Any) -> None:
    """The ledger arithmetic: each money event adds its amount to one or two running totals."""
    if kind == "AidGranted":
        amount = to_fen(event.amount)
        row["granted_fen"] += amount
        if event.programme == EMERGENCY_PROGRAMME:
            row["emergency_fen"] += amount
        else:
            row["granted_regular_fen"] += amount
        row["grants"] += 1
    elif kind == "FundsDisbursed":
        row["disbursed_fen"] += to_fen(event.amount)
    elif kind == "FundsRecoveryOrdered":
        row["recovery_ordered_fen"] += to_fen(event.amount)
    elif kind == "FundsRecovered":
        row["recovered_fen"] += to_fen(event.amount)


def new_row(case_id: str, event: Any) -> dict[str, Any]:
    """A case's row as its Applied event opens it."""
    return {"case_id": case_id, "academic_year": event.form["academic_year"],
            "school_id": event.form["student"]["school_id"], "school_region": event.school_region,
            "class_id": event.form["student"]["class_id"], "student_name": event.form["student"]["name"],
            "status": "applied", "level": None, "grants": 0, **dict.fromkeys(MONEY_FIELDS, 0)}


def fold(case_id: str, events: Sequence[Any], row: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Applies a case's events in order to its row (what `handle` does per event, without the database)."""
    for event in events:
        kind = type(event).__name__
        if kind == "Applied":
            row = new_row(case_id, event)
            continue
        if row is None:
            continue
        if kind == "Amended":
            row.update(class_id=event.form["student"]["class_id"], student_name=event.form["student"]["name"])
        track_status(row, kind, event)
        apply_money(row, kind, event)
    return row


class Ledger(View):
    name: ClassVar[str] = "ledger"
    schema_version: ClassVar[int] = 1
    topics: ClassVar[tuple[str, ...]] = STATUS_TOPICS + MONEY_TOPICS

    def define_tables(self, md: MetaData, suffix: str) -> dict[str, Table]:
        table = Table(
            f"ledger{suffix}", md,
            Column("case_id", String(36), primary_key=True),
            Column("academic_year", String(9), nullable=False),
            Column("school_id", String(32), nullable=False),
            Column("school_region", String(6), nullable=False),
            Column("class_id", String(64), nullable=False),
            Column("student_name", String(100), nullable=False),
            Column("status", String(16), nullable=False),
            Column("level", String(32)),
            Column("grants", Integer, nullable=False),
            *(Column(name, BigInteger, nullable=False) for name in MONEY_FIELDS),
            Column("updated_at", DateTime(timezone=True), nullable=False),
            Column("position", BigInteger, nullable=False),
        )
        Index(f"ix_ledger{suffix}_school", table.c.school_id, table.c.academic_year, table.c.status)
        Index(f"ix_ledger{suffix}_region", table.c.school_region, table.c.academic_year)
        return {"ledger": table}

    def handle(self, conn: Connection, tables: dict[str, Table], batch: Sequence[Envelope]) -> None:
        table = tables["ledger"]
        ids = {e.case_key for e in batch}
        rows: dict[str, dict[str, Any]] = {
            r.case_id: dict(r._mapping) for r in conn.execute(select(table).where(table.c.case_id.in_(ids)))
        }
        existing = set(rows)
        for envelope in batch:
            key = envelope.case_key
            row = fold(key, [envelope.event], rows.get(key))
            if row is None:  # an event of a case this view never saw created
                continue
            row.update(updated_at=envelope.occurred_at, position=envelope.position)
            rows[key] = row
        write(conn, table, rows, existing, "case_id")


def write(conn: Connection, table: Table, rows: Mapping[str, dict[str, Any]], existing: set[str], key: str) -> None:
    """Bulk insert of new rows and bulk update of known ones."""
    upsert_rows(conn, table, key, [r for k, r in rows.items() if k not in existing],
                [r for k, r in rows.items() if k in existing])
