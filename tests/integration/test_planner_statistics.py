"""The planner's statistics kept fresh where autovacuum does not (adapters/db.py PlannerStatistics): without them
PostgreSQL planned reading 50 cases' events as a parallel scan of most of the table (bench/README (f))."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from adapters.db import PlannerStatistics
from adapters.settings import Settings
from api.app import build_services
from api.deps import Services
from domain.case import StudentCase
from domain.form import normalise_form
from tests.conftest import SECRET
from tests.support import STAFF, T0, form


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Services]:
    built = build_services(Settings(database_url=postgres_url, secret=SECRET, now="2025-09-15T09:00:00+08:00",
                                    log_level="WARNING"))
    try:
        yield built
    finally:
        built.store.close()
        built.engine.dispose()


def _apply(services: Services, first: int, count: int) -> None:
    for seq in range(first, first + count):
        services.store.save(StudentCase.apply(form=normalise_form(form(seq), today=T0.date()),
                                              school_region="450103", profile_version="guangxi@test", actor=STAFF,
                                              now=T0))


def _table(services: Services, name: str) -> Any:
    with services.engine.connect() as conn:
        return conn.execute(text("SELECT n_mod_since_analyze, last_analyze, last_autoanalyze "
                                 "FROM pg_stat_user_tables WHERE relname = :t"), {"t": name}).one()


def _counted(services: Services, name: str, rows: int) -> None:
    """Waits until the cumulative statistics show `rows` changes of the table (an idle backend reports its counts
    after at most 10 s, usually within 1 s)."""
    deadline = time.monotonic() + 30
    while _table(services, name).n_mod_since_analyze < rows:
        assert time.monotonic() < deadline, f"{name}: changes not reported"
        time.sleep(0.2)


def _autovacuum_on(services: Services) -> bool:
    with services.engine.connect() as conn:
        return conn.execute(text("SHOW autovacuum")).scalar() == "on"


def test_a_check_analyzes_the_tables_autovacuum_leaves_alone(pg: Services) -> None:
    with pg.engine.begin() as conn:  # autovacuum off for the events table, whatever the server's setting
        conn.execute(text("ALTER TABLE zizhu_events SET (autovacuum_enabled = false)"))
    _apply(pg, 1, 80)
    _counted(pg, "zizhu_events", 80)
    _counted(pg, "zizhu_events_chain", 80)
    before = _table(pg, "zizhu_events")
    assert before.last_analyze is None and before.last_autoanalyze is None

    analyzed = pg.store.statistics.check() if pg.store.statistics else []

    assert "zizhu_events" in analyzed
    after = _table(pg, "zizhu_events")
    assert after.last_analyze is not None and after.n_mod_since_analyze == 0
    # A table autovacuum looks after (the server's setting on, no table option) is left to it.
    assert ("zizhu_events_chain" in analyzed) == (not _autovacuum_on(pg))
    # Fresh statistics: nothing stale is left to analyze again.
    assert "zizhu_events" not in pg.store.statistics.check()  # type: ignore[union-attr]


def test_saves_start_a_check_after_enough_rows_and_not_more_often_than_allowed(pg: Services) -> None:
    with pg.engine.begin() as conn:
        conn.execute(text("ALTER TABLE zizhu_events SET (autovacuum_enabled = false)"))
    statistics = PlannerStatistics(pg.engine, every_rows=60, min_seconds=0)
    pg.store.statistics = statistics
    _apply(pg, 1, 59)
    assert statistics._thread is None  # 59 rows reported: below every_rows, no check yet
    _counted(pg, "zizhu_events", 59)
    _apply(pg, 100, 1)  # the 60th: a check in the background
    thread = statistics._thread
    assert thread is not None
    thread.join(timeout=30)
    assert "zizhu_events" in statistics.analyzed
    assert _table(pg, "zizhu_events").last_analyze is not None

    statistics.min_seconds = 3600  # just checked: the next 60 rows start none
    _apply(pg, 200, 60)
    assert statistics._thread is thread


def test_sqlite_needs_no_statistics(tmp_path: Any) -> None:
    built = build_services(Settings(database_url=f"sqlite:///{tmp_path / 'z.db'}", secret=SECRET,
                                    log_level="WARNING"))
    try:
        assert built.store.statistics is not None and not built.store.statistics.enabled
        built.store.statistics.every_rows = 1
        _apply(built, 1, 3)
        assert built.store.statistics._thread is None and built.store.statistics.check() == []
    finally:
        built.store.close()
        built.engine.dispose()
