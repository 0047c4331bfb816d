"""Registry lists and verification by data matching: imports, a school's verify-by-data run, the outreach list."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from adapters.matching import DataMatching
from adapters.registries import SOURCES, Importer, RegistryStore
from api.deps import PrincipalDep, Services, ServicesDep
from api.masking import current_disclosure
from api.schemas import plain
from domain.errors import Forbidden, ValidationFailed
from domain.values import Role

router = APIRouter(prefix="/v1", tags=["registries"])
Year = Annotated[str | None, Query(pattern=r"^\d{4}-\d{4}$")]


class VerifyByDataIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    academic_year: Annotated[str | None, Field(pattern=r"^\d{4}-\d{4}$")] = None
    class_id: Annotated[str | None, Field(min_length=1, max_length=64)] = None


def registries_of(services: Services) -> RegistryStore:
    if services.identification is None:
        raise RuntimeError("the identification engine is not wired (build_services)")
    return services.identification.registries


def matching_of(services: Services) -> DataMatching:
    if services.identification is None:
        raise RuntimeError("the identification engine is not wired (build_services)")
    return services.identification.matching


async def read_upload(file: UploadFile) -> bytes:
    raw = await file.read()
    await file.close()
    return raw


@router.post("/registries/{source}/imports", status_code=201)
async def import_registry(source: str, principal: PrincipalDep, services: ServicesDep,
                          file: Annotated[UploadFile, File(description="CSV (UTF-8 or GBK) or .xlsx")]
                          ) -> JSONResponse:
    """Imports a registry list; answers the rows accepted and each rejected row with its reason."""
    if source not in SOURCES:
        raise ValidationFailed(f"unknown registry source {source!r}; known: {', '.join(SOURCES)}", field="source")
    if principal.role not in {Role.SCHOOL, Role.BUREAU}:
        raise Forbidden(f"the {principal.role.value} role cannot import registry lists")
    raw = await read_upload(file)
    record = await run_in_threadpool(registries_of(services).import_file, raw, source=source,
                                     by=Importer(principal.sub, principal.role.value), now=services.clock.now())
    return JSONResponse(plain(record.as_dict()), status_code=200 if record.already_imported else 201)


@router.get("/registries/imports")
def list_imports(principal: PrincipalDep, services: ServicesDep,
                 source: Annotated[str | None, Query()] = None) -> JSONResponse:
    """The import record (who, when, file hash, counts); rejected rows are in each import's answer."""
    if source is not None and source not in SOURCES:
        raise ValidationFailed(f"unknown registry source {source!r}; known: {', '.join(SOURCES)}", field="source")
    if principal.role not in {Role.SCHOOL, Role.BUREAU, Role.AUDITOR}:
        raise Forbidden(f"the {principal.role.value} role cannot read the registry import record")
    records = registries_of(services).imports(source)
    return JSONResponse(plain({"items": [r.as_dict() for r in records]}))


@router.post("/schools/{school_id}/verify-by-data")
def verify_by_data(school_id: str, principal: PrincipalDep, services: ServicesDep,
                   body: VerifyByDataIn | None = None) -> JSONResponse:
    """Verifies by data matching every case of the school (or of one class) waiting at, or just past,
    verification; re-running it records nothing for a case whose result is unchanged."""
    summary: dict[str, Any] = matching_of(services).verify_school(
        principal, school_id, academic_year=body.academic_year if body else None,
        class_id=body.class_id if body else None)
    position = summary.pop("position")
    headers = {"X-Min-Position": str(position)} if position is not None else {}
    return JSONResponse(current_disclosure().apply(plain(summary), case_id=None), headers=headers)


@router.get("/schools/{school_id}/outreach")
def outreach(school_id: str, principal: PrincipalDep, services: ServicesDep,
             academic_year: Year = None) -> JSONResponse:
    """资助找人: students the registries name in a category they did not claim, or who did not apply."""
    report = matching_of(services).outreach(principal, school_id, academic_year=academic_year)
    return JSONResponse(current_disclosure().apply(plain(report), case_id=None))
