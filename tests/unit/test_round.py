"""Identification rounds in the domain: the dates a profile allows, opening and closing rules, the admission rule
(open mode, inside a round, outside it with the next round's dates, emergencies), and the profile's round section.
No I/O: profiles are dicts, time is passed in."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from domain.errors import ValidationFailed
from domain.policy import ProfileError, RoundRules, parse_profile
from domain.round import (
    IDENTIFICATION,
    SPRING_ADJUSTMENT,
    IdentificationRound,
    NoOpenRound,
    RoundAlreadyClosed,
    RoundOutsidePolicy,
    RoundStepsUnfinished,
    Window,
    admit,
    allowed_window,
    is_emergency,
    round_id_for,
)
from tests.support import STAFF
from tests.unit.test_policy import BASE

T0 = datetime(2025, 9, 10, 1, 0, tzinfo=UTC)
RULES = RoundRules(autumn_term_start="09-01", identification_days=90, announce_days=30, step_overdue_days=10,
                   emergency_days=30, announcement={"who_may_apply": "w", "how_to_apply": "h",
                                                    "where_to_object": "o"})


def window(kind: str = IDENTIFICATION, year: str = "2025-2026") -> Window:
    return allowed_window(kind, year, RULES, spring_term_start="03-01", window_months=2)


def opened(kind: str = IDENTIFICATION, opens: date = date(2025, 9, 15), closes: date = date(2025, 11, 30),
           today: date = date(2025, 9, 10), year: str = "2025-2026", school: str = "S1") -> IdentificationRound:
    return IdentificationRound.open(school_id=school, school_region="450103", academic_year=year, kind=kind,
                                    opens_on=opens, closes_on=closes, window=window(kind, year), today=today,
                                    announcement={"title": "t"}, profile_version="gx@1", actor=STAFF, now=T0)


# ---------------------------------------------------------------------------------------------- dates


def test_identification_runs_from_the_announcement_lead_to_the_profiles_days_after_term_starts() -> None:
    assert window() == Window(date(2025, 8, 2), date(2025, 11, 30))


def test_spring_adjustment_runs_to_the_end_of_the_readjustment_window() -> None:
    # Spring term 2026-03-01, two months: the last day is 2026-04-30; opening may be announced 30 days before.
    assert window(SPRING_ADJUSTMENT) == Window(date(2026, 1, 30), date(2026, 4, 30))


@pytest.mark.parametrize(("opens", "closes", "field"), [
    (date(2025, 8, 1), date(2025, 10, 1), "opens_on"),   # a day before the announcement may go out
    (date(2025, 9, 1), date(2025, 12, 1), "closes_on"),  # a day past identification_days
])
def test_dates_outside_the_profile_are_refused_naming_the_allowed_range(opens: date, closes: date,
                                                                        field: str) -> None:
    with pytest.raises(RoundOutsidePolicy) as refused:
        opened(opens=opens, closes=closes, today=date(2025, 7, 1))
    assert refused.value.field == field
    assert refused.value.context["earliest_open"] == "2025-08-02"
    assert refused.value.context["latest_close"] == "2025-11-30"


def test_the_edges_of_the_allowed_range_are_accepted() -> None:
    found = opened(opens=date(2025, 8, 2), closes=date(2025, 11, 30), today=date(2025, 8, 1))
    assert (found.opens_on, found.closes_on) == (date(2025, 8, 2), date(2025, 11, 30))


def test_a_round_closing_before_it_opens_or_already_over_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="close before it opens"):
        opened(opens=date(2025, 10, 1), closes=date(2025, 9, 30))
    with pytest.raises(ValidationFailed, match="already past"):
        opened(opens=date(2025, 9, 1), closes=date(2025, 9, 20), today=date(2025, 9, 21))


def test_an_unknown_kind_or_year_is_refused() -> None:
    with pytest.raises(ValidationFailed):
        allowed_window(IDENTIFICATION, "2025-2027", RULES, "03-01", 2)
    with pytest.raises(ValidationFailed) as refused:
        opened(kind="summer")
    assert refused.value.field == "kind"


# ---------------------------------------------------------------------------------------------- life of a round


def test_one_round_per_school_term_kind_by_derived_id() -> None:
    assert opened().id == round_id_for("S1", "2025-2026", IDENTIFICATION)
    assert opened(kind=SPRING_ADJUSTMENT, opens=date(2026, 3, 1), closes=date(2026, 4, 30)).id != opened().id
    assert opened(school="S2").id != opened().id


def test_state_moves_from_scheduled_to_open_to_ended() -> None:
    found = opened()
    assert [found.state_on(date(2025, 9, d)) for d in (14, 15)] == ["scheduled", "open"]
    assert found.state_on(date(2025, 11, 30)) == "open"
    assert found.state_on(date(2025, 12, 1)) == "ended"
    assert found.accepts_applications(date(2025, 10, 1)) and not found.accepts_applications(date(2025, 12, 1))


def test_closing_is_refused_while_cases_have_steps_to_go_and_nothing_is_recorded() -> None:
    found = opened()
    found.collect_events()
    with pytest.raises(RoundStepsUnfinished) as refused:
        found.close(unfinished={"verified": 2, "rated": 0}, cases=5, today=date(2025, 12, 1), actor=STAFF,
                    now=T0 + timedelta(days=80))
    assert refused.value.context["unfinished"] == {"verified": 2}
    assert list(found.collect_events()) == [] and found.closed_on is None


def test_a_round_closes_once_and_a_second_close_is_refused() -> None:
    found = opened()
    found.close(unfinished={}, cases=3, today=date(2025, 12, 1), actor=STAFF, now=T0 + timedelta(days=80))
    assert found.state_on(date(2025, 10, 1)) == "closed" and not found.accepts_applications(date(2025, 10, 1))
    with pytest.raises(RoundAlreadyClosed):
        found.close(unfinished={}, cases=3, today=date(2025, 12, 2), actor=STAFF, now=T0 + timedelta(days=81))


def test_replaying_a_rounds_events_rebuilds_the_same_state() -> None:
    found = opened()
    found.close(unfinished={}, cases=0, today=date(2025, 9, 16), actor=STAFF, now=T0 + timedelta(days=6))
    events = list(found.collect_events())
    replayed = None
    for domain_event in events:
        replayed = domain_event.mutate(replayed)
    def state(round_: IdentificationRound | None) -> dict[str, Any]:
        return {k: v for k, v in vars(round_).items() if k != "_pending_events"}

    assert state(replayed) == state(found)
    assert [type(e).__name__ for e in events] == ["RoundOpened", "RoundClosed"]


# ---------------------------------------------------------------------------------------------- admission


def test_a_school_without_rounds_takes_applications_at_any_time() -> None:
    assert admit([], uses_rounds=False, academic_year="2025-2026", today=date(2025, 7, 1), emergency=False) is None


def test_an_application_inside_an_open_round_is_admitted() -> None:
    found = opened()
    assert admit([found], uses_rounds=True, academic_year="2025-2026", today=date(2025, 10, 1),
                 emergency=False) is found


def test_before_the_round_the_refusal_names_the_next_rounds_dates() -> None:
    with pytest.raises(NoOpenRound) as refused:
        admit([opened()], uses_rounds=True, academic_year="2025-2026", today=date(2025, 9, 12), emergency=False)
    assert refused.value.code == "no_open_round"
    assert refused.value.context["next_round"] == {"kind": "identification", "opens_on": "2025-09-15",
                                                   "closes_on": "2025-11-30"}


def test_between_rounds_the_spring_round_is_the_next_one() -> None:
    rounds = [opened(), opened(kind=SPRING_ADJUSTMENT, opens=date(2026, 3, 1), closes=date(2026, 4, 30))]
    with pytest.raises(NoOpenRound) as refused:
        admit(rounds, uses_rounds=True, academic_year="2025-2026", today=date(2026, 1, 5), emergency=False)
    assert refused.value.context["next_round"]["opens_on"] == "2026-03-01"
    assert admit(rounds, uses_rounds=True, academic_year="2025-2026", today=date(2026, 3, 2),
                 emergency=False) is rounds[1]


def test_a_school_that_ran_rounds_last_year_refuses_without_a_next_round() -> None:
    last_year = opened(year="2024-2025", opens=date(2024, 9, 15), closes=date(2024, 11, 30),
                       today=date(2024, 9, 1))
    with pytest.raises(NoOpenRound) as refused:
        admit([last_year], uses_rounds=True, academic_year="2025-2026", today=date(2025, 9, 20), emergency=False)
    assert refused.value.context["next_round"] is None


def test_an_emergency_is_admitted_outside_any_round() -> None:
    assert admit([opened()], uses_rounds=True, academic_year="2025-2026", today=date(2025, 12, 20),
                 emergency=True) is None


@pytest.mark.parametrize(("occurred", "emergency"), [
    ("2025-11-21", True),    # 30 days before 2025-12-21: the first day that still counts
    ("2025-11-20", False),
    ("2025-12-21", True),
])
def test_an_emergency_is_a_sudden_event_within_the_profiles_days(occurred: str, emergency: bool) -> None:
    form: dict[str, Any] = {"sudden_events": [{"kind": "accident", "occurred_on": occurred, "loss": "0.00"}]}
    assert is_emergency(form, date(2025, 12, 21), 30) is emergency


def test_a_sudden_event_without_a_date_is_no_emergency() -> None:
    assert not is_emergency({"sudden_events": [{"kind": "accident"}]}, date(2025, 12, 21), 30)
    assert not is_emergency({}, date(2025, 12, 21), 30)


# ---------------------------------------------------------------------------------------------- profile section

ROUNDS: dict[str, Any] = {"autumn_term_start": "09-01", "identification_days": 90, "announce_days": 30,
                          "step_overdue_days": 10, "emergency_days": 30,
                          "announcement": {"who_may_apply": "w", "how_to_apply": "h", "where_to_object": "o"}}


def with_rounds(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["rounds"] = {**copy.deepcopy(ROUNDS), **changes}
    return data


def test_the_profiles_round_section_is_parsed() -> None:
    rules = parse_profile(with_rounds()).rounds
    assert rules is not None and rules.identification_days == 90 and rules.announcement["how_to_apply"] == "h"
    assert parse_profile(copy.deepcopy(BASE)).rounds is None


@pytest.mark.parametrize(("changes", "field"), [
    ({"identification_days": -1}, "rounds.identification_days"),
    ({"emergency_days": "30"}, "rounds.emergency_days"),
    ({"autumn_term_start": "02-30"}, "rounds.autumn_term_start"),
    ({"announcement": {"who_may_apply": "w", "how_to_apply": " ", "where_to_object": "o"}},
     "rounds.announcement.how_to_apply"),
    ({"announcement": {"who_may_apply": "w", "how_to_apply": "h"}}, "rounds.announcement.where_to_object"),
])
def test_a_malformed_round_section_is_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ProfileError) as refused:
        parse_profile(with_rounds(**changes))
    assert refused.value.field_path == field
