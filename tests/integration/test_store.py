"""The event store on a SQLite file and on PostgreSQL: value types survive the round trip (events and snapshots),
a restart loses nothing, the clock never runs behind the log, bad configuration is refused at start-up, and two
concurrent ratings leave exactly one Rated event."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from adapters import clock as clock_module
from adapters.auth import Principal
from adapters.cases import CaseService, Outcome
from adapters.clock import Clock
from adapters.policies import ProfileFileError
from adapters.settings import REPO_ROOT, Settings
from adapters.store import CaseStore
from api.app import build_services, create_app
from api.deps import Services
from domain.case import StudentCase
from domain.errors import Conflict, InvalidTransition
from domain.values import Level, Role, Status
from tests.conftest import SECRET
from tests.support import GX_SCHOOL, STAFF, form, id_number

SCHOOL = Principal(sub="staff-1", role=Role.SCHOOL, school=GX_SCHOOL)
EVALUATOR = Principal(sub="teacher-1", role=Role.EVALUATOR, school=GX_SCHOOL, class_id="G10-3")


def guardian(seq: int) -> Principal:
    return Principal(sub=f"guardian-{seq}", role=Role.APPLICANT, student=id_number(seq))


def evaluated_case(cases: CaseService, seq: int = 1) -> UUID:
    """A Guangxi case applied, verified by documents, assessed and evaluated: ready for the school's rating."""
    case_id = cases.apply(guardian(seq), form(seq)).case.id
    cases.verify(SCHOOL, case_id, method="document", confirmed_categories=["minimum_living_allowance"], notes="")
    cases.assess(SCHOOL, case_id)
    cases.evaluate(EVALUATOR, case_id, votes_for=5, votes_against=0, recommended_level="especially_difficult",
                   panel=[])
    return case_id




def close(services: Services) -> None:
    services.store.close()
    services.engine.dispose()


# ---------------------------------------------------------------------------------------------- value types


def test_events_and_snapshots_keep_their_value_types_across_a_fresh_store(services: Services,
                                                                          settings: Settings) -> None:
    case_id = evaluated_case(services.cases)
    services.cases.rate(SCHOOL, case_id, level="difficult", reason="owns a shop")
    case = services.store.repository.get(case_id)
    assert isinstance(case, StudentCase)
    now = services.clock.now
    # Later steps straight on the aggregate: dates, Decimals, nested lists and enums all reach the store.
    case.publicize(notice_id="N1", starts_on=date(2025, 9, 26), ends_on=date(2025, 10, 10), working_days=5,
                   profile_version="guangxi@2025.1", actor=STAFF, now=now())
    case.confirm(today=date(2025, 10, 11), actor=STAFF, now=now())
    case.grant_aid(programme="national_grant", amount="2000.50", programmes=["national_grant"], target=None,
                   override_reason=None, profile_version="guangxi@2025.1", actor=STAFF, now=now())
    case.select_for_follow_up(sample_id="S1", deadline=date(2025, 12, 31), actor=STAFF, now=now())
    services.store.save(case)

    fresh = CaseStore(settings)
    try:
        reloaded = fresh.repository.get(case_id)
        assert reloaded == case  # every attribute equal, including types: Decimal("2000.50") != "2000.50"
        assert reloaded.status is Status.CONFIRMED and reloaded.level is Level.DIFFICULT
        assert reloaded.publicity["ends_on"] == date(2025, 10, 10)
        assert type(reloaded.publicity["ends_on"]) is date
        assert reloaded.granted == Decimal("2000.50") and reloaded.follow_up["deadline"] == date(2025, 12, 31)
        events = {type(e).__name__: e for e in fresh.events.get(case_id)}
        assert events["Rated"].level is Level.DIFFICULT
        assert events["Rated"].suggested_level is Level.ESPECIALLY_DIFFICULT
        assert type(events["Publicized"].starts_on) is date
        assert events["AidGranted"].amount == Decimal("2000.50") and isinstance(events["AidGranted"].amount, Decimal)
        assert isinstance(events["Applied"].timestamp, datetime) and events["Applied"].timestamp.tzinfo is not None
        assert events["Applied"].originator_id == case_id and isinstance(events["Applied"].originator_id, UUID)

        services.store.take_snapshot(case_id)
        assert len(list(fresh.snapshots.get(case_id))) == 1  # type: ignore[union-attr]
        from_snapshot = CaseStore(settings)
        try:
            assert from_snapshot.repository.get(case_id) == case
        finally:
            from_snapshot.close()
    finally:
        fresh.close()


# ---------------------------------------------------------------------------------------------- restarts and time


def test_a_restart_loses_nothing_and_duplicates_nothing(settings: Settings,
                                                        reopen: Callable[..., Services]) -> None:
    first = reopen()
    case_id = evaluated_case(first.cases)
    before = first.cases.get(SCHOOL, case_id)
    history = [(e.version, e.type, e.occurred_at) for e in first.cases.events(SCHOOL, case_id)]
    position = first.store.recorder.max_notification_id()
    schools = first.schools.count()
    close(first)

    second = reopen()
    after = second.cases.get(SCHOOL, case_id)
    assert after == before and after.status is Status.EVALUATED
    assert [(e.version, e.type, e.occurred_at) for e in second.cases.events(SCHOOL, case_id)] == history
    assert second.store.recorder.max_notification_id() == position
    assert second.schools.count() == schools  # the demo registry is not imported twice
    rated = second.cases.rate(SCHOOL, case_id, level="especially_difficult", reason=None)
    assert rated.case.version == before.version + 1 and rated.position == position + 1  # type: ignore[operator]


def test_the_clock_never_starts_behind_the_newest_event(reopen: Callable[..., Services]) -> None:
    first = reopen("2025-09-15T09:00:00+08:00")
    case_id = first.cases.apply(guardian(1), form(1)).case.id
    newest = max(e.occurred_at for e in first.cases.events(SCHOOL, case_id))
    close(first)

    rewound = reopen("2025-09-01T00:00:00+08:00")  # ZIZHU_NOW before the newest event in the log
    assert rewound.clock.now() > newest
    later = rewound.cases.verify(SCHOOL, case_id, method="document", confirmed_categories=[], notes="")
    occurred = [e.occurred_at for e in rewound.cases.events(SCHOOL, case_id)]
    assert occurred == sorted(occurred) and len(set(occurred)) == len(occurred)
    assert later.case.modified_on > newest

    ahead = reopen("2026-03-02T08:00:00+08:00")  # ZIZHU_NOW after it: the clock starts there
    assert ahead.clock.now() >= datetime.fromisoformat("2026-03-02T08:00:00+08:00")
    assert ahead.clock.today() >= date(2026, 3, 2)


def test_the_clock_hands_out_distinct_instants_to_concurrent_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    # A frozen monotonic source makes every call take the "same instant again" path, and a tiny switch interval
    # interleaves the threads inside it: an unguarded clock hands out thousands of duplicates here.
    monkeypatch.setattr(clock_module, "time", SimpleNamespace(monotonic=lambda: 100.0))
    clock = Clock(start=datetime.fromisoformat("2025-09-15T09:00:00+08:00"))
    instants: list[datetime] = []
    lock = threading.Lock()

    def take() -> None:
        mine = [clock.now() for _ in range(5000)]
        with lock:
            instants.extend(mine)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=take) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert len(instants) == 20000 and len(set(instants)) == 20000


def test_zizhu_now_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    strong = "p" * 40
    with pytest.raises(ValidationError, match="ZIZHU_NOW is refused"):
        Settings(env="production", now="2025-09-15T09:00:00+08:00", secret=strong)
    monkeypatch.setenv("ZIZHU_ENV", "production")
    monkeypatch.setenv("ZIZHU_SECRET", strong)
    monkeypatch.setenv("ZIZHU_NOW", "2025-09-15T09:00:00+08:00")
    with pytest.raises(ValidationError, match="ZIZHU_NOW is refused"):
        Settings()
    monkeypatch.delenv("ZIZHU_NOW")
    assert Settings().now is None and Settings().env == "production"
    assert Settings(env="development", now="2025-09-15T09:00:00+08:00").now is not None
    with pytest.raises(ValidationError, match="ZIZHU_NOW must be an ISO 8601 time"):
        Settings(env="development", now="next monday")


# ---------------------------------------------------------------------------------------------- profiles at start-up


def _broken_copy(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    for source in (REPO_ROOT / "policies").glob("*.json"):
        (directory / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    data = json.loads((directory / "guangxi.json").read_text(encoding="utf-8"))
    change(data)
    (directory / "guangxi.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return directory


def _set_cutoff(data: dict[str, Any]) -> None:
    data["scoring"]["cutoffs"]["difficult"] = 90


def _unknown_category(data: dict[str, Any]) -> None:
    data["scoring"]["direct_identification"]["rich_uncle"] = "difficult"


def _unknown_kind(data: dict[str, Any]) -> None:
    data["scoring"]["items"][0]["kind"] = "horoscope"


def _unknown_level(data: dict[str, Any]) -> None:
    data["levels"].append("very_difficult")


@pytest.mark.parametrize(("change", "field"), [
    (_set_cutoff, "scoring.cutoffs.especially_difficult"),
    (_unknown_category, "scoring.direct_identification.rich_uncle"),
    (_unknown_kind, "scoring.items[0].kind"),
    (_unknown_level, "levels[3]"),
])
def test_a_malformed_profile_stops_start_up_naming_the_file_and_the_field(
        tmp_path: Path, change: Callable[[dict[str, Any]], None], field: str) -> None:
    database = tmp_path / "var" / "zizhu.db"
    settings = Settings(database_url=f"sqlite:///{database}", secret=SECRET, log_level="WARNING",
                        policy_dir=_broken_copy(tmp_path, change))
    with pytest.raises(ProfileFileError) as caught:
        build_services(settings)
    message = str(caught.value)
    assert "guangxi.json" in message and f"field {field}:" in message
    assert not database.exists()  # refused before anything was opened or written
    with pytest.raises(ProfileFileError, match=r"guangxi\.json"), TestClient(create_app(settings)):
        pass


def test_a_profile_that_is_not_json_or_repeats_a_province_is_refused(tmp_path: Path) -> None:
    directory = _broken_copy(tmp_path, lambda data: None)
    (directory / "guangxi-copy.json").write_text((directory / "guangxi.json").read_text(encoding="utf-8"),
                                                 encoding="utf-8")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'z.db'}", secret=SECRET, policy_dir=directory)
    with pytest.raises(ProfileFileError, match=r"guangxi.json: field province_code: 45 is already covered"):
        build_services(settings)
    (directory / "guangxi-copy.json").write_text('{"profile_id": "guangxi",', encoding="utf-8")
    with pytest.raises(ProfileFileError, match=r"guangxi-copy.json: cannot be read as JSON"):
        build_services(settings)


# ---------------------------------------------------------------------------------------------- concurrency


@pytest.mark.parametrize("instances", ["one service", "two services"])
def test_two_concurrent_ratings_leave_exactly_one_rated_event(services: Services,
                                                              reopen: Callable[..., Services],
                                                              instances: str) -> None:
    case_id = evaluated_case(services.cases)
    other = services if instances == "one service" else reopen()
    # Both commands load the case before either saves: the barrier holds each at the save until both are there.
    barrier = threading.Barrier(2, timeout=30)
    for cases in {id(services.cases): services.cases, id(other.cases): other.cases}.values():
        original = cases._save

        def held(case: StudentCase, _save: Callable[[StudentCase], int | None] = original) -> int | None:
            barrier.wait()
            return _save(case)

        cases._save = held  # type: ignore[method-assign]

    results: list[Outcome | BaseException] = []

    def rate(cases: CaseService, level: str, reason: str | None) -> None:
        try:
            results.append(cases.rate(SCHOOL, case_id, level=level, reason=reason))
        except BaseException as exc:  # collected and checked below
            results.append(exc)

    threads = [threading.Thread(target=rate, args=(services.cases, "especially_difficult", None)),
               threading.Thread(target=rate, args=(other.cases, "difficult", "a second opinion"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    won = [r for r in results if isinstance(r, Outcome)]
    lost = [r for r in results if not isinstance(r, Outcome)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], (Conflict, InvalidTransition)), repr(lost[0])
    history = [type(e).__name__ for e in services.store.events.get(case_id)]
    assert history.count("Rated") == 1 and len(history) == 5
    assert services.store.repository.get(case_id).level is won[0].case.level
