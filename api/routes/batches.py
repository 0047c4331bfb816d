"""Batch commands over HTTP: a school's bulk application entry, assessment of its verified cases and rating of its
evaluated cases at the class's recommended level, and a class evaluation group's results (adapters/batches.py).

Each answers 200 with a result per case (`ok`, `unchanged`, or `skipped` with the refusal's `code`), and
`X-Min-Position` when something was written. A request over its limit, or a malformed evaluation row, is refused
whole (422 problem+json) and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as ShapeError

from adapters.batches import MAX_APPLICATIONS, MAX_EVALUATIONS, BatchCommands
from api.deps import PrincipalDep, Services, ServicesDep
from api.masking import current_disclosure
from api.schemas import ApplicationIn, plain
from domain.errors import ValidationFailed

router = APIRouter(prefix="/v1", tags=["batches"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApplicationsIn(Strict):
    # Rows are checked one by one (a malformed form is that row's refusal), so here only the count is.
    applications: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=MAX_APPLICATIONS)]


class SchoolBatchIn(Strict):
    academic_year: Annotated[str | None, Field(pattern=r"^\d{4}-\d{4}$")] = None
    class_id: Annotated[str | None, Field(min_length=1, max_length=64)] = None


class EvaluationRow(Strict):
    case_id: Annotated[str, Field(max_length=64)]
    votes_for: Annotated[int, Field(ge=0, le=1000)]
    votes_against: Annotated[int, Field(ge=0, le=1000)]
    recommended_level: str | None = None
    panel: list[dict[str, str]] = Field(default_factory=list, max_length=50)


class EvaluationsIn(Strict):
    evaluations: Annotated[list[EvaluationRow], Field(min_length=1, max_length=MAX_EVALUATIONS)]


def batches_of(services: Services) -> BatchCommands:
    if services.batches is None:
        raise RuntimeError("the batch commands are not wired (build_services)")
    return services.batches


def application_shape(form: Mapping[str, Any]) -> Mapping[str, Any]:
    """One form through the schema of `POST /v1/cases`; its first error is the row's refusal."""
    try:
        return ApplicationIn.model_validate(form).model_dump(mode="json", exclude_none=True)
    except ShapeError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        raise ValidationFailed(f"{field or 'form'}: {first.get('msg', 'invalid')}", field=field) from None


def _answer(summary: dict[str, Any]) -> JSONResponse:
    position = summary.pop("position")
    headers = {"X-Min-Position": str(position)} if position is not None else {}
    return JSONResponse(current_disclosure().apply(plain(summary), case_id=None), headers=headers)


@router.post("/schools/{school_id}/applications")
def apply_many(school_id: str, body: ApplicationsIn, principal: PrincipalDep,
               services: ServicesDep) -> JSONResponse:
    """Bulk application entry by the school's aid office: each form as `POST /v1/cases` would take it."""
    return _answer(batches_of(services).apply_many(principal, school_id, body.applications,
                                                   shape=application_shape))


@router.post("/schools/{school_id}/assess-verified")
def assess_verified(school_id: str, principal: PrincipalDep, services: ServicesDep,
                    body: SchoolBatchIn | None = None) -> JSONResponse:
    """Runs the scoring model on every verified case of the school (or of one class)."""
    return _answer(batches_of(services).assess_school(
        principal, school_id, academic_year=body.academic_year if body else None,
        class_id=body.class_id if body else None))


@router.post("/schools/{school_id}/rate-evaluated")
def rate_evaluated(school_id: str, principal: PrincipalDep, services: ServicesDep,
                   body: SchoolBatchIn | None = None) -> JSONResponse:
    """Rates every evaluated case of the school (or of one class) at its class group's recommended level."""
    return _answer(batches_of(services).rate_school(
        principal, school_id, academic_year=body.academic_year if body else None,
        class_id=body.class_id if body else None))


@router.post("/schools/{school_id}/classes/{class_id}/evaluations")
def evaluate_class(school_id: str, class_id: str, body: EvaluationsIn, principal: PrincipalDep,
                   services: ServicesDep) -> JSONResponse:
    """The class evaluation group's results for its class, each case with its own tally."""
    rows = [row.model_dump(exclude_none=True) for row in body.evaluations]
    return _answer(batches_of(services).evaluate_class(principal, school_id, class_id, rows))
