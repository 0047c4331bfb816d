"""Deadlines of public notice: a window that has ended with no open objection concludes with `Confirmed`.

The deadlines are not kept in a job store: they are derived from the log. The notices view lists every case in
publicity with its `ends_on` and open-objection count; each run of the job asks it which windows ended before
today (China time, from the service clock) with nothing open, and confirms each through the domain command as the
`system` actor. Because the domain refuses to confirm a case twice and concurrent saves of one case cannot both
succeed, a run after a restart or crash concludes every window that ended meanwhile exactly once, however many
runs or processes overlap; a stale view row costs one refused attempt, never a second `Confirmed`.

`DeadlineScheduler` runs the job periodically inside `zizhu serve` (APScheduler 3 BackgroundScheduler); tests and
`zizhu deadlines run` call `DeadlineJob.run_once()` synchronously.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from uuid import UUID

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select

from adapters.auth import Principal
from adapters.batches import Decide, decide_in_chunks
from adapters.cases import CaseService
from adapters.logs import get_logger
from domain.case import StudentCase, local_date
from domain.values import Role
from projections.runner import Projections

SYSTEM = Principal(sub="system", role=Role.SYSTEM)
JOB_ID = "notice_deadlines"


@dataclass(frozen=True)
class DueWindow:
    case_id: str
    ends_on: date
    open_objections: int


@dataclass
class DeadlineRun:
    """What one run did: cases confirmed, windows held open by objections, and attempts the domain refused."""

    today: date
    confirmed: list[str] = field(default_factory=list)
    held_by_objection: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


class DeadlineJob:
    def __init__(self, cases: CaseService, projections: Projections) -> None:
        self.cases = cases
        self.projections = projections
        self.log = get_logger("zizhu.deadlines")

    def ended_windows(self, today: date) -> list[DueWindow]:
        """Cases in publicity whose window ended before `today`, oldest first (from the notices view)."""
        notices = self.projections.active_tables("notices")["notices"]
        query = (select(notices.c.case_id, notices.c.ends_on, notices.c.open_objections)
                 .where(notices.c.status == "in_publicity", notices.c.ends_on < today)
                 .order_by(notices.c.ends_on, notices.c.case_id))
        with self.projections.engine.connect() as conn:
            return [DueWindow(r.case_id, r.ends_on, int(r.open_objections)) for r in conn.execute(query)]

    def run_once(self, catch_up: bool = True) -> DeadlineRun:
        if catch_up:
            # The view must have seen the latest objections and confirmations before it is asked what is due.
            self.projections.catch_up("notices", rebuilds=False)
        run = DeadlineRun(today=self.cases.clock.today())
        due: list[tuple[UUID, Decide]] = []
        for window in self.ended_windows(run.today):
            if window.open_objections:
                run.held_by_objection.append(window.case_id)
            else:
                due.append((UUID(window.case_id), _confirm))
        # Loaded and confirmed a chunk at a time, one transaction per chunk (adapters/batches.py).
        results, _ = decide_in_chunks(self.cases, SYSTEM, "confirm", due)
        for done in results:
            if done.error is not None:
                # Already concluded, an objection the view lags on, or a concurrent writer that won: the domain
                # refused, nothing was written, and the next run looks again at whatever is still due.
                run.refused[str(done.case_id)] = done.error.code
            elif done.changed:
                run.confirmed.append(str(done.case_id))
        if run.confirmed or run.refused:
            self.log.info("notice_deadlines_run", today=run.today.isoformat(), confirmed=len(run.confirmed),
                          held_by_objection=len(run.held_by_objection), refused=len(run.refused))
        return run


def _confirm(case: StudentCase, now: datetime) -> None:
    case.confirm(today=local_date(now), actor=SYSTEM.actor, now=now)


class DeadlineScheduler:
    """The periodic deadline job inside `zizhu serve`: one run at start-up, then every `interval` seconds."""

    def __init__(self, job: DeadlineJob, interval: float) -> None:
        self.job = job
        self.interval = interval
        self._scheduler = BackgroundScheduler(timezone=UTC)

    def start(self) -> None:
        # APScheduler logs two INFO lines per run; the job logs what it did itself, as a structured event.
        for name in ("apscheduler.scheduler", "apscheduler.executors.default"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # coalesce + one instance: runs missed while busy or suspended collapse into one, never overlap.
        self._scheduler.add_job(self._run, "interval", seconds=self.interval, id=JOB_ID, replace_existing=True,
                                next_run_time=datetime.now(UTC), coalesce=True, max_instances=1)
        self._scheduler.start()

    def _run(self) -> None:
        try:
            self.job.run_once()
        except Exception as exc:  # a failing store must not stop the schedule; the next run retries
            self.job.log.warning("notice_deadlines_error", error_type=type(exc).__name__, error=str(exc)[:200])

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)
