"""The (case, version, time) index: answers "which version of this case stood at moment T" for as-of reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table
from sqlalchemy.engine import Connection

from projections.runner import Envelope, View


class CaseVersions(View):
    name: ClassVar[str] = "case_versions"
    schema_version: ClassVar[int] = 1

    def define_tables(self, md: MetaData, suffix: str) -> dict[str, Table]:
        table = Table(
            f"case_versions{suffix}", md,
            Column("case_id", String(36), primary_key=True),
            Column("version", Integer, primary_key=True),
            Column("occurred_at", DateTime(timezone=True), nullable=False),
            Column("event_type", String(64), nullable=False),
            Column("position", BigInteger, nullable=False),
        )
        Index(f"ix_case_versions{suffix}_time", table.c.case_id, table.c.occurred_at)
        return {"versions": table}

    def handle(self, conn: Connection, tables: dict[str, Table], batch: Sequence[Envelope]) -> None:
        conn.execute(tables["versions"].insert(), [
            {"case_id": str(e.case_id), "version": e.version, "occurred_at": e.occurred_at,
             "event_type": type(e.event).__name__, "position": e.position}
            for e in batch
        ])
