"""The case cache (adapters/store.py CaseCache) on SQLite and PostgreSQL: a command decides on a cached copy only
while no other writer has moved the case, a copy is never shared between requests, a stale copy's refusal is not
trusted, a write racing another process's change still gets 409, and many aggregates load in one query."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from typing import Any
from uuid import UUID, uuid4

import pytest

from adapters.rounds import RoundService
from adapters.store import CaseCache, CaseStore
from api.deps import Services
from domain.case import StudentCase
from domain.errors import Conflict, InvalidTransition
from domain.round import NoOpenRound
from domain.values import Status
from tests.integration.test_store import SCHOOL, evaluated_case, guardian
from tests.support import form


def counting_reads(store: CaseStore) -> list[str]:
    """Records every read of case events the store's recorder makes from now on."""
    reads: list[str] = []
    recorder: Any = store.recorder
    for name in ("select_events", "select_events_of"):
        original = getattr(recorder, name)

        def counted(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            reads.append(_name)
            return _original(*args, **kwargs)

        setattr(recorder, name, counted)
    return reads


def test_a_command_on_a_case_this_process_saved_reads_nothing_and_gets_a_copy_of_its_own(
        services: Services) -> None:
    case_id = evaluated_case(services.cases)
    reads = counting_reads(services.store)
    outcome = services.cases.rate(SCHOOL, case_id, level="especially_difficult", reason=None)
    assert reads == [] and outcome.case.status is Status.RATED
    first = services.store.case_cache.get(case_id)
    again = services.store.case_cache.get(case_id)
    assert first is not None and again is not None
    assert first is not again and first is not outcome.case  # nobody shares a copy
    assert first.version == outcome.case.version == services.store.repository.get(case_id).version


def test_the_cached_copy_shares_no_mutable_state_with_the_saved_case_or_a_response(services: Services) -> None:
    case_id = evaluated_case(services.cases)
    outcome = services.cases.rate(SCHOOL, case_id, level="especially_difficult", reason=None)
    expected = services.store.repository.get(case_id)
    # A response (or anything else holding the saved case) changing it, down to nested values, reaches no copy.
    outcome.case.form["student"]["name"] = "changed"
    outcome.case.form["household"]["members"].append({"relation": "uncle"})
    outcome.case.verification["confirmed"][0]["source"] = "changed"  # type: ignore[index]
    outcome.case.home_visits.append({"on": "changed"})
    taken = services.store.case_cache.take(case_id)
    assert taken is not None and taken is not outcome.case
    assert vars(taken) == vars(expected)
    assert taken.status is Status.RATED and taken.level is expected.level  # enum members keep their identity
    # Taken means forgotten: the command that took it owns it until its save puts the new state back.
    assert services.store.case_cache.get(case_id) is None
    reads = counting_reads(services.store)
    rerated = services.cases.execute(SCHOOL, case_id, "rate", None, lambda case, now: case.rate(
        level=None, reason="re-rated", levels=(), skip_class_evaluation_for_data_matched=True,
        profile_version="x", actor=SCHOOL.actor, now=now))
    assert reads == ["select_events"] and rerated.case.version == 6
    cached = services.store.case_cache.get(case_id)
    assert cached is not None and vars(cached) == vars(services.store.repository.get(case_id))


def test_a_case_changed_by_another_process_is_forgotten_and_read_from_the_store(
        services: Services, reopen: Callable[..., Services]) -> None:
    case_id = evaluated_case(services.cases)
    other = reopen()
    other.cases.rate(SCHOOL, case_id, level="difficult", reason="decided elsewhere")
    # Within the refresh interval the copy may still be handed out; after it, the cache has caught up.
    time.sleep(CaseCache.REFRESH_SECONDS + 0.05)
    assert services.store.case_cache.get(case_id) is None
    reads = counting_reads(services.store)
    outcome = services.cases.rate(SCHOOL, case_id, level="especially_difficult", reason="re-rated")
    assert reads == ["select_events"] and outcome.case.version == 6
    assert [type(e).__name__ for e in services.store.events.get(case_id)].count("Rated") == 2


def test_a_stale_copy_refused_by_the_domain_is_decided_again_on_the_stored_case(
        services: Services, reopen: Callable[..., Services]) -> None:
    case_id = evaluated_case(services.cases)
    stale = services.store.case_cache.get(case_id)
    assert stale is not None
    other = reopen()
    other.cases.withdraw(guardian(1), case_id, reason="moved away")
    services.store.case_cache.put(stale)
    services.store.case_cache._refreshed = time.monotonic() + 60  # the refresh has not seen it yet
    seen: list[Status] = []

    def decide(case: StudentCase, now: Any) -> None:
        seen.append(case.status)
        if case.status is Status.EVALUATED:
            raise InvalidTransition("the copy's state refuses")
        case.rate(level=None, reason="x", levels=(), skip_class_evaluation_for_data_matched=True,
                  profile_version="x", actor=SCHOOL.actor, now=now)

    with pytest.raises(InvalidTransition) as refused:
        services.cases.execute(SCHOOL, case_id, "rate", None, decide)
    # First on the stale copy (evaluated), then on the stored case (withdrawn), whose refusal is the answer.
    assert seen == [Status.EVALUATED, Status.WITHDRAWN]
    assert "copy" not in str(refused.value)


def test_a_write_racing_another_process_gets_409_and_changes_nothing(
        services: Services, reopen: Callable[..., Services]) -> None:
    case_id = evaluated_case(services.cases)
    other = reopen()
    cached = services.store.case_cache.get(case_id)
    assert cached is not None and cached.version == 4
    original = services.cases._save

    def other_process_saves_first(case: StudentCase) -> int | None:
        # The other process saves between this command's decision on its copy and its write.
        other.cases.rate(SCHOOL, case_id, level="difficult", reason="the other process")
        return original(case)

    services.cases._save = other_process_saves_first  # type: ignore[method-assign]
    with pytest.raises(Conflict) as lost:
        services.cases.rate(SCHOOL, case_id, level="especially_difficult", reason=None)
    assert lost.value.code == "conflict"
    history = [type(e).__name__ for e in services.store.events.get(case_id)]
    assert history.count("Rated") == 1 and len(history) == 5
    assert services.store.repository.get(case_id).rating["reason"] == "the other process"
    assert services.store.case_cache.get(case_id) is None  # the lost copy is forgotten


def test_a_second_application_is_refused_by_the_store_without_reading_first(services: Services) -> None:
    first = services.cases.apply(guardian(7), form(7))
    services.store.case_cache.clear()
    services.store.lookup_cache.clear()
    reads = counting_reads(services.store)
    with pytest.raises(Conflict) as refused:
        services.cases.apply(guardian(7), form(7))
    assert refused.value.context.get("case_id") == str(first.case.id)
    assert "already applied" in str(refused.value)
    # One read: the school's rounds (the admission rule), as the lookup cache was cleared. The case itself is not
    # read: the store's refusal of a second first event is the answer.
    assert reads == ["select_events_of"]
    assert len(list(services.store.events.get(first.case.id))) == 1


def open_round(services: Services) -> None:
    """An identification round from 20 September; the services' today is 15 September: nobody may apply yet."""
    rounds = RoundService(services.store, services.clock, services.profiles, services.schools, services.projections)
    rounds.open_for_school(SCHOOL, SCHOOL.school or "", RoundService.request(
        "2025-2026", "identification", date(2025, 9, 20), date(2025, 11, 30)))


def test_applications_read_the_school_rounds_once_and_a_round_opened_here_counts_at_once(
        services: Services) -> None:
    reads = counting_reads(services.store)  # select_events_of: rounds; select_events: published profile lines
    services.cases.apply(guardian(50), form(50))
    services.cases.apply(guardian(51), form(51))
    assert reads.count("select_events_of") == 1  # the school has no round (open mode): known after the first look
    open_round(services)
    with pytest.raises(NoOpenRound):
        services.cases.apply(guardian(52), form(52))
    assert reads.count("select_events_of") == 2


def test_a_round_opened_by_another_process_counts_within_the_refresh_interval(
        services: Services, reopen: Callable[..., Services]) -> None:
    services.cases.apply(guardian(60), form(60))
    open_round(reopen())
    time.sleep(CaseCache.REFRESH_SECONDS + 0.05)
    with pytest.raises(NoOpenRound):
        services.cases.apply(guardian(61), form(61))


def test_a_lookup_read_while_something_is_saved_keeps_nothing() -> None:
    cache = CaseCache(10)
    known, saved = uuid4(), uuid4()
    loads: list[list[UUID]] = []

    def load_while_saving(ids: list[UUID]) -> dict[UUID, Any]:
        loads.append(ids)
        cache.forget_all([saved])  # a save in another thread, after this read began: its state may be newer
        return {}

    assert cache.read_through([known, saved], load_while_saving) == {}
    assert cache.read_through([known, saved], lambda ids: loads.append(ids) or {}) == {}
    assert cache.read_through([known, saved], lambda ids: loads.append(ids) or {}) == {}
    assert len(loads) == 2  # the first read kept nothing; the second did, so the third read nothing


def test_get_many_loads_many_aggregates_in_one_query_and_skips_unknown_ids(services: Services) -> None:
    ids = [services.cases.apply(guardian(20 + i), form(20 + i)).case.id for i in range(5)]
    services.cases.verify(SCHOOL, ids[2], method="document", confirmed_categories=["minimum_living_allowance"],
                          notes="")
    reads = counting_reads(services.store)
    unknown = uuid4()
    found = services.store.get_many([*ids, unknown, ids[0]])
    assert reads == ["select_events_of"]
    assert set(found) == set(ids)
    assert all(isinstance(found[i], StudentCase) for i in ids)
    assert found[ids[2]].status is Status.VERIFIED and found[ids[2]].version == 2
    for case_id in ids:
        assert found[case_id].version == services.store.repository.get(case_id).version
    assert services.store.get_many([]) == {}


def test_the_cache_is_bounded_and_off_when_its_size_is_zero() -> None:
    cache = CaseCache(2)
    cases = []
    for _ in range(3):
        case = StudentCase.__new__(StudentCase)
        case._id = uuid4()  # type: ignore[attr-defined]
        case._version = 1  # type: ignore[attr-defined]
        cases.append(case)
    for case in cases:
        cache.put(case)
    assert cache.get(cases[0].id) is None and cache.get(cases[2].id) is not None
    off = CaseCache(0)
    off.put(cases[0])
    assert off.get(cases[0].id) is None


def test_cases_saved_together_by_a_batch_step_are_forgotten_not_cached(services: Services) -> None:
    ids = [services.cases.apply(guardian(40 + i), form(40 + i)).case.id for i in range(3)]
    assert all(services.store.case_cache.get(i) is not None for i in ids)
    cases = services.store.get_many(ids)
    for case in cases.values():
        case.withdraw(reason="batch", actor=SCHOOL.actor, now=services.clock.now())
    services.store.save(*cases.values())
    assert all(services.store.case_cache.get(i) is None for i in ids)
    assert all(services.store.repository.get(i).status is Status.WITHDRAWN for i in ids)
