"""Rows a view keeps in memory between batches (projections.bulk.RowCache): used only while they are what the table
holds, i.e. while nothing but this process's committed batches moved the generation; and counts a rebuild leaves
for its switch (CaseIndex.finish_building)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import date
from typing import Any

import pytest
from sqlalchemy import MetaData, select

from domain.values import VerificationMethod
from projections import bulk
from projections.bulk import RowCache
from projections.case_index import CaseIndex
from projections.runner import Batch, Envelope, applying
from tests.support import STAFF
from tests.unit.case_steps import Steps
from tests.unit.projection_harness import ViewHarness, harness


def _batch(h: ViewHarness, view: CaseIndex, envelopes: Sequence[Envelope], position: int,
           building: bool = False, fail: bool = False) -> None:
    """One runner batch: `view` applies `envelopes` to the generation at `position`; it commits unless `fail`."""
    context = Batch("case_index", 1, position, envelopes[-1].position, building)
    with pytest.raises(RuntimeError) if fail else nullcontext(), applying(context), h.engine.begin() as conn:
        view.handle(conn, h.tables, envelopes)
        if fail:
            raise RuntimeError("the batch's transaction fails after the view applied it")
    if not fail:
        for committed in context.on_commit:
            committed()


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """The keys each batch read back from the database."""
    seen: list[set[str]] = []
    original = bulk.select_rows

    def select_rows(conn: Any, table: Any, key: str, keys: Collection[str]) -> dict[str, dict[str, Any]]:
        seen.append(set(keys))
        return original(conn, table, key, keys)

    monkeypatch.setattr(bulk, "select_rows", select_rows)
    return seen


def _row(h: ViewHarness, steps: Steps) -> dict[str, Any]:
    return {r["case_id"]: r for r in h.rows("cases")}[str(steps.case.id)]


def test_a_generation_filled_from_empty_reads_nothing_back_while_every_row_is_kept(
        monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = Steps.apply(1), Steps.apply(2)
    view = CaseIndex()
    with harness(view) as h:
        reads = _reads(monkeypatch)
        first = h.envelopes([*one.events, *two.events])
        _batch(h, view, first, 0, building=True)
        one.verify("minimum_living_allowance")
        _batch(h, view, h.envelopes(one.events[-1:]), first[-1].position, building=True)
        # The table began empty and nothing was dropped: a case not kept is in no row, so nothing is read back.
        assert reads == []
        assert _row(h, one)["status"] == "verified" and _row(h, one)["version"] == 2
        assert _row(h, two)["status"] == "applied"


def test_a_batch_reads_back_only_the_rows_this_process_has_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    one, two, three = Steps.apply(1), Steps.apply(2), Steps.apply(3)
    view = CaseIndex()
    view.cache = RowCache(size=2)
    with harness(view) as h:
        reads = _reads(monkeypatch)
        first = h.envelopes([*one.events, *two.events, *three.events])
        _batch(h, view, first, 0, building=True)  # three rows, two kept: the cache no longer holds every row
        one.verify("minimum_living_allowance")
        three.verify("minimum_living_allowance")
        _batch(h, view, h.envelopes([one.events[-1], three.events[-1]]), first[-1].position, building=True)
        # The first case's row was dropped (least recently used) and is read back; the third was kept.
        assert reads == [{str(one.case.id)}]
        assert {r["case_id"]: r["status"] for r in h.rows("cases")} == {
            str(one.case.id): "verified", str(two.case.id): "applied", str(three.case.id): "verified"}
        # Outside a runner's batch the view reads through, as before.
        two.verify("minimum_living_allowance")
        h.feed(two.events[-1:])
        assert reads[-1] == {str(two.case.id)}


def test_rows_written_outside_the_runner_are_read_back_even_at_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A generation at position 0 whose table is not empty (written by a view driven directly, as tests do) is not
    taken for one that holds nothing."""
    steps = Steps.apply(1)
    view = CaseIndex()
    with harness(view) as h:
        h.feed(steps.events)
        reads = _reads(monkeypatch)
        steps.verify("minimum_living_allowance")
        _batch(h, view, h.envelopes(steps.events[-1:]), 0)
        assert reads == [{str(steps.case.id)}]
        assert (_row(h, steps)["status"], _row(h, steps)["version"]) == ("verified", 2)


def test_kept_rows_are_not_used_once_another_runner_moved_the_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps.apply(1)
    mine, other = CaseIndex(), CaseIndex()  # two runners' views over one table
    with harness(mine) as h:
        reads = _reads(monkeypatch)
        applied = h.envelopes(steps.events)
        _batch(h, mine, applied, 0)
        # The other runner applies the next batch: the case is verified by data matching.
        steps.verify("minimum_living_allowance", method=VerificationMethod.DATA_MATCH)
        verified = h.envelopes(steps.events[-1:])
        _batch(h, other, verified, applied[-1].position)
        steps.assess()
        _batch(h, mine, h.envelopes(steps.events[-1:]), verified[-1].position)
        row = _row(h, steps)
    assert reads[-1] == {str(steps.case.id)}  # read back, not taken from what this runner kept
    assert (row["status"], row["data_matched"], row["version"]) == ("assessed", True, 3)


def test_rows_changed_by_a_batch_that_failed_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps.apply(1).rated().publicize()
    view = CaseIndex()
    with harness(view) as h:
        reads = _reads(monkeypatch)
        first = h.envelopes(steps.events)
        _batch(h, view, first, 0)
        steps.case.raise_objection(objection_id="o1", grounds="owns a car", objector="h", today=date(2025, 9, 29),
                                   actor=STAFF, now=steps.now())
        objected = h.envelopes(steps.collect())
        _batch(h, view, objected, first[-1].position, fail=True)  # the fold changed the kept row, then rolled back
        _batch(h, view, objected, first[-1].position)  # the runner applies the same batch again
        row = _row(h, steps)
    assert reads[-1] == {str(steps.case.id)}
    assert (row["status"], row["open_objections"]) == ("in_publicity", 1)


def test_a_rebuild_counts_once_it_has_caught_up_and_gets_the_same_counts() -> None:
    cases = [Steps.apply(1).rated(), Steps.apply(2).verify("minimum_living_allowance").assess(), Steps.apply(3)]
    events = [e for c in cases for e in c.events]
    with harness(CaseIndex()) as counted:
        counted.feed(events, batch_size=2)
        expected = counted.rows("counts")
    view = CaseIndex()
    with harness(view) as h:
        envelopes = h.envelopes(events)
        position = 0
        for start in range(0, len(envelopes), 2):
            _batch(h, view, envelopes[start:start + 2], position, building=True)
            position = envelopes[start:start + 2][-1].position
        assert h.rows("counts") == []  # nothing counted while building
        with h.engine.begin() as conn:
            view.finish_building(conn, h.tables)
            cases_rows = conn.execute(select(h.tables["cases"])).all()
        assert len(cases_rows) == 3
        assert h.rows("counts") == expected and sum(r["n"] for r in expected) == 3


@contextmanager
def _four_built(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ViewHarness, CaseIndex, list[Steps],
                                                                   list[set[str]], list[Envelope]]]:
    """Four applications built into a generation whose view keeps five rows while building and two once live:
    (harness, view, the cases, the keys each later batch reads back, the envelopes built)."""
    cases = [Steps.apply(seq) for seq in range(1, 5)]
    view = CaseIndex()
    view.cache = RowCache(size=5, live_size=2)
    with harness(view) as h:
        reads = _reads(monkeypatch)
        built = h.envelopes([e for c in cases for e in c.events])
        _batch(h, view, built, 0, building=True)  # all four kept while building
        yield h, view, cases, reads, built


def test_a_generation_that_went_live_keeps_only_a_few_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    with _four_built(monkeypatch) as (h, view, cases, reads, built):
        cases[0].verify("minimum_living_allowance")
        live = h.envelopes(cases[0].events[-1:])
        _batch(h, view, live, built[-1].position)  # switched: the first live batch keeps two
        assert reads == []  # every row was kept until then
        for c in cases[1:]:
            c.verify("minimum_living_allowance")
        _batch(h, view, h.envelopes([c.events[-1] for c in cases[1:]]), live[-1].position)
        assert len(reads[-1]) == 2  # of the three cases, one was still kept
        assert {r["status"] for r in h.rows("cases")} == {"verified"}


def test_a_finished_rebuild_keeps_only_what_a_live_generation_keeps(monkeypatch: pytest.MonkeyPatch) -> None:
    with _four_built(monkeypatch) as (h, view, cases, reads, built):
        view.cache.settle(CaseIndex().define_tables(MetaData(), "_g9").values())  # another generation's: ignored
        cases[0].verify("minimum_living_allowance")
        step = h.envelopes(cases[0].events[-1:])
        _batch(h, view, step, built[-1].position, building=True)
        assert reads == []  # all four still kept
        view.cache.settle(h.tables.values())  # this rebuild has switched over: the two least recently used go
        for c in cases[1:]:
            c.verify("minimum_living_allowance")
        _batch(h, view, h.envelopes([c.events[-1] for c in cases[1:]]), step[-1].position)
        assert reads == [{str(cases[1].case.id), str(cases[2].case.id)}]
        assert {r["status"] for r in h.rows("cases")} == {"verified"}


def test_kept_rows_follow_a_position_moved_over_events_the_view_does_not_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = Steps.apply(1), Steps.apply(2)
    view = CaseIndex()
    view.cache = RowCache(size=1)  # one of the two kept: the cache does not hold every row
    with harness(view) as h:
        reads = _reads(monkeypatch)
        first = h.envelopes([*one.events, *two.events])
        _batch(h, view, first, 0)
        skipped_to = first[-1].position + 10  # the runner moved the position over ten unread events
        view.cache.moved(h.tables.values(), first[-1].position, skipped_to)
        other = CaseIndex().define_tables(MetaData(), "_g9").values()
        view.cache.moved(other, skipped_to, skipped_to + 5)  # another generation's move: ignored
        two.verify("minimum_living_allowance")
        _batch(h, view, h.envelopes(two.events[-1:]), skipped_to)
        assert reads == []  # the second case's row was kept, and still holds at the new position
        one.verify("minimum_living_allowance")
        _batch(h, view, h.envelopes(one.events[-1:]), skipped_to + 1)  # a gap no one announced: read back
        assert reads == [{str(one.case.id)}]
