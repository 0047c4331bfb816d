"""Scenario: the command path. Commands per second through `CaseService` (load → check → decide → save), on SQLite
and PostgreSQL, against two baselines measured in the same run on a fresh store of the same kind:

- bare appends: the very events those commands stored, appended again with the store's own recorder
  (`recorder.insert_events`, one call per command, as `save()` does), i.e. eventsourcing with nothing of ours
  around it. Goal: the service reaches at least 0.8 of this. Shown beside it, the library's plain recorder without
  our hash chain (adapters/integrity.py), to show what the chain costs;
- raw inserts: rows of the same sizes inserted with the driver alone (sqlite3 / psycopg) into a table shaped like
  the events table, one transaction per command: the database's own ceiling on this machine.

And the library's own floor, on two more fresh stores: a minimal aggregate of eventsourcing's (one method, one
event) saved after every command by a plain `Application` on the store's recorder (the hash chain's, as ours),
against that recorder appending the same stored events bare. No application built on the library over this
recorder can come closer to bare appends than that ratio on this machine.

Each student goes apply → verify → assess → evaluate → rate (five commands, one event each), single-threaded, so
the figures are per core; the HTTP scenario covers concurrency. A breakdown of where a command's time goes (load,
decide, save) is measured on the same run.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import InfrastructureFactory, StoredEvent
from eventsourcing.utils import Environment
from sqlalchemy.engine import make_url

from adapters.auth import Principal
from adapters.cases import CaseService
from adapters.settings import REPO_ROOT
from adapters.store import eventsourcing_env
from api.deps import Services
from bench.harness import fresh_services, ratio, say
from domain.values import Role, check_digit

GOAL = 0.8
SCHOOL = "S4501030001"
CLASS = "G10-3"
STEPS = ("apply", "verify", "assess", "evaluate", "rate")


def id_number(i: int, region: str = "450103") -> str:
    """A distinct valid resident ID number for student `i` (birth date and sequence vary with i)."""
    born = date(2000, 1, 1) + timedelta(days=i // 1000)
    first17 = f"{region}{born:%Y%m%d}{i % 1000:03d}"
    return first17 + check_digit(first17)


def application(i: int, school_id: str = SCHOOL, class_id: str = CLASS, region: str = "450103") -> dict[str, Any]:
    return {
        "academic_year": "2025-2026",
        "student": {"id_number": id_number(i, region), "name": "韦小明", "school_id": school_id,
                    "class_id": class_id, "stage": "senior_secondary"},
        "household": {"region_code": region, "size": 4, "annual_income": "18000.00", "debts": "30000.00",
                      "members": [{"relation": "father", "age": 46, "occupation": "farmer",
                                   "health": "chronic_illness", "annual_income": "9000.00"}]},
        "claimed_categories": ["minimum_living_allowance"],
        "sudden_events": [{"kind": "serious_illness", "occurred_on": "2025-03-01", "loss": "50000.00"}],
        "other": {"siblings_in_school": 1, "medical_costs": "12000.00"},
        "attestation": True,
    }


def import_demo_schools(services: Services) -> None:
    services.schools.import_file(REPO_ROOT / "data" / "schools-demo.csv",
                                 known_provinces={p.province_code for p in services.profiles.all()})


STAFF = Principal(sub="bench-staff", role=Role.SCHOOL, school=SCHOOL)
PANEL = Principal(sub="bench-teacher", role=Role.EVALUATOR, school=SCHOOL, class_id=CLASS)


def commands_for(cases: CaseService, i: int) -> Iterator[tuple[str, Callable[[], Any]]]:
    """The five commands of student `i`, in order, as (name, call) pairs; each call returns an Outcome."""
    applicant = Principal(sub=f"bench-guardian-{i}", role=Role.APPLICANT, student=id_number(i))
    case_id = uuid.UUID(int=0)

    def apply() -> Any:
        nonlocal case_id
        outcome = cases.apply(applicant, application(i))
        case_id = outcome.case.id
        return outcome

    yield "apply", apply
    yield "verify", lambda: cases.verify(STAFF, case_id, method="document",
                                         confirmed_categories=["minimum_living_allowance"], notes="")
    yield "assess", lambda: cases.assess(STAFF, case_id)
    yield "evaluate", lambda: cases.evaluate(PANEL, case_id, votes_for=5, votes_against=1,
                                             recommended_level="especially_difficult", panel=[])
    yield "rate", lambda: cases.rate(STAFF, case_id, level="especially_difficult", reason="school decision")


@dataclass
class Run:
    commands: int = 0
    seconds: float = 0.0
    saved: list[tuple[UUID, int, int]] = field(default_factory=list)  # (case, first version, last version)

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0


def through_service(services: Services, students: int, offset: int = 0) -> Run:
    run = Run()
    started = time.perf_counter()
    for i in range(offset, offset + students):
        for _name, call in commands_for(services.cases, i):
            outcome = call()
            run.saved.append((outcome.case.id, outcome.case.version, outcome.case.version))
            run.commands += 1
    run.seconds = time.perf_counter() - started
    return run


def stored_events(services: Services, run: Run) -> list[list[StoredEvent]]:
    """The events each command stored, grouped per command, in command order."""
    by_case: dict[UUID, dict[int, StoredEvent]] = {}
    for case_id, _first, _last in run.saved:
        if case_id not in by_case:
            by_case[case_id] = {e.originator_version: e for e in services.store.recorder.select_events(case_id)}
    return [[by_case[c][v] for v in range(first, last + 1)] for c, first, last in run.saved]


def append_seconds(recorder: Any, groups: list[list[StoredEvent]]) -> float:
    started = time.perf_counter()
    for group in groups:
        recorder.insert_events(group)
    return time.perf_counter() - started


def plain_recorder(services: Services) -> Any:
    """The library's own application recorder on the same database, without our hash chain."""
    env = {k: v for k, v in eventsourcing_env(services.settings).items() if k != "APPLICATION_RECORDER_TOPIC"}
    env["CREATE_TABLE"] = "y"
    factory = InfrastructureFactory.construct(Environment("plain", env))
    return factory.application_recorder()


class MinimalCase(Aggregate):
    """The least an application on the library does per command: one method that records one event."""

    def __init__(self, form: dict[str, Any]) -> None:
        self.form = form
        self.step_name = "apply"

    @event("Stepped")
    def step(self, step_name: str, facts: dict[str, Any]) -> None:
        self.step_name = step_name


def library_floor(app_services: Services, bare_services: Services, students: int) -> tuple[int, float, float]:
    """(commands, seconds through `Application.save`, seconds of bare appends of the same stored events): each
    student's case made with an application-sized form, then stepped four times, saved after every command."""
    app = Application[UUID](env={**eventsourcing_env(app_services.settings), "CREATE_TABLE": "y"})
    facts = {"method": "document", "confirmed_categories": ["minimum_living_allowance"], "notes": "",
             "actor": {"sub": STAFF.sub, "role": STAFF.role.value}}
    ids = []
    started = time.perf_counter()
    for i in range(students):
        case = MinimalCase(application(i))
        app.save(case)
        for name in STEPS[1:]:
            case.step(name, facts)
            app.save(case)
        ids.append(case.id)
    through_app = time.perf_counter() - started
    groups = [[e] for case_id in ids for e in app.recorder.select_events(case_id)]
    app.close()
    bare = append_seconds(bare_services.store.recorder, groups)
    return len(groups), through_app, bare


class RawTable:
    """A table shaped like the events table, written with the bare driver, one transaction per command."""

    def __init__(self, services: Services) -> None:
        self.sqlite = services.settings.is_sqlite
        if self.sqlite:
            self.conn: Any = sqlite3.connect(services.settings.sqlite_path, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("CREATE TABLE raw_events (originator_id TEXT, originator_version INTEGER, "
                              "topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))")
        else:
            url = make_url(services.settings.database_url)
            self.conn = psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                                        dbname=url.database, password=url.password or None)
            self.conn.execute("CREATE TABLE raw_events (notification_id BIGSERIAL UNIQUE, originator_id UUID, "
                              "originator_version INTEGER, topic TEXT, state BYTEA, "
                              "PRIMARY KEY (originator_id, originator_version))")
            self.conn.commit()

    def insert_seconds(self, groups: list[list[StoredEvent]]) -> float:
        if self.sqlite:
            rows = [[(UUID(str(e.originator_id)).hex, e.originator_version, e.topic, e.state) for e in g]
                    for g in groups]
            started = time.perf_counter()
            for group in rows:
                self.conn.execute("BEGIN")
                self.conn.executemany("INSERT INTO raw_events VALUES (?,?,?,?)", group)
                self.conn.execute("COMMIT")
            return time.perf_counter() - started
        pg_rows = [[(e.originator_id, e.originator_version, e.topic, e.state) for e in g] for g in groups]
        started = time.perf_counter()
        for pg_group in pg_rows:
            with self.conn.cursor() as cur:
                cur.executemany("INSERT INTO raw_events (originator_id, originator_version, topic, state) "
                                "VALUES (%s,%s,%s,%s)", pg_group)
            self.conn.commit()
        return time.perf_counter() - started

    def close(self) -> None:
        self.conn.close()


STORE_CALLS = ("select_events", "select_events_of", "insert_events", "max_notification_id", "select_notifications")


def breakdown(services: Services, students: int, offset: int) -> dict[str, dict[str, float]]:
    """Per command type: milliseconds per command, store reads and writes per command, and the time they took
    (counted around the event store's recorders, events and snapshots)."""
    current = [""]
    stats: dict[str, dict[str, float]] = {step: {"ms": 0.0, "reads": 0.0, "writes": 0.0, "store_ms": 0.0}
                                          for step in STEPS}
    recorders: list[Any] = [services.store.recorder]
    if services.store.snapshots is not None:
        recorders.append(services.store.snapshots.recorder)
    patched: list[tuple[Any, str, bool, Any]] = []
    for recorder in recorders:
        for name in STORE_CALLS:
            original = getattr(recorder, name, None)
            if original is None:
                continue

            def counted(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    entry = stats[current[0]]
                    entry["writes" if _name == "insert_events" else "reads"] += 1
                    entry["store_ms"] += (time.perf_counter() - started) * 1000

            patched.append((recorder, name, name in vars(recorder), original))
            setattr(recorder, name, counted)
    try:
        for i in range(offset, offset + students):
            for name, call in commands_for(services.cases, i):
                current[0] = name
                started = time.perf_counter()
                call()
                stats[name]["ms"] += (time.perf_counter() - started) * 1000
    finally:
        for recorder, name, had_own, original in reversed(patched):
            if had_own:
                setattr(recorder, name, original)
            else:
                delattr(recorder, name)
    return {step: {k: v / students for k, v in entry.items()} for step, entry in stats.items()}


def run_backend(backend: str, students: int, rounds: int = 3) -> dict[str, float]:
    """The service and its baselines run in alternating rounds, so a change in the machine's load (it is shared)
    falls on all of them alike."""
    seconds = {"service": 0.0, "bare": 0.0, "plain": 0.0, "raw": 0.0}
    commands = 0
    sizes: list[int] = []
    with fresh_services(backend) as services, fresh_services(backend) as bare, fresh_services(backend) as other:
        import_demo_schools(services)
        through_service(services, 10, offset=1_500_000)  # warm-up: imports, caches, connections
        plain = plain_recorder(other)  # the library's recorder writes the same table name: a store of its own
        raw = RawTable(other)
        per_round = max(students // rounds, 1)
        for r in range(rounds):
            service = through_service(services, per_round, offset=r * per_round)
            groups = stored_events(services, service)
            seconds["service"] += service.seconds
            seconds["bare"] += append_seconds(bare.store.recorder, groups)
            seconds["plain"] += append_seconds(plain, groups)
            seconds["raw"] += raw.insert_seconds(groups)
            commands += service.commands
            sizes += [len(e.state) for g in groups for e in g]
        raw.close()
        split = breakdown(services, max(students // 5, 10), offset=1_600_000)
    with fresh_services(backend) as floor_app, fresh_services(backend) as floor_bare:
        floor_commands, floor_app_seconds, floor_bare_seconds = library_floor(floor_app, floor_bare, students)
    rate = {k: commands / v for k, v in seconds.items()}
    say(f"  {backend:8} {commands:,} commands, events of {sum(sizes) / len(sizes):,.0f} bytes on average")
    say(f"    through CaseService     {rate['service']:9,.0f} commands/s")
    for key, label in (("bare", "bare appends (store)   "), ("plain", "bare appends (no chain)"),
                       ("raw", "raw driver inserts     ")):
        goal = f" (goal ≥ {GOAL})" if key == "bare" else ""
        say(f"    {label} {rate[key]:9,.0f} commands/s   service/{key:5} {ratio(rate['service'], rate[key])}{goal}")
    floor_rate, floor_bare_rate = floor_commands / floor_app_seconds, floor_commands / floor_bare_seconds
    say(f"    library's floor          {floor_rate:9,.0f} commands/s   against {floor_bare_rate:,.0f}/s bare "
        f"{ratio(floor_rate, floor_bare_rate)}  (a minimal eventsourcing aggregate saved by Application.save)")
    say("    per command: ms in all, store reads and writes, ms of them in the store")
    for step, entry in split.items():
        say(f"      {step:9} {entry['ms']:6.2f} ms   {entry['reads']:4.1f} reads  {entry['writes']:3.1f} writes   "
            f"{entry['store_ms']:6.2f} ms in the store   {entry['ms'] - entry['store_ms']:5.2f} ms elsewhere")
    return rate


def run(quick: bool, backends: tuple[str, ...] = ("sqlite", "postgres"), students: int | None = None) -> None:
    size = students or (30 if quick else 2_000)
    say(f"\n(d) command path: {size:,} students × {len(STEPS)} commands ({', '.join(STEPS)}), one thread")
    for backend in backends:
        run_backend(backend, size)
