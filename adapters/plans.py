"""Support plans (一人一案): make a plan for an identified student, add help items, record actions, review at year end.

A plan is reached through its case: whoever may not see the case may not see its plan (404), and a class
evaluation group never sees plans (they can hold psychological support). The aid position is computed from the
case's grants each time the plan is read, so it cannot disagree with what the case records.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from adapters.auth import Principal, in_scope
from adapters.clock import Clock
from adapters.policies import Profiles
from adapters.store import CaseStore
from domain.case import EMERGENCY_PROGRAMME, StudentCase
from domain.errors import CaseNotFound, Conflict, Forbidden, RuleViolated, VersionMismatch
from domain.plan import (
    DEPARTMENTS,
    ZERO,
    AidPosition,
    PlanExists,
    PlanNotFound,
    SupportPlan,
    aid_position,
    plan_id_for,
)
from domain.policy import PolicyProfile
from domain.terms import month_day
from domain.values import Level, Role

READERS = frozenset({Role.APPLICANT, Role.SCHOOL, Role.BUREAU, Role.AUDITOR})


class PlansNotConfigured(RuleViolated):
    code = "support_plans_not_configured"


class PlanService:
    def __init__(self, store: CaseStore, clock: Clock, profiles: Profiles) -> None:
        self.store = store
        self.clock = clock
        self.profiles = profiles

    # ------------------------------------------------------------------------------------------ plumbing

    def _case(self, case_id: UUID) -> StudentCase:
        try:
            found: object = self.store.repository.get(case_id)
        except AggregateNotFoundError:
            raise CaseNotFound("no such case") from None
        if not isinstance(found, StudentCase):
            raise CaseNotFound("no such case")
        return found

    def _find(self, plan_id: UUID) -> SupportPlan | None:
        try:
            found: object = self.store.repository.get(plan_id)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, SupportPlan) else None

    def _save(self, plan: SupportPlan) -> int | None:
        try:
            recordings = self.store.save(plan)
        except IntegrityError:
            raise Conflict("a concurrent change to this plan won; reload it and try again") from None
        return max((r.notification.id for r in recordings), default=None)

    @staticmethod
    def _check_scope(principal: Principal, case: StudentCase, *, manage: bool) -> None:
        if principal.role not in READERS or not in_scope(principal, case):
            raise PlanNotFound("no such plan")
        if manage and principal.role is not Role.SCHOOL:
            raise Forbidden(f"the {principal.role.value} role cannot change support plans")

    def _plan(self, principal: Principal, plan_id: UUID, *, manage: bool,
              expected_version: int | None = None) -> tuple[SupportPlan, StudentCase]:
        plan = self._find(plan_id)
        if plan is None:
            raise PlanNotFound("no such plan")
        case = self._case(UUID(plan.case_id))
        self._check_scope(principal, case, manage=manage)
        if expected_version is not None and expected_version != plan.version:
            raise VersionMismatch(f"the plan is at version {plan.version}, not {expected_version}",
                                  current_version=plan.version)
        return plan, case

    def _profile(self, case: StudentCase) -> PolicyProfile:
        profile = self.profiles.for_region(case.school_region)
        if profile.support_plan is None:
            raise PlansNotConfigured(f"the {profile.profile_id} profile sets no aid lists for support plans")
        return profile

    def aid(self, plan: SupportPlan, case: StudentCase) -> AidPosition:
        return aid_position(plan.aid_list, case.grants, plan.target, EMERGENCY_PROGRAMME)

    # ------------------------------------------------------------------------------------------ commands

    def create(self, principal: Principal, case_id: UUID) -> tuple[SupportPlan, StudentCase, int | None]:
        case = self._case(case_id)
        self._check_scope(principal, case, manage=True)
        if self._find(plan_id_for(case_id)) is not None:
            raise PlanExists("this case has its plan already", plan_id=str(plan_id_for(case_id)))
        profile = self._profile(case)
        level = case.level
        assert profile.support_plan is not None
        lines = profile.support_plan.aid_lists.get(level, ()) if isinstance(level, Level) else ()
        target = profile.aid_targets.get(level) if isinstance(level, Level) else None
        if level is not None and (not lines or target is None):
            raise PlansNotConfigured(f"the profile has no aid list for {level.value}")
        plan = SupportPlan.create(case_id=case_id, case_status=case.status.value,
                                  level=level.value if level is not None else None, school_id=case.school_id,
                                  school_region=case.school_region, class_id=case.class_id,
                                  academic_year=case.academic_year, aid_list=lines,
                                  target=target if target is not None else ZERO,
                                  profile_version=profile.tag, actor=principal.actor, now=self.clock.now())
        return plan, case, self._save(plan)

    def add_item(self, principal: Principal, plan_id: UUID, *, kind: str, owner: str | None, description: str,
                 due_on: date | None, expected_version: int | None = None
                 ) -> tuple[SupportPlan, StudentCase, int | None, str]:
        """Returns the plan, its case, the log position and the new item's ID."""
        plan, case = self._plan(principal, plan_id, manage=True, expected_version=expected_version)
        item_id = plan.add_item(kind=kind, owner=owner, description=description, due_on=due_on,
                                actor=principal.actor, now=self.clock.now())
        return plan, case, self._save(plan), item_id

    def record_action(self, principal: Principal, plan_id: UUID, item_id: str, *, description: str, outcome: str,
                      acted_on: date | None, expected_version: int | None = None
                      ) -> tuple[SupportPlan, StudentCase, int | None]:
        plan, case = self._plan(principal, plan_id, manage=True, expected_version=expected_version)
        today = self.clock.today()
        plan.record_action(item_id=item_id, description=description, outcome=outcome, acted_on=acted_on or today,
                           today=today, actor=principal.actor, now=self.clock.now())
        return plan, case, self._save(plan)

    def review(self, principal: Principal, plan_id: UUID, *, summary: str, shortfall_reason: str | None,
               expected_version: int | None = None) -> tuple[SupportPlan, StudentCase, int | None]:
        plan, case = self._plan(principal, plan_id, manage=True, expected_version=expected_version)
        profile = self._profile(case)
        assert profile.support_plan is not None
        opens = month_day(profile.support_plan.review_opens, int(plan.academic_year[5:]),
                          "support_plan.review_opens")
        plan.conclude(summary=summary, shortfall_reason=shortfall_reason, aid=self.aid(plan, case),
                      today=self.clock.today(), review_opens=opens, actor=principal.actor, now=self.clock.now())
        return plan, case, self._save(plan)

    # ------------------------------------------------------------------------------------------ queries

    def get(self, principal: Principal, plan_id: UUID) -> tuple[SupportPlan, StudentCase]:
        return self._plan(principal, plan_id, manage=False)

    def for_case(self, principal: Principal, case_id: UUID) -> tuple[SupportPlan, StudentCase]:
        case = self._case(case_id)
        self._check_scope(principal, case, manage=False)
        plan = self._find(plan_id_for(case_id))
        if plan is None:
            raise PlanNotFound("this case has no support plan yet")
        return plan, case

    def state(self, plan: SupportPlan, case: StudentCase) -> dict[str, Any]:
        case_level = case.level.value if case.level is not None else None
        return {
            "id": str(plan.id), "case_id": plan.case_id, "version": plan.version,
            "academic_year": plan.academic_year, "school_id": plan.school_id, "class_id": plan.class_id,
            "level": plan.level, "case_level": case_level, "level_changed": case_level != plan.level,
            "case_status": case.status.value, "profile_version": plan.profile_version,
            "aid": self.aid(plan, case).as_dict(),
            "items": [{**item, "owner_name": DEPARTMENTS[item["owner"]]} for item in plan.items.values()],
            "review": plan.review,
            "created_at": plan.created_on, "modified_at": plan.modified_on,
        }
