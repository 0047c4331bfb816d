"""Every command of the StudentCase aggregate and the rule each one enforces (no I/O, time passed in)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from domain.case import ALLOWED, StudentCase, local_date
from domain.errors import (
    AmountExceedsOwed,
    DomainError,
    ExemptionNotAllowed,
    InvalidResidentId,
    InvalidTransition,
    NoticeWindowClosed,
    NoticeWindowNotOver,
    NotSelectedForFollowUp,
    ObjectionAlreadyResolved,
    ObjectionStillOpen,
    OutsideReadjustmentWindow,
    OverAid,
    ReasonRequired,
    RuleViolated,
    UnknownObjection,
    ValidationFailed,
)
from domain.form import normalise_form
from domain.values import Level, Status, VerificationMethod, case_id_for
from tests.support import GUARDIAN, STAFF, T0, form, id_number
from tests.unit.case_steps import LEVELS, PROFILE, TODAY, Steps, assessment, replay, state_of

E, D, G = Level.ESPECIALLY_DIFFICULT, Level.DIFFICULT, Level.GENERALLY_DIFFICULT


def unchanged_after(steps: Steps, error: type[DomainError], command: object) -> DomainError:
    """Runs a command that must be refused and checks the refusal changed nothing."""
    steps.collect()
    before, version = state_of(steps.case), steps.case.version
    with pytest.raises(error) as caught:
        command()  # type: ignore[operator]
    assert steps.case.version == version
    assert steps.case.collect_events() == []
    assert state_of(steps.case) == before
    return caught.value


# ---------------------------------------------------------------------------------------------- application


def test_apply_records_the_form_the_actor_the_profile_and_a_derived_id() -> None:
    steps = Steps.apply()
    case = steps.case
    assert case.status is Status.APPLIED and case.version == 1 and case.level is None
    assert case.id == case_id_for(id_number(1), "2025-2026")
    assert case.school_id == "S4501030001" and case.class_id == "G10-3" and case.profile_version == PROFILE
    (applied,) = steps.events
    assert type(applied).__name__ == "Applied"
    assert applied.actor == {"sub": "guardian-1", "role": "applicant"}  # type: ignore[attr-defined]
    assert applied.timestamp == T0


def test_the_case_id_is_the_same_for_the_same_student_and_year_and_differs_otherwise() -> None:
    assert case_id_for(id_number(1), "2025-2026") == case_id_for(id_number(1).lower(), "2025-2026")
    assert case_id_for(id_number(1), "2025-2026") != case_id_for(id_number(1), "2026-2027")
    assert case_id_for(id_number(1), "2025-2026") != case_id_for(id_number(2), "2025-2026")


def test_amend_replaces_the_form_and_sends_the_case_back_to_applied() -> None:
    steps = Steps.apply().verify("minimum_living_allowance").assess().evaluate()
    changed = normalise_form(form(1, class_id="G10-4", claimed=["orphan"]), today=TODAY)
    steps.case.amend(form=changed, actor=GUARDIAN, now=steps.now())
    steps.collect()
    case = steps.case
    assert case.status is Status.APPLIED
    assert case.verification is None and case.assessment is None and case.evaluation is None
    assert case.class_id == "G10-4" and case.claimed_categories == ["orphan"] and case.amendments == 1


@pytest.mark.parametrize(("override", "field"), [
    ({"seq": 2}, "student.id_number"),
    ({"year": "2026-2027"}, "academic_year"),
    ({"school_id": "S4501030002"}, "student.school_id"),
])
def test_amend_cannot_change_who_when_or_where(override: dict[str, object], field: str) -> None:
    steps = Steps.apply()
    seq = int(override.pop("seq", 1))  # type: ignore[call-overload]
    changed = normalise_form(form(seq, **override), today=TODAY)  # type: ignore[arg-type]
    error = unchanged_after(steps, ValidationFailed,
                            lambda: steps.case.amend(form=changed, actor=GUARDIAN, now=steps.now()))
    assert error.context["field"] == field


def test_amend_after_rating_is_an_invalid_transition() -> None:
    steps = Steps.apply().rated()
    same = normalise_form(form(1), today=TODAY)
    unchanged_after(steps, InvalidTransition, lambda: steps.case.amend(form=same, actor=GUARDIAN, now=steps.now()))


@pytest.mark.parametrize("reach", [0, 1, 2, 3])
def test_withdraw_is_possible_at_every_step_before_rating(reach: int) -> None:
    steps = Steps.apply()
    for step in [lambda: steps.verify(), lambda: steps.assess(), lambda: steps.evaluate()][:reach]:
        step()
    steps.case.withdraw(reason=" moved away ", actor=GUARDIAN, now=steps.now())
    steps.collect()
    assert steps.case.status is Status.WITHDRAWN
    assert steps.case.withdrawal is not None and steps.case.withdrawal["reason"] == "moved away"


def test_withdraw_after_rating_is_refused() -> None:
    steps = Steps.apply().rated()
    unchanged_after(steps, InvalidTransition,
                    lambda: steps.case.withdraw(reason="", actor=GUARDIAN, now=steps.now()))


# ---------------------------------------------------------------------------------------------- verification


def test_verify_records_confirmed_categories_discrepancies_and_unclaimed_confirmations() -> None:
    steps = Steps.apply(claimed=["minimum_living_allowance", "disabled"])
    steps.case.verify(method=VerificationMethod.DATA_MATCH,
                      confirmed=[{"category": "minimum_living_allowance", "source": "civil_affairs"},
                                 {"category": "orphan"}],
                      notes="matched", actor=STAFF, now=steps.now())
    steps.collect()
    verification = steps.case.verification
    assert steps.case.status is Status.VERIFIED and verification is not None
    assert verification["confirmed"] == [{"category": "minimum_living_allowance", "source": "civil_affairs"},
                                         {"category": "orphan", "source": "data_match"}]
    assert verification["discrepancies"] == ["disabled"]  # claimed, not confirmed: kept, never dropped
    assert verification["unclaimed_confirmed"] == ["orphan"]
    assert steps.case.confirmed_categories == ["minimum_living_allowance", "orphan"]


@pytest.mark.parametrize(("confirmed", "field"), [
    ([{"category": "orphan"}, {"category": "orphan"}], "confirmed_categories[1]"),
    ([{"category": "rich_uncle"}], "confirmed_categories[0]"),
])
def test_verify_refuses_a_category_twice_or_an_unknown_one(confirmed: list[dict[str, str]], field: str) -> None:
    steps = Steps.apply()
    error = unchanged_after(steps, ValidationFailed, lambda: steps.case.verify(
        method=VerificationMethod.DOCUMENT, confirmed=confirmed, notes="", actor=STAFF, now=steps.now()))
    assert error.context["field"] == field


def test_verifying_again_voids_the_assessment_but_not_after_assessment() -> None:
    steps = Steps.apply().verify().verify("minimum_living_allowance")
    assert steps.case.confirmed_categories == ["minimum_living_allowance"]
    steps.assess()
    unchanged_after(steps, InvalidTransition, lambda: steps.verify())


# ---------------------------------------------------------------------------------------------- assessment


def test_assess_records_score_breakdown_suggested_level_and_profile_version() -> None:
    steps = Steps.apply().verify().assess(D)
    recorded = steps.case.assessment
    assert steps.case.status is Status.ASSESSED and recorded is not None
    assert recorded == assessment(D).as_dict()
    assert recorded["score"] == "80" and recorded["breakdown"][0]["item"] == "income"
    assert recorded["suggested_level"] == "difficult" and recorded["profile_version"] == PROFILE
    assert steps.case.suggested_level is D


def test_assess_before_verification_is_refused_and_reassessment_voids_the_evaluation() -> None:
    steps = Steps.apply()
    unchanged_after(steps, InvalidTransition, lambda: steps.assess())
    steps.verify().assess().assess(G)
    assert steps.case.suggested_level is G
    steps.evaluate()
    unchanged_after(steps, InvalidTransition, lambda: steps.assess())


# ---------------------------------------------------------------------------------------------- evaluation


def test_evaluate_records_votes_recommendation_and_panel() -> None:
    steps = Steps.apply().verify().assess()
    steps.case.evaluate(votes_for=7, votes_against=2, recommended_level=D,
                        panel=[{"sub": "t1", "role": "head_teacher"}], levels=LEVELS, actor=STAFF, now=steps.now())
    assert steps.case.status is Status.EVALUATED
    assert steps.case.evaluation == {"votes_for": 7, "votes_against": 2, "recommended_level": "difficult",
                                     "panel": [{"sub": "t1", "role": "head_teacher"}]}


@pytest.mark.parametrize(("votes", "level", "levels"), [
    ((-1, 3), E, LEVELS), ((0, 0), E, LEVELS), ((3, 1), G, (E, D)),
])
def test_evaluate_refuses_bad_votes_and_levels_outside_the_profile(
        votes: tuple[int, int], level: Level, levels: tuple[Level, ...]) -> None:
    steps = Steps.apply().verify().assess()
    unchanged_after(steps, ValidationFailed, lambda: steps.case.evaluate(
        votes_for=votes[0], votes_against=votes[1], recommended_level=level, panel=[], levels=levels,
        actor=STAFF, now=steps.now()))


def test_evaluate_only_an_assessed_case() -> None:
    steps = Steps.apply().verify()
    unchanged_after(steps, InvalidTransition, lambda: steps.evaluate())


# ---------------------------------------------------------------------------------------------- rating


def test_rate_needs_the_class_evaluation_first() -> None:
    steps = Steps.apply().verify("minimum_living_allowance").assess()
    unchanged_after(steps, InvalidTransition, lambda: steps.rate())
    steps.evaluate().rate()
    assert steps.case.status is Status.RATED and steps.case.level is E


def test_rate_skips_evaluation_for_a_data_matched_special_group_when_the_profile_says_so() -> None:
    steps = Steps.apply().verify("minimum_living_allowance", method=VerificationMethod.DATA_MATCH).assess()
    unchanged_after(steps, InvalidTransition, lambda: steps.rate(skip=False))
    steps.rate(skip=True)
    assert steps.case.status is Status.RATED and steps.case.evaluation is None


def test_a_data_match_that_confirmed_nothing_does_not_skip_evaluation() -> None:
    steps = Steps.apply().verify(method=VerificationMethod.DATA_MATCH).assess(None)
    unchanged_after(steps, InvalidTransition, lambda: steps.rate(None, skip=True))


def test_a_rating_departing_from_the_suggestion_needs_a_reason() -> None:
    steps = Steps.apply().verify().assess(E).evaluate()
    error = unchanged_after(steps, ReasonRequired, lambda: steps.rate(D))
    assert error.context["field"] == "reason"
    unchanged_after(steps, ReasonRequired, lambda: steps.rate(D, reason="   "))
    steps.rate(D, reason="income rose after the assessment")
    rating = steps.case.rating
    assert rating is not None and steps.case.level is D
    assert rating["departs_from_suggestion"] is True and rating["suggested_level"] == "especially_difficult"
    assert rating["reason"] == "income rose after the assessment" and rating["profile_version"] == PROFILE


def test_a_rating_following_the_suggestion_needs_no_reason_and_records_it_does_not_depart() -> None:
    steps = Steps.apply().verify().assess(G).evaluate(G).rate(G)
    assert steps.case.rating is not None and steps.case.rating["departs_from_suggestion"] is False


def test_the_level_must_be_one_of_the_profile() -> None:
    steps = Steps.apply().verify().assess(G).evaluate()
    error = unchanged_after(steps, ValidationFailed, lambda: steps.case.rate(
        level=G, reason=None, levels=(E, D), skip_class_evaluation_for_data_matched=True,
        profile_version=PROFILE, actor=STAFF, now=steps.now()))
    assert error.context["field"] == "level"


def test_not_identified_ends_the_line_and_needs_a_reason_only_against_a_suggestion() -> None:
    steps = Steps.apply().verify().assess(None).evaluate(None).rate(None)
    assert steps.case.status is Status.NOT_IDENTIFIED and steps.case.level is None
    assert steps.case.rating is not None and steps.case.rating["level"] == "not_identified"
    unchanged_after(steps, InvalidTransition, lambda: steps.publicize())
    other = Steps.apply(2).verify().assess(D).evaluate()
    unchanged_after(other, ReasonRequired, lambda: other.rate(None))


def test_rate_before_verification_is_an_invalid_transition_and_a_rated_case_can_be_rerated() -> None:
    steps = Steps.apply()
    error = unchanged_after(steps, InvalidTransition, lambda: steps.rate())
    assert error.context == {"case_status": "applied", "command": "rate"}
    steps.rated().rate(D, reason="corrected before the notice")
    assert steps.case.level is D and steps.case.status is Status.RATED


# ---------------------------------------------------------------------------------------------- public notice


def test_publicize_opens_the_window_and_refuses_one_that_ends_before_it_starts() -> None:
    steps = Steps.apply().rated()
    unchanged_after(steps, ValidationFailed, lambda: steps.publicize(date(2025, 10, 1), date(2025, 9, 30)))
    steps.publicize()
    assert steps.case.status is Status.IN_PUBLICITY
    assert steps.case.publicity == {"notice_id": "N1", "starts_on": date(2025, 9, 26),
                                    "ends_on": date(2025, 10, 10), "working_days": 5, "profile_version": PROFILE}


def test_publicize_only_a_rated_case() -> None:
    steps = Steps.apply().verify().assess().evaluate()
    unchanged_after(steps, InvalidTransition, lambda: steps.publicize())


def _object(steps: Steps, today: date = date(2025, 9, 29), grounds: str = "family owns two cars") -> str:
    oid = f"OBJ{len(steps.case.objections) + 1}"
    steps.case.raise_objection(objection_id=oid, grounds=grounds, objector="hash-1", today=today, actor=STAFF,
                               now=steps.now())
    steps.collect()
    return oid


def test_objections_are_taken_only_inside_the_window_and_need_grounds() -> None:
    steps = Steps.apply().rated().publicize()
    unchanged_after(steps, NoticeWindowClosed, lambda: _object(steps, today=date(2025, 10, 11)))
    unchanged_after(steps, NoticeWindowClosed, lambda: _object(steps, today=date(2025, 9, 25)))
    unchanged_after(steps, ValidationFailed, lambda: _object(steps, grounds=" "))
    oid = _object(steps)
    assert steps.case.open_objections == [oid]
    assert steps.case.objections[oid]["objector"] == "hash-1"


def test_the_window_never_closes_early_or_with_an_objection_open() -> None:
    steps = Steps.apply().rated().publicize()
    unchanged_after(steps, NoticeWindowNotOver, lambda: steps.confirm(date(2025, 10, 10)))
    oid = _object(steps)
    unchanged_after(steps, ObjectionStillOpen, lambda: steps.confirm())
    steps.case.resolve_objection(objection_id=oid, outcome="dismissed", reason="cars belong to an uncle",
                                 new_level=None, levels=LEVELS, actor=STAFF, now=steps.now())
    steps.collect()
    assert steps.case.level is E and steps.case.status is Status.IN_PUBLICITY
    steps.confirm()
    assert steps.case.status is Status.CONFIRMED and steps.case.confirmed_on == local_date(T0)


def test_a_revocation_during_the_window_ends_the_objections_still_open() -> None:
    steps = Steps.apply().rated().publicize()
    first, second = _object(steps), _object(steps)
    steps.case.resolve_objection(objection_id=first, outcome="dismissed", reason="cars belong to an uncle",
                                 new_level=None, levels=LEVELS, actor=STAFF, now=steps.now())
    steps.collect()
    steps.revoke()
    assert steps.case.status is Status.REVOKED and steps.case.open_objections == []
    assert steps.events[-1].superseded_objections == [second]
    assert steps.case.objections[first]["status"] == "dismissed"  # a resolved one keeps its resolution
    ended = steps.case.objections[second]
    assert ended["status"] == "superseded" and ended["resolution"]["outcome"] == "revoked"
    assert "forged" not in ended["resolution"]["reason"]  # the revocation's own reason is not copied into it
    assert state_of(replay(steps.events)) == state_of(steps.case)


def test_a_revocation_recorded_before_it_ended_objections_replays_as_it_was() -> None:
    """A Revoked event stored before `superseded_objections` existed has no such field: it replays with the
    objections it left open, as they were."""
    steps = Steps.apply().rated().publicize()
    oid = _object(steps)
    steps.revoke()
    del steps.events[-1].__dict__["superseded_objections"]
    replayed = replay(steps.events)
    assert replayed.status is Status.REVOKED and replayed.open_objections == [oid]


def test_resolving_an_objection_checks_the_id_the_outcome_the_reason_and_the_level() -> None:
    steps = Steps.apply().rated().publicize()
    oid = _object(steps)

    def resolve(objection_id: str = oid, outcome: str = "upheld", reason: str = "verified by visit",
                new_level: Level | None = D, levels: tuple[Level, ...] = LEVELS) -> None:
        steps.case.resolve_objection(objection_id=objection_id, outcome=outcome, reason=reason,
                                     new_level=new_level, levels=levels, actor=STAFF, now=steps.now())
        steps.collect()

    unchanged_after(steps, UnknownObjection, lambda: resolve("OBJ99"))
    unchanged_after(steps, ValidationFailed, lambda: resolve(outcome="maybe"))
    unchanged_after(steps, ValidationFailed, lambda: resolve(reason=""))
    unchanged_after(steps, ValidationFailed, lambda: resolve(new_level=G, levels=(E, D)))
    second = _object(steps, grounds="a second objection")
    resolve()
    # Upheld: the level is corrected, the case needs a new window, the other open objection is superseded.
    assert steps.case.status is Status.RATED and steps.case.level is D
    assert steps.case.objections[oid]["status"] == "upheld"
    assert steps.case.objections[second]["status"] == "superseded"
    assert steps.case.rating is not None and steps.case.rating["level"] == "difficult"
    steps.publicize(date(2025, 10, 13), date(2025, 10, 17))
    unchanged_after(steps, ObjectionAlreadyResolved, lambda: resolve())


def test_an_upheld_objection_without_a_level_leaves_the_student_not_identified() -> None:
    steps = Steps.apply().rated().publicize()
    oid = _object(steps)
    steps.case.resolve_objection(objection_id=oid, outcome="upheld", reason="income hidden", new_level=None,
                                 levels=LEVELS, actor=STAFF, now=steps.now())
    assert steps.case.status is Status.NOT_IDENTIFIED and steps.case.level is None


def _exempt(steps: Steps, *, allowed: bool, ground: str = "urgent") -> None:
    steps.case.exempt_publicity(ground=ground, allowed=allowed, allowed_grounds=frozenset({"urgent", "low_amount"}),
                                profile_version="jiangsu@2025.1", actor=STAFF, now=steps.now())
    steps.collect()


def test_exemption_from_notice_only_where_the_profile_allows_and_on_a_listed_ground() -> None:
    steps = Steps.apply().rated()
    unchanged_after(steps, ExemptionNotAllowed, lambda: _exempt(steps, allowed=False))
    unchanged_after(steps, ValidationFailed, lambda: _exempt(steps, allowed=True, ground="convenient"))
    _exempt(steps, allowed=True)
    assert [type(e).__name__ for e in steps.events[-2:]] == ["PublicityExempted", "Confirmed"]
    assert steps.case.status is Status.CONFIRMED
    assert steps.case.exemption == {"ground": "urgent", "profile_version": "jiangsu@2025.1"}


def test_archive_only_a_confirmed_case() -> None:
    steps = Steps.apply().rated()
    archive = lambda: steps.case.archive(export_id="X1", actor=STAFF, now=steps.now())  # noqa: E731
    unchanged_after(steps, InvalidTransition, archive)
    steps.publicize().confirm()
    archive()
    assert steps.case.status is Status.ARCHIVED and steps.case.export_id == "X1"


# ---------------------------------------------------------------------------------------------- after identification


def test_follow_up_needs_selection_and_records_a_check_of_the_past() -> None:
    steps = Steps.apply().confirmed()

    def record(method: str = "phone", checked_on: date = date(2025, 9, 15), finding: str = "consistent") -> None:
        steps.case.record_follow_up(method=method, checked_on=checked_on, finding=finding, notes="",
                                    attachments=["a.pdf"], actor=STAFF, now=steps.now())
        steps.collect()

    unchanged_after(steps, NotSelectedForFollowUp, record)
    steps.case.select_for_follow_up(sample_id="S1", deadline=date(2025, 12, 31), actor=STAFF, now=steps.now())
    assert len(steps.collect()) == 1
    steps.case.select_for_follow_up(sample_id="S1", deadline=date(2025, 12, 31), actor=STAFF, now=steps.now())
    assert steps.collect() == []  # drawing the same sample twice records nothing new
    unchanged_after(steps, ValidationFailed, lambda: record(method="telepathy"))
    unchanged_after(steps, ValidationFailed, lambda: record(finding="unsure"))
    unchanged_after(steps, ValidationFailed, lambda: record(checked_on=date(2025, 9, 16)))
    record()
    assert steps.case.follow_up is not None
    assert steps.case.follow_up["records"] == [{"method": "phone", "checked_on": date(2025, 9, 15),
                                                "finding": "consistent", "notes": "", "attachments": ["a.pdf"]}]


def test_dates_are_chinese_dates_so_early_morning_checks_are_not_in_the_future() -> None:
    steps = Steps.apply().confirmed()
    steps.case.select_for_follow_up(sample_id="S1", deadline=date(2025, 12, 31), actor=STAFF, now=steps.now())
    early = datetime(2025, 11, 2, 23, 30, tzinfo=UTC)  # 07:30 on 3 November in Nanning
    steps.case.record_follow_up(method="interview", checked_on=date(2025, 11, 3), finding="consistent", notes="",
                                attachments=[], actor=STAFF, now=early)
    steps.case.record_home_visit(visited_on=date(2025, 11, 3), notes="", actor=STAFF, now=early)
    assert steps.case.home_visits == [{"visited_on": date(2025, 11, 3), "notes": ""}]


def test_home_visits_are_recorded_for_identified_cases_and_never_for_future_dates() -> None:
    steps = Steps.apply().rated()
    visit = lambda on=date(2025, 9, 15): steps.case.record_home_visit(  # noqa: E731
        visited_on=on, notes="met guardian", actor=STAFF, now=steps.now())
    unchanged_after(steps, InvalidTransition, visit)
    steps.publicize().confirm()
    unchanged_after(steps, ValidationFailed, lambda: visit(date(2025, 9, 16)))
    visit()
    assert steps.case.home_visits == [{"visited_on": date(2025, 9, 15), "notes": "met guardian"}]


def _readjust(steps: Steps, level: Level | None, window: tuple[date, date], reason: str = "spring review",
              levels: tuple[Level, ...] = LEVELS) -> None:
    steps.case.readjust(level=level, reason=reason, window=window, levels=levels, profile_version=PROFILE,
                        actor=STAFF, now=steps.now())
    steps.collect()


def test_readjustment_only_inside_the_window_with_a_reason_and_a_profile_level() -> None:
    steps = Steps.apply().confirmed()
    open_now = (date(2025, 9, 1), date(2025, 10, 31))
    error = unchanged_after(steps, OutsideReadjustmentWindow,
                            lambda: _readjust(steps, D, (date(2026, 3, 1), date(2026, 4, 30))))
    assert error.context == {"opens_on": "2026-03-01", "closes_on": "2026-04-30"}
    unchanged_after(steps, ValidationFailed, lambda: _readjust(steps, D, open_now, reason=""))
    unchanged_after(steps, ValidationFailed, lambda: _readjust(steps, G, open_now, levels=(E, D)))
    _readjust(steps, D, open_now)
    assert steps.case.level is D and steps.case.status is Status.CONFIRMED
    assert steps.case.readjustments == [{"from": "especially_difficult", "to": "difficult",
                                         "reason": "spring review", "on": local_date(T0)}]
    _readjust(steps, None, open_now, reason="income recovered")
    assert steps.case.status is Status.NOT_IDENTIFIED and steps.case.level is None


def test_readjust_needs_an_identified_case() -> None:
    steps = Steps.apply().rated()
    unchanged_after(steps, InvalidTransition, lambda: _readjust(steps, D, (date(2025, 9, 1), date(2025, 12, 1))))


# ---------------------------------------------------------------------------------------------- aid and money


def test_regular_aid_only_after_identification_and_within_the_programmes() -> None:
    steps = Steps.apply().rated()
    unchanged_after(steps, InvalidTransition, lambda: steps.grant())
    steps.publicize().confirm()
    unchanged_after(steps, ValidationFailed, lambda: steps.grant(programme="lottery"))
    steps.grant("2000.00")
    assert steps.case.granted == Decimal("2000.00")
    assert steps.case.grants[0]["granted_on"] == local_date(T0)


@pytest.mark.parametrize("amount", ["0", "-5.00", "10.001", "ten", "NaN", "Infinity"])
def test_amounts_are_positive_cny_with_at_most_two_decimals(amount: str) -> None:
    steps = Steps.apply().confirmed()
    error = unchanged_after(steps, ValidationFailed, lambda: steps.grant(amount))
    assert error.context["field"] == "amount"


def test_over_aid_above_the_level_target_needs_an_override_and_emergency_aid_does_not_count() -> None:
    steps = Steps.apply().confirmed()
    target = Decimal("3000.00")
    steps.grant("2000.00", target=target)
    error = unchanged_after(steps, OverAid, lambda: steps.grant("1500.00", target=target))
    assert error.context == {"target": "3000.00"}
    steps.grant("5000.00", programme="emergency_aid", target=target)
    steps.grant("1000.00", target=target)  # exactly the target is not over it
    steps.grant("1.00", target=target, override="second child fell ill")
    assert steps.case.granted == Decimal("8001.00") and steps.case.granted_regular == Decimal("3001.00")
    assert steps.case.grants[-1]["override_reason"] == "second child fell ill"


def test_emergency_aid_goes_to_any_open_case_but_never_to_a_closed_one() -> None:
    steps = Steps.apply()
    steps.grant("800.00", programme="emergency_aid").disburse("800.00")
    assert steps.case.disbursed == Decimal("800.00") and steps.case.status is Status.APPLIED
    steps.case.withdraw(reason="", actor=GUARDIAN, now=steps.now())
    unchanged_after(steps, InvalidTransition, lambda: steps.grant("100.00", programme="emergency_aid"))


def test_disbursement_never_exceeds_what_was_granted_and_stops_at_revocation() -> None:
    steps = Steps.apply().confirmed().grant("2000.00")
    error = unchanged_after(steps, RuleViolated, lambda: steps.disburse("2000.01"))
    assert error.context["field"] == "amount"
    steps.disburse("1500.00").disburse("500.00")
    unchanged_after(steps, RuleViolated, lambda: steps.disburse("0.01"))
    steps.revoke()
    unchanged_after(steps, InvalidTransition, lambda: steps.disburse("1.00"))


def test_revoke_needs_a_reason_and_a_rated_case() -> None:
    steps = Steps.apply().verify()
    unchanged_after(steps, InvalidTransition, lambda: steps.revoke())
    steps.assess().evaluate().rate()
    unchanged_after(steps, ValidationFailed, lambda: steps.revoke(reason=" "))
    steps.revoke()
    assert steps.case.status is Status.REVOKED
    assert type(steps.events[-1]).__name__ == "Revoked" and steps.case.integrity_records == []


def test_a_dishonest_revocation_also_records_an_integrity_violation_of_the_student() -> None:
    steps = Steps.apply().confirmed().grant("2000.00").disburse("1200.00")
    steps.revoke(dishonest=True, reason="forged income statement")
    assert [type(e).__name__ for e in steps.events[-2:]] == ["Revoked", "IntegrityViolationRecorded"]
    assert steps.case.revocation is not None
    assert steps.case.revocation["disbursed_at_revocation"] == Decimal("1200.00")
    assert steps.case.integrity_records == [{"person": "student", "id_number": id_number(1),
                                             "description": "forged income statement",
                                             "recorded_on": local_date(T0)}]


def test_recovery_is_ordered_and_recorded_but_never_above_what_is_owed() -> None:
    steps = Steps.apply().confirmed().grant("2000.00").disburse("1500.00")
    order = lambda amount: steps.case.order_recovery(amount=amount, actor=STAFF, now=steps.now())  # noqa: E731
    record = lambda amount: steps.case.record_recovery(amount=amount, actor=STAFF, now=steps.now())  # noqa: E731
    unchanged_after(steps, InvalidTransition, lambda: order("100.00"))
    steps.revoke()
    unchanged_after(steps, AmountExceedsOwed, lambda: order("1500.01"))
    order("1000.00")
    unchanged_after(steps, AmountExceedsOwed, lambda: order("500.01"))
    order("500.00")
    unchanged_after(steps, AmountExceedsOwed, lambda: record("1500.01"))
    record("600.00")
    record("900.00")
    assert steps.case.outstanding == Decimal("0.00")
    unchanged_after(steps, AmountExceedsOwed, lambda: record("0.01"))


def test_integrity_violations_need_a_known_person_a_valid_id_number_and_a_description() -> None:
    steps = Steps.apply()

    def record(person: str = "guardian", number: str = id_number(7, born="19800101"),
               description: str = "signed a false income statement") -> None:
        steps.case.record_integrity_violation(person=person, id_number=number, description=description,
                                              actor=STAFF, now=steps.now())
        steps.collect()

    unchanged_after(steps, ValidationFailed, lambda: record(person="neighbour"))
    unchanged_after(steps, ValidationFailed, lambda: record(description=""))
    wrong_check = id_number(7)[:-1] + ("0" if id_number(7)[-1] != "0" else "1")
    unchanged_after(steps, InvalidResidentId, lambda: record(number=wrong_check))
    record()
    assert steps.case.integrity_records[0]["person"] == "guardian"
    assert steps.case.status is Status.APPLIED  # recorded in any status, changing none


# ---------------------------------------------------------------------------------------------- every event


def test_every_event_records_actor_and_time_and_decisions_record_the_profile_version() -> None:
    steps = Steps.apply().confirmed().grant("1000.00")
    _readjust(steps, D, (date(2025, 9, 1), date(2025, 10, 31)))
    assert [e.originator_version for e in steps.events] == list(range(1, len(steps.events) + 1))
    timestamps = [e.timestamp for e in steps.events]
    assert timestamps == sorted(timestamps) and all(t.tzinfo is not None for t in timestamps)
    for domain_event in steps.events:
        assert set(domain_event.actor) == {"sub", "role"}
        assert type(domain_event).TOPIC.startswith("case.")
    versioned = {type(e).__name__: e for e in steps.events}
    for name in ("Rated", "Publicized", "AidGranted", "Readjusted"):
        assert versioned[name].profile_version == PROFILE
    assert versioned["Assessed"].assessment["profile_version"] == PROFILE
    assert state_of(replay(steps.events)) == state_of(steps.case)


def test_every_command_of_the_status_table_exists_on_the_aggregate() -> None:
    methods = {"object": "raise_objection", "select_follow_up": "select_for_follow_up",
               "home_visit": "record_home_visit", "grant_emergency_aid": "grant_aid"}
    for command in ALLOWED:
        assert callable(getattr(StudentCase, methods.get(command, command)))
