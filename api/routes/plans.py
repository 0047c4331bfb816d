"""One student, one plan (adapters/plans.py): make a plan for an identified case, add help items, record the owning
department's actions, review at year end. Every answer is the whole plan with its aid position against the case's
grants; commands answer `ETag` (the plan's version, usable as `If-Match`) and `X-Min-Position`.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import Field

from adapters.plans import PlanService
from api.deps import ExpectedVersion, PrincipalDep, ServicesDep
from api.schemas import Strict, Text, plain
from domain.case import StudentCase, case_uuid
from domain.plan import PlanNotFound, SupportPlan

router = APIRouter(tags=["support plans"])

Description = Annotated[str, Field(min_length=1, max_length=2000)]


class ItemIn(Strict):
    kind: Literal["study_planning", "psychological_support", "skills", "employment_guidance", "labour_education"]
    owner: Literal["student_affairs", "academic_affairs", "counselling", "employment", "youth_league"] | None = None
    description: Description
    due_on: date | None = None


class ActionIn(Strict):
    description: Description
    outcome: Annotated[str, Field(max_length=2000)] = ""
    acted_on: date | None = None


class ReviewIn(Strict):
    summary: Description
    shortfall_reason: Text | None = None


def get_plans(services: ServicesDep) -> PlanService:
    return PlanService(services.store, services.clock, services.profiles)


PlansDep = Annotated[PlanService, Depends(get_plans)]


def _plan_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise PlanNotFound("no such plan") from None


def _answer(plans: PlanService, plan: SupportPlan, case: StudentCase, status_code: int = 200,
            position: int | None = None, **extra: str) -> JSONResponse:
    headers = {"ETag": f'"{plan.version}"'}
    if position is not None:
        headers["X-Min-Position"] = str(position)
    return JSONResponse(plain({**plans.state(plan, case), **extra}), status_code=status_code, headers=headers)


@router.post("/v1/cases/{case_id}/plan", status_code=201)
def create_plan(case_id: str, principal: PrincipalDep, plans: PlansDep) -> JSONResponse:
    """The year's plan for an identified student: the aid list their level's target implies."""
    plan, case, position = plans.create(principal, case_uuid(case_id))
    response = _answer(plans, plan, case, 201, position)
    response.headers["Location"] = f"/v1/plans/{plan.id}"
    return response


@router.get("/v1/cases/{case_id}/plan")
def case_plan(case_id: str, principal: PrincipalDep, plans: PlansDep) -> JSONResponse:
    plan, case = plans.for_case(principal, case_uuid(case_id))
    return _answer(plans, plan, case)


@router.get("/v1/plans/{plan_id}")
def read_plan(plan_id: str, principal: PrincipalDep, plans: PlansDep) -> JSONResponse:
    plan, case = plans.get(principal, _plan_id(plan_id))
    return _answer(plans, plan, case)


@router.post("/v1/plans/{plan_id}/items", status_code=201)
def add_item(plan_id: str, body: ItemIn, principal: PrincipalDep, plans: PlansDep,
             expected: ExpectedVersion) -> JSONResponse:
    """A development help item owned by a department (学工, 教务, 心理, 就业, 共青团)."""
    plan, case, position, item_id = plans.add_item(principal, _plan_id(plan_id), kind=body.kind,
                                                   owner=body.owner, description=body.description,
                                                   due_on=body.due_on, expected_version=expected)
    return _answer(plans, plan, case, 201, position, item_id=item_id)


@router.post("/v1/plans/{plan_id}/items/{item_id}/actions", status_code=201)
def record_action(plan_id: str, item_id: str, body: ActionIn, principal: PrincipalDep, plans: PlansDep,
                  expected: ExpectedVersion) -> JSONResponse:
    plan, case, position = plans.record_action(principal, _plan_id(plan_id), item_id,
                                               description=body.description, outcome=body.outcome,
                                               acted_on=body.acted_on, expected_version=expected)
    return _answer(plans, plan, case, 201, position)


@router.post("/v1/plans/{plan_id}/review")
def review_plan(plan_id: str, body: ReviewIn, principal: PrincipalDep, plans: PlansDep,
                expected: ExpectedVersion) -> JSONResponse:
    """The year-end review; a shortfall against the target needs `shortfall_reason`."""
    plan, case, position = plans.review(principal, _plan_id(plan_id), summary=body.summary,
                                        shortfall_reason=body.shortfall_reason, expected_version=expected)
    return _answer(plans, plan, case, 200, position)
