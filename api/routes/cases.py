"""/v1/cases: apply, read (now, at a version, as of a time), the event history, and the case commands."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from adapters.cases import Outcome
from api.deps import ExpectedVersion, PrincipalDep, ServicesDep
from api.masking import DisclosureDep, current_disclosure
from api.schemas import (
    ApplicationIn,
    AssessIn,
    CreatedOut,
    EvaluateIn,
    EventOut,
    RateIn,
    VerifyIn,
    WithdrawIn,
    case_state,
    plain,
)
from domain.case import StudentCase, case_uuid
from domain.errors import ValidationFailed

router = APIRouter(prefix="/v1/cases", tags=["cases"])


def _state_response(case: StudentCase, status_code: int = 200, position: int | None = None) -> JSONResponse:
    headers = {"ETag": f'"{case.version}"'}
    if position is not None:
        # Pass this back as X-Min-Position on a query to read this command's effect in the views.
        headers["X-Min-Position"] = str(position)
    # Personal fields are masked for roles that do not need them (api/masking.py), for every read and command.
    body = current_disclosure().apply(case_state(case), case_id=str(case.id))
    return JSONResponse(body, status_code=status_code, headers=headers)


def _outcome_response(outcome: Outcome, status_code: int = 200) -> JSONResponse:
    return _state_response(outcome.case, status_code, outcome.position)


def _case_id(case_id: str) -> UUID:
    return case_uuid(case_id)


@router.post("", status_code=201, response_model=CreatedOut,
             responses={409: {"description": "already applied for this year"}, 422: {}})
def apply(body: ApplicationIn, principal: PrincipalDep, services: ServicesDep) -> JSONResponse:
    outcome = services.cases.apply(principal, body.model_dump(mode="json", exclude_none=True))
    response = _outcome_response(outcome, 201)
    response.headers["Location"] = f"/v1/cases/{outcome.case.id}"
    return response


@router.get("/{case_id}")
def read(case_id: str, principal: PrincipalDep, services: ServicesDep, disclosure: DisclosureDep,
         version: Annotated[int | None, Query(ge=1)] = None,
         as_of: Annotated[datetime | None, Query()] = None) -> JSONResponse:
    if version is not None and as_of is not None:
        raise ValidationFailed("give version or as_of, not both", field="as_of")
    if as_of is not None and as_of.tzinfo is None:
        raise ValidationFailed("as_of needs a UTC offset, e.g. 2025-10-01T12:00:00+08:00", field="as_of")
    case = services.cases.get(principal, _case_id(case_id), version=version, as_of=as_of)
    return _state_response(case)


@router.get("/{case_id}/events", response_model=list[EventOut])
def events(case_id: str, principal: PrincipalDep, services: ServicesDep, disclosure: DisclosureDep) -> JSONResponse:
    uid = _case_id(case_id)
    views = services.cases.events(principal, uid)
    return JSONResponse(disclosure.apply([plain({"version": v.version, "type": v.type, "occurred_at": v.occurred_at,
                                                 "actor": v.actor, "data": v.data}) for v in views],
                                         case_id=str(uid)))


@router.post("/{case_id}/amend")
def amend(case_id: str, body: ApplicationIn, principal: PrincipalDep, services: ServicesDep,
          expected: ExpectedVersion) -> JSONResponse:
    form = body.model_dump(mode="json", exclude_none=True)
    return _outcome_response(services.cases.amend(principal, _case_id(case_id), form, expected))


@router.post("/{case_id}/withdraw")
def withdraw(case_id: str, body: WithdrawIn, principal: PrincipalDep, services: ServicesDep,
             expected: ExpectedVersion) -> JSONResponse:
    return _outcome_response(services.cases.withdraw(principal, _case_id(case_id), body.reason, expected))


@router.post("/{case_id}/verify")
def verify(case_id: str, body: VerifyIn, principal: PrincipalDep, services: ServicesDep,
           expected: ExpectedVersion) -> JSONResponse:
    outcome = services.cases.verify(principal, _case_id(case_id), method=body.method,
                                 confirmed_categories=body.confirmed_categories, notes=body.notes,
                                 expected_version=expected, matcher=services.matcher)
    return _outcome_response(outcome)


@router.post("/{case_id}/assess")
def assess(case_id: str, principal: PrincipalDep, services: ServicesDep, expected: ExpectedVersion,
           body: AssessIn | None = None) -> JSONResponse:
    return _outcome_response(services.cases.assess(principal, _case_id(case_id), expected))


@router.post("/{case_id}/evaluate")
def evaluate(case_id: str, body: EvaluateIn, principal: PrincipalDep, services: ServicesDep,
             expected: ExpectedVersion) -> JSONResponse:
    if body.votes_for is None and body.votes_against is None and services.identification is not None:
        # No tally in the body: close on the ballots the group's members cast (POST /v1/cases/{id}/votes).
        return _outcome_response(services.identification.evaluation.close(principal, _case_id(case_id), expected))
    outcome = services.cases.evaluate(principal, _case_id(case_id), votes_for=body.votes_for or 0,
                                   votes_against=body.votes_against or 0, recommended_level=body.recommended_level,
                                   panel=[p.model_dump() for p in body.panel], expected_version=expected)
    return _outcome_response(outcome)


@router.post("/{case_id}/rate")
def rate(case_id: str, body: RateIn, principal: PrincipalDep, services: ServicesDep,
         expected: ExpectedVersion) -> JSONResponse:
    outcome = services.cases.rate(principal, _case_id(case_id), level=body.level, reason=body.reason,
                               expected_version=expected)
    return _outcome_response(outcome)
