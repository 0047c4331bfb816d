"""Loading a case from the store: one round trip for a short history, the snapshot path for a long one, and the same
state either way (adapters/store.py ShortHistoryFirst), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.application import AggregateNotFoundError, Repository

from adapters.store import SNAPSHOT_INTERVAL, CaseStore
from api.deps import Services
from domain.case import StudentCase
from domain.form import normalise_form
from domain.values import VerificationMethod
from tests.support import STAFF, T0, at, form


def _applied(store: CaseStore, seq: int) -> StudentCase:
    case = StudentCase.apply(form=normalise_form(form(seq), today=T0.date()), school_region="450103",
                             profile_version="guangxi@test", actor=STAFF, now=T0)
    store.save(case)
    return case


def _verify(case: StudentCase, n: int) -> None:
    case.verify(method=VerificationMethod.DOCUMENT, confirmed=[{"category": "minimum_living_allowance"}],
                notes=f"check {n}", actor=STAFF, now=at(n))


def _counting(store: CaseStore) -> dict[str, int]:
    calls = {"events": 0, "snapshots": 0}
    assert store.snapshots is not None
    for name, recorder in (("events", store.recorder), ("snapshots", store.snapshots.recorder)):
        original = recorder.select_events

        def counted(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _original(*args, **kwargs)

        recorder.select_events = counted  # type: ignore[method-assign]
    return calls


def test_a_short_history_loads_in_one_read(services: Services) -> None:
    store = services.store
    case = _applied(store, 1)
    for n in range(1, 6):
        _verify(case, n)
        store.save(case)
    calls = _counting(store)
    loaded = store.repository.get(case.id)
    assert calls == {"events": 1, "snapshots": 0}
    assert loaded.version == 6 and loaded.verification["notes"] == "check 5"


def test_a_long_history_uses_its_snapshot_and_gives_the_same_state(services: Services) -> None:
    store = services.store
    case = _applied(store, 2)
    for n in range(1, SNAPSHOT_INTERVAL + 20):
        _verify(case, n)
        store.save(case)
    assert store.snapshots is not None and list(store.snapshots.get(case.id))
    calls = _counting(store)
    loaded = store.repository.get(case.id)
    assert calls["snapshots"] == 1
    replayed = Repository(event_store=store.events).get(case.id)  # every event, no snapshot
    assert loaded.version == replayed.version == SNAPSHOT_INTERVAL + 20
    assert vars(loaded) == vars(replayed)
    assert store.repository.get(case.id, version=50).verification["notes"] == "check 49"


def test_an_unknown_case_is_not_found(services: Services) -> None:
    with pytest.raises(AggregateNotFoundError):
        services.store.repository.get(uuid4())
    assert uuid4() not in services.store.repository
