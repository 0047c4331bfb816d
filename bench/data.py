"""Synthetic case histories for the benchmarks, bulk-inserted as stored events (never through HTTP).

Real events are made once per level by the domain's own commands (so every stored state is one the service could
have written) and encoded by the store's own mapper. Each synthetic case is a copy with its own id, school, class,
student name, resident ID number and times substituted in the encoded bytes, so loading millions of events costs
what the database's insert costs, not what Python's encoder costs. Everything about case `i` (its school, how far
it got, its times) is a pure function of `i`, so a benchmark can sample cases without keeping a list of them.
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore

from adapters.schools import SchoolRegistry
from adapters.store import CaseStore
from domain.case import StudentCase
from domain.form import normalise_form
from domain.policy import Assessment
from domain.values import Actor, Level, Role, VerificationMethod

TEMPLATE_START = datetime(2025, 9, 1, 1, 0, tzinfo=UTC)  # template event k happens k hours later
LOG_START = datetime(2025, 9, 1, 0, 0, tzinfo=UTC)
LOG_SPAN = timedelta(days=60)  # applications arrive over the autumn term
EVENTS_PER_FULL_CASE = 10
TEMPLATE_ID_NUMBER = "450103201001010016"
TEMPLATE_SCHOOL = "S4501030001"
TEMPLATE_REGION = "450103"
TEMPLATE_CLASS = "G10-3"
TEMPLATE_NAME = "韦小明"
NAMES = ("韦小明", "黄丽娟", "覃海燕", "陆志强", "蒙春梅", "李建国", "王芳", "张伟", "刘洋", "陈静",
         "杨帆", "赵磊", "周敏", "吴昊", "徐婷", "孙浩", "马丽", "朱军", "胡玲", "郭峰")
CASE_ID_BASE = 0x5A1D0000_0000_5000_8000_000000000000
STAFF = Actor("bench-staff", Role.SCHOOL)
APPLICANT = Actor("bench-guardian", Role.APPLICANT)
EVALUATOR = Actor("bench-teacher", Role.EVALUATOR)
# Guangxi cities 4501..4514 and Jiangsu cities 3201..3213, a handful of counties each.
REGIONS = tuple(f"{p}{c:02d}{d:02d}" for p, cities in (("45", 14), ("32", 13))
                for c in range(1, cities + 1) for d in range(1, 6))


def _form(level: Level) -> dict[str, object]:
    income = {Level.ESPECIALLY_DIFFICULT: "6000.00", Level.DIFFICULT: "18000.00",
              Level.GENERALLY_DIFFICULT: "30000.00"}[level]
    return {
        "academic_year": "2025-2026",
        "student": {"id_number": TEMPLATE_ID_NUMBER, "name": TEMPLATE_NAME, "school_id": TEMPLATE_SCHOOL,
                    "class_id": TEMPLATE_CLASS, "stage": "senior_secondary"},
        "household": {"region_code": TEMPLATE_REGION, "size": 4, "annual_income": income, "debts": "30000.00",
                      "members": [{"relation": "father", "age": 46, "occupation": "farmer",
                                   "health": "chronic_illness", "annual_income": "9000.00"}]},
        "claimed_categories": ["minimum_living_allowance"],
        "sudden_events": [{"kind": "serious_illness", "occurred_on": "2025-03-01", "loss": "50000.00"}],
        "other": {"siblings_in_school": 1, "medical_costs": "12000.00"},
        "attestation": True,
    }


def template_events(level: Level) -> list[Any]:
    """The ten events of one case that went the whole way, made by the domain's own commands."""
    moments = iter(TEMPLATE_START + timedelta(hours=k) for k in range(EVENTS_PER_FULL_CASE))
    levels = tuple(Level)
    case = StudentCase.apply(form=normalise_form(_form(level), today=date(2025, 9, 1)),
                             school_region=TEMPLATE_REGION, profile_version="guangxi@2025.1", actor=APPLICANT,
                             now=next(moments))
    case.verify(method=VerificationMethod.DOCUMENT,
                confirmed=[{"category": "minimum_living_allowance", "source": "document"}], notes="",
                actor=STAFF, now=next(moments))
    case.assess(assessment=Assessment(score=Decimal("80"), breakdown=(
        {"item": "income", "kind": "income_ratio_bands", "label": "", "points": "80", "detail": "ratio=0.50"},),
        suggested_level=level, model_version="gx-2025-1", profile_version="guangxi@2025.1"),
        actor=STAFF, now=next(moments))
    case.evaluate(votes_for=6, votes_against=1, recommended_level=level, panel=[], levels=levels,
                  actor=EVALUATOR, now=next(moments))
    case.rate(level=level, reason=None, levels=levels, skip_class_evaluation_for_data_matched=True,
              profile_version="guangxi@2025.1", actor=STAFF, now=next(moments))
    case.publicize(notice_id="N-bench", starts_on=date(2025, 9, 26), ends_on=date(2025, 10, 10), working_days=5,
                   profile_version="guangxi@2025.1", actor=STAFF, now=next(moments))
    case.confirm(today=date(2025, 10, 11), actor=STAFF, now=next(moments))
    case.archive(export_id="E-bench", actor=STAFF, now=next(moments))
    case.grant_aid(programme="national_grant", amount="1000.00", programmes=("national_grant",), target=None,
                   override_reason=None, profile_version="guangxi@2025.1", actor=STAFF, now=next(moments))
    case.disburse(amount="1000.00", actor=STAFF, now=next(moments))
    events = list(case.collect_events())
    assert len(events) == EVENTS_PER_FULL_CASE
    return events


@dataclass(frozen=True)
class Template:
    topics: list[str]
    states: list[bytes]
    stamps: list[bytes]  # each event's encoded timestamp, to substitute


def build_templates(store: CaseStore) -> dict[Level, Template]:
    templates = {}
    for level in Level:
        stored = [store.mapper.to_stored_event(e) for e in template_events(level)]
        stamps = [_stamp(TEMPLATE_START + timedelta(hours=k)) for k in range(len(stored))]
        for s, stamp in zip(stored, stamps, strict=True):
            if s.state.count(stamp) != 1:
                raise RuntimeError("the store encodes events in a way the generator cannot copy (cipher on?)")
        templates[level] = Template([s.topic for s in stored], [s.state for s in stored], stamps)
    return templates


def _stamp(moment: datetime) -> bytes:
    return f'"_data_":"{moment.isoformat()}"'.encode()


def _text(key: str, value: str) -> bytes:
    return f'"{key}":{json.dumps(value, ensure_ascii=False)}'.encode()


@dataclass(frozen=True)
class Dataset:
    """Case `i` (0 ≤ i < cases) of a generated log, described without reading the database."""

    cases: int
    schools: int

    def case_id(self, i: int) -> UUID:
        return UUID(int=CASE_ID_BASE + i)

    def school(self, i: int) -> tuple[str, str]:
        """(school_id, region_code) of case i; schools are spread over the regions."""
        return self.school_at(i % self.schools)

    def school_at(self, s: int) -> tuple[str, str]:
        region = REGIONS[s % len(REGIONS)]
        return f"S{region}{s // len(REGIONS):04d}", region

    def class_of(self, i: int) -> str:
        return f"G{10 + i % 3}-{(i // 3) % 8 + 1}"

    def level(self, i: int) -> Level:
        return (Level.ESPECIALLY_DIFFICULT, Level.DIFFICULT, Level.GENERALLY_DIFFICULT)[(i // 7) % 3]

    def length(self, i: int) -> int:
        """How many of the ten events case i has: 70% went the whole way, the rest stopped at some step."""
        r = (i * 2654435761) % 100
        return EVENTS_PER_FULL_CASE if r < 70 else 1 + (r - 70) % (EVENTS_PER_FULL_CASE - 1)

    def times(self, i: int) -> list[datetime]:
        start = LOG_START + LOG_SPAN * (i / max(self.cases, 1))
        step = timedelta(hours=1 + (i * 7919) % 48)
        return [start + step * k for k in range(self.length(i))]

    @property
    def events(self) -> int:
        return sum(self.length(i) for i in range(self.cases))


def schools_csv(dataset: Dataset) -> bytes:
    lines = ["school_id,name,region_code,stage"]
    for s in range(dataset.schools):
        school_id, region = dataset.school_at(s)
        lines.append(f"{school_id},基准学校{s},{region},senior_secondary")
    return "\n".join(lines).encode()


def load(store: CaseStore, schools: SchoolRegistry, cases: int, *, cases_per_school: int = 400,
         chunk: int = 20_000, on_progress: Callable[[int, int, float], None] | None = None) -> Dataset:
    """Appends `cases` synthetic case histories to an empty store; returns their description.

    The log is in time order across all cases, as a term's log would be: applications arrive over the term and
    each case's later steps come hours to weeks after, between other cases' events (a heap merges the cases'
    timelines; nothing but the events not yet due is held in memory)."""
    if store.recorder.max_notification_id():
        raise RuntimeError("the benchmark store must start empty")
    dataset = Dataset(cases=cases, schools=max(4, cases // cases_per_school))
    schools.import_csv(schools_csv(dataset), known_provinces={"45", "32"})
    templates = build_templates(store)
    started = time.perf_counter()
    written = 0
    due: list[tuple[datetime, int, int]] = []  # (time, case, step) of events not yet written
    pending: list[StoredEvent] = []

    def flush(done: int) -> None:
        nonlocal written, pending
        _insert(store, pending)
        written += len(pending)
        pending = []
        if on_progress:
            on_progress(done, written, time.perf_counter() - started)

    for i in range(cases):
        times = dataset.times(i)
        # Cases start in order, so every event due before this one's application can be written now.
        while due and due[0][0] < times[0]:
            moment, case, step = heapq.heappop(due)
            pending.append(_event(dataset, templates, case, step, moment))
            if len(pending) >= chunk:
                flush(i)
        for step, moment in enumerate(times):
            heapq.heappush(due, (moment, i, step))
    while due:
        moment, case, step = heapq.heappop(due)
        pending.append(_event(dataset, templates, case, step, moment))
    flush(cases)
    return dataset


def _insert(store: CaseStore, events: list[StoredEvent]) -> None:
    """PostgreSQL: COPY into the events table (the library's one-statement insert of tens of thousands of
    composite values stalls in psycopg's pipeline mode); SQLite: the recorder's own insert."""
    recorder: Any = store.recorder
    datastore: Any = getattr(recorder, "datastore", None)
    if not isinstance(datastore, PostgresDatastore):
        recorder.insert_events(events)
        return
    table = f'"{datastore.schema}"."{recorder.events_table_name}"'
    statement = f"COPY {table} (originator_id, originator_version, topic, state) FROM STDIN"
    with (datastore.get_connection() as conn, conn.transaction(), conn.cursor() as cursor,
          cursor.copy(statement) as copy):
        for e in events:
            copy.write_row((e.originator_id, e.originator_version, e.topic, e.state))


def _event(dataset: Dataset, templates: dict[Level, Template], i: int, k: int, moment: datetime) -> StoredEvent:
    """Event `k` of case `i`: the template's, with this case's time (and, in the application, its identity)."""
    template = templates[dataset.level(i)]
    state = template.states[k].replace(template.stamps[k], _stamp(moment))
    if k == 0:
        school_id, region = dataset.school(i)
        state = (state.replace(_text("id_number", TEMPLATE_ID_NUMBER), _text("id_number", f"{i:018d}"))
                 .replace(_text("name", TEMPLATE_NAME), _text("name", NAMES[i % len(NAMES)]))
                 .replace(_text("school_id", TEMPLATE_SCHOOL), _text("school_id", school_id))
                 .replace(_text("class_id", TEMPLATE_CLASS), _text("class_id", dataset.class_of(i)))
                 .replace(_text("school_region", TEMPLATE_REGION), _text("school_region", region)))
    return StoredEvent(originator_id=dataset.case_id(i), originator_version=k + 1, topic=template.topics[k],
                       state=state)
