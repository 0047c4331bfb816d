"""Public notice and archive over HTTP: open a notice window, the notice board, exemption, objections and their
resolution, and the national archive export (附表2)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from adapters.cases import Outcome
from adapters.exports import ExportService, to_csv, to_xlsx
from adapters.publicity import MAX_CASES_PER_NOTICE, PublicityService
from api.deps import ExpectedVersion, PrincipalDep, ServicesDep
from api.masking import current_disclosure
from api.schemas import case_state, plain
from domain.case import case_uuid

router = APIRouter(tags=["public notice"])
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

Text = Annotated[str, Field(max_length=4000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PublicityIn(Strict):
    case_ids: Annotated[list[str], Field(min_length=1, max_length=MAX_CASES_PER_NOTICE)]
    starts_on: date | None = None


class ExemptIn(Strict):
    ground: Literal["sufficient_basis", "low_amount", "urgent"]


class ObjectIn(Strict):
    grounds: Annotated[str, Field(min_length=1, max_length=4000)]


class ResolveIn(Strict):
    objection_id: Annotated[str, Field(min_length=1, max_length=64)]
    outcome: Literal["upheld", "dismissed"]
    reason: Text
    new_level: str | None = None


def get_publicity(services: ServicesDep) -> PublicityService:
    if services.publicity is None:
        raise RuntimeError("the public-notice services were not built")
    return services.publicity


def get_exports(services: ServicesDep) -> ExportService:
    if services.exports is None:
        raise RuntimeError("the export service was not built")
    return services.exports


PublicityDep = Annotated[PublicityService, Depends(get_publicity)]
ExportsDep = Annotated[ExportService, Depends(get_exports)]


def _case_response(outcome: Outcome) -> JSONResponse:
    headers = {"ETag": f'"{outcome.case.version}"'}
    if outcome.position is not None:
        headers["X-Min-Position"] = str(outcome.position)
    # The same per-role masking of personal fields as every other case answer (api/masking.py).
    body = current_disclosure().apply(case_state(outcome.case), case_id=str(outcome.case.id))
    return JSONResponse(body, headers=headers)


@router.post("/v1/schools/{school_id}/publicity",
             responses={404: {"description": "unknown school, or not the caller's"},
                        409: {"description": "cases not rated (listed), calendar_unknown, or a concurrent change"}})
def open_notice(school_id: str, body: PublicityIn, principal: PrincipalDep,
                publicity: PublicityDep) -> JSONResponse:
    window = publicity.open_window(principal, school_id, body.case_ids, body.starts_on)
    headers = {"X-Min-Position": str(window.position)} if window.position is not None else {}
    return JSONResponse(plain({"notice_id": window.notice_id, "starts_on": window.starts_on,
                               "ends_on": window.ends_on, "working_days": window.working_days,
                               "case_ids": window.case_ids, "profile_version": window.profile_version}),
                        headers=headers)


@router.get("/v1/schools/{school_id}/publicity")
def notice_board(school_id: str, principal: PrincipalDep, services: ServicesDep, publicity: PublicityDep,
                 x_min_position: Annotated[int | None, Header()] = None) -> JSONResponse:
    if x_min_position is not None:
        services.projections.wait_for("notices", x_min_position)
    board = publicity.board(principal, school_id)
    return JSONResponse(plain({"school_id": board.school_id, "school": board.school_name, "on": board.on,
                               "entries": board.entries}))


@router.post("/v1/cases/{case_id}/exempt-publicity")
def exempt_publicity(case_id: str, body: ExemptIn, principal: PrincipalDep, publicity: PublicityDep,
                     expected: ExpectedVersion) -> JSONResponse:
    return _case_response(publicity.exempt(principal, case_uuid(case_id), body.ground, expected))


@router.post("/v1/cases/{case_id}/object")
def raise_objection(case_id: str, body: ObjectIn, principal: PrincipalDep, publicity: PublicityDep,
                    expected: ExpectedVersion) -> JSONResponse:
    return _case_response(publicity.object(principal, case_uuid(case_id), body.grounds, expected))


@router.post("/v1/cases/{case_id}/resolve-objection")
def resolve_objection(case_id: str, body: ResolveIn, principal: PrincipalDep, publicity: PublicityDep,
                      expected: ExpectedVersion) -> JSONResponse:
    outcome = publicity.resolve(principal, case_uuid(case_id), objection_id=body.objection_id,
                                outcome=body.outcome, reason=body.reason, new_level=body.new_level,
                                expected_version=expected)
    return _case_response(outcome)


@router.get("/v1/exports/national", response_class=Response,
            responses={200: {"content": {XLSX: {}, "text/csv": {}}}})
def national_export(principal: PrincipalDep, exports: ExportsDep,
                    school_id: Annotated[str, Query(min_length=1, max_length=32)],
                    academic_year: Annotated[str, Query(min_length=9, max_length=9)],
                    accept: Annotated[str | None, Header()] = None) -> Response:
    export = exports.national(principal, school_id, academic_year)
    headers = {"X-Export-Id": export.export_id, "X-Archived": str(export.newly_archived)}
    if export.position is not None:
        headers["X-Min-Position"] = str(export.position)
    if accept and "text/csv" in accept:
        headers["Content-Disposition"] = _disposition(export.filename + ".csv")
        return Response(to_csv(export), media_type="text/csv; charset=utf-8", headers=headers)
    headers["Content-Disposition"] = _disposition(export.filename + ".xlsx")
    return Response(to_xlsx(export), media_type=XLSX, headers=headers)


def _disposition(filename: str) -> str:
    from urllib.parse import quote

    # RFC 6266: an ASCII fallback plus the UTF-8 name, since the name is Chinese.
    return f"attachment; filename=\"export.{filename.rsplit('.', 1)[1]}\"; filename*=UTF-8''{quote(filename)}"
