"""The case index: one row per case with where it stands (school, class, status, level, since when), and a
count of cases per (region, academic year, school, level, status) kept in step with it.

Serves the review queues (per school and step, oldest first), the case search within scope, and the region
statistics. Keeps only what those queries need: no resident ID number, no household data.

The counts exist because counting a province from the case rows took 25 ms at 56,000 cases and grows with the
cases (bench/, scenario b); the counts table grows only with schools × levels × statuses. A batch moves a case
from one count to another in the same transaction as the case row, so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    event,
    func,
    select,
)
from sqlalchemy.engine import Connection

from domain.case import CASE_EVENT_TOPICS
from projections.bulk import SEPARATOR, RowCache, packed, upsert_rows
from projections.runner import Envelope, View, current_batch

# Which status each event leaves the case in (None: the event does not move the status).
STATUS_AFTER = {
    "Applied": "applied", "Amended": "applied", "Withdrawn": "withdrawn", "Verified": "verified",
    "Assessed": "assessed", "ClassEvaluated": "evaluated", "Publicized": "in_publicity", "Confirmed": "confirmed",
    "Archived": "archived", "Revoked": "revoked",
}


class CaseIndex(View):
    name: ClassVar[str] = "case_index"
    # 7: a revocation ends open objections. Same tables, so the old generation answers while the new one is
    # filled (Projections.ensure: an online rebuild).
    schema_version: ClassVar[int] = 7
    topics: ClassVar[tuple[str, ...]] = CASE_EVENT_TOPICS  # not rounds, plans, samples …
    # Every event moves the row's version and time; only these seven are read for more (see _apply).
    lean_topics: ClassVar[frozenset[str]] = frozenset(CASE_EVENT_TOPICS) - {
        "case.applied", "case.amended", "case.verified", "case.assessed", "case.rated", "case.objection_resolved",
        "case.readjusted"}

    def __init__(self) -> None:
        self.cache: RowCache[dict[str, Any]] = RowCache()

    def define_tables(self, md: MetaData, suffix: str) -> dict[str, Table]:
        table = Table(
            f"case_index{suffix}", md,
            Column("case_id", String(36), primary_key=True),
            Column("academic_year", String(9), nullable=False),
            Column("school_id", String(32), nullable=False),
            Column("school_region", String(6), nullable=False),
            Column("class_id", String(64), nullable=False),
            Column("student_name", String(100), nullable=False),
            Column("stage", String(32), nullable=False),
            Column("status", String(16), nullable=False),
            Column("level", String(32)),
            Column("suggested_level", String(32)),
            Column("departs_from_suggestion", Boolean, nullable=False, default=False),
            Column("data_matched", Boolean, nullable=False, default=False),
            Column("open_objections", Integer, nullable=False, default=0),
            Column("applied_at", DateTime(timezone=True), nullable=False),
            Column("status_since", DateTime(timezone=True), nullable=False),
            Column("updated_at", DateTime(timezone=True), nullable=False),
            Column("version", Integer, nullable=False),
            Column("position", BigInteger, nullable=False),
            sqlite_with_rowid=False,  # looked up and replaced by its key: one B-tree less to maintain on SQLite
        )
        # Room on each page for a row's next version: PostgreSQL can then update in place (HOT) whenever no
        # indexed column changes, e.g. throughout a rebuild, which adds the secondary indexes last.
        _fill_factor(table, 70)
        # Each index serves one query of projections.queries in its sort order (keyset pages scan a range):
        # a school's queue at a step, the same within one class (evaluators), search by name within a
        # school, and a bureau's search within its region.
        Index(f"ix_case_index{suffix}_queue", table.c.school_id, table.c.status, table.c.status_since,
              table.c.case_id)
        Index(f"ix_case_index{suffix}_class_queue", table.c.school_id, table.c.class_id, table.c.status,
              table.c.status_since, table.c.case_id)
        Index(f"ix_case_index{suffix}_name", table.c.school_id, table.c.student_name, table.c.case_id)
        Index(f"ix_case_index{suffix}_region", table.c.school_region, table.c.status)
        counts = Table(
            f"case_index_counts{suffix}", md,
            # The key's order is the statistics query's: a region-code range, then the year.
            Column("school_region", String(6), primary_key=True),
            Column("academic_year", String(9), primary_key=True),
            Column("school_id", String(32), primary_key=True),
            Column("level", String(32), primary_key=True),  # NO_LEVEL for none (a key column cannot be NULL)
            Column("status", String(16), primary_key=True),
            Column("n", BigInteger, nullable=False),
            sqlite_with_rowid=False,
        )
        _fill_factor(counts, 50)  # every batch updates these few rows again
        return {"cases": table, "counts": counts}

    def handle(self, conn: Connection, tables: dict[str, Table], batch: Sequence[Envelope]) -> None:
        table = tables["cases"]
        rows = self.cache.rows(conn, table, "case_id", {e.case_key for e in batch})
        running = current_batch()
        # A rebuild counts once it has caught up (finish_building): counting per batch was a fifth of a batch at
        # 1,000,000 cases.
        counting = running is None or not running.building
        existing = set(rows)
        counted_before = {k: _count_key(r) for k, r in rows.items()} if counting else {}
        for envelope in batch:
            self._apply(rows, envelope)
        upsert_rows(conn, table, "case_id", [r for k, r in rows.items() if k not in existing],
                    [r for k, r in rows.items() if k in existing])
        self.cache.keep(table, rows)
        if not counting:
            return
        moves: dict[tuple[str, ...], int] = {}
        for k, row in rows.items():
            before, after = counted_before.get(k), _count_key(row)
            if before == after:
                continue
            if before is not None:
                moves[before] = moves.get(before, 0) - 1
            moves[after] = moves.get(after, 0) + 1
        _add_counts(conn, tables["counts"], {k: n for k, n in moves.items() if n})

    def finish_building(self, conn: Connection, tables: dict[str, Table]) -> None:
        """The counts of a rebuilt generation, from its case rows in one statement."""
        cases, counts = tables["cases"], tables["counts"]
        level = func.coalesce(cases.c.level, NO_LEVEL)
        keys = [cases.c.school_region, cases.c.academic_year, cases.c.school_id, level, cases.c.status]
        conn.execute(counts.delete())
        conn.execute(counts.insert().from_select([*COUNT_KEY, "n"], select(*keys, func.count()).group_by(*keys)))

    @staticmethod
    def _apply(rows: dict[str, dict[str, Any]], envelope: Envelope) -> None:
        event = envelope.event
        kind = type(event).__name__
        key = envelope.case_key
        if kind == "Applied":
            student = event.form["student"]
            rows[key] = {
                "case_id": key, "academic_year": event.form["academic_year"], "school_id": student["school_id"],
                "school_region": event.school_region, "class_id": student["class_id"],
                "student_name": student["name"], "stage": student["stage"], "status": "applied", "level": None,
                "suggested_level": None, "departs_from_suggestion": False, "data_matched": False,
                "open_objections": 0, "applied_at": envelope.occurred_at, "status_since": envelope.occurred_at,
                "updated_at": envelope.occurred_at, "version": envelope.version, "position": envelope.position,
            }
            return
        row = rows.get(key)
        if row is None:  # an event of a case this view never saw created: nothing to index
            return
        before = row["status"]
        status = STATUS_AFTER.get(kind)
        if kind == "Amended":
            row.update(class_id=event.form["student"]["class_id"], student_name=event.form["student"]["name"],
                       suggested_level=None, data_matched=False)
        elif kind == "Verified":
            row["data_matched"] = event.method == "data_match" and bool(event.confirmed)
        elif kind == "Assessed":
            row["suggested_level"] = event.assessment["suggested_level"]
        elif kind == "Rated":
            row["level"] = _level(event.level)
            row["departs_from_suggestion"] = bool(event.departs_from_suggestion)
            status = "rated" if event.level is not None else "not_identified"
        elif kind == "Objected":
            row["open_objections"] += 1
        elif kind == "ObjectionResolved":
            row["open_objections"] = 0 if event.outcome == "upheld" else max(row["open_objections"] - 1, 0)
            if event.outcome == "upheld":
                row["level"] = _level(event.new_level)
                status = "rated" if event.new_level is not None else "not_identified"
        elif kind == "Readjusted":
            row["level"] = _level(event.level)
            if event.level is None:
                status = "not_identified"
        elif kind == "Revoked":
            row["open_objections"] = 0  # a revocation ends the case's open objections (StudentCase.revoke)
        if status is not None:
            row["status"] = status
            if status != before:
                row["status_since"] = envelope.occurred_at
        row.update(updated_at=envelope.occurred_at, version=envelope.version, position=envelope.position)


def _fill_factor(table: Table, percent: int) -> None:
    """PostgreSQL only (a storage parameter, set as the table is created, before it holds any row)."""
    statement = DDL(f"ALTER TABLE %(fullname)s SET (fillfactor = {percent})")  # type: ignore[no-untyped-call]
    event.listen(table, "after_create", statement.execute_if(dialect="postgresql"))


COUNT_KEY = ("school_region", "academic_year", "school_id", "level", "status")
NO_LEVEL = "none"


def _count_key(row: dict[str, Any]) -> tuple[str, ...]:
    return (row["school_region"], row["academic_year"], row["school_id"], row["level"] or NO_LEVEL, row["status"])


def _add_counts(conn: Connection, counts: Table, moves: dict[tuple[str, ...], int]) -> None:
    """Adds each move to its count, creating counts on first use and removing those that reach zero, in two
    statements per batch (arrays on PostgreSQL; executemany on SQLite, which runs in-process)."""
    if not moves:
        return
    table = f'"{counts.name}"'
    key = ", ".join(COUNT_KEY)
    match = " AND ".join(f"c.{k} = k.{k}" for k in COUNT_KEY)
    emptied = [k for k, n in moves.items() if n < 0]
    if conn.dialect.name == "postgresql":
        arrays = ", ".join(["string_to_array(%s, %s)"] * len(COUNT_KEY))
        columns = [(packed(c), SEPARATOR) for c in zip(*moves.keys(), strict=True)]
        conn.exec_driver_sql(
            f"INSERT INTO {table} AS c ({key}, n) SELECT * FROM unnest({arrays}, "
            f"string_to_array(%s, %s)::bigint[]) ON CONFLICT ({key}) DO UPDATE SET n = c.n + EXCLUDED.n",
            tuple(v for pair in [*columns, (packed(moves.values()), SEPARATOR)] for v in pair))
        if emptied:
            # A count that reached zero goes, so the table depends only on the log, not on where batches were cut.
            conn.exec_driver_sql(
                f"DELETE FROM {table} AS c USING unnest({arrays}) AS k({key}) WHERE {match} AND c.n = 0",
                tuple(v for c in zip(*emptied, strict=True) for v in (packed(c), SEPARATOR)))
        return
    conn.exec_driver_sql(f"INSERT INTO {table} ({key}, n) VALUES (?, ?, ?, ?, ?, ?) "
                         f"ON CONFLICT ({key}) DO UPDATE SET n = n + excluded.n",
                         [(*k, n) for k, n in moves.items()])
    if emptied:
        conn.exec_driver_sql(f"DELETE FROM {table} WHERE {' AND '.join(f'{k} = ?' for k in COUNT_KEY)} "
                             "AND n = 0", emptied)


def _level(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))
