"""SQLAlchemy engine and the one MetaData that holds every read-model and reference table."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from sqlalchemy import MetaData, create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from adapters.logs import get_logger
from adapters.settings import Settings

metadata = MetaData()


def create_db_engine(settings: Settings) -> Engine:
    if settings.is_sqlite:
        settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(f"sqlite:///{settings.sqlite_path}", connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            # Helper threads for large sorts, i.e. the indexes a rebuilt generation gets at its switch: measured
            # on 3,400,000 notification rows (200,000 cases), 2.25 s with none, 1.85 s with two (bench/README (a)).
            cursor.execute(f"PRAGMA threads={min(os.cpu_count() or 1, 4)}")
            cursor.close()

        return engine
    url = settings.database_url
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_size=5, max_overflow=10, pool_pre_ping=True)


def create_tables(engine: Engine) -> None:
    """Creates every table once, at start-up, in one place (concurrent creation races on PostgreSQL)."""
    # Importing registers the tables on `metadata`.
    import adapters.access_log
    import adapters.calendar
    import adapters.consumption
    import adapters.evaluation
    import adapters.idempotency
    import adapters.notifications
    import adapters.registries
    import adapters.schools  # noqa: F401
    import projections  # noqa: F401

    metadata.create_all(engine)


class PlannerStatistics:
    """Keeps PostgreSQL's planner statistics of this application's tables fresh when autovacuum does not.

    Without statistics the planner guesses: measured at 100,000 students (bench/README (f)), reading the events of
    50 cases (`originator_id = ANY(...)`) was planned for 820,000 rows of a 560,000-row events table that had never
    been analyzed (autovacuum off on that server), as a parallel bitmap scan with JIT compilation: 120 ms a read
    instead of 2.4 ms once analyzed. Autovacuum would analyze a table after about a tenth of it changed; where it
    is off (the server's setting or the table's), this does the same: the writers (event store saves, projection
    batches) report how many rows they wrote, and after `every_rows` of them, at most once per `min_seconds`, a
    background thread analyzes the tables of the search path whose changes since their last analysis exceed
    `50 + scale × rows`. ANALYZE waits for no lock longer than `lock_timeout` (a table being written waits for
    the writer's commit, and writers would queue behind it): a table it cannot lock waits for the next check.
    Does nothing on SQLite, whose planner needs no statistics for these queries."""

    SCALE = 0.1  # autovacuum_analyze_scale_factor's default
    THRESHOLD = 50  # autovacuum_analyze_threshold's default

    def __init__(self, engine: Engine, every_rows: int = 5_000, min_seconds: float = 10.0,
                 lock_timeout: str = "2s") -> None:
        self.engine = engine
        self.enabled = engine.dialect.name == "postgresql"
        self.every_rows = every_rows
        self.min_seconds = min_seconds
        self.lock_timeout = lock_timeout
        self._pending = 0
        self._last = float("-inf")
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.analyzed: list[str] = []  # tables analyzed by the last check (for tests and logs)

    def wrote(self, rows: int) -> None:
        """Called by a writer after its transaction committed `rows` changed rows (an estimate is enough)."""
        if not self.enabled or rows <= 0:
            return
        with self._lock:
            self._pending += rows
            if (self._pending < self.every_rows or time.monotonic() - self._last < self.min_seconds
                    or (self._thread is not None and self._thread.is_alive())):
                return
            self._pending = 0
            self._last = time.monotonic()
            self._thread = threading.Thread(target=self._check_quietly, name="planner-statistics", daemon=True)
            self._thread.start()

    def _check_quietly(self) -> None:
        try:
            self.check()
        except Exception as exc:  # the database away, a lock not granted: the next check tries again
            get_logger("zizhu.db").warning("statistics_check_failed", error=type(exc).__name__)

    def stale_tables(self, conn: Connection) -> list[tuple[str, str]]:
        """(schema, table) of the tables autovacuum leaves alone whose statistics are out of date."""
        rows = conn.execute(text(
            "SELECT s.schemaname, s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
            "WHERE s.schemaname = ANY (current_schemas(false)) "
            "AND (current_setting('autovacuum') = 'off' "
            "     OR coalesce('autovacuum_enabled=false' = ANY (c.reloptions), false)) "
            "AND s.n_mod_since_analyze > :threshold + :scale * greatest(c.reltuples, 0) "
            "ORDER BY s.n_mod_since_analyze DESC"), {"threshold": self.THRESHOLD, "scale": self.SCALE})
        return [(r.schemaname, r.relname) for r in rows]

    def check(self) -> list[str]:
        """Analyzes the stale tables now; returns their names."""
        if not self.enabled:
            return []
        analyzed: list[str] = []
        with self.engine.connect() as conn:
            stale = self.stale_tables(conn)
            conn.rollback()
            quote = conn.dialect.identifier_preparer
            for schema, table in stale:
                try:
                    # SET LOCAL: the pooled connection keeps no setting of ours after this transaction.
                    conn.execute(text(f"SET LOCAL lock_timeout = '{self.lock_timeout}'"))
                    conn.execute(text(f"ANALYZE {quote.quote_schema(schema)}.{quote.quote(table)}"))
                    conn.commit()
                except OperationalError:  # the lock was not granted in time (or the table went): next check
                    conn.rollback()
                    continue
                analyzed.append(table)
        self.analyzed = analyzed
        if analyzed:
            get_logger("zizhu.db").info("statistics_analyzed", tables=len(analyzed))
        return analyzed
