"""Model review figures on a small hand-computed cohort, the cut-off search against brute force, and publishing new
cut-offs as a profile version. No I/O."""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import ValidationFailed
from domain.model_review import (
    NOT_IDENTIFIED,
    Observation,
    agreement,
    best_cutoffs,
    candidate_cutoffs,
    review,
    suggestion_with,
)
from domain.policy import ProfileError, parse_profile, with_cutoffs
from domain.profile_versions import ProfileLine, StaleProfileVersion
from domain.values import Actor, Level, Role
from tests.unit.test_policy import BASE

E, D, G = Level.ESPECIALLY_DIFFICULT, Level.DIFFICULT, Level.GENERALLY_DIFFICULT
CURRENT = {E: Decimal(70), D: Decimal(45), G: Decimal(25)}


def item(name: str, points: int) -> dict[str, str]:
    return {"item": name, "kind": "bands", "label": name, "points": str(points), "detail": ""}


def obs(case: str, score: int, items: list[dict[str, str]], suggested: str, final: str, reason: str = "",
        follow_up: str | None = None) -> Observation:
    return Observation(case_id=case, school_id="S1", score=Decimal(score), breakdown=tuple(items),
                       suggested=suggested, final=final, reason=reason, profile_version="gx@2025.1",
                       follow_up=follow_up)


ORPHAN = {"item": "direct:orphan", "kind": "direct_identification", "label": "", "points": "0",
          "detail": "especially_difficult"}
# Seven rated cases, worked out by hand in the comments of the tests below.
COHORT = [
    obs("A", 80, [item("income", 40), item("sudden_events", 40)], "especially_difficult", "especially_difficult"),
    obs("B", 72, [item("income", 12), item("sudden_events", 40), item("siblings", 20)], "especially_difficult",
        "difficult", reason="突发事件损失已获保险赔付"),
    obs("C", 50, [item("income", 25), item("siblings", 25)], "difficult", "difficult"),
    obs("D", 30, [item("income", 12), item("siblings", 18)], "generally_difficult", "difficult",
        reason="家庭成员新增重病"),
    obs("E", 20, [item("income", 0), item("sudden_events", 20)], NOT_IDENTIFIED, NOT_IDENTIFIED),
    obs("F", 10, [item("income", 10), ORPHAN], "especially_difficult", "especially_difficult"),
    obs("G", 48, [item("sudden_events", 40), item("siblings", 8)], "difficult", "difficult",
        follow_up="inconsistent"),
]


def test_agreement_and_confusion_of_the_cohort() -> None:
    report = review(COHORT, CURRENT)
    # A, C, E, F and G agree with their suggestion: 5 of 7.
    assert report["cases"] == 7
    assert report["agreement"] == {"agreed": 5, "rate": Decimal("0.7143")}
    assert report["confusion"] == [
        {"suggested": "especially_difficult", "final": "especially_difficult", "count": 2},
        {"suggested": "especially_difficult", "final": "difficult", "count": 1},
        {"suggested": "difficult", "final": "difficult", "count": 2},
        {"suggested": "generally_difficult", "final": "difficult", "count": 1},
        {"suggested": NOT_IDENTIFIED, "final": NOT_IDENTIFIED, "count": 1},
    ]
    assert report["by_profile_version"] == {"gx@2025.1": 7}


def test_departures_carry_their_direction_and_reason() -> None:
    assert review(COHORT, CURRENT)["departures"] == [
        {"case_id": "B", "school_id": "S1", "suggested": "especially_difficult", "final": "difficult",
         "direction": "less_need", "reason": "突发事件损失已获保险赔付"},
        {"case_id": "D", "school_id": "S1", "suggested": "generally_difficult", "final": "difficult",
         "direction": "more_need", "reason": "家庭成员新增重病"},
    ]


def test_follow_up_findings_list_the_disproved_cases() -> None:
    follow_up = review(COHORT, CURRENT)["follow_up"]
    assert (follow_up["checked"], follow_up["inconsistent"], follow_up["revoked"]) == (1, 1, 0)
    assert [d["case_id"] for d in follow_up["disproved"]] == ["G"]


def test_items_that_drove_wrong_suggestions_come_first() -> None:
    # Wrong: B (over-suggested) and G (disproved); right: A, C, E, F.
    # siblings: wrong 2 of 2 (20+8), right 1 of 4 (25) → lift 0.75
    # sudden_events: wrong 2 of 2 (40+40), right 2 of 4 (40+20) → lift 0.50
    # income: wrong 1 of 2 (12), right 3 of 4 (40+25+10) → lift -0.25
    # direct:orphan: wrong 0, right 1 of 4 → lift -0.25 (fewer wrong cases: after income)
    items = review(COHORT, CURRENT)["items"]
    assert [(i["item"], i["wrong_cases"], i["wrong_points"], i["right_cases"], i["right_points"], i["lift"])
            for i in items] == [
        ("siblings", 2, Decimal(28), 1, Decimal(25), Decimal("0.7500")),
        ("sudden_events", 2, Decimal(80), 2, Decimal(60), Decimal("0.5000")),
        ("income", 1, Decimal(12), 3, Decimal(75), Decimal("-0.2500")),
        ("direct:orphan", 0, Decimal(0), 1, Decimal(0), Decimal("-0.2500")),
    ]


def test_the_best_cutoffs_match_every_final_rating_of_the_cohort() -> None:
    # A (80) must reach especially difficult and B (72) not: c(E) in (72, 80]; of the candidates 73, 74 and 80
    # (just above 72, and 80), 73 is closest to 70. C (50), G (48) and D (30) must be difficult and E (20) nothing:
    # c(D) in (20, 30] → 30, the closest to 45; c(G) in (20, 30) → 25, its current value. F is identified directly
    # whatever the cut-offs.
    search = review(COHORT, CURRENT)["cutoffs"]
    assert search == {"current": {"especially_difficult": "70", "difficult": "45", "generally_difficult": "25"},
                      "current_agreement": 5,
                      "best": {"especially_difficult": "73", "difficult": "30", "generally_difficult": "25"},
                      "best_agreement": 7, "gain": 2, "cases": 7}


def test_several_cutoffs_fit_between_two_neighbouring_scores() -> None:
    # 20 must stay below every cut-off and 25 reach difficult: both D and G cut-offs sit in (20, 25].
    cohort = [obs("X", 20, [], NOT_IDENTIFIED, NOT_IDENTIFIED), obs("Y", 25, [], "generally_difficult", "difficult")]
    search = best_cutoffs(cohort, CURRENT)
    assert search.best_agreement == 2
    assert search.best == {E: Decimal(70), D: Decimal(25), G: Decimal(22)}  # G: 21 or 22, the closer to 25


def test_candidates_between_close_scores_are_fractions() -> None:
    values = candidate_cutoffs([Decimal("10.5"), Decimal("11")], [Decimal(70)], 3)
    assert [v for v in values if Decimal("10.5") < v <= 11] == [Decimal("10.6666"), Decimal("10.8332"),
                                                                 Decimal("11")]


def test_the_suggestion_rule_is_the_scoring_models() -> None:
    assert [suggestion_with(CURRENT, o) for o in COHORT] == [o.suggested for o in COHORT]


def test_an_empty_cohort_keeps_the_current_cutoffs() -> None:
    search = best_cutoffs([], CURRENT)
    assert (search.best, search.best_agreement, search.cases) == (CURRENT, 0, 0)


finals = st.sampled_from([lv.value for lv in Level] + [NOT_IDENTIFIED])
observation = st.builds(
    lambda i, score, final, direct: Observation(
        case_id=str(i), school_id="S", score=Decimal(score),
        breakdown=({"item": "d", "kind": "rule", "points": "0", "detail": direct},) if direct else (),
        suggested=NOT_IDENTIFIED, final=final, reason="", profile_version="p"),
    st.integers(0, 10_000), st.integers(0, 30), finals,
    st.one_of(st.none(), st.sampled_from([lv.value for lv in Level])))


@settings(max_examples=60, deadline=None)
@given(st.lists(observation, max_size=9))
def test_the_search_finds_the_most_agreement_and_then_the_smallest_move(cohort: list[Observation]) -> None:
    search = best_cutoffs(cohort, CURRENT)
    # Exhaustive over the same candidate values: the dynamic programme must find the best triple among them.
    scores = sorted({o.score for o in cohort}) or [Decimal(0)]
    candidates = candidate_cutoffs(scores, CURRENT.values(), 3)
    best = max(
        ((agreement({E: e, D: d, G: g}, cohort), -(abs(e - 70) + abs(d - 45) + abs(g - 25)))
         for g, d, e in itertools.combinations(candidates, 3)),
        default=(0, Decimal(0)))
    found = search.best
    assert found[E] > found[D] > found[G]
    assert (search.best_agreement, -sum(abs(found[lv] - CURRENT[lv]) for lv in CURRENT)) == best
    assert search.best_agreement >= search.current_agreement


# ---------------------------------------------------------------------------------------------- publishing

BUREAU = Actor("bureau-gx", Role.BUREAU)
NOW = datetime(2026, 2, 1, 2, 0, tzinfo=UTC)


def base_profile() -> Any:
    return parse_profile(copy.deepcopy(BASE))


def test_a_published_version_differs_only_in_its_cutoffs() -> None:
    base = base_profile()
    newer = with_cutoffs(base, {"especially_difficult": 80, "difficult": 30, "generally_difficult": 25}, "1-r1")
    assert newer.tag == "test@1-r1" and newer.scoring.cutoffs == {E: 80, D: 30, G: 25}
    assert newer.scoring.items == base.scoring.items and newer.levels == base.levels
    assert newer.scoring.model_version == "t-1+1-r1"


@pytest.mark.parametrize(("cutoffs", "field"), [
    ({"especially_difficult": 40, "difficult": 45, "generally_difficult": 25}, "cutoffs.especially_difficult"),
    ({"especially_difficult": 70, "difficult": 45}, "cutoffs"),
    ({"especially_difficult": 70, "difficult": 45, "generally_difficult": "x"}, "cutoffs.generally_difficult"),
])
def test_cutoffs_that_overlap_or_leave_a_level_out_are_refused(cutoffs: dict[str, Any], field: str) -> None:
    with pytest.raises(ProfileError) as refused:
        with_cutoffs(base_profile(), cutoffs, "1-r1")
    assert refused.value.field_path == field


def test_publications_are_numbered_and_the_newest_for_the_file_version_is_in_force() -> None:
    line = ProfileLine.start(profile_id="test", now=NOW)
    first = line.publish(base_version="1", in_force="test@1", expected="test@1", cutoffs={"difficult": Decimal(40)},
                         note="2025 review", review={}, actor=BUREAU, now=NOW)
    second = line.publish(base_version="1", in_force="test@1-r1", expected=None, cutoffs={"difficult": Decimal(41)},
                          note="again", review={}, actor=BUREAU, now=NOW)
    assert (first, second) == ("1-r1", "1-r2")
    current = line.current_for("1")
    assert current is not None and current["version"] == "1-r2" and current["replaces"] == "test@1-r1"
    # A new file version supersedes publications made on top of an older one.
    assert line.current_for("2") is None


def test_publishing_over_a_version_the_bureau_did_not_review_is_refused() -> None:
    line = ProfileLine.start(profile_id="test", now=NOW)
    with pytest.raises(StaleProfileVersion):
        line.publish(base_version="1", in_force="test@1-r1", expected="test@1", cutoffs={}, note="n", review={},
                     actor=BUREAU, now=NOW)
    with pytest.raises(ValidationFailed):
        line.publish(base_version="1", in_force="test@1", expected=None, cutoffs={}, note=" ", review={},
                     actor=BUREAU, now=NOW)
