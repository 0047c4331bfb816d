"""Class democratic evaluation rules, without I/O: who may sit on the group, one ballot per member and never on
one's own case, and how the closing tally recommends a level."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from adapters.evaluation import check_panel
from adapters.registries import SubjectKeys
from domain.errors import AlreadyVoted, ConflictOfInterest, InvalidTransition, RuleViolated, ValidationFailed
from domain.form import normalise_form
from domain.values import Actor, Level, Role
from tests.support import form, id_number
from tests.unit.case_steps import LEVELS, TODAY, Steps, replay, state_of

KEYS = SubjectKeys("unit-test-secret-of-at-least-32-characters")
HALF = Decimal("0.5")
PANEL = [{"sub": "teacher", "role": "head_teacher"}, {"sub": "s1", "role": "student_representative"},
         {"sub": "s2", "role": "student_representative"}, {"sub": "s3", "role": "student_representative"},
         {"sub": "parent", "role": "parent_representative"}]


def member(sub: str) -> dict[str, str]:
    return next(m for m in PANEL if m["sub"] == sub)


def assessed() -> Steps:
    return Steps.apply().verify("minimum_living_allowance").assess(Level.DIFFICULT)


def vote(steps: Steps, sub: str, choice: str, level: Level | None = None, *, own: bool = False,
         levels: tuple[Level, ...] = LEVELS) -> None:
    steps.case.cast_vote(member=member(sub), vote=choice, recommended_level=level, member_is_subject=own,
                         levels=levels, actor=Actor(sub, Role.EVALUATOR), now=steps.now())
    steps.collect()


def close(steps: Steps, panel: list[dict[str, str]] | None = None) -> None:
    steps.case.close_evaluation(panel=panel or PANEL, levels=LEVELS, actor=Actor("teacher", Role.EVALUATOR),
                                now=steps.now())
    steps.collect()


# ---------------------------------------------------------------------------------------------- the group


def students(n: int, start: int = 1) -> list[dict[str, Any]]:
    return [{"sub": f"s{i}", "role": "student_representative", "student_id_number": id_number(i)}
            for i in range(start, start + n)]


def test_a_group_with_at_least_the_profiles_student_share_is_formed() -> None:
    stored = check_panel([{"sub": "t", "role": "head_teacher"}, *students(1)], HALF, KEYS)
    assert [m["role"] for m in stored] == ["head_teacher", "student_representative"]
    # The student's number is kept only as a keyed hash.
    assert stored[1]["student_key"] == KEYS.id_key(id_number(1)) and stored[0]["student_key"] is None
    assert id_number(1) not in repr(stored)


def test_a_group_below_the_student_share_is_refused() -> None:
    members = [{"sub": "t", "role": "head_teacher"}, {"sub": "c", "role": "teacher_representative"}, *students(1)]
    with pytest.raises(ValidationFailed) as refused:
        check_panel(members, HALF, KEYS)
    assert refused.value.field == "members" and "0.33" in refused.value.detail
    assert check_panel(members, Decimal("0.3"), KEYS)


@pytest.mark.parametrize(("members", "field"), [
    ([], "members"),
    ([{"sub": "t", "role": "head_teacher"}, {"sub": "s", "role": "student_representative"}],
     "members[1].student_id_number"),
    ([{"sub": "t", "role": "head_teacher"}, {"sub": "t", "role": "counsellor"}], "members[1].sub"),
    ([{"sub": "t", "role": "principal"}], "members[0].role"),
    ([{"sub": "t", "role": "teacher_representative"}, *students(2)], "members"),
    ([{"sub": "t", "role": "head_teacher"},
      {"sub": "s", "role": "student_representative", "student_id_number": "4501032010"}],
     "members[1].student_id_number"),
])
def test_a_group_breaking_a_rule_is_refused_naming_the_member(members: list[dict[str, Any]], field: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_panel(members, HALF, KEYS)
    assert refused.value.field == field


# ---------------------------------------------------------------------------------------------- ballots


def test_each_member_votes_once_with_a_recommended_level() -> None:
    steps = assessed()
    vote(steps, "s1", "for", Level.DIFFICULT)
    assert steps.case.ballots == {"s1": {"role": "student_representative", "vote": "for",
                                         "recommended_level": "difficult"}}
    assert type(steps.events[-1]).__name__ == "EvaluationVoteCast"
    with pytest.raises(AlreadyVoted):
        vote(steps, "s1", "against")
    assert len(steps.case.ballots) == 1


def test_a_member_never_votes_on_their_own_case() -> None:
    steps = assessed()
    with pytest.raises(ConflictOfInterest):
        vote(steps, "s1", "for", Level.DIFFICULT, own=True)
    assert steps.case.ballots == {} and steps.collect() == []


@pytest.mark.parametrize(("choice", "level", "levels"), [
    ("for", None, LEVELS), ("against", Level.DIFFICULT, LEVELS), ("abstain", None, LEVELS),
    ("for", Level.GENERALLY_DIFFICULT, (Level.ESPECIALLY_DIFFICULT, Level.DIFFICULT)),
])
def test_a_ballot_must_be_well_formed(choice: str, level: Level | None, levels: tuple[Level, ...]) -> None:
    steps = assessed()
    with pytest.raises(ValidationFailed):
        vote(steps, "s1", choice, level, levels=levels)
    assert steps.case.ballots == {}


def test_ballots_are_taken_only_while_the_case_is_at_evaluation() -> None:
    verified = Steps.apply().verify("minimum_living_allowance")
    with pytest.raises(InvalidTransition):
        vote(verified, "s1", "for", Level.DIFFICULT)
    evaluated = assessed().evaluate()
    with pytest.raises(InvalidTransition):
        vote(evaluated, "s1", "for", Level.DIFFICULT)


def test_an_amendment_voids_the_ballots() -> None:
    steps = assessed()
    vote(steps, "s1", "for", Level.DIFFICULT)
    steps.case.amend(form=normalise_form(form(1, claimed=[]), today=TODAY), actor=Actor("g", Role.APPLICANT),
                     now=steps.now())
    assert steps.case.ballots == {}


# ---------------------------------------------------------------------------------------------- the tally


def test_closing_records_the_tally_the_panel_and_the_level_most_ballots_named() -> None:
    steps = assessed()
    vote(steps, "s1", "for", Level.DIFFICULT)
    vote(steps, "s2", "for", Level.ESPECIALLY_DIFFICULT)
    vote(steps, "s3", "for", Level.DIFFICULT)
    vote(steps, "parent", "against")
    close(steps)
    assert steps.case.evaluation == {"votes_for": 3, "votes_against": 1, "recommended_level": "difficult",
                                     "panel": PANEL}
    assert steps.case.status.value == "evaluated"
    assert state_of(replay(steps.events)) == state_of(steps.case)


def test_a_tie_between_levels_goes_to_the_less_difficult_one() -> None:
    steps = assessed()
    vote(steps, "s1", "for", Level.ESPECIALLY_DIFFICULT)
    vote(steps, "s2", "for", Level.DIFFICULT)
    close(steps)
    assert steps.case.evaluation is not None and steps.case.evaluation["recommended_level"] == "difficult"


def test_without_a_majority_for_it_the_class_recommends_no_level() -> None:
    steps = assessed()
    vote(steps, "s1", "for", Level.DIFFICULT)
    vote(steps, "s2", "against")
    close(steps)
    assert steps.case.evaluation is not None
    assert steps.case.evaluation["recommended_level"] is None
    assert (steps.case.evaluation["votes_for"], steps.case.evaluation["votes_against"]) == (1, 1)


def test_only_ballots_of_the_current_members_count() -> None:
    steps = assessed()
    vote(steps, "s1", "for", Level.DIFFICULT)
    vote(steps, "s2", "against")
    close(steps, panel=[member("teacher"), member("s1")])
    assert steps.case.evaluation is not None
    assert (steps.case.evaluation["votes_for"], steps.case.evaluation["votes_against"]) == (1, 0)


def test_closing_without_any_ballot_is_refused() -> None:
    steps = assessed()
    with pytest.raises(RuleViolated):
        close(steps)
    assert steps.case.status.value == "assessed"


def test_after_closing_the_school_rates_as_after_a_hand_counted_tally() -> None:
    steps = assessed()
    vote(steps, "s1", "for", Level.DIFFICULT)
    close(steps)
    steps.rate(Level.DIFFICULT, skip=False)
    assert steps.case.level is Level.DIFFICULT
