"""The (case, version, time) view: every event of every case becomes one row, times in UTC."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest
from sqlalchemy.exc import IntegrityError

from projections.case_versions import CaseVersions
from tests.unit.case_steps import Steps
from tests.unit.projection_harness import harness


def test_every_event_is_a_version_row_with_its_time_type_and_position() -> None:
    first = Steps.apply(1).verify("minimum_living_allowance").assess()
    second = Steps.apply(2)
    with harness(CaseVersions()) as h:
        h.feed([first.events[0], second.events[0], *first.events[1:]])
        rows = h.rows("versions")
    by_case = {}
    for row in rows:
        by_case.setdefault(row["case_id"], []).append(
            (row["version"], row["event_type"], row["occurred_at"], row["position"]))
    assert by_case[str(first.case.id)] == [
        (1, "Applied", first.events[0].timestamp, 1),
        (2, "Verified", first.events[1].timestamp, 3),
        (3, "Assessed", first.events[2].timestamp, 4),
    ]
    assert by_case[str(second.case.id)] == [(1, "Applied", second.events[0].timestamp, 2)]


def test_times_with_any_offset_are_stored_as_the_same_utc_moment() -> None:
    steps = Steps.apply(1)
    event = steps.events[0]
    moment = event.timestamp
    object.__setattr__(event, "timestamp", moment.astimezone(timezone(timedelta(hours=8))))
    with harness(CaseVersions()) as h:
        h.feed([event])
        assert h.rows("versions")[0]["occurred_at"] == moment


def test_applying_the_same_event_twice_is_refused_not_silently_doubled() -> None:
    """What makes the runner's exactly-once guarantee checkable: a repeated batch fails on the primary key."""
    steps = Steps.apply(1)
    with harness(CaseVersions()) as h:
        h.feed(steps.events)
        with pytest.raises(IntegrityError):
            h.feed(steps.events)
        assert len(h.rows("versions")) == 1
