"""The (case, version, time) index: answers "which version of this case stood at moment T" for as-of reads.

`AsOfIndex` answers from the view only when it holds the case's newest version (the caller says which that is):
otherwise the view lags this case and the caller must replay the case's events instead, so an as-of read is never
answered from a view that has not yet seen a recent event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar
from uuid import UUID

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, case, func, select
from sqlalchemy.engine import Connection

from domain.case import CASE_EVENT_TOPICS
from projections.bulk import insert_rows
from projections.runner import Envelope, Projections, View


class CaseVersions(View):
    name: ClassVar[str] = "case_versions"
    schema_version: ClassVar[int] = 2
    topics: ClassVar[tuple[str, ...]] = CASE_EVENT_TOPICS  # not rounds, plans, samples …
    lean_topics: ClassVar[frozenset[str]] = frozenset(CASE_EVENT_TOPICS)  # the envelope and the event's class only

    def define_tables(self, md: MetaData, suffix: str) -> dict[str, Table]:
        table = Table(
            f"case_versions{suffix}", md,
            Column("case_id", String(36), primary_key=True),
            Column("version", Integer, primary_key=True),
            Column("occurred_at", DateTime(timezone=True), nullable=False),
            Column("event_type", String(64), nullable=False),
            Column("position", BigInteger, nullable=False),
            # The key is the only index: an as-of look-up reads the case's few rows in key order. SQLite keeps
            # such a table as the key's B-tree alone (no second tree of row ids to maintain).
            sqlite_with_rowid=False,
        )
        return {"versions": table}

    def handle(self, conn: Connection, tables: dict[str, Table], batch: Sequence[Envelope]) -> None:
        insert_rows(conn, tables["versions"], [
            {"case_id": e.case_key, "version": e.version, "occurred_at": e.occurred_at,
             "event_type": type(e.event).__name__, "position": e.position}
            for e in batch
        ])


class ViewBehind(LookupError):
    """The view has not yet applied the case's newest event."""


class AsOfIndex:
    """As-of look-ups on the case_versions view (the port CaseService.version_as_of uses)."""

    def __init__(self, projections: Projections) -> None:
        self.projections = projections

    def version_as_of(self, case_id: UUID, as_of: datetime, current_version: int) -> int | None:
        """The case's last version at or before `as_of` (None: it did not exist yet). Raises ViewBehind when the
        view does not hold `current_version` yet. One range scan of the case's rows on the primary key."""
        table = self.projections.active_tables("case_versions")["versions"]
        moment = as_of.astimezone(UTC)
        query = (select(func.max(case((table.c.occurred_at <= moment, table.c.version))),
                        func.max(table.c.version))
                 .where(table.c.case_id == str(case_id)))
        with self.projections.engine.connect() as conn:
            at_time, newest = conn.execute(query).one()
        if newest is None or int(newest) < current_version:
            raise ViewBehind(f"case_versions has not reached version {current_version} of this case")
        return None if at_time is None else int(at_time)
