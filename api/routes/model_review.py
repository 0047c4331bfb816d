"""Model review (adapters/model_review.py): how the scoring profile's suggestions compared with final ratings in a
region and year, and publishing new cut-offs as a new profile version (province-level bureaus)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import Field

from adapters.model_review import ModelReviewService, PublishedProfiles, cutoffs_of
from api.deps import PrincipalDep, ServicesDep
from api.schemas import Strict, plain

router = APIRouter(tags=["model review"])

Cutoff = Annotated[Decimal, Field(max_digits=10, decimal_places=4)]


class ProfileVersionIn(Strict):
    cutoffs: dict[str, Cutoff]
    note: Annotated[str, Field(min_length=1, max_length=4000)]
    based_on: Annotated[str | None, Field(max_length=100, description="the profile version the review saw")] = None
    academic_year: Annotated[str | None, Field(pattern=r"^\d{4}-\d{4}$")] = None


def get_review(services: ServicesDep) -> ModelReviewService:
    return ModelReviewService(services.store, services.clock, services.profiles, services.projections,
                              PublishedProfiles(services.store))


ReviewDep = Annotated[ModelReviewService, Depends(get_review)]


@router.get("/v1/regions/{region_code}/model-review")
def model_review(region_code: str, principal: PrincipalDep, review: ReviewDep,
                 academic_year: Annotated[str, Query(pattern=r"^\d{4}-\d{4}$")]) -> JSONResponse:
    return JSONResponse(plain(review.report(principal, region_code, academic_year)))


@router.get("/v1/regions/{region_code}/profiles")
def profile_versions(region_code: str, principal: PrincipalDep, review: ReviewDep) -> JSONResponse:
    return JSONResponse(plain(review.versions(principal, region_code)))


@router.post("/v1/regions/{region_code}/profiles", status_code=201)
def publish_profile(region_code: str, body: ProfileVersionIn, principal: PrincipalDep,
                    review: ReviewDep) -> JSONResponse:
    """A new profile version with these cut-offs; every later assessment in the province uses it."""
    profile, position = review.publish(principal, region_code, cutoffs=body.cutoffs, based_on=body.based_on,
                                       note=body.note, academic_year=body.academic_year)
    headers = {"Location": f"/v1/regions/{region_code}/profiles"}
    if position is not None:
        headers["X-Min-Position"] = str(position)
    return JSONResponse(plain({"profile_version": profile.tag, "model_version": profile.scoring.model_version,
                               "cutoffs": cutoffs_of(profile)}), status_code=201, headers=headers)
