"""Support plans (一人一案) in the domain: the aid position against grants (property: the plan's totals are the sums
of the case's grants), who gets a plan, help items and actions, the year-end review and its shortfall rule, and the
profile's aid lists. No I/O."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import ValidationFailed
from domain.plan import (
    CaseNotIdentified,
    PlanClosed,
    PlanNotFound,
    ReviewNotDue,
    ShortfallReasonRequired,
    SupportPlan,
    aid_position,
    plan_id_for,
)
from domain.policy import ProfileError, parse_profile
from tests.support import STAFF
from tests.unit.test_policy import BASE

T0 = datetime(2025, 10, 20, 1, 0, tzinfo=UTC)
CASE = uuid.UUID("2f1c3a9e-0d6b-5c41-8e7a-9b2d4f6a1c33")
AID_LIST = (("national_grant", Decimal("2500.00")), ("accommodation_subsidy", Decimal("500.00")))
TARGET = Decimal("3000.00")
REVIEW_OPENS = date(2026, 6, 1)
EMERGENCY = "emergency_aid"


def plan(status: str = "confirmed", level: str | None = "especially_difficult") -> SupportPlan:
    return SupportPlan.create(case_id=CASE, case_status=status, level=level, school_id="S1", school_region="450103",
                              class_id="G10-3", academic_year="2025-2026", aid_list=AID_LIST, target=TARGET,
                              profile_version="gx@1", actor=STAFF, now=T0)


def grant(programme: str, amount: str) -> dict[str, Any]:
    return {"programme": programme, "amount": Decimal(amount)}


def position(grants: list[dict[str, Any]]) -> Any:
    return aid_position([{"programme": p, "amount": a} for p, a in AID_LIST], grants, TARGET, EMERGENCY)


# ---------------------------------------------------------------------------------------------- aid position

money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("5000.00"), places=2)
grants_strategy = st.lists(st.builds(lambda p, a: {"programme": p, "amount": a},
                                     st.sampled_from(["national_grant", "accommodation_subsidy", "tuition_waiver",
                                                      EMERGENCY]), money), max_size=12)


@given(grants_strategy)
def test_a_plans_totals_are_the_sums_of_its_cases_grants(grants: list[dict[str, Any]]) -> None:
    aid = position(grants)
    regular = sum((g["amount"] for g in grants if g["programme"] != EMERGENCY), Decimal(0))
    emergency = sum((g["amount"] for g in grants if g["programme"] == EMERGENCY), Decimal(0))
    assert aid.granted == regular
    assert aid.emergency == emergency
    assert aid.total_granted == sum((g["amount"] for g in grants), Decimal(0))
    for line in aid.lines:
        assert line.granted == sum((g["amount"] for g in grants if g["programme"] == line.programme), Decimal(0))
    # Exactly one of: met, short (with the gap), over (with the excess) — and they add back to the target.
    assert aid.granted + aid.shortfall - aid.over_aid == aid.target
    assert not (aid.shortfall > 0 and aid.over_aid > 0)
    assert aid.planned == TARGET


def test_lines_show_each_programme_against_its_planned_amount() -> None:
    aid = position([grant("national_grant", "2500.00"), grant("tuition_waiver", "300.00"),
                    grant(EMERGENCY, "800.00")])
    lines = {line.programme: (line.planned, line.granted, line.status) for line in aid.lines}
    assert lines == {"national_grant": (Decimal("2500.00"), Decimal("2500.00"), "met"),
                     "accommodation_subsidy": (Decimal("500.00"), Decimal("0"), "short"),
                     "tuition_waiver": (Decimal("0"), Decimal("300.00"), "over")}
    # Emergency aid answers a sudden event: apart from the target, never over-aid.
    assert (aid.granted, aid.emergency, aid.shortfall, aid.status) == (
        Decimal("2800.00"), Decimal("800.00"), Decimal("200.00"), "shortfall")


def test_more_than_the_target_is_over_aid() -> None:
    aid = position([grant("national_grant", "3500.00")])
    assert (aid.status, aid.over_aid, aid.shortfall) == ("over_aid", Decimal("500.00"), Decimal("0.00"))


# ---------------------------------------------------------------------------------------------- plan life


def test_the_plan_is_derived_from_its_case_and_records_the_aid_list() -> None:
    made = plan()
    assert made.id == plan_id_for(CASE) and made.case_id == str(CASE)
    assert made.aid_list == [{"programme": "national_grant", "amount": Decimal("2500.00")},
                             {"programme": "accommodation_subsidy", "amount": Decimal("500.00")}]


@pytest.mark.parametrize(("status", "level"), [("rated", "difficult"), ("in_publicity", "difficult"),
                                               ("not_identified", None), ("revoked", "difficult")])
def test_only_an_identified_student_gets_a_plan(status: str, level: str | None) -> None:
    with pytest.raises(CaseNotIdentified):
        plan(status=status, level=level)


def test_items_default_to_their_owning_department_and_take_actions() -> None:
    made = plan()
    first = made.add_item(kind="psychological_support", owner=None, description="每月谈心", due_on=None,
                          actor=STAFF, now=T0 + timedelta(days=1))
    second = made.add_item(kind="skills", owner="employment", description="技能培训", due_on=date(2026, 5, 1),
                           actor=STAFF, now=T0 + timedelta(days=2))
    assert (first, second) == ("I1", "I2")
    assert made.items["I1"]["owner"] == "counselling" and made.items["I2"]["owner"] == "employment"
    made.record_action(item_id="I1", description="第一次谈心", outcome="情绪稳定", acted_on=date(2025, 10, 22),
                       today=date(2025, 10, 22), actor=STAFF, now=T0 + timedelta(days=3))
    assert made.items["I1"]["actions"] == [{"description": "第一次谈心", "outcome": "情绪稳定",
                                            "acted_on": date(2025, 10, 22), "recorded_by": STAFF.sub}]


@pytest.mark.parametrize(("kind", "owner", "field"), [("tutoring", None, "kind"), ("skills", "finance", "owner")])
def test_unknown_kinds_and_departments_are_refused(kind: str, owner: str | None, field: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        plan().add_item(kind=kind, owner=owner, description="x", due_on=None, actor=STAFF, now=T0)
    assert refused.value.field == field


def test_an_action_on_an_unknown_item_or_in_the_future_is_refused() -> None:
    made = plan()
    with pytest.raises(PlanNotFound):
        made.record_action(item_id="I9", description="x", outcome="", acted_on=date(2025, 10, 20),
                           today=date(2025, 10, 20), actor=STAFF, now=T0)
    made.add_item(kind="study_planning", owner=None, description="学业规划", due_on=None, actor=STAFF, now=T0)
    with pytest.raises(ValidationFailed):
        made.record_action(item_id="I1", description="x", outcome="", acted_on=date(2025, 10, 21),
                           today=date(2025, 10, 20), actor=STAFF, now=T0)


def test_the_review_waits_for_the_year_end() -> None:
    with pytest.raises(ReviewNotDue) as refused:
        plan().conclude(summary="s", shortfall_reason=None, aid=position([grant("national_grant", "3000.00")]),
                        today=date(2026, 5, 31), review_opens=REVIEW_OPENS, actor=STAFF, now=T0)
    assert refused.value.context["review_opens"] == "2026-06-01"


def test_a_shortfall_needs_a_reason_at_review() -> None:
    made = plan()
    short = position([grant("national_grant", "2500.00")])
    with pytest.raises(ShortfallReasonRequired):
        made.conclude(summary="年度评估", shortfall_reason="  ", aid=short, today=REVIEW_OPENS,
                      review_opens=REVIEW_OPENS, actor=STAFF, now=T0)
    made.conclude(summary="年度评估", shortfall_reason="住宿补助改由社会资助承担", aid=short, today=REVIEW_OPENS,
                  review_opens=REVIEW_OPENS, actor=STAFF, now=T0)
    assert made.review is not None and made.review["granted"] == Decimal("2500.00")
    assert made.review["shortfall_reason"] == "住宿补助改由社会资助承担"


def test_a_reviewed_plan_is_closed() -> None:
    made = plan()
    made.conclude(summary="年度评估", shortfall_reason=None, aid=position([grant("national_grant", "3000.00")]),
                  today=REVIEW_OPENS, review_opens=REVIEW_OPENS, actor=STAFF, now=T0)
    with pytest.raises(PlanClosed):
        made.add_item(kind="skills", owner=None, description="x", due_on=None, actor=STAFF, now=T0)
    with pytest.raises(PlanClosed):
        made.conclude(summary="again", shortfall_reason=None, aid=position([]), today=REVIEW_OPENS,
                      review_opens=REVIEW_OPENS, actor=STAFF, now=T0)


def test_replaying_a_plans_events_rebuilds_the_same_state() -> None:
    made = plan()
    made.add_item(kind="labour_education", owner=None, description="劳动周", due_on=None, actor=STAFF, now=T0)
    made.record_action(item_id="I1", description="参加", outcome="完成", acted_on=date(2025, 10, 20),
                       today=date(2025, 10, 20), actor=STAFF, now=T0)
    made.conclude(summary="ok", shortfall_reason=None, aid=position([grant("national_grant", "3000.00")]),
                  today=REVIEW_OPENS, review_opens=REVIEW_OPENS, actor=STAFF, now=T0)
    replayed = None
    for domain_event in made.collect_events():
        replayed = domain_event.mutate(replayed)
    assert replayed is not None
    assert {k: v for k, v in vars(replayed).items() if k != "_pending_events"} == \
        {k: v for k, v in vars(made).items() if k != "_pending_events"}


# ---------------------------------------------------------------------------------------------- profile section


def with_plan(aid_list: dict[str, Any], review_opens: str = "06-01") -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.update(aid_targets={"especially_difficult": "3000.00", "difficult": "2000.00"},
                programmes=["national_grant", "accommodation_subsidy", "emergency_aid"],
                support_plan={"review_opens": review_opens, "aid_list": aid_list})
    return data


def test_the_profiles_aid_lists_are_parsed() -> None:
    rules = parse_profile(with_plan({"difficult": [{"programme": "national_grant", "amount": "2000.00"}]}))
    assert rules.support_plan is not None
    assert dict(rules.support_plan.aid_lists)[next(iter(rules.support_plan.aid_lists))] == (
        ("national_grant", Decimal("2000.00")),)


@pytest.mark.parametrize(("aid_list", "field"), [
    ({"difficult": [{"programme": "national_grant", "amount": "1500.00"}]}, "support_plan.aid_list.difficult"),
    ({"difficult": [{"programme": "bursary", "amount": "2000.00"}]}, "support_plan.aid_list.difficult[0].programme"),
    ({"generally_difficult": [{"programme": "national_grant", "amount": "1.00"}]},
     "support_plan.aid_list.generally_difficult"),
    ({"difficult": []}, "support_plan.aid_list.difficult"),
])
def test_an_aid_list_that_does_not_meet_its_target_is_refused(aid_list: dict[str, Any], field: str) -> None:
    with pytest.raises(ProfileError) as refused:
        parse_profile(with_plan(aid_list))
    assert refused.value.field_path == field
