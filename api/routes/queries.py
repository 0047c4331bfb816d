"""Read-model queries: a school's review queue, case search within scope, region statistics.

Read-your-writes: a query sent with `X-Min-Position: N` (the value a command answered with) waits until the views
it reads have applied the log up to N, at most READ_YOUR_WRITES_WAIT seconds; if they have not by then it answers
503 `stale_view` with `Retry-After`, never an answer that silently misses the caller's own write. Every answer
carries `X-View-Position`, the log position the view had reached when it was read.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse

from api.deps import PrincipalDep, ServicesDep
from api.errors import problem
from api.schemas import plain
from domain.errors import ValidationFailed
from projections.queries import PAGE_DEFAULT, Page, ReadModels

router = APIRouter(prefix="/v1", tags=["queries"])

READ_YOUR_WRITES_WAIT = 5.0  # seconds; the runner normally lags well under one
VIEWS_READ = ("case_index",)

MinPosition = Annotated[str | None, Header(alias="X-Min-Position")]
Limit = Annotated[int, Query()]  # bounds are checked by ReadModels so the error names the limit


def _read_models(services: ServicesDep) -> ReadModels:
    return ReadModels(services.projections, services.schools, services.clock)


def _await_views(services: ServicesDep, min_position: str | None) -> JSONResponse | int:
    """The views' position (what the answer will reflect at least) once they are current enough for the
    caller; else the 503 to send."""
    if min_position is None:
        return _view_position(services)
    if not min_position.strip().isdigit():
        raise ValidationFailed("X-Min-Position is the log position a command returned", field="X-Min-Position")
    wanted = int(min_position)
    for view in VIEWS_READ:
        if not services.projections.wait_for(view, wanted, timeout=READ_YOUR_WRITES_WAIT):
            return problem(503, "stale_view", f"the {view} view has not yet reached position {wanted}; "
                           "retry shortly", headers={"Retry-After": "1"}, view=view,
                           view_position=services.projections.position(view), min_position=wanted)
    return _view_position(services)


def _view_position(services: ServicesDep) -> int:
    return min(services.projections.position(view) for view in VIEWS_READ)


def _answer(position: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(plain(body), headers={"X-View-Position": str(position)})


def _page(page: Page) -> dict[str, Any]:
    return {"items": [vars(item) for item in page.items], "next_cursor": page.next_cursor}


@router.get("/schools/{school_id}/queue")
def queue(school_id: str, principal: PrincipalDep, services: ServicesDep, stage: str,
          class_id: str | None = None, level: str | None = None, academic_year: str | None = None,
          limit: Limit = PAGE_DEFAULT, cursor: str | None = None,
          min_position: MinPosition = None) -> JSONResponse:
    """Cases waiting at one step (`stage` is a case status), oldest first, with how long each has waited."""
    position = _await_views(services, min_position)
    if isinstance(position, JSONResponse):
        return position
    page = _read_models(services).queue(principal, school_id, stage=stage, class_id=class_id, level=level,
                                        academic_year=academic_year, limit=limit, cursor=cursor)
    return _answer(position, {"school_id": school_id, "stage": stage, **_page(page)})


@router.get("/cases")
def search(principal: PrincipalDep, services: ServicesDep, name: str | None = None,
           class_id: str | None = None, level: str | None = None, status: str | None = None,
           school_id: str | None = None, academic_year: str | None = None, limit: Limit = PAGE_DEFAULT,
           cursor: str | None = None, min_position: MinPosition = None) -> JSONResponse:
    """Cases in the caller's scope by student name fragment, class, level, status, school and year."""
    position = _await_views(services, min_position)
    if isinstance(position, JSONResponse):
        return position
    page = _read_models(services).search(principal, name=name, class_id=class_id, level=level, status=status,
                                         school_id=school_id, academic_year=academic_year, limit=limit,
                                         cursor=cursor)
    return _answer(position, _page(page))


@router.get("/regions/{region_code}/statistics")
def statistics(region_code: str, principal: PrincipalDep, services: ServicesDep,
               academic_year: str | None = None, min_position: MinPosition = None) -> JSONResponse:
    """Case counts per school, level and status in a region (a bureau within its own region)."""
    position = _await_views(services, min_position)
    if isinstance(position, JSONResponse):
        return position
    stats = _read_models(services).statistics(principal, region_code, academic_year=academic_year)
    return _answer(position, {
        "region_code": stats.region_code, "academic_year": stats.academic_year, "total": stats.total,
        "by_level": stats.by("level"), "by_status": stats.by("status"),
        "rows": [vars(row) for row in stats.rows],
    })
