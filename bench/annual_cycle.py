"""Scenario: the annual identification cycle of one region on PostgreSQL, through the services a province uses.

N students in schools of one county (450103, Guangxi; 400 students a school, 8 classes each) go through the year:

| step | how (the service that real users drive) |
|---|---|
| apply | `BatchCommands.apply_many`: each school enters its students' forms in one request (400 forms) |
| verify | `DataMatching.verify_school`: each school verifies all its applications by registry data matching (batch) |
| assess | `BatchCommands.assess_school`: each school runs the scoring model on all its verified cases |
| evaluate | `BatchCommands.evaluate_class`: each class group enters its results, each case with its own tally |
| rate | `BatchCommands.rate_school`: each school rates its evaluated cases at the class group's recommendation |
| notice | `PublicityService.open_window`: one 5-working-day notice per school for all its rated cases (batch) |
| confirm | `DeadlineJob.run_once` after the window (the service restarted 12 days later): the scheduler's batch |
| archive | `ExportService.national`: each school's archive export, which archives its confirmed cases (batch) |
| follow-up | `Aftercare.draw_follow_up_sample`: each school's semester sample (batch) |

Every batch loads its cases 500 at a time with one query and saves each chunk's events in one transaction
(adapters/batches.py). The views a step reads (case index, case keys, notices) are caught up inside that step, as
the service's projection runner would beside the requests; the remaining views are caught up at the end, timed
separately (up to 20,000 students; beyond, the rebuild benchmark (a) gives their rate).

Every step is timed; the cycle's events per second are set against the bare batched append rate of the very same
events (read back from the log; the first 1,000,000 when the cycle wrote more) into a fresh store of the same kind
with the store's own recorder, 500 events per insert, measured in the same run. No registry lists are loaded,
so data matching confirms no category (each claim is recorded as a discrepancy) and every case goes through class
evaluation; the cost of matching itself is in bench/matching.py.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.persistence import StoredEvent
from sqlalchemy import select

from adapters.aftercare import Aftercare
from adapters.auth import Principal
from adapters.batches import BatchCommands
from adapters.logs import configure_logging
from adapters.person_keys import PersonKeys
from adapters.settings import Settings
from api.app import build_services
from api.deps import Services
from bench import command_path
from bench.harness import ratio, say
from bench.http_load import database, sampled
from domain.values import Role

REGION = "450103"
STUDENTS_PER_SCHOOL = 400
CLASSES = 8
YEAR = "2025-2026"
START = "2025-09-15T09:00:00+08:00"
AFTER_NOTICE = timedelta(days=12)
BATCH = 500
BASELINE_SAMPLE = 1_000_000  # events of the log the bare append rate is measured on
VIEWS_UP_TO = 20_000  # students up to which the remaining views are caught up (and timed) after the cycle
SECRET = "bench-secret-of-at-least-thirty-two-characters"


@dataclass
class Step:
    name: str
    how: str
    seconds: float = 0.0
    events: int = 0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


@dataclass
class Cycle:
    students: int
    steps: list[Step] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    @property
    def events(self) -> int:
        return sum(s.events for s in self.steps)


def school_of(i: int) -> str:
    return f"S{REGION}{9000 + i // STUDENTS_PER_SCHOOL:04d}"


def class_of(i: int) -> str:
    return f"G10-{i % CLASSES + 1}"


def schools_csv(students: int) -> bytes:
    rows = ["school_id,name,region_code,stage"]
    for s in range((students + STUDENTS_PER_SCHOOL - 1) // STUDENTS_PER_SCHOOL):
        rows.append(f"{school_of(s * STUDENTS_PER_SCHOOL)},南宁市青秀区第{s + 1}中学,{REGION},senior_secondary")
    return ("\n".join(rows) + "\n").encode()


def staff(school_id: str) -> Principal:
    return Principal(sub=f"bench-staff-{school_id}", role=Role.SCHOOL, school=school_id)


@contextmanager
def opened(url: str, now: str) -> Iterator[Services]:
    services = build_services(Settings(database_url=url, secret=SECRET, now=now, log_level="WARNING",
                                       demo_schools=None))
    try:
        yield services
    finally:
        services.store.close()
        services.engine.dispose()


def timed(cycle: Cycle, services: Services, name: str, how: str, work: Callable[[], None]) -> None:
    before = services.projections.head()
    started = time.perf_counter()
    work()
    step = Step(name, how, time.perf_counter() - started, services.projections.head() - before)
    cycle.steps.append(step)
    say(f"    {name:10} {step.events:9,} events {step.seconds:8.1f} s {step.rate:8,.0f} events/s   ({how})")


# ------------------------------------------------------------------------------------------ one school's steps
# Module-level, so that worker processes can run them: a province's schools work at the same time, each on its
# own cases, so the cycle runs its schools in `workers` processes (one per core), each with its own services.

_services: Services | None = None


def _open_worker(url: str, now: str, one_at_a_time: Any) -> None:
    global _services
    configure_logging("WARNING")
    # One at a time: opening runs CREATE TABLE IF NOT EXISTS, which PostgreSQL refuses to run twice at once
    # ("tuple concurrently updated").
    with one_at_a_time:
        _services = build_services(Settings(database_url=url, secret=SECRET, now=now, log_level="WARNING",
                                            demo_schools=None))


def _ready(_: int) -> int:
    time.sleep(0.05)
    return os.getpid()


def _here() -> Services:
    assert _services is not None, "the worker's services are opened first"
    return _services


def _batches(services: Services) -> BatchCommands:
    assert services.batches is not None
    return services.batches


def school_apply(job: tuple[str, int, int]) -> list[str]:
    school_id, first, last = job
    forms = [command_path.application(i, school_id, class_of(i), REGION) for i in range(first, last)]
    answer = _batches(_here()).apply_many(staff(school_id), school_id, forms)
    assert answer["skipped"] == 0, answer["applications"][:3]
    return []


def school_verify(school_id: str) -> list[str]:
    identification = _here().identification
    assert identification is not None
    identification.matching.verify_school(staff(school_id), school_id, academic_year=YEAR)
    return []


def school_assess(school_id: str) -> list[str]:
    _batches(_here()).assess_school(staff(school_id), school_id, academic_year=YEAR)
    return []


def school_evaluate(school_id: str) -> list[str]:
    """Each class group enters its results for its class (agreeing with the scoring model's suggestion), from the
    class's list of assessed cases (the school queue's view)."""
    services = _here()
    index = services.projections.active_tables("case_index")["cases"]
    with services.projections.engine.connect() as conn:
        rows = conn.execute(select(index.c.case_id, index.c.class_id, index.c.suggested_level).where(
            index.c.school_id == school_id, index.c.status == "assessed")).all()
    by_class: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_class.setdefault(row.class_id, []).append(
            {"case_id": row.case_id, "votes_for": 5, "votes_against": 1, "recommended_level": row.suggested_level,
             "panel": [{"sub": f"bench-teacher-{school_id}-{row.class_id}", "role": "head_teacher"}]})
    for class_id, results in sorted(by_class.items()):
        panel = Principal(sub=f"bench-teacher-{school_id}-{class_id}", role=Role.EVALUATOR, school=school_id,
                          class_id=class_id)
        _batches(services).evaluate_class(panel, school_id, class_id, results)
    return []


def school_rate(school_id: str) -> list[str]:
    answer = _batches(_here()).rate_school(staff(school_id), school_id, academic_year=YEAR)
    return [c["case_id"] for c in answer["cases"] if c.get("status") == "rated"]


def school_notice(job: tuple[str, list[str]]) -> list[str]:
    school_id, case_ids = job
    publicity = _here().publicity
    assert publicity is not None
    if case_ids:
        publicity.open_window(staff(school_id), school_id, case_ids)
    return []


def school_archive(school_id: str) -> list[str]:
    exports = _here().exports
    assert exports is not None
    exports.national(staff(school_id), school_id, YEAR)
    return []


def school_follow_up(school_id: str) -> list[str]:
    services = _here()
    Aftercare(services.cases, services.projections, PersonKeys(services.settings.secret)).draw_follow_up_sample(
        staff(school_id), school_id, seed="0123456789abcdef")
    return []


class Schools:
    """Runs one school's step for every school: in this process (one worker), or spread over worker processes."""

    def __init__(self, services: Services, url: str, now: str, workers: int) -> None:
        self.services = services
        self.workers = workers
        self.pool: Any = None
        if workers > 1:
            context = multiprocessing.get_context("spawn")
            self.pool = context.Pool(workers, initializer=_open_worker, initargs=(url, now, context.Lock()))
            seen: set[int] = set()
            while len(seen) < workers:  # every worker started and opened (not timed as part of a step)
                seen.update(self.pool.map(_ready, range(workers), chunksize=1))

    def each(self, step: Callable[[Any], list[str]], jobs: list[Any]) -> list[list[str]]:
        if self.pool is None:
            global _services
            _services = self.services
            return [step(job) for job in jobs]
        return list(self.pool.map(step, jobs, chunksize=1))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()


def first_half(services: Services, cycle: Cycle, students: int, schools_run: Schools) -> dict[str, list[str]]:
    """apply → verify → assess → evaluate → rate → notice, on the first day."""
    schools = sorted({school_of(i) for i in range(students)})
    rated: dict[str, list[str]] = {}

    def views(*names: str) -> None:
        # What the service's projection runner does beside the requests, here inside the step that reads them.
        for name in names:
            services.projections.catch_up(name)

    def apply() -> None:
        schools_run.each(school_apply, [(s, k * STUDENTS_PER_SCHOOL, min((k + 1) * STUDENTS_PER_SCHOOL, students))
                                        for k, s in enumerate(schools)])

    def verify() -> None:
        views("case_index", "case_keys")
        schools_run.each(school_verify, schools)

    def assess() -> None:
        views("case_index")
        schools_run.each(school_assess, schools)

    def evaluate() -> None:
        views("case_index")
        schools_run.each(school_evaluate, schools)

    def rate() -> None:
        views("case_index")
        rated.update(zip(schools, schools_run.each(school_rate, schools), strict=True))

    def notice() -> None:
        schools_run.each(school_notice, sorted(rated.items()))

    for name, how, work in (("apply", "bulk entry per school", apply), ("verify", "verify_school per school", verify),
                            ("assess", "assess-verified per school", assess),
                            ("evaluate", "class results per class", evaluate),
                            ("rate", "rate-evaluated per school", rate), ("notice", "open_window per school", notice)):
        timed(cycle, services, name, how, work)
    return rated


def second_half(services: Services, cycle: Cycle, schools: list[str], schools_run: Schools) -> None:
    """confirm → archive → follow-up sampling, after the notice window."""

    def confirm() -> None:
        assert services.deadlines is not None
        services.deadlines.run_once()

    def archive() -> None:
        services.projections.catch_up("notices")
        schools_run.each(school_archive, schools)

    def follow_up() -> None:
        services.projections.catch_up("case_index")
        schools_run.each(school_follow_up, schools)

    for name, how, work in (("confirm", "deadline job run_once", confirm),
                            ("archive", "national export per school", archive),
                            ("follow-up", "draw_follow_up_sample per school", follow_up)):
        timed(cycle, services, name, how, work)


def stored_events(services: Services, limit: int) -> list[StoredEvent]:
    """The log's first `limit` events, as stored."""
    events: list[StoredEvent] = []
    start = 1
    while len(events) < limit:
        batch = services.store.recorder.select_notifications(start=start, limit=min(5000, limit - len(events)))
        if not batch:
            return events
        events += [StoredEvent(n.originator_id, n.originator_version, n.topic, n.state) for n in batch]
        start = batch[-1].id + 1
    return events


def batched_append_rate(url: str, events: list[StoredEvent]) -> float:
    with opened(url, START) as bare:
        started = time.perf_counter()
        for k in range(0, len(events), BATCH):
            bare.store.recorder.insert_events(events[k:k + BATCH])
        return len(events) / (time.perf_counter() - started)


def run(quick: bool, students: int | None = None, workers: int | None = None) -> dict[str, Any]:
    size = students or (100 if quick else 10_000)
    workers = workers or os.cpu_count() or 1
    say(f"\n(f) annual cycle on PostgreSQL: {size:,} students in {len(schools_csv(size).splitlines()) - 1} schools "
        f"of region {REGION}; schools worked on by {workers} process{'es' if workers > 1 else ''} at once "
        "(one thread each)")
    cycle = Cycle(size)
    with database("postgres") as url:
        dbname = url.rsplit("/", 1)[-1]
        with opened(url, START) as services, sampled(os.getpid(), dbname) as first_usage:
            services.schools.import_csv(schools_csv(size), known_provinces={"45"})
            schools_run = Schools(services, url, START, workers)
            try:
                rated = first_half(services, cycle, size, schools_run)
            finally:
                schools_run.close()
        later = (datetime.fromisoformat(START) + AFTER_NOTICE).isoformat()
        with opened(url, later) as services:
            with sampled(os.getpid(), dbname) as second_usage:
                schools_run = Schools(services, url, later, workers)
                try:
                    second_half(services, cycle, sorted(rated), schools_run)
                finally:
                    schools_run.close()
            views: float | None = None
            if size <= VIEWS_UP_TO:
                started = time.perf_counter()
                services.projections.catch_up()
                views = time.perf_counter() - started
            logged = services.projections.head()
            events = stored_events(services, BASELINE_SAMPLE)
        with database("postgres") as bare_url:
            bare = batched_append_rate(bare_url, events)
    rate = cycle.events / cycle.seconds
    sample = "all of them" if len(events) == logged else f"the first {len(events):,} of the {logged:,}"
    say(f"    {'cycle':10} {cycle.events:9,} events {cycle.seconds:8.1f} s {rate:8,.0f} events/s   "
        f"cycle/bare batched append {ratio(rate, bare)} (bare: {bare:,.0f} events/s, {BATCH} per insert, "
        f"measured on {sample})")
    who = "this process" if workers == 1 else "main process (workers not counted: see machine)"
    for usage in first_usage + second_usage:
        say(f"    {usage.line().replace('server process', who)}")
    caught = (f"remaining views caught up afterwards in {views:.1f} s" if views is not None else
              f"remaining views not caught up (over {VIEWS_UP_TO:,} students: see the rebuild benchmark)")
    say(f"    {caught}; {logged:,} events in the log ({logged / size:.1f} per student); at this rate "
        f"1,000,000 students would take {logged / size * 1_000_000 / rate / 60:,.0f} min")
    return {"events": cycle.events, "seconds": cycle.seconds, "rate": rate, "bare": bare}
