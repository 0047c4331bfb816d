"""SIGKILL `zizhu rebuild` at random points, many times, then let it finish: every view equals a clean rebuild's,
row for row (checksums over ordered rows), on SQLite and PostgreSQL.

A kill lands wherever the process happens to be: starting up, mid-batch (inside a transaction), between a batch
and the next, or while switching over. Kill points are counted in progress ticks (one per applied batch) read from
the process's own output, plus a random delay, so they spread over the whole rebuild however fast the machine is.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from adapters.auth import Principal
from adapters.settings import Settings
from api.deps import Services
from domain.values import Role
from projections.runner import projection_state
from tests.conftest import SECRET
from tests.support import GX_SCHOOL, form

KILLS_PER_VIEW = 4
# The case index and the notifications keep rows between batches (RowCache), the case versions do not.
VIEWS = ("case_index", "case_versions", "notifications")
BATCH = 5
STAFF = Principal("staff-1", Role.SCHOOL, school=GX_SCHOOL)
EVALUATOR = Principal("teacher-1", Role.EVALUATOR, school=GX_SCHOOL, class_id="G10-3")


def _history(services: Services, cases: int) -> None:
    """Cases left at different steps, so the views hold varied rows."""
    for seq in range(1, cases + 1):
        case_id = services.cases.apply(STAFF, form(seq)).case.id
        if seq % 4 == 0:
            continue
        services.cases.verify(STAFF, case_id, method="document",
                              confirmed_categories=["minimum_living_allowance"], notes="")
        services.cases.assess(STAFF, case_id)
        if seq % 3 == 0:
            services.cases.evaluate(EVALUATOR, case_id, votes_for=5, votes_against=0,
                                    recommended_level="especially_difficult", panel=[])
            services.cases.rate(STAFF, case_id, level="difficult", reason="the panel's view of the debts")


def _rebuild_process(settings: Settings, view: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ZIZHU_DATABASE_URL": settings.database_url, "ZIZHU_SECRET": SECRET,
           "ZIZHU_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    command = [str(Path(sys.executable).parent / "zizhu"), "rebuild", "--projection", view,
               "--batch-size", str(BATCH)]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_after(process: subprocess.Popen[bytes], ticks: int, delay: float) -> bool:
    """SIGKILLs the process once it has reported `ticks` batches (then `delay` seconds); False if it ended first."""
    assert process.stderr is not None
    seen = 0
    while seen < ticks:
        chunk = os.read(process.stderr.fileno(), 4096)
        if not chunk:  # it finished before reaching the kill point
            process.wait(timeout=60)
            return False
        seen += chunk.count(b"\r")
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    process.stderr.close()
    return process.returncode == -signal.SIGKILL


def _building_position(services: Services, view: str) -> int:
    """Where a rebuild in progress (left by a killed process) stands; 0 when a new one will start."""
    with services.engine.connect() as conn:
        position = conn.execute(select(projection_state.c.position).where(
            projection_state.c.view == view, projection_state.c.status == "building")).scalar()
    return int(position or 0)


def _rows(services: Services, view: str, base: str) -> int:
    table = services.projections.tables_of(view, services.projections.active_generation(view, max_age=0))[base]
    with services.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_killed_rebuilds_resume_to_the_same_rows_as_a_clean_rebuild(services: Services, settings: Settings) -> None:
    _history(services, 24)
    events = int(services.store.recorder.max_notification_id() or 0)
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    kills = 0
    for view in VIEWS:
        for _ in range(KILLS_PER_VIEW):
            remaining_ticks = (events - _building_position(services, view)) // BATCH + 1
            process = _rebuild_process(settings, view)
            kills += _kill_after(process, rng.randrange(0, remaining_ticks), rng.uniform(0, 0.02))
        final = _rebuild_process(settings, view)
        assert final.wait(timeout=120) == 0, (final.stderr.read() if final.stderr else b"").decode()[-2000:]
        assert final.stderr is not None
        final.stderr.close()
    assert kills >= len(VIEWS) * KILLS_PER_VIEW - 2, f"too few kills landed (seed {seed})"

    projections = services.projections
    with services.engine.connect() as conn:
        live = conn.execute(select(projection_state.c.view, projection_state.c.status)
                            .where(projection_state.c.status != "retired")).all()
    assert sorted(r.status for r in live if r.view in VIEWS) == ["active"] * len(VIEWS)
    resumed = {view: projections.checksum(view) for view in VIEWS}
    assert _rows(services, "case_index", "cases") == 24 and _rows(services, "case_versions", "versions") == events

    for view in VIEWS:
        clean = projections.rebuild(view)
        assert projections.checksum(view, clean.generation) == resumed[view], f"{view} differs (seed {seed})"
