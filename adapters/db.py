"""SQLAlchemy engine and the one MetaData that holds every read-model and reference table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine

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
