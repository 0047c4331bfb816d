"""Seeded sampling: shares met exactly (rounded up) for small and large schools, reproducible from the seed alone;
the follow-up sample and spot-check aggregates built on it; the semester and readjustment dates."""

from __future__ import annotations

import hashlib
import math
import random
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import RuleViolated, ValidationFailed
from domain.followup import FollowUpSample, NoIdentifiedCases, sample_id_for
from domain.sampling import bounded_size, draw, rank, share_size, stratified
from domain.spotcheck import (
    NotAssigned,
    NotInSpotCheck,
    NotTheInspector,
    ResultAlreadyRecorded,
    SpotCheck,
    SpotCheckParams,
    spot_check_id_for,
)
from domain.terms import add_months, current_semester, parse_semester, readjustment_window, semester_end
from domain.values import Actor, Role

RATES = {"especially_difficult": Decimal("0.10"), "difficult": Decimal("0.10"),
         "generally_difficult": Decimal("1.00")}
NOW = datetime(2025, 10, 20, 1, 0, tzinfo=UTC)
SCHOOL = Actor("staff-1", Role.SCHOOL)
BUREAU = Actor("inspector-1", Role.BUREAU)
ENDS = {"1": "01-31", "2": "07-15"}


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(n)]


# ---------------------------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(("rate", "population", "expected"), [
    ("0.10", 0, 0), ("0.10", 1, 1), ("0.10", 9, 1), ("0.10", 10, 1), ("0.10", 11, 2), ("0.10", 19, 2),
    ("0.10", 20, 2), ("0.10", 21, 3), ("0.10", 999, 100), ("0.10", 1000, 100), ("0.10", 1001, 101),
    ("1.00", 0, 0), ("1.00", 1, 1), ("1.00", 437, 437), ("0.00", 50, 0), ("0.15", 7, 2),
])
def test_share_size_is_the_share_rounded_up(rate: str, population: int, expected: int) -> None:
    assert share_size(Decimal(rate), population) == expected


@pytest.mark.parametrize(("rate", "population", "minimum", "maximum", "expected"), [
    ("0.20", 0, 1, 10, 0),     # nothing to draw from
    ("0.20", 2, 3, 10, 2),     # the minimum never exceeds the population
    ("0.20", 4, 1, 10, 1),     # ceil(0.8) = 1
    ("0.20", 12, 1, 10, 3),    # ceil(2.4) = 3
    ("0.20", 200, 1, 10, 10),  # capped at the maximum
    ("0.05", 40, 3, 30, 3),    # raised to the minimum
    ("0.05", 300, 3, 30, 15),
])
def test_spot_check_size_is_the_share_between_the_bounds(rate: str, population: int, minimum: int, maximum: int,
                                                          expected: int) -> None:
    assert bounded_size(Decimal(rate), population, minimum, maximum) == expected


def test_sizes_refuse_impossible_parameters() -> None:
    with pytest.raises(ValueError):
        share_size(Decimal("1.5"), 10)
    with pytest.raises(ValueError):
        bounded_size(Decimal("0.1"), 10, 5, 2)
    with pytest.raises(ValueError):
        draw(["a"], -1, "seed")


# ---------------------------------------------------------------------------------------------- the draw


@pytest.mark.parametrize("sizes", [
    (1, 1, 1), (0, 3, 2), (5, 9, 4), (10, 11, 12), (19, 21, 1),          # small schools
    (180, 420, 900), (1001, 2500, 3000),                                  # large schools
])
def test_stratified_sample_meets_each_level_share_exactly(sizes: tuple[int, int, int]) -> None:
    strata = {level: ids(level[:2], n) for level, n in zip(RATES, sizes, strict=True)}
    parts = {p.name: p for p in stratified(strata, RATES, "2025-autumn")}
    for level, n in zip(RATES, sizes, strict=True):
        part = parts[level]
        expected = math.ceil(RATES[level] * n)
        assert part.required == expected == len(part.drawn)
        assert len(set(part.drawn)) == expected and set(part.drawn) <= set(strata[level])
        assert part.population == tuple(sorted(strata[level]))
    assert sorted(parts["generally_difficult"].drawn) == list(parts["generally_difficult"].population)


def test_the_same_seed_draws_the_same_cases_whatever_order_they_arrive_in() -> None:
    population = ids("case", 500)
    shuffled = population[:]
    random.Random(7).shuffle(shuffled)
    first = draw(population, 50, "seed-A")
    assert draw(shuffled, 50, "seed-A") == first
    assert draw(population + population[:10], 50, "seed-A") == first  # duplicates change nothing
    assert draw(population, 50, "seed-B") != first


def test_the_draw_can_be_redone_by_hand_from_the_documented_rule() -> None:
    population = ids("case", 30)
    by_hand = sorted(population, key=lambda c: hashlib.sha256(f"s33d|{c}".encode()).hexdigest())[:4]
    assert draw(population, 4, "s33d") == by_hand
    assert rank("s33d", "case-00000") == hashlib.sha256(b"s33d|case-00000").hexdigest()


@given(population=st.sets(st.text(min_size=1, max_size=8), max_size=60),
       rate=st.decimals(min_value=0, max_value=1, places=2), seed=st.text(min_size=1, max_size=10))
def test_any_population_gets_its_share_and_a_bigger_draw_extends_a_smaller_one(
        population: set[str], rate: Decimal, seed: str) -> None:
    n = share_size(rate, len(population))
    drawn = draw(population, n, seed)
    assert len(drawn) == n == math.ceil(rate * len(population)) and set(drawn) <= population
    assert draw(population, max(n - 1, 0), seed) == drawn[: max(n - 1, 0)]


# ---------------------------------------------------------------------------------------------- follow-up sample


def test_a_follow_up_sample_records_seed_population_share_and_draw_under_a_derived_id() -> None:
    strata = {"especially_difficult": ids("e", 11), "difficult": ids("d", 3), "generally_difficult": ids("g", 4)}
    sample = FollowUpSample.draw(school_id="S1", school_region="450103", semester="2025-2026-1", seed="abc",
                                 deadline=date(2026, 1, 31), strata=strata, rates=RATES,
                                 profile_version="guangxi@2025.1", actor=SCHOOL, now=NOW)
    assert sample.id == sample_id_for("S1", "2025-2026-1") != sample_id_for("S1", "2025-2026-2")
    (drawn,) = sample.collect_events()
    assert type(drawn).__name__ == "Drawn"
    by_name = {s["name"]: s for s in sample.strata}
    assert by_name["especially_difficult"]["required"] == 2 and by_name["especially_difficult"]["rate"] == "0.10"
    assert by_name["difficult"]["drawn"] == draw(ids("d", 3), 1, "abc")
    assert sorted(by_name["generally_difficult"]["drawn"]) == ids("g", 4)
    assert len(sample.drawn_cases) == 2 + 1 + 4 and sample.drawn_cases["g-00000"] == "generally_difficult"


@pytest.mark.parametrize("seed", ["", "   ", "x" * 65, "tab\there"])
def test_a_seed_is_short_printable_text(seed: str) -> None:
    with pytest.raises(ValidationFailed):
        FollowUpSample.draw(school_id="S1", school_region="450103", semester="2025-2026-1", seed=seed,
                            deadline=date(2026, 1, 31), strata={"difficult": ["a"]}, rates=RATES,
                            profile_version="p", actor=SCHOOL, now=NOW)


def test_a_sample_is_not_drawn_from_nothing() -> None:
    with pytest.raises(NoIdentifiedCases):
        FollowUpSample.draw(school_id="S1", school_region="450103", semester="2025-2026-1", seed="s",
                            deadline=date(2026, 1, 31), strata={"difficult": [], "especially_difficult": []},
                            rates=RATES, profile_version="p", actor=SCHOOL, now=NOW)


# ---------------------------------------------------------------------------------------------- spot checks

PARAMS = SpotCheckParams(school_rate=Decimal("0.20"), min_schools=1, max_schools=10, case_rate=Decimal("0.05"),
                         min_cases=3, max_cases=30, due_days=30)


def spot_check(population: dict[str, list[str]], seed: str = "bureau-seed") -> SpotCheck:
    return SpotCheck.draw(region_code="450100", academic_year="2025-2026", seed=seed, due_on=date(2025, 11, 20),
                          population=population, params=PARAMS, profile_version="guangxi@2025.1", actor=BUREAU,
                          today=date(2025, 10, 20), now=NOW)


def test_a_spot_check_draws_schools_then_cases_by_the_formula_and_reproduces_from_its_seed() -> None:
    population = {f"S{i:02d}": ids(f"S{i:02d}", 20 * i) for i in range(1, 13)}
    population["EMPTY"] = []
    check = spot_check(population)
    assert check.id == spot_check_id_for("450100", "2025-2026", "bureau-seed")
    assert check.school_population == sorted(s for s in population if s != "EMPTY")
    assert len(check.schools) == 3  # ceil(0.20 × 12)
    for school in check.schools:
        n = len(population[school["school_id"]])
        assert school["required"] == len(school["drawn"]) == min(n, max(3, min(30, math.ceil(Decimal("0.05") * n))))
    again = spot_check(dict(reversed(list(population.items()))))
    assert again.schools == check.schools
    assert set(check.items) == {c for s in check.schools for c in s["drawn"]}


def test_a_spot_check_needs_identified_cases_and_a_due_date_ahead() -> None:
    with pytest.raises(RuleViolated):
        spot_check({"S1": []})
    with pytest.raises(ValidationFailed):
        SpotCheck.draw(region_code="450100", academic_year="2025-2026", seed="s", due_on=date(2025, 10, 19),
                       population={"S1": ["a"]}, params=PARAMS, profile_version="p", actor=BUREAU,
                       today=date(2025, 10, 20), now=NOW)


def test_only_the_assigned_inspector_records_one_finding_per_drawn_case_and_late_ones_are_overdue() -> None:
    check = spot_check({"S1": ids("c", 5)})
    first, second = sorted(check.items)[:2]

    def record(case_id: str, actor: Actor = BUREAU, finding: str = "consistent",
               checked_on: date = date(2025, 10, 20)) -> None:
        check.record_result(case_id=case_id, finding=finding, checked_on=checked_on, notes="", attachments=[],
                            today=date(2025, 10, 20), actor=actor, now=NOW)

    with pytest.raises(NotAssigned):
        record(first)
    with pytest.raises(NotInSpotCheck):
        check.assign(case_ids=["elsewhere"], inspector="inspector-1", actor=BUREAU, now=NOW)
    check.assign(case_ids=None, inspector="inspector-1", actor=BUREAU, now=NOW)
    assert {i["inspector"] for i in check.items.values()} == {"inspector-1"}
    with pytest.raises(NotTheInspector):
        record(first, actor=Actor("inspector-2", Role.BUREAU))
    with pytest.raises(ValidationFailed):
        record(first, finding="maybe")
    with pytest.raises(ValidationFailed):
        record(first, checked_on=date(2025, 10, 21))
    record(first, finding="inconsistent")
    with pytest.raises(ResultAlreadyRecorded):
        record(first)
    with pytest.raises(ResultAlreadyRecorded):
        check.assign(case_ids=[first], inspector="inspector-2", actor=BUREAU, now=NOW)
    assert check.items[first]["result"]["finding"] == "inconsistent"
    assert check.overdue(date(2025, 11, 20)) == []
    assert second in check.overdue(date(2025, 11, 21)) and first not in check.overdue(date(2025, 11, 21))


# ---------------------------------------------------------------------------------------------- dates


def test_semesters_end_on_the_profile_dates_in_the_academic_years_second_year() -> None:
    assert semester_end("2025-2026-1", ENDS) == date(2026, 1, 31)
    assert semester_end("2025-2026-2", ENDS) == date(2026, 7, 15)
    assert current_semester(date(2025, 9, 15), ENDS) == "2025-2026-1"
    assert current_semester(date(2026, 1, 31), ENDS) == "2025-2026-1"
    assert current_semester(date(2026, 2, 1), ENDS) == "2025-2026-2"
    assert current_semester(date(2026, 7, 20), ENDS) == "2026-2027-1"  # summer holiday: the coming autumn
    with pytest.raises(ValidationFailed):
        parse_semester("2025-2027-1")
    with pytest.raises(RuleViolated):
        semester_end("2025-2026-1", {})


def test_the_readjustment_window_runs_the_profiles_months_from_the_spring_term_start() -> None:
    assert readjustment_window("2025-2026", "03-01", 2) == (date(2026, 3, 1), date(2026, 4, 30))
    assert readjustment_window("2025-2026", "02-20", 2) == (date(2026, 2, 20), date(2026, 4, 19))
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2025, 11, 30), 3) == date(2026, 2, 28)
