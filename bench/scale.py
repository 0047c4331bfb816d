"""Scenario (b): query latency at scale on PostgreSQL, measured in-process (no HTTP), against a bare indexed SELECT
of the same rows taken in the same run, call by call interleaved so both see the same machine load.

- queue page: `ReadModels.queue` (scope check, keyset page of 50, half of them second pages) vs
  `SELECT * FROM case_index WHERE case_id IN (<the page's ids>)`;
- as-of read: `CaseService.get(as_of=…)` (current case, as-of index, the case at that version) vs the library's
  own `select_events(case, lte=version)` of the same stored events; and the as-of index look-up alone vs a
  primary-key SELECT of the case's version rows;
- region statistics: `ReadModels.statistics` (counts per school, year, level, status) vs one bare
  `count(*)` over the same index range.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, text

from adapters.auth import Principal
from api.deps import Services
from bench.data import Dataset, load
from bench.harness import Latency, fresh_services, ratio, say
from bench.rebuild import read_and_decode
from domain.values import Role
from projections.case_versions import AsOfIndex
from projections.queries import ReadModels, region_prefix, region_range
from projections.runner import Progress

STAGES = ("applied", "verified", "assessed", "evaluated", "rated", "in_publicity", "confirmed", "archived")
AUDITOR = Principal("bench-auditor", Role.AUDITOR)
PAGE = 50
BASELINE_SAMPLE = 500_000  # events read and decoded for the rebuild's baseline at scale (the rate hardly varies)


def measure_pairs(pairs: Sequence[tuple[Callable[[], object], Callable[[], object]]],
                  warmup: int = 20) -> tuple[Latency, Latency]:
    """Times each (subject, baseline) pair back to back, so drifting machine load affects both alike."""
    for subject, baseline in pairs[:warmup]:
        subject()
        baseline()
    subject_ms, baseline_ms = [], []
    for subject, baseline in pairs:
        started = time.perf_counter_ns()
        subject()
        middle = time.perf_counter_ns()
        baseline()
        ended = time.perf_counter_ns()
        subject_ms.append((middle - started) / 1e6)
        baseline_ms.append((ended - middle) / 1e6)
    return Latency(subject_ms), Latency(baseline_ms)


def report(label: str, subject: Latency, baseline: Latency) -> None:
    say(f"{label}")
    say(f"    in-process     {subject.line()}")
    say(f"    bare SELECT    {baseline.line()}")
    say(f"    ratio p99 {ratio(subject.p99, baseline.p99)}   p50 {ratio(subject.p50, baseline.p50)}")


def run(cases: int, samples: int, batch_size: int, keep: bool) -> None:
    with fresh_services("postgres", keep=keep) as services:
        _run(services, cases, samples, batch_size)


def _fetch_all(services: Services, query: Any) -> list[Any]:
    with services.engine.connect() as conn:
        return list(conn.execute(query).all())


def _run(services: Services, cases: int, samples: int, batch_size: int) -> None:
    say(f"\n== (b) at scale on PostgreSQL: {cases:,} cases ==")
    started = time.perf_counter()
    last = [started]

    def loaded(done: int, events: int, seconds: float) -> None:
        if time.perf_counter() - last[0] > 15 or done == cases:
            last[0] = time.perf_counter()
            say(f"  loading: {done:,} cases, {events:,} events, {events / seconds:,.0f} events/s")

    dataset = load(services.store, services.schools, cases, on_progress=loaded)
    say(f"loaded {dataset.events:,} events for {cases:,} cases in {dataset.schools:,} schools "
        f"in {time.perf_counter() - started:.0f} s")
    projections = services.projections
    for view in ("case_index", "case_versions"):
        topics = tuple(projections.views[view].topics)
        base = read_and_decode(services.store, batch_size, topics, limit=BASELINE_SAMPLE)
        began = time.perf_counter()
        shown = [began]

        def progress(p: Progress, began: float = began, shown: list[float] = shown) -> None:
            if time.perf_counter() - shown[0] > 15:
                shown[0] = time.perf_counter()
                say(f"  rebuilding {p.view}: {p.position:,}/{p.head:,} events, {p.rate:,.0f}/s, "
                    f"about {p.eta_seconds:,.0f} s left")

        done = projections.rebuild(view, on_progress=progress, batch_size=batch_size)
        seconds = time.perf_counter() - began
        rate = done.done / seconds
        say(f"rebuilt {view}: {done.done:,} events in {seconds:.0f} s ({rate:,.0f} events/s; reading and decoding "
            f"the first {BASELINE_SAMPLE:,} of them ran at {base:,.0f}/s: ratio {ratio(rate, base).strip()})")
    with services.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # What autovacuum does on its own some minutes after a bulk load; done now so plans are settled.
        for view in ("case_index", "case_versions"):
            for table in projections.active_tables(view).values():
                conn.execute(text(f'VACUUM ANALYZE "{table.name}"'))
        conn.execute(text("VACUUM ANALYZE"))

    rng = random.Random(20250915)
    read_models = ReadModels(projections, services.schools, services.clock)
    _queue(services, read_models, dataset, rng, samples)
    _as_of(services, dataset, rng, samples)
    _statistics(services, read_models, rng, max(samples // 20, 20))
    _explain(services, read_models, dataset)


def _queue(services: Services, read_models: ReadModels, dataset: Dataset, rng: random.Random,
           samples: int) -> None:
    cases_table = services.projections.active_tables("case_index")["cases"]
    pairs = []
    rows = 0
    for _ in range(samples):
        school_id, _region = dataset.school_at(rng.randrange(dataset.schools))
        principal = Principal("bench-staff", Role.SCHOOL, school=school_id)
        stage = rng.choice(STAGES)
        cursor = None
        if rng.random() < 0.5:
            cursor = read_models.queue(principal, school_id, stage=stage, limit=PAGE).next_cursor
        page = read_models.queue(principal, school_id, stage=stage, limit=PAGE, cursor=cursor)
        ids = [item.id for item in page.items]
        rows += len(ids)
        pairs.append((partial(read_models.queue, principal, school_id, stage=stage, limit=PAGE, cursor=cursor),
                      partial(_fetch_all, services, select(cases_table).where(cases_table.c.case_id.in_(ids)))))
    subject, baseline = measure_pairs(pairs)
    report(f"queue page (school × stage, {PAGE} per page, {rows / samples:.1f} rows on average)", subject, baseline)


def _as_of(services: Services, dataset: Dataset, rng: random.Random, samples: int) -> None:
    index = AsOfIndex(services.projections)
    versions_table = services.projections.active_tables("case_versions")["versions"]
    reads, lookups = [], []
    for _ in range(samples):
        i = rng.randrange(dataset.cases)
        times = dataset.times(i)
        moment = times[0] + (times[-1] - times[0] + timedelta(hours=1)) * rng.random()
        version = sum(1 for t in times if t <= moment)
        case_id: UUID = dataset.case_id(i)
        reads.append((partial(services.cases.get, AUDITOR, case_id, as_of=moment),
                      partial(services.store.recorder.select_events, case_id, lte=version)))
        lookups.append((partial(index.version_as_of, case_id, moment, len(times)),
                        partial(_fetch_all, services, select(versions_table).where(
                            versions_table.c.case_id == str(case_id), versions_table.c.version <= version))))
        assert index.version_as_of(case_id, moment, len(times)) == version
    subject, baseline = measure_pairs(reads)
    report("as-of read (CaseService.get as_of: the case as it stood then)", subject, baseline)
    subject, baseline = measure_pairs(lookups)
    report("as-of index look-up alone (version at time T)", subject, baseline)


def _statistics(services: Services, read_models: ReadModels, rng: random.Random, samples: int) -> None:
    """From the counts table (what the service answers with) and, for the record of why that table exists, by
    counting the case rows; each against one bare count(*) over the same region's case rows."""
    cases_table = services.projections.active_tables("case_index")["cases"]
    for label, principal, region in (
        ("province 450000", Principal("b", Role.BUREAU, region="450000"), "450000"),
        ("city 450100", Principal("b", Role.BUREAU, region="450100"), "450100"),
        ("county 450103", Principal("b", Role.BUREAU, region="450103"), "450103"),
        ("whole country 100000", AUDITOR, "100000"),
    ):
        low, high = region_range(region_prefix(region))
        bare = select(func.count()).select_from(cases_table).where(cases_table.c.school_region.between(low, high),
                                                                   cases_table.c.academic_year == "2025-2026")
        from_cases = read_models.statistics_query(principal, region, academic_year="2025-2026", from_cases=True)
        counted = read_models.statistics(principal, region, academic_year="2025-2026")
        pairs = [(partial(read_models.statistics, principal, region, academic_year="2025-2026"),
                  partial(_fetch_all, services, bare)) for _ in range(samples)]
        subject, baseline = measure_pairs(pairs, warmup=3)
        report(f"region statistics, {label} ({counted.total:,} cases, {len(counted.rows):,} count rows)",
               subject, baseline)
        recount, baseline = measure_pairs([(partial(_fetch_all, services, from_cases),
                                            partial(_fetch_all, services, bare)) for _ in range(samples)], warmup=3)
        say(f"    counting case rows instead: {recount.line()}   "
            f"(counts table is {ratio(recount.p50, subject.p50).strip()} faster at p50)")


def _explain(services: Services, read_models: ReadModels, dataset: Dataset) -> None:
    school_id, _ = dataset.school_at(0)
    principal = Principal("bench-staff", Role.SCHOOL, school=school_id)
    query = read_models.queue_query(principal, school_id, stage="archived", limit=PAGE)
    with services.engine.connect() as conn:
        compiled = query.compile(conn)
        plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + compiled.string, compiled.params).all()
    say("EXPLAIN ANALYZE of a queue page (school × archived):")
    for row in plan:
        say(f"    {row[0]}")
