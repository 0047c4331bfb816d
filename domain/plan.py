"""One student, one plan (一人一案, Jiangsu pilot 二(二)2–3 and 二(三)3 "资助+育人").

Every identified student gets a yearly support plan: an aggregate of its own, linked to the case (its ID is derived
from the case's, so a case has one plan). The plan holds
- the aid list its level's annual target implies (programme and amount, from the profile), recorded when the plan
  is made; what was actually granted is read from the case's grants whenever the plan is shown (`aid_position`),
  so the two never drift apart: over-aid (过度资助) and shortfall (远远不够) are visible, and a shortfall needs a
  reason at the year-end review;
- development help items, each owned by a school department (学工, 教务, 心理, 就业, 共青团), on which the
  owners record actions and outcomes;
- the year-end review.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from eventsourcing.domain import Aggregate, event

from domain.errors import CaseNotFound, ReasonRequired, RuleViolated, ValidationFailed
from domain.values import Actor

PLAN_NAMESPACE = uuid.UUID("9d2a4b7c-1e5f-5a83-b6c0-3f8e2d1a7c94")
ZERO = Decimal("0.00")
DEPARTMENTS: Mapping[str, str] = {
    "student_affairs": "学工",
    "academic_affairs": "教务",
    "counselling": "心理",
    "employment": "就业",
    "youth_league": "共青团",
}
# The kinds of development help and the department that owns each unless the school names another.
HELP_KINDS: Mapping[str, str] = {
    "study_planning": "academic_affairs",
    "psychological_support": "counselling",
    "skills": "youth_league",
    "employment_guidance": "employment",
    "labour_education": "student_affairs",
}
MAX_TEXT = 2000


class PlanNotFound(CaseNotFound):
    """Unknown plan or item, or one outside the caller's scope."""


class PlanExists(RuleViolated):
    code = "plan_exists"


class CaseNotIdentified(RuleViolated):
    code = "case_not_identified"


class PlanClosed(RuleViolated):
    code = "plan_closed"


class ReviewNotDue(RuleViolated):
    code = "review_not_due"


class ShortfallReasonRequired(ReasonRequired):
    code = "shortfall_reason_required"


def plan_id_for(case_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(PLAN_NAMESPACE, f"plan|{case_id}")


def _text(value: str | None, field: str, *, required: bool = True) -> str:
    text = (value or "").strip()
    if required and not text:
        raise ValidationFailed("is required", field=field)
    if len(text) > MAX_TEXT:
        raise ValidationFailed(f"at most {MAX_TEXT} characters", field=field)
    return text


@dataclass(frozen=True)
class AidLine:
    programme: str
    planned: Decimal
    granted: Decimal

    @property
    def status(self) -> str:
        if self.granted > self.planned:
            return "over"
        return "met" if self.granted == self.planned else "short"

    def as_dict(self) -> dict[str, Any]:
        return {"programme": self.programme, "planned": self.planned, "granted": self.granted,
                "difference": self.granted - self.planned, "status": self.status}


@dataclass(frozen=True)
class AidPosition:
    """The plan's aid list against the case's grants. Emergency aid is outside the annual target (it answers a
    sudden event), so it is shown apart and never counts as over-aid."""

    lines: tuple[AidLine, ...]
    target: Decimal
    emergency: Decimal

    @property
    def planned(self) -> Decimal:
        return sum((line.planned for line in self.lines), ZERO)

    @property
    def granted(self) -> Decimal:
        """Every regular grant, planned programme or not."""
        return sum((line.granted for line in self.lines), ZERO)

    @property
    def total_granted(self) -> Decimal:
        return self.granted + self.emergency

    @property
    def shortfall(self) -> Decimal:
        return max(self.target - self.granted, ZERO)

    @property
    def over_aid(self) -> Decimal:
        return max(self.granted - self.target, ZERO)

    @property
    def status(self) -> str:
        if self.over_aid > 0:
            return "over_aid"
        return "shortfall" if self.shortfall > 0 else "met"

    def as_dict(self) -> dict[str, Any]:
        return {"lines": [line.as_dict() for line in self.lines], "target": self.target,
                "planned": self.planned, "granted": self.granted, "emergency": self.emergency,
                "total_granted": self.total_granted, "shortfall": self.shortfall, "over_aid": self.over_aid,
                "status": self.status}


def aid_position(aid_list: Sequence[Mapping[str, Any]], grants: Sequence[Mapping[str, Any]], target: Decimal,
                 emergency_programme: str) -> AidPosition:
    """Planned lines first (in the plan's order), then any programme granted but not planned (planned 0)."""
    granted: dict[str, Decimal] = {}
    emergency = ZERO
    for grant in grants:
        amount = Decimal(str(grant["amount"]))
        if grant["programme"] == emergency_programme:
            emergency += amount
        else:
            granted[grant["programme"]] = granted.get(grant["programme"], ZERO) + amount
    lines = [AidLine(str(line["programme"]), Decimal(str(line["amount"])), granted.pop(str(line["programme"]), ZERO))
             for line in aid_list]
    lines += [AidLine(programme, ZERO, amount) for programme, amount in sorted(granted.items())]
    return AidPosition(tuple(lines), target, emergency)


class SupportPlan(Aggregate):
    TOPIC = "zizhu.support_plan"

    class Created(Aggregate.Created):
        TOPIC = "support_plan.created"  # never triggered: a plan is created by PlanCreated

    @classmethod
    def create(cls, *, case_id: uuid.UUID, case_status: str, level: str | None, school_id: str,
               school_region: str, class_id: str, academic_year: str, aid_list: Sequence[tuple[str, Decimal]],
               target: Decimal, profile_version: str, actor: Actor, now: datetime) -> SupportPlan:
        if case_status not in {"confirmed", "archived"} or level is None:
            raise CaseNotIdentified("a support plan is made for an identified (confirmed) student",
                                    case_status=case_status)
        created = cls.PlanCreated  # type: ignore[attr-defined]  # defined by the @event decorator on __init__
        return cls._create(created, id=plan_id_for(case_id), timestamp=now, case_id=str(case_id),
                           school_id=school_id, school_region=school_region, class_id=class_id,
                           academic_year=academic_year, level=level,
                           aid_list=[{"programme": p, "amount": a} for p, a in aid_list], target=target,
                           profile_version=profile_version, actor=actor.as_dict())

    @event("PlanCreated", topic="support_plan.plan_created")
    def __init__(self, case_id: str, school_id: str, school_region: str, class_id: str, academic_year: str,
                 level: str, aid_list: list[dict[str, Any]], target: Decimal, profile_version: str,
                 actor: dict[str, str]) -> None:
        self.case_id = case_id
        self.school_id = school_id
        self.school_region = school_region
        self.class_id = class_id
        self.academic_year = academic_year
        self.level = level
        self.aid_list = aid_list
        self.target = target
        self.profile_version = profile_version
        self.items: dict[str, dict[str, Any]] = {}
        self.review: dict[str, Any] | None = None

    def _open(self) -> None:
        if self.review is not None:
            raise PlanClosed("the year-end review has closed this plan; next year's plan takes it further")

    def add_item(self, *, kind: str, owner: str | None, description: str, due_on: date | None, actor: Actor,
                 now: datetime) -> str:
        """A development help item (学习规划, 心理帮扶, 能力拓展, 就业指导, 劳动教育) with its owning department."""
        self._open()
        if kind not in HELP_KINDS:
            raise ValidationFailed(f"kind must be one of {', '.join(HELP_KINDS)}", field="kind")
        department = owner or HELP_KINDS[kind]
        if department not in DEPARTMENTS:
            raise ValidationFailed(f"owner must be one of {', '.join(DEPARTMENTS)}", field="owner")
        item_id = f"I{len(self.items) + 1}"
        self._item_added(item_id=item_id, kind=kind, owner=department,
                         description=_text(description, "description"), due_on=due_on, actor=actor.as_dict(),
                         timestamp=now)
        return item_id

    @event("PlanItemAdded", topic="support_plan.item_added")
    def _item_added(self, item_id: str, kind: str, owner: str, description: str, due_on: date | None,
                    actor: dict[str, str], timestamp: datetime) -> None:
        self.items[item_id] = {"item_id": item_id, "kind": kind, "owner": owner, "description": description,
                               "due_on": due_on, "actions": []}

    def record_action(self, *, item_id: str, description: str, outcome: str, acted_on: date, today: date,
                      actor: Actor, now: datetime) -> None:
        """The owning department records what it did for the student and what came of it."""
        self._open()
        if item_id not in self.items:
            raise PlanNotFound("no such item on this plan", field="item_id")
        if acted_on > today:
            raise ValidationFailed("an action cannot be recorded for a future date", field="acted_on")
        self._action_recorded(item_id=item_id, description=_text(description, "description"),
                              outcome=_text(outcome, "outcome", required=False), acted_on=acted_on,
                              actor=actor.as_dict(), timestamp=now)

    @event("PlanActionRecorded", topic="support_plan.action_recorded")
    def _action_recorded(self, item_id: str, description: str, outcome: str, acted_on: date,
                         actor: dict[str, str], timestamp: datetime) -> None:
        self.items[item_id]["actions"].append({"description": description, "outcome": outcome,
                                               "acted_on": acted_on, "recorded_by": actor["sub"]})

    def conclude(self, *, summary: str, shortfall_reason: str | None, aid: AidPosition, today: date,
                 review_opens: date, actor: Actor, now: datetime) -> None:
        """The year-end review: what was granted against the target, and what each item achieved."""
        self._open()
        if today < review_opens:
            raise ReviewNotDue(f"the year-end review opens on {review_opens}", review_opens=str(review_opens))
        reason = _text(shortfall_reason, "shortfall_reason", required=False)
        if aid.shortfall > 0 and not reason:
            raise ShortfallReasonRequired(f"{aid.granted} granted against a target of {aid.target}; say why the "
                                          "student received less (远远不够 needs a reason)", field="shortfall_reason")
        items = {item_id: len(item["actions"]) for item_id, item in self.items.items()}
        self._reviewed(case_id=self.case_id, summary=_text(summary, "summary"), shortfall_reason=reason,
                       target=aid.target,
                       granted=aid.granted, emergency=aid.emergency, actions_per_item=items,
                       actor=actor.as_dict(), timestamp=now)

    @event("PlanReviewed", topic="support_plan.reviewed")
    def _reviewed(self, case_id: str, summary: str, shortfall_reason: str, target: Decimal, granted: Decimal,
                  emergency: Decimal, actions_per_item: dict[str, int], actor: dict[str, str],
                  timestamp: datetime) -> None:
        self.review = {"summary": summary, "shortfall_reason": shortfall_reason, "target": target,
                       "granted": granted, "emergency": emergency, "actions_per_item": actions_per_item,
                       "reviewed_at": timestamp.isoformat(), "reviewed_by": actor["sub"]}
