"""Class evaluation groups and ballots, campus-card spending warnings, and the departures report."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from adapters.consumption import ConsumptionData
from adapters.evaluation import ClassEvaluation
from api.deps import ExpectedVersion, PrincipalDep, Services, ServicesDep
from api.masking import current_disclosure
from api.routes.cases import _outcome_response
from api.routes.registries import read_upload
from api.schemas import plain
from domain.case import case_uuid

router = APIRouter(prefix="/v1", tags=["evaluation"])
Year = Annotated[str | None, Query(pattern=r"^\d{4}-\d{4}$")]


class PanelMemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sub: Annotated[str, Field(min_length=1, max_length=100)]
    role: Literal["head_teacher", "counsellor", "student_representative", "teacher_representative",
                  "parent_representative", "other"]
    student_id_number: Annotated[str | None, Field(max_length=18)] = None


class PanelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    academic_year: Annotated[str | None, Field(pattern=r"^\d{4}-\d{4}$")] = None
    members: list[PanelMemberIn] = Field(min_length=1, max_length=60)


class VoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vote: Literal["for", "against"]
    recommended_level: str | None = None


def evaluation_of(services: Services) -> ClassEvaluation:
    if services.identification is None:
        raise RuntimeError("the identification engine is not wired (build_services)")
    return services.identification.evaluation


def consumption_of(services: Services) -> ConsumptionData:
    if services.identification is None:
        raise RuntimeError("the identification engine is not wired (build_services)")
    return services.identification.consumption


@router.post("/schools/{school_id}/classes/{class_id}/panel", status_code=201)
def form_panel(school_id: str, class_id: str, body: PanelIn, principal: PrincipalDep,
               services: ServicesDep) -> JSONResponse:
    """Forms (or re-forms) a class's evaluation group for an academic year, checked against the profile."""
    panel = evaluation_of(services).form_panel(principal, school_id, class_id,
                                               [m.model_dump() for m in body.members], body.academic_year)
    return JSONResponse(plain(panel.as_dict()), status_code=201)


@router.get("/schools/{school_id}/classes/{class_id}/panel")
def read_panel(school_id: str, class_id: str, principal: PrincipalDep, services: ServicesDep,
               academic_year: Year = None) -> JSONResponse:
    panel = evaluation_of(services).read_panel(principal, school_id, class_id, academic_year)
    return JSONResponse(plain(panel.as_dict()))


@router.post("/cases/{case_id}/votes")
def cast_vote(case_id: str, body: VoteIn, principal: PrincipalDep, services: ServicesDep,
              expected: ExpectedVersion) -> JSONResponse:
    """A member of the class's evaluation group votes on a case, recommending a level when voting for it."""
    outcome = evaluation_of(services).cast_vote(principal, case_uuid(case_id), vote=body.vote,
                                                recommended_level=body.recommended_level,
                                                expected_version=expected)
    return _outcome_response(outcome)


@router.post("/cases/{case_id}/evaluation/close")
def close_evaluation(case_id: str, principal: PrincipalDep, services: ServicesDep,
                     expected: ExpectedVersion) -> JSONResponse:
    """The group's head teacher (or counsellor) closes the evaluation with the tally of the ballots."""
    return _outcome_response(evaluation_of(services).close(principal, case_uuid(case_id), expected))


@router.post("/schools/{school_id}/consumption/imports", status_code=201)
async def import_consumption(school_id: str, principal: PrincipalDep, services: ServicesDep,
                             file: Annotated[UploadFile, File(description="CSV (UTF-8 or GBK) or .xlsx")]
                             ) -> JSONResponse:
    """Imports campus-card spending (student ID number, month, amount, category; optional name)."""
    raw = await read_upload(file)
    record = await run_in_threadpool(consumption_of(services).import_file, principal, school_id, raw)
    return JSONResponse(plain(record.as_dict()), status_code=200 if record.already_imported else 201)


@router.get("/schools/{school_id}/consumption/warnings")
def consumption_warnings(school_id: str, principal: PrincipalDep, services: ServicesDep,
                         academic_year: Year = None,
                         category: Annotated[str | None, Query(max_length=32)] = None) -> JSONResponse:
    """Advice for staff: non-applicants spending far below their peers, aided students far above them."""
    report = consumption_of(services).warnings(principal, school_id, academic_year=academic_year, category=category)
    return JSONResponse(current_disclosure().apply(plain(report), case_id=None))


@router.get("/regions/{region_code}/departures")
def departures(region_code: str, principal: PrincipalDep, services: ServicesDep,
               academic_year: Year = None) -> JSONResponse:
    """How often each school's ratings depart from the scoring model's suggested level."""
    return JSONResponse(plain(evaluation_of(services).departures(principal, region_code,
                                                                 academic_year=academic_year)))
