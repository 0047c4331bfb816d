"""Rounds: one row per identification or spring-adjustment round, for listing a school's or a region's rounds.

Whether a round is open for applications is decided on the aggregate itself (adapters/rounds.py); this view only
answers "which rounds are there" for a school or a region, with their dates and whether they were closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Column, Date, DateTime, Index, Integer, MetaData, String, Table, update
from sqlalchemy.engine import Connection

from projections.runner import Envelope, View


class Rounds(View):
    name: ClassVar[str] = "rounds"
    schema_version: ClassVar[int] = 1
    topics: ClassVar[tuple[str, ...]] = ("round.opened", "round.closed")

    def define_tables(self, md: MetaData, suffix: str) -> dict[str, Table]:
        table = Table(
            f"rounds{suffix}", md,
            Column("round_id", String(36), primary_key=True),
            Column("school_id", String(32), nullable=False),
            Column("school_region", String(6), nullable=False),
            Column("academic_year", String(9), nullable=False),
            Column("kind", String(24), nullable=False),
            Column("opens_on", Date, nullable=False),
            Column("closes_on", Date, nullable=False),
            Column("closed_on", Date),
            Column("opened_at", DateTime(timezone=True), nullable=False),
            Column("version", Integer, nullable=False),
            Column("position", BigInteger, nullable=False),
        )
        Index(f"ix_rounds{suffix}_school", table.c.school_id, table.c.academic_year)
        Index(f"ix_rounds{suffix}_region", table.c.school_region, table.c.academic_year)
        return {"rounds": table}

    def handle(self, conn: Connection, tables: dict[str, Table], batch: Sequence[Envelope]) -> None:
        table = tables["rounds"]
        opened: list[dict[str, Any]] = []
        for envelope in batch:
            event = envelope.event
            key = envelope.case_key
            if type(event).__name__ == "RoundOpened":
                opened.append({"round_id": key, "school_id": event.school_id, "school_region": event.school_region,
                               "academic_year": event.academic_year, "kind": event.kind,
                               "opens_on": event.opens_on, "closes_on": event.closes_on, "closed_on": None,
                               "opened_at": envelope.occurred_at, "version": envelope.version,
                               "position": envelope.position})
                continue
            if opened:  # keep log order: rows opened earlier in this batch are written before they are closed
                conn.execute(table.insert(), opened)
                opened = []
            conn.execute(update(table).where(table.c.round_id == key).values(
                closed_on=event.closed_on, version=envelope.version, position=envelope.position))
        if opened:
            conn.execute(table.insert(), opened)
