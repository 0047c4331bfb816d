"""The access log: every time an official (auditor, bureau) reads a case's personal data unmasked, who, which
case, what, when and why is recorded here, and other auditors can read it (GET /v1/audit/access-log).

It is an append-only table beside the read models rather than events in the case log: reading is not a change
to a case, and a case's history must not grow because someone looked at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Integer, String, Table, insert, select
from sqlalchemy.engine import Engine

from adapters.db import metadata

access_log_table = Table(
    "audit_access_log",
    metadata,
    Column("entry_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("sub", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    Column("case_id", String(36), nullable=True, index=True),
    Column("resource", String(200), nullable=False),
    Column("reason", String(500), nullable=False),
)


@dataclass(frozen=True)
class AccessEntry:
    entry_id: int
    at: datetime
    sub: str
    role: str
    case_id: str | None
    resource: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"entry_id": self.entry_id, "at": self.at.isoformat(), "who": {"sub": self.sub, "role": self.role},
                "case_id": self.case_id, "resource": self.resource, "reason": self.reason}


class AccessLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, *, at: datetime, sub: str, role: str, case_id: str | None, resource: str,
               reason: str) -> None:
        with self.engine.begin() as conn:
            # Stored in UTC: SQLite keeps no offset, so every row must mean the same zone.
            conn.execute(insert(access_log_table).values(
                at=at.astimezone(UTC), sub=sub[:200], role=role, case_id=case_id, resource=resource[:200],
                reason=reason[:500]))

    def entries(self, *, case_id: str | None = None, sub: str | None = None, after: int = 0,
                limit: int = 100) -> list[AccessEntry]:
        """Oldest first, from `after` (an entry_id) on: page on by passing the last entry_id seen."""
        query = select(access_log_table).where(access_log_table.c.entry_id > after)
        if case_id:
            query = query.where(access_log_table.c.case_id == case_id)
        if sub:
            query = query.where(access_log_table.c.sub == sub)
        query = query.order_by(access_log_table.c.entry_id).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        entries = []
        for row in rows:
            at: datetime = row["at"]
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            entries.append(AccessEntry(row["entry_id"], at, row["sub"], row["role"], row["case_id"],
                                       row["resource"], row["reason"]))
        return entries
