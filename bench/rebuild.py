"""Scenario (a): rebuild throughput of each view against the rate at which the same store merely reads and decodes
the same events (the ceiling any runner over this store could reach), on SQLite and PostgreSQL.

Also shown: the same runner applying one event per transaction (the shape of the library's default
one-tracking-record-per-event processing), measured on a sample, against the same baseline.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from adapters.store import CaseStore
from api.deps import Services
from bench.data import load
from bench.harness import fresh_services, ratio, say
from projections.runner import RETIRED_GRACE, Projections, projection_state, rebuild_gc

GOAL = 0.5


def read_and_decode(store: CaseStore, batch_size: int, topics: tuple[str, ...] = (),
                    limit: int | None = None) -> float:
    """Events per second to read the whole log (or its first `limit` events) in batches and decode every event:
    the baseline. It runs with the same garbage-collector setting a rebuild uses, so the rebuild gains nothing
    from it over the baseline."""
    with rebuild_gc():
        return _read_and_decode(store, batch_size, topics, limit)


def _read_and_decode(store: CaseStore, batch_size: int, topics: tuple[str, ...], limit: int | None = None) -> float:
    started = time.perf_counter()
    count = 0
    start = 1
    while limit is None or count < limit:
        notifications = store.recorder.select_notifications(start=start, limit=batch_size, topics=topics)
        if not notifications:
            break
        # A batch read is a batch held: decoded events are kept until the batch is done, as any reader keeps them.
        events = [store.mapper.to_domain_event(notification) for notification in notifications]
        count += len(events)
        start = notifications[-1].id + 1
    seconds = time.perf_counter() - started
    return count / seconds if seconds else 0.0


def rebuild_rate(projections: Projections, view: str, batch_size: int) -> tuple[int, float]:
    """(events, events per second) of one full rebuild, switch-over included. The generations earlier runs of
    this benchmark retired are dropped first, untimed: a rebuild drops only generations retired more than
    `RETIRED_GRACE` ago, which outside a benchmark repeating rebuilds back to back are none."""
    _drop_retired_now(projections, view)
    started = time.perf_counter()
    progress = projections.rebuild(view, batch_size=batch_size)
    seconds = time.perf_counter() - started
    return progress.done, progress.done / seconds if seconds else 0.0


def _retire(projections: Projections, view: str, generation: int) -> None:
    with projections.engine.begin() as conn:
        conn.execute(update(projection_state)
                     .where(projection_state.c.view == view, projection_state.c.generation == generation)
                     .values(status="retired"))
    _drop_retired_now(projections, view)


def _drop_retired_now(projections: Projections, view: str) -> None:
    with projections.engine.begin() as conn:
        conn.execute(update(projection_state)
                     .where(projection_state.c.view == view, projection_state.c.status == "retired")
                     .values(updated_at=datetime.now(UTC) - RETIRED_GRACE - timedelta(seconds=1)))
    projections._drop_retired()


def one_event_per_transaction(projections: Projections, view: str, sample: int) -> float:
    """Events per second when every event is its own transaction (sampled, then thrown away)."""
    generation = projections.start_rebuild(view)
    started = time.perf_counter()
    done = 0
    while done < sample:
        applied = projections.step(view, generation, limit=1)
        if applied == 0:
            break
        done += applied
    seconds = time.perf_counter() - started
    _retire(projections, view, generation)
    return done / seconds if seconds else 0.0


def run_backend(backend: str, cases: int, batch_size: int, per_event_sample: int, repeats: int,
                keep: bool, views: list[str] | None = None) -> None:
    with fresh_services(backend, keep=keep) as services:
        _run(services, backend, cases, batch_size, per_event_sample, repeats, views)


def _run(services: Services, backend: str, cases: int, batch_size: int, per_event_sample: int,
         repeats: int, views: list[str] | None = None) -> None:
    say(f"\n== (a) rebuild throughput on {backend}: {cases:,} cases, batches of {batch_size} ==")
    started = time.perf_counter()
    dataset = load(services.store, services.schools, cases)
    say(f"loaded {dataset.events:,} events in {time.perf_counter() - started:.1f} s")
    projections = services.projections
    say(f"best of {repeats} runs each, baseline and rebuild alternating (the machine is shared; the best run is the")
    say("least disturbed one, for the baseline as for the rebuild)")
    say(f"{'view':<22} {'events':>10} {'rebuild/s':>11} {'read+decode/s':>14} {'ratio':>7}  goal ≥ {GOAL}")
    base_all = 0.0
    for name, view in projections.views.items():
        if views and name not in views:
            continue
        topics = tuple(view.topics)
        bases, rates = [], []
        done = 0
        for _ in range(repeats):
            bases.append(read_and_decode(services.store, batch_size, topics))
            done, rate = rebuild_rate(projections, name, batch_size)
            rates.append(rate)
        base, rate = max(bases), max(rates)
        if not topics:
            base_all = max(base_all, base)
        verdict = "ok" if base and rate / base >= GOAL else ("no events" if not done else "BELOW GOAL")
        say(f"{name:<22} {done:>10,} {rate:>11,.0f} {base:>14,.0f} {ratio(rate, base)}  {verdict}")
    if per_event_sample:
        rate = one_event_per_transaction(projections, "case_index", per_event_sample)
        base = base_all or read_and_decode(services.store, batch_size)
        say(f"{'case_index, 1 event/tx':<22} {per_event_sample:>10,} {rate:>11,.0f} {base:>14,.0f} "
            f"{ratio(rate, base)}  (sampled; the shape of a one-event-per-transaction runner)")
