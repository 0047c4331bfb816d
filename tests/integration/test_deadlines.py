"""Deadlines and races of public notice against a real SQLite file and a fresh PostgreSQL database: the deadline
job across crashes and restarts, concurrent runs, concurrent resolutions, an opening that meets a concurrent
change, and loaded calendar years."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any
from uuid import UUID

import pytest

from adapters.auth import Principal
from adapters.calendar import CalendarUnknown, WorkingCalendar, parse_schedule
from adapters.scheduler import SYSTEM, DeadlineJob
from adapters.settings import Settings
from api.app import build_services
from api.deps import Services
from domain.case import StudentCase
from domain.errors import Conflict, DomainError
from domain.values import Role
from tests.conftest import SECRET
from tests.support import GX_SCHOOL, form, id_number

STAFF = Principal("staff-1", Role.SCHOOL, school=GX_SCHOOL)
TEACHER = Principal("teacher-1", Role.EVALUATOR, school=GX_SCHOOL, class_id="G10-3")
Build = Callable[[str], Services]


@pytest.fixture
def build(database_url: str) -> Iterator[Build]:
    """build(now) → services on the test's store with the clock at `now`; every one is closed at the end, and
    closing one early (without running its deadline job) is how a test stops or crashes the service."""
    built: list[Services] = []

    def make(now: str) -> Services:
        settings = Settings(database_url=database_url, secret=SECRET, now=now, log_level="WARNING",
                            run_deadlines=False)
        services = build_services(settings)
        built.append(services)
        return services

    yield make
    for services in built:
        close(services)


def close(services: Services) -> None:
    services.store.close()
    services.engine.dispose()


def deadlines(services: Services) -> DeadlineJob:
    assert services.deadlines is not None
    return services.deadlines


def rated(services: Services, seq: int) -> str:
    cases = services.cases
    applicant = Principal(f"guardian-{seq}", Role.APPLICANT, student=id_number(seq))
    case_id = cases.apply(applicant, form(seq)).case.id
    cases.verify(STAFF, case_id, method="document", confirmed_categories=["minimum_living_allowance"], notes="")
    cases.assess(STAFF, case_id)
    cases.evaluate(TEACHER, case_id, votes_for=5, votes_against=0, recommended_level="especially_difficult",
                   panel=[])
    cases.rate(STAFF, case_id, level="especially_difficult", reason="一致")
    return str(case_id)


def open_window(services: Services, case_ids: list[str], starts_on: date | None = None) -> Any:
    assert services.publicity is not None
    return services.publicity.open_window(STAFF, GX_SCHOOL, case_ids, starts_on)


def event_types(services: Services, case_id: str) -> list[str]:
    return [type(e).__name__ for e in services.store.events.get(UUID(case_id))]


def load(services: Services, case_id: str) -> StudentCase:
    case: StudentCase = services.store.repository.get(UUID(case_id))
    return case


def test_every_window_that_ended_while_down_is_concluded_once_across_crashes_and_restarts(build: Build) -> None:
    first = build("2025-09-15T09:00:00+08:00")  # Monday
    week = [rated(first, n) for n in (1, 2, 3)]
    disputed = rated(first, 4)
    holiday = [rated(first, n) for n in (5, 6)]
    assert open_window(first, [*week, disputed]).ends_on == date(2025, 9, 19)
    assert open_window(first, holiday, date(2025, 9, 26)).ends_on == date(2025, 10, 9)
    assert first.publicity is not None
    objection = first.publicity.object(STAFF, UUID(disputed), "收入证明存疑").case.open_objections[0]
    close(first)  # stopped before its deadline job ever ran

    # Restarted days after the first window ended: it is concluded, the disputed case held, the other not due.
    second = build("2025-09-24T10:00:00+08:00")
    run = deadlines(second).run_once()
    assert sorted(run.confirmed) == sorted(week) and run.held_by_objection == [disputed]
    assert all(load(second, c).confirmed_on == date(2025, 9, 24) for c in week)
    assert all(load(second, c).status.value == "in_publicity" for c in holiday)
    second.projections.catch_up()  # what the service's projection runner does before it is stopped
    close(second)

    # After National Day a run confirms one case and the process dies before anything else (not even the view).
    third = build("2025-10-10T09:00:00+08:00")
    third.cases.execute(SYSTEM, UUID(holiday[0]), "confirm", None,
                        lambda case, now: case.confirm(today=date(2025, 10, 10), actor=SYSTEM.actor, now=now))
    close(third)

    # The next start reads a view that never saw that confirmation: the domain refuses the second one.
    fourth = build("2025-10-10T09:05:00+08:00")
    stale = deadlines(fourth).run_once(catch_up=False)
    assert stale.confirmed == [holiday[1]] and stale.refused == {holiday[0]: "invalid_transition"}
    again = deadlines(fourth).run_once()
    assert again.confirmed == [] and again.refused == {} and again.held_by_objection == [disputed]

    # The objection resolved, the next run concludes the window that stayed open for it.
    assert fourth.publicity is not None
    fourth.publicity.resolve(STAFF, UUID(disputed), objection_id=objection, outcome="dismissed",
                             reason="已核实", new_level=None)
    assert deadlines(fourth).run_once().confirmed == [disputed]
    for case_id in [*week, disputed, *holiday]:
        assert event_types(fourth, case_id).count("Confirmed") == 1, case_id
        assert load(fourth, case_id).status.value == "confirmed"


def test_two_services_running_the_job_at_once_confirm_each_window_once(build: Build) -> None:
    opener = build("2025-09-15T09:00:00+08:00")
    ids = [rated(opener, n) for n in range(1, 7)]
    open_window(opener, ids)
    close(opener)
    one, two = build("2025-09-22T09:00:00+08:00"), build("2025-09-22T09:00:00+08:00")
    barrier = threading.Barrier(2)
    runs: dict[str, Any] = {}

    def run(name: str, services: Services) -> None:
        deadlines(services).projections.catch_up("notices")
        barrier.wait(timeout=30)
        runs[name] = deadlines(services).run_once(catch_up=False)

    threads = [threading.Thread(target=run, args=(n, s)) for n, s in (("one", one), ("two", two))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    confirmed = runs["one"].confirmed + runs["two"].confirmed
    assert sorted(confirmed) == sorted(ids)  # each by exactly one of the two
    assert all(event_types(one, c).count("Confirmed") == 1 for c in ids)


def test_two_resolutions_of_one_objection_at_once_one_wins(build: Build, monkeypatch: pytest.MonkeyPatch) -> None:
    services = build("2025-09-15T09:00:00+08:00")
    case_id = rated(services, 1)
    open_window(services, [case_id])
    assert services.publicity is not None
    objection = services.publicity.object(STAFF, UUID(case_id), "异议").case.open_objections[0]

    # Both resolutions load the same version before either decides: a true race, made deterministic.
    barrier = threading.Barrier(2)
    original = services.cases.execute

    def gated(principal: Principal, cid: UUID, command: str, expected: int | None,
              decide: Callable[[StudentCase, Any], None]) -> Any:
        def after_both_loaded(case: StudentCase, now: Any) -> None:
            barrier.wait(timeout=30)
            decide(case, now)

        return original(principal, cid, command, expected, after_both_loaded)

    monkeypatch.setattr(services.cases, "execute", gated)
    outcomes: dict[str, Any] = {}

    def resolve(outcome: str, level: str | None) -> None:
        try:
            assert services.publicity is not None
            outcomes[outcome] = services.publicity.resolve(STAFF, UUID(case_id), objection_id=objection,
                                                           outcome=outcome, reason="复核", new_level=level)
        except DomainError as exc:
            outcomes[outcome] = exc

    threads = [threading.Thread(target=resolve, args=("upheld", "difficult")),
               threading.Thread(target=resolve, args=("dismissed", None))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    lost = [o for o in outcomes.values() if isinstance(o, DomainError)]
    won = [o for o in outcomes.values() if not isinstance(o, DomainError)]
    assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], Conflict)
    assert event_types(services, case_id).count("ObjectionResolved") == 1
    final = load(services, case_id)
    assert final.objections[objection]["status"] == won[0].case.objections[objection]["status"]


def test_an_opening_that_meets_a_concurrent_change_stores_no_window_at_all(build: Build) -> None:
    services = build("2025-09-15T09:00:00+08:00")
    ids = [rated(services, n) for n in (1, 2, 3)]
    assert services.publicity is not None
    prepared = services.publicity.prepare(STAFF, GX_SCHOOL, ids)
    # Between the checks and the save, the school re-rates one of the cases.
    services.cases.rate(STAFF, UUID(ids[1]), level="difficult", reason="补充材料后调整")
    with pytest.raises(Conflict):
        services.publicity.commit(prepared)
    for case_id in ids:
        assert "Publicized" not in event_types(services, case_id)
        assert load(services, case_id).status.value == "rated"
    # Reloaded and asked again, the whole set opens.
    assert open_window(services, ids).case_ids == ids


def test_a_loaded_year_is_used_refused_until_loaded_and_replaceable(build: Build) -> None:
    services = build("2025-09-15T09:00:00+08:00")
    calendar = WorkingCalendar(services.engine)
    with pytest.raises(CalendarUnknown):
        calendar.window(date(2027, 3, 1), 5)
    csv = "date,kind,name\n2027-01-01,holiday,元旦\n2027-03-02,holiday,演练\n2027-03-06,workday,\n"
    calendar.load(parse_schedule(csv.encode(), "2027.csv"))
    assert calendar.loaded_years() == [2027]
    # Mon 1 Mar; Tue 2 off; Wed 3, Thu 4, Fri 5; Sat 6 (调休上班).
    assert calendar.window(date(2027, 3, 1), 5) == (date(2027, 3, 1), date(2027, 3, 6))
    calendar.load(parse_schedule(b"date,kind\n2027-01-01,holiday\n", "2027.csv"))  # replaced whole
    assert calendar.window(date(2027, 3, 1), 5) == (date(2027, 3, 1), date(2027, 3, 5))
    # A loaded year takes precedence over the package's data for that year.
    assert calendar.is_working_day(date(2025, 9, 15))
    calendar.load(parse_schedule(b'{"year": 2025, "holidays": ["2025-09-15"]}', "2025.json"))
    assert not calendar.is_working_day(date(2025, 9, 15))


def test_the_notices_view_rebuilds_to_the_same_board(build: Build) -> None:
    services = build("2025-09-15T09:00:00+08:00")
    ids = [rated(services, n) for n in (1, 2)]
    open_window(services, ids)
    assert services.publicity is not None
    services.projections.catch_up()
    before = services.publicity.board(STAFF, GX_SCHOOL).entries
    services.projections.rebuild("notices")
    after = services.publicity.board(STAFF, GX_SCHOOL).entries
    assert before == after and len(after) == 2
