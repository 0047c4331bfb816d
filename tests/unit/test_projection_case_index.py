"""The case index view: real StudentCase events in, one row per case out (status, level, since when, scope keys)."""

from __future__ import annotations

from datetime import date, timedelta, timezone
from typing import Any

import pytest

from domain.form import normalise_form
from domain.values import Level, VerificationMethod
from projections.case_index import CaseIndex
from tests.support import GUARDIAN, STAFF, T0, form
from tests.unit.case_steps import LEVELS, TODAY, Steps
from tests.unit.projection_harness import ViewHarness, harness


def _row(h: ViewHarness, steps: Steps) -> dict[str, Any]:
    rows = {r["case_id"]: r for r in h.rows("cases")}
    return rows[str(steps.case.id)]


def test_an_application_becomes_a_row_waiting_at_applied() -> None:
    steps = Steps.apply(1)
    with harness(CaseIndex()) as h:
        h.feed(steps.events)
        row = _row(h, steps)
    assert row == {
        "case_id": str(steps.case.id), "academic_year": "2025-2026", "school_id": "S4501030001",
        "school_region": "450103", "class_id": "G10-3", "student_name": "韦小明", "stage": "senior_secondary",
        "status": "applied", "level": None, "suggested_level": None, "departs_from_suggestion": False,
        "data_matched": False, "open_objections": 0, "applied_at": T0, "status_since": T0, "updated_at": T0,
        "version": 1, "position": 1,
    }
    assert "id_number" not in row  # the index keeps no resident ID number


def test_each_step_moves_the_status_and_resets_when_it_was_reached() -> None:
    steps = Steps.apply(1).verify("minimum_living_allowance").assess().evaluate().rate()
    rated_at = steps.events[-1].timestamp
    with harness(CaseIndex()) as h:
        h.feed(steps.events)
        row = _row(h, steps)
    assert (row["status"], row["level"], row["suggested_level"]) == ("rated", "especially_difficult",
                                                                     "especially_difficult")
    assert row["status_since"] == rated_at and row["applied_at"] == T0
    assert row["version"] == 5 and row["position"] == 5


def test_repeating_a_step_keeps_the_time_the_case_reached_it() -> None:
    steps = Steps.apply(1).verify("minimum_living_allowance")
    first_verified = steps.events[-1].timestamp
    steps.verify("minimum_living_allowance", method=VerificationMethod.DATA_MATCH)
    with harness(CaseIndex()) as h:
        h.feed(steps.events)
        row = _row(h, steps)
    assert row["status"] == "verified" and row["status_since"] == first_verified
    assert row["data_matched"] is True and row["version"] == 3


def test_an_amendment_sends_the_case_back_to_applied_in_its_new_class() -> None:
    steps = Steps.apply(1).verify("minimum_living_allowance").assess()
    steps.case.amend(form=normalise_form(form(1, class_id="G11-2"), today=TODAY), actor=GUARDIAN, now=steps.now())
    steps.collect()
    with harness(CaseIndex()) as h:
        h.feed(steps.events)
        row = _row(h, steps)
    assert (row["status"], row["class_id"], row["suggested_level"]) == ("applied", "G11-2", None)
    assert row["status_since"] == steps.events[-1].timestamp


def test_not_identified_withdrawn_and_revoked_cases_leave_the_main_line() -> None:
    rejected = Steps.apply(1).verify().assess(level=None).evaluate(level=None).rate(level=None)
    withdrawn = Steps.apply(2)
    withdrawn.case.withdraw(reason="moved away", actor=GUARDIAN, now=withdrawn.now())
    withdrawn.collect()
    revoked = Steps.apply(3).rated().revoke(dishonest=True)
    with harness(CaseIndex()) as h:
        h.feed(rejected.events + withdrawn.events + revoked.events)
        assert (_row(h, rejected)["status"], _row(h, rejected)["level"]) == ("not_identified", None)
        assert _row(h, withdrawn)["status"] == "withdrawn"
        assert _row(h, revoked)["status"] == "revoked"
        assert _row(h, revoked)["level"] == "especially_difficult"


def test_objections_are_counted_and_an_upheld_one_re_rates_the_case() -> None:
    steps = Steps.apply(1).rated().publicize()
    for oid in ("o1", "o2"):
        steps.case.raise_objection(objection_id=oid, grounds="owns a car", objector="h", today=date(2025, 9, 29),
                                   actor=STAFF, now=steps.now())
    steps.collect()
    with harness(CaseIndex()) as h:
        h.feed(steps.events)
        assert (_row(h, steps)["status"], _row(h, steps)["open_objections"]) == ("in_publicity", 2)
        steps.case.resolve_objection(objection_id="o1", outcome="upheld", reason="verified car",
                                     new_level=Level.DIFFICULT, levels=LEVELS, actor=STAFF, now=steps.now())
        h.feed(steps.collect())
        row = _row(h, steps)
    assert (row["status"], row["level"], row["open_objections"]) == ("rated", "difficult", 0)


def test_a_revocation_ends_the_count_of_open_objections() -> None:
    steps = Steps.apply(1).rated().publicize()
    steps.case.raise_objection(objection_id="o1", grounds="owns a car", objector="h", today=date(2025, 9, 29),
                               actor=STAFF, now=steps.now())
    steps.collect()
    steps.revoke()
    with harness(CaseIndex()) as h:
        h.feed(steps.events)
        row = _row(h, steps)
    assert (row["status"], row["open_objections"]) == ("revoked", 0)


def test_the_rows_do_not_depend_on_where_batches_are_cut() -> None:
    cases = [Steps.apply(1).rated().publicize().confirm(), Steps.apply(2).verify().assess(),
             Steps.apply(3).rated().revoke()]
    # Interleave the cases' events the way a busy log would.
    events = [e for group in zip(*(c.events + [None] * 9 for c in cases), strict=False) for e in group
              if e is not None]
    assert len(events) == sum(len(c.events) for c in cases)
    with harness(CaseIndex()) as whole:
        whole.feed(events)
        expected = whole.rows("cases")
        expected_counts = whole.rows("counts")
    assert {r["case_id"]: r["status"] for r in expected} == {
        str(cases[0].case.id): "confirmed", str(cases[1].case.id): "assessed", str(cases[2].case.id): "revoked"}
    for size in (1, 2, 3, 5, 7):
        with harness(CaseIndex()) as cut:
            cut.feed(events, batch_size=size)
            assert cut.rows("cases") == expected, size
            assert cut.rows("counts") == expected_counts, size  # no empty counts left behind by any cut


def _counted(h: ViewHarness) -> dict[tuple[str, str, str, str, str], int]:
    return {(r["school_region"], r["academic_year"], r["school_id"], r["level"], r["status"]): r["n"]
            for r in h.rows("counts")}


def test_counts_follow_each_case_from_status_to_status_and_level_to_level() -> None:
    a = Steps.apply(1)
    b = Steps.apply(2).verify("minimum_living_allowance")
    c = Steps.apply(3).rated()
    key = ("450103", "2025-2026", "S4501030001")
    with harness(CaseIndex()) as h:
        h.feed(a.events + b.events + c.events)
        assert _counted(h) == {(*key, "none", "applied"): 1, (*key, "none", "verified"): 1,
                               (*key, "especially_difficult", "rated"): 1}
        seen_a, seen_c = len(a.events), len(c.events)
        a.verify("minimum_living_allowance")
        c.publicize()
        h.feed(a.events[seen_a:] + c.events[seen_c:])
        assert _counted(h) == {(*key, "none", "verified"): 2, (*key, "especially_difficult", "in_publicity"): 1}
        assert sum(_counted(h).values()) == len(h.rows("cases"))


def test_events_of_a_case_never_seen_applied_are_ignored() -> None:
    steps = Steps.apply(1).verify()
    with harness(CaseIndex()) as h:
        h.feed(steps.events[1:])
        assert h.rows("cases") == []


@pytest.mark.parametrize("offset_hours", [0, 8, -5])
def test_times_are_kept_in_utc_whatever_offset_the_event_carries(offset_hours: int) -> None:
    steps = Steps.apply(1)
    event = steps.events[0]
    local = T0.astimezone(timezone(timedelta(hours=offset_hours)))
    object.__setattr__(event, "timestamp", local)
    with harness(CaseIndex()) as h:
        h.feed([event])
        assert _row(h, steps)["applied_at"] == T0
