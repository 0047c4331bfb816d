"""Scenario: the annual identification cycle of one region on PostgreSQL, through the services a province uses.

N students in schools of one county (450103, Guangxi; 400 students a school, 8 classes each) go through the year:

| step | how (the service that real users drive) |
|---|---|
| apply | `CaseService.apply`, one per student (students and guardians apply one by one) |
| verify | `DataMatching.verify_school`: each school verifies all its applications by registry data matching (batch) |
| assess | `CaseService.assess`, one per case (the school runs the scoring model) |
| evaluate | `CaseService.evaluate`, one per case (the class group's recorded evaluation) |
| rate | `CaseService.rate`, one per case, at the suggested level (the school's decision) |
| notice | `PublicityService.open_window`: one 5-working-day notice per school for all its rated cases (batch) |
| confirm | `DeadlineJob.run_once` after the window (the service restarted 12 days later): the scheduler's batch |
| archive | `ExportService.national`: each school's archive export, which archives its confirmed cases (batch) |
| follow-up | `Aftercare.draw_follow_up_sample`: each school's semester sample (batch) |

Every step is timed; the cycle's events per second are set against the bare batched append rate of the very same
events (read back from the log) into a fresh store of the same kind with the store's own recorder, 500 events per
insert, measured in the same run. The views the batch steps wait for are maintained inside the steps (as in
`zizhu serve`), and the remaining views are caught up at the end, timed separately. No registry lists are loaded,
so data matching confirms no category (each claim is recorded as a discrepancy) and every case goes through class
evaluation; the cost of matching itself is in bench/matching.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from adapters.aftercare import Aftercare
from adapters.auth import Principal
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


def first_half(services: Services, cycle: Cycle, students: int) -> dict[str, list[UUID]]:
    """apply → verify → assess → evaluate → rate → notice, on the first day."""
    cases = services.cases
    by_school: dict[str, list[UUID]] = {}
    ids: list[UUID] = []

    def apply() -> None:
        for i in range(students):
            applicant = Principal(sub=f"bench-guardian-{i}", role=Role.APPLICANT, student=command_path.id_number(i))
            form = command_path.application(i, school_of(i), class_of(i), REGION)
            outcome = cases.apply(applicant, form)
            ids.append(outcome.case.id)
            by_school.setdefault(school_of(i), []).append(outcome.case.id)

    def verify() -> None:
        assert services.identification is not None
        for school_id in by_school:
            services.identification.matching.verify_school(staff(school_id), school_id, academic_year=YEAR)

    def assess() -> None:
        for i, case_id in enumerate(ids):
            cases.assess(staff(school_of(i)), case_id)

    def evaluate() -> None:
        for i, case_id in enumerate(ids):
            panel = Principal(sub=f"bench-teacher-{school_of(i)}-{class_of(i)}", role=Role.EVALUATOR,
                              school=school_of(i), class_id=class_of(i))
            cases.evaluate(panel, case_id, votes_for=5, votes_against=1, recommended_level=None, panel=[])

    rated: dict[str, list[UUID]] = {}

    def rate() -> None:
        for i, case_id in enumerate(ids):
            case = cases.get(staff(school_of(i)), case_id)
            level = case.suggested_level.value if case.suggested_level else "not_identified"
            outcome = cases.rate(staff(school_of(i)), case_id, level=level, reason=None)
            if outcome.case.level is not None:
                rated.setdefault(school_of(i), []).append(case_id)

    def notice() -> None:
        assert services.publicity is not None
        for school_id, school_cases in rated.items():
            services.publicity.open_window(staff(school_id), school_id, [str(c) for c in school_cases])

    for name, how, work in (("apply", "one per student", apply), ("verify", "verify_school per school", verify),
                            ("assess", "one per case", assess), ("evaluate", "one per case", evaluate),
                            ("rate", "one per case", rate), ("notice", "open_window per school", notice)):
        timed(cycle, services, name, how, work)
    return rated


def second_half(services: Services, cycle: Cycle, schools: list[str]) -> None:
    """confirm → archive → follow-up sampling, after the notice window."""

    def confirm() -> None:
        assert services.deadlines is not None
        services.deadlines.run_once()

    def archive() -> None:
        assert services.exports is not None
        for school_id in schools:
            services.exports.national(staff(school_id), school_id, YEAR)

    def follow_up() -> None:
        aftercare = Aftercare(services.cases, services.projections, PersonKeys(services.settings.secret))
        for school_id in schools:
            aftercare.draw_follow_up_sample(staff(school_id), school_id, seed="0123456789abcdef")

    for name, how, work in (("confirm", "deadline job run_once", confirm),
                            ("archive", "national export per school", archive),
                            ("follow-up", "draw_follow_up_sample per school", follow_up)):
        timed(cycle, services, name, how, work)


def all_stored_events(services: Services) -> list[StoredEvent]:
    events: list[StoredEvent] = []
    start = 1
    while True:
        batch = services.store.recorder.select_notifications(start=start, limit=5000)
        if not batch:
            return events
        events += [StoredEvent(n.originator_id, n.originator_version, n.topic, n.state) for n in batch]
        start = batch[-1].id + 1


def batched_append_rate(url: str, events: list[StoredEvent]) -> float:
    with opened(url, START) as bare:
        started = time.perf_counter()
        for k in range(0, len(events), BATCH):
            bare.store.recorder.insert_events(events[k:k + BATCH])
        return len(events) / (time.perf_counter() - started)


def run(quick: bool, students: int | None = None) -> dict[str, Any]:
    size = students or (100 if quick else 10_000)
    say(f"\n(f) annual cycle on PostgreSQL: {size:,} students in {len(schools_csv(size).splitlines()) - 1} schools "
        f"of region {REGION}, single process, one thread")
    cycle = Cycle(size)
    with database("postgres") as url:
        dbname = url.rsplit("/", 1)[-1]
        with opened(url, START) as services, sampled(os.getpid(), dbname) as first_usage:
            services.schools.import_csv(schools_csv(size), known_provinces={"45"})
            rated = first_half(services, cycle, size)
        later = (datetime.fromisoformat(START) + AFTER_NOTICE).isoformat()
        with opened(url, later) as services:
            with sampled(os.getpid(), dbname) as second_usage:
                second_half(services, cycle, sorted(rated))
            started = time.perf_counter()
            services.projections.catch_up()
            views = time.perf_counter() - started
            events = all_stored_events(services)
        with database("postgres") as bare_url:
            bare = batched_append_rate(bare_url, events)
    rate = cycle.events / cycle.seconds
    say(f"    {'cycle':10} {cycle.events:9,} events {cycle.seconds:8.1f} s {rate:8,.0f} events/s   "
        f"cycle/bare batched append {ratio(rate, bare)} (bare: {bare:,.0f} events/s, {BATCH} per insert)")
    for usage in first_usage + second_usage:
        say(f"    {usage.line().replace('server process', 'this process')}")
    say(f"    remaining views caught up afterwards in {views:.1f} s; "
        f"{len(events):,} events in the log ({len(events) / size:.1f} per student)")
    return {"events": cycle.events, "seconds": cycle.seconds, "rate": rate, "bare": bare}
