"""The projection runner on a real SQLite file and PostgreSQL: as-of reads from the (case, version, time) index,
automatic rebuild of a view whose schema changed, rebuild with switch-over, and two runners on one view."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, ClassVar
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Column, MetaData, String, Table, func, inspect, select

from adapters.auth import Principal
from api.deps import Services
from domain.values import Role
from projections import all_views
from projections.bulk import RowCache
from projections.case_index import CaseIndex
from projections.case_versions import AsOfIndex, CaseVersions, ViewBehind
from projections.runner import Projections, RunnerThread, projection_state
from tests.support import GX_SCHOOL, form

STAFF = Principal("staff-1", Role.SCHOOL, school=GX_SCHOOL)


def _walk(services: Services, seq: int) -> UUID:
    """One case through apply → verify → assess (three events)."""
    case_id = services.cases.apply(STAFF, form(seq)).case.id
    services.cases.verify(STAFF, case_id, method="document", confirmed_categories=["minimum_living_allowance"],
                          notes="")
    services.cases.assess(STAFF, case_id)
    return case_id


def _rows(services: Services, view: str, base: str) -> int:
    table = services.projections.active_tables(view)[base]
    with services.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_as_of_reads_use_the_version_index_once_it_has_caught_up(services: Services,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    case_id = _walk(services, 1)
    times = [e.timestamp for e in services.store.events.get(case_id)]
    services.projections.catch_up()

    def no_replay(*_: Any, **__: Any) -> Any:
        raise AssertionError("the index should have answered without reading the case's events")

    with monkeypatch.context() as patch:
        patch.setattr(services.store.events, "get", no_replay)
        for version, moment in enumerate(times, start=1):
            assert services.cases.version_as_of(case_id, moment, current_version=3) == version
            assert services.cases.version_as_of(case_id, moment + timedelta(microseconds=1),
                                                current_version=3) == version
        assert services.cases.version_as_of(case_id, times[0] - timedelta(seconds=1), current_version=3) is None
        # The same instant in another offset is the same moment.
        china = times[1].astimezone(ZoneInfo("Asia/Shanghai"))
        assert services.cases.version_as_of(case_id, china, current_version=3) == 2


def test_as_of_reads_fall_back_to_the_events_while_the_index_lags(services: Services) -> None:
    case_id = _walk(services, 1)
    services.projections.catch_up()
    services.cases.evaluate(Principal("t", Role.EVALUATOR, school=GX_SCHOOL, class_id="G10-3"), case_id,
                            votes_for=5, votes_against=1, recommended_level="especially_difficult", panel=[])
    newest = list(services.store.events.get(case_id))[-1]
    index = AsOfIndex(services.projections)
    with pytest.raises(ViewBehind):
        index.version_as_of(case_id, newest.timestamp, current_version=4)
    # Not yet in the view, still answered right (from the case's own events) through the service.
    assert services.cases.version_as_of(case_id, newest.timestamp, current_version=4) == 4
    state = services.cases.get(STAFF, case_id, as_of=newest.timestamp - timedelta(microseconds=1))
    assert state.version == 3 and state.status.value == "assessed"
    services.projections.catch_up()
    assert index.version_as_of(case_id, newest.timestamp, current_version=4) == 4


class CaseIndexV99(CaseIndex):
    """The case index as a later release might declare it: new rules over the same tables."""

    schema_version: ClassVar[int] = 99


class CaseIndexWithNewColumn(CaseIndex):
    """The case index as a later release might declare it: a table of another shape."""

    schema_version: ClassVar[int] = 100

    def define_tables(self, md: MetaData, suffix: str) -> dict[str, Any]:
        tables = super().define_tables(md, suffix)
        tables["cases"].append_column(Column("note", String(20)))
        return tables


def test_every_views_tables_are_recognised_as_their_own_shape(services: Services) -> None:
    """A raised schema version over unchanged tables rebuilds online only if the reflected tables compare equal."""
    projections = services.projections
    with services.engine.connect() as conn:
        for view in projections.views:
            assert projections._same_shape(conn, view, projections.active_generation(view, max_age=0)), view


def test_a_new_schema_over_the_same_tables_is_rebuilt_while_the_old_generation_answers(services: Services) -> None:
    for seq in range(1, 4):
        _walk(services, seq)
    services.projections.catch_up()
    before = services.projections.checksum("case_index")
    old_generation = services.projections.active_generation("case_index", max_age=0)

    upgraded = Projections(services.store, services.engine, [CaseIndexV99(), CaseVersions()])
    upgraded.ensure()
    assert upgraded.active_generation("case_index", max_age=0) == old_generation  # still answering
    assert _rows(services, "case_index", "cases") == 3
    with services.engine.connect() as conn:
        state = {r.generation: (r.schema_version, r.status) for r in conn.execute(
            select(projection_state).where(projection_state.c.view == "case_index"))}
    new_generation = max(state)
    assert state == {old_generation: (CaseIndex.schema_version, "active"), new_generation: (99, "building")}
    upgraded.ensure()  # a second start-up carries on with the same new generation
    assert upgraded.start_rebuild("case_index") == new_generation
    _walk(services, 4)
    upgraded.catch_up("case_index", rebuilds=False)  # a reader's catch-up: the active generation only
    assert upgraded.position("case_index", new_generation) == 0
    assert upgraded.active_generation("case_index", max_age=0) == old_generation
    assert _rows(services, "case_index", "cases") == 4
    before = upgraded.checksum("case_index")

    upgraded.catch_up()  # filled from the log and switched to, not migrated by hand
    assert upgraded.active_generation("case_index", max_age=0) == new_generation
    assert upgraded.checksum("case_index") == before
    assert upgraded.position("case_versions") == services.projections.position("case_versions")


def test_a_new_schema_with_other_tables_takes_over_at_once(services: Services) -> None:
    for seq in range(1, 4):
        _walk(services, seq)
    services.projections.catch_up()
    old_generation = services.projections.active_generation("case_index", max_age=0)

    upgraded = Projections(services.store, services.engine, [CaseIndexWithNewColumn(), CaseVersions()])
    upgraded.ensure()
    new_generation = upgraded.active_generation("case_index", max_age=0)
    assert new_generation > old_generation
    with services.engine.connect() as conn:
        state = {r.generation: (r.schema_version, r.status) for r in conn.execute(
            select(projection_state).where(projection_state.c.view == "case_index"))}
    assert state == {new_generation: (100, "active")}  # the old generation and its tables are gone
    old_tables = services.projections.tables_of("case_index", old_generation).values()
    assert not any(inspect(services.engine).has_table(t.name) for t in old_tables)
    assert upgraded.position("case_index") == 0  # filled from the log, not migrated by hand
    upgraded.catch_up()
    with services.engine.connect() as conn:
        table = upgraded.active_tables("case_index")["cases"]
        assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 3


def test_rebuild_fills_a_new_generation_while_the_old_one_answers_then_switches(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    for seq in range(1, 6):
        _walk(services, seq)
    projections = services.projections
    settled: list[list[str]] = []
    settle = RowCache.settle

    def counted(cache: RowCache[Any], tables: Iterable[Table]) -> None:
        tables = list(tables)
        settled.append([t.name for t in tables])
        settle(cache, tables)

    monkeypatch.setattr(RowCache, "settle", counted)
    projections.catch_up()
    before = projections.checksum("case_index")
    old = projections.active_generation("case_index", max_age=0)

    building = projections.start_rebuild("case_index")
    assert building != old
    projections.step("case_index", building, limit=4)
    assert projections.active_generation("case_index", max_age=0) == old  # queries still read the old one
    assert _rows(services, "case_index", "cases") == 5
    assert projections.start_rebuild("case_index") == building  # one rebuild at a time

    def indexes() -> set[str]:
        table = projections.tables_of("case_index", building)["cases"]
        return {i["name"] for i in inspect(services.engine).get_indexes(table.name)}

    expected = {i.name for i in projections.tables_of("case_index", building)["cases"].indexes}
    assert expected and not indexes() & expected  # filled first, indexed when caught up
    if services.engine.dialect.name == "postgresql":  # a storage parameter SQLite does not have
        with services.engine.connect() as conn:
            options = conn.exec_driver_sql("SELECT reloptions FROM pg_class WHERE relname = %s",
                                           (f"case_index_g{building}",)).scalar_one()
        assert options == ["fillfactor=70"]

    progress = projections.rebuild("case_index", batch_size=3)
    assert progress.generation == building
    assert projections.active_generation("case_index", max_age=0) == building
    # What the view kept for the rebuild shrinks to what a live one keeps.
    assert [t.name for t in projections.tables_of("case_index", building).values()] in settled
    assert projections.checksum("case_index") == before
    assert indexes() >= expected  # indexed before it answers queries


def test_a_rebuild_reads_ahead_in_a_thread_on_postgresql_and_in_line_on_sqlite(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's driver releases the GIL for every row it reads or writes; a reader thread beside the writer there
    made rebuilds slower (bench/README (a)), so on SQLite the batches are read by the rebuilding thread itself."""
    for seq in range(1, 4):
        _walk(services, seq)
    projections = services.projections
    projections.catch_up()
    before = projections.checksum("case_index")
    readers: list[str] = []
    read_batch = projections.read_batch

    def recorded(view: str, after: int, limit: int) -> Any:
        readers.append(threading.current_thread().name)
        return read_batch(view, after, limit)

    monkeypatch.setattr(projections, "read_batch", recorded)
    projections.rebuild("case_index", batch_size=2)
    assert len(readers) >= 5  # nine events in batches of two (the first, read ahead, of one)
    if services.engine.dialect.name == "sqlite":
        assert set(readers) == {threading.current_thread().name}
    else:
        assert all(name.startswith("rebuild-case_index") for name in readers)
    assert projections.checksum("case_index") == before


def test_two_runners_on_one_view_never_both_apply_a_batch(services: Services) -> None:
    """case_versions inserts (case, version) rows under a primary key: a batch applied twice would fail."""
    for seq in range(1, 16):
        _walk(services, seq)  # 45 events
    generation = services.projections.start_rebuild("case_versions")
    runners = [Projections(services.store, services.engine, all_views(), batch_size=2) for _ in range(3)]
    errors: list[BaseException] = []
    applied = [0, 0, 0]
    start = threading.Barrier(len(runners))

    def run(i: int) -> None:
        try:
            start.wait()
            while True:
                done = runners[i].step("case_versions", generation)
                applied[i] += done
                if done == 0:
                    return
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(runners))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(applied) == 45
    assert sum(1 for n in applied if n) >= 1
    table = services.projections.tables_of("case_versions", generation)["versions"]
    with services.engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(table)).scalar_one()
        distinct = conn.execute(select(func.count()).select_from(
            select(table.c.case_id, table.c.version).distinct().subquery())).scalar_one()
    assert count == distinct == 45


def test_region_counts_always_equal_counting_the_case_rows(services: Services) -> None:
    """The counts table is kept by deltas; counting the case rows themselves must give the same answer."""
    from projections.queries import ReadModels

    evaluator = Principal("t", Role.EVALUATOR, school=GX_SCHOOL, class_id="G10-3")
    for seq in range(1, 9):
        case_id = _walk(services, seq) if seq % 3 else services.cases.apply(STAFF, form(seq)).case.id
        if seq % 2 == 0 and seq % 3:
            services.cases.evaluate(evaluator, case_id, votes_for=5, votes_against=0,
                                    recommended_level="especially_difficult", panel=[])
            services.cases.rate(STAFF, case_id, level="difficult" if seq % 4 else "especially_difficult",
                                reason="the panel's view")
        if seq == 5:
            services.cases.withdraw(STAFF, case_id, "moved away")
    services.projections.step("case_index", services.projections.active_generation("case_index"), limit=7)
    services.projections.catch_up()
    read_models = ReadModels(services.projections, services.schools, services.clock)
    auditor = Principal("a", Role.AUDITOR)
    counted = read_models.statistics(auditor, "100000")
    with services.engine.connect() as conn:
        recounted = conn.execute(read_models.statistics_query(auditor, "100000", from_cases=True)).all()
    assert {(r.school_id, r.level, r.status): r.count for r in counted.rows} == {
        (r.school_id, r.level, r.status): r.n for r in recounted}
    assert counted.total == 8 and counted.by("status") == {"applied": 2, "assessed": 2, "rated": 3, "withdrawn": 1}


def test_a_view_reading_some_topics_moves_over_the_events_it_does_not_read(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """case_keys reads applications, amendments, verifications and withdrawals only: once caught up, its position
    is the log's head, not its last such event, so checking that it has caught up does not scan an ever longer
    stretch of the log (one scan per read-your-writes query). The rows it keeps between batches move with it."""
    projections = services.projections
    moves: list[tuple[list[str], int, int]] = []
    moved = RowCache.moved

    def counted(cache: RowCache[Any], tables: Iterable[Table], position: int, to: int) -> None:
        tables = list(tables)
        moves.append(([t.name for t in tables], position, to))
        moved(cache, tables, position, to)

    monkeypatch.setattr(RowCache, "moved", counted)
    generation = projections.active_generation("case_keys", max_age=0)
    start = projections.position("case_keys", generation)
    _walk(services, 1)  # applied, verified, assessed
    head = projections.head()
    assert projections.step("case_keys", generation) == 2
    assert projections.position("case_keys", generation) == head - 1 > start  # at the verification
    assert projections.step("case_keys", generation) == 0
    assert projections.position("case_keys", generation) == head  # over the assessment it does not read
    assert ([t.name for t in projections.tables_of("case_keys", generation).values()], head - 1, head) in moves
    assert projections.wait_for("case_keys", head, timeout=0.1)
    _walk(services, 2)  # an application after the move is still read
    projections.catch_up()
    assert projections.position("case_keys", generation) == projections.head()
    with services.engine.connect() as conn:
        keys = conn.execute(select(func.count()).select_from(
            projections.active_tables("case_keys")["keys"])).scalar_one()
    assert keys == 2


def _count_steps(projections: Projections, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The views asked for a batch from now on, in order."""
    asked: list[str] = []
    step = projections._step

    def counted(view: str, generation: int, limit: int, prefetched: Any = None) -> tuple[int, int | None]:
        asked.append(view)
        return step(view, generation, limit, prefetched)

    monkeypatch.setattr(projections, "_step", counted)
    return asked


def test_a_catch_up_that_applied_events_does_not_ask_every_view_again_to_find_nothing(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """One pass, when no view filled a batch and nothing was written meanwhile, asking only the views the new events
    are for; the others, and those that read some topics only, still end at the head (over the events after their
    last one)."""
    projections = services.projections
    projections.catch_up()
    asked = _count_steps(projections, monkeypatch)
    _walk(services, 41)  # applied, verified, assessed
    head = projections.head()
    applied, reached = projections.catch_up_to()
    live = projections._live_generations()
    assert applied > 0 and reached == head
    kinds = {"case.applied", "case.verified", "case.assessed"}
    for_them = sorted(view for view, _, _ in live
                      if not projections.views[view].topics or kinds & set(projections.views[view].topics))
    assert sorted(asked) == for_them and len(for_them) < len(live)  # each once; the rounds view, for one, not
    for view, generation, _ in live:
        assert projections.position(view, generation) == head, view
    assert projections.catch_up() == 0


def test_a_pass_over_more_new_events_than_it_reads_the_kinds_of_asks_every_view(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    projections = services.projections
    projections.catch_up()
    monkeypatch.setattr(projections, "NEW_TOPICS_READ", 2)
    asked = _count_steps(projections, monkeypatch)
    _walk(services, 42)  # three events
    head = projections.head()
    assert projections.catch_up_to()[1] == head
    live = projections._live_generations()
    assert sorted(set(asked)) == sorted(view for view, _, _ in live)
    for view, generation, _ in live:
        assert projections.position(view, generation) == head, view


def test_an_idle_runner_asks_the_views_only_when_the_log_moves(services: Services) -> None:
    """While the log's head stays where a catch-up that found nothing left it, a poll reads the head and nothing
    more; a new event is applied at the next poll; and the views are asked anyway every FULL_POLL_SECONDS."""
    services.projections.catch_up()
    runner = RunnerThread(services.projections, interval=0.01)
    runner.FULL_POLL_SECONDS = 3600.0
    runner.start()
    try:
        _wait(lambda: runner._idle is not None)
        idle_catch_ups = runner.catch_ups
        threading.Event().wait(0.3)  # about 30 polls
        assert runner.catch_ups == idle_catch_ups
        case_id = _walk(services, 40)
        head = services.projections.head()
        _wait(lambda: runner._idle is not None and runner._idle[0] == head)
        assert runner.catch_ups > idle_catch_ups
        cases = services.projections.active_tables("case_index")["cases"]
        with services.engine.connect() as conn:
            status = conn.execute(select(cases.c.status).where(cases.c.case_id == str(case_id))).scalar_one()
        assert status == "assessed"
        runner.FULL_POLL_SECONDS = 0.0
        asked = runner.catch_ups
        _wait(lambda: runner.catch_ups >= asked + 3)
    finally:
        runner.stop()


def _wait(condition: Any, seconds: float = 10.0) -> None:
    deadline = threading.Event()
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        deadline.wait(0.01)
    raise AssertionError("condition not reached in time")
