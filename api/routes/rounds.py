"""Identification rounds (adapters/rounds.py): open per school or per region, read the current announcement, list,
see the round dashboard, close.

Commands answer `X-Min-Position`; lists read the rounds view and honour `X-Min-Position` like every read-model query.
The current round and the dashboard's round come from the aggregates themselves, never stale.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse
from pydantic import Field

from adapters.rounds import Opened, RoundService, StaleView, opened_summary, round_state
from api.deps import ExpectedVersion, PrincipalDep, ServicesDep
from api.errors import problem
from api.schemas import Strict, plain
from domain.errors import ValidationFailed
from domain.round import RoundNotFound

router = APIRouter(tags=["rounds"])

READ_YOUR_WRITES_WAIT = 5.0
MinPosition = Annotated[str | None, Header(alias="X-Min-Position")]


class RoundIn(Strict):
    academic_year: Annotated[str, Field(pattern=r"^\d{4}-\d{4}$")]
    kind: Literal["identification", "spring_adjustment"]
    opens_on: date
    closes_on: date


def get_rounds(services: ServicesDep) -> RoundService:
    return RoundService(services.store, services.clock, services.profiles, services.schools, services.projections)


RoundsDep = Annotated[RoundService, Depends(get_rounds)]


def _round_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise RoundNotFound("no such round") from None


def _answer(body: Any, status_code: int = 200, position: int | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    extra = dict(headers or {})
    if position is not None:
        extra["X-Min-Position"] = str(position)
    return JSONResponse(plain(body), status_code=status_code, headers=extra)


def _await_view(services: ServicesDep, view: str, min_position: str | None) -> JSONResponse | None:
    if min_position is None:
        return None
    if not min_position.strip().isdigit():
        raise ValidationFailed("X-Min-Position is the log position a command returned", field="X-Min-Position")
    wanted = int(min_position)
    if services.projections.wait_for(view, wanted, timeout=READ_YOUR_WRITES_WAIT):
        return None
    return problem(503, "stale_view", f"the {view} view has not yet reached position {wanted}; retry shortly",
                   headers={"Retry-After": "1"}, view=view, min_position=wanted)


def _opened(opened: Opened, rounds: RoundService) -> dict[str, Any]:
    return {"opened": opened_summary(opened.rounds, rounds.clock.today()), "skipped": opened.skipped}


@router.post("/v1/schools/{school_id}/rounds", status_code=201)
def open_for_school(school_id: str, body: RoundIn, principal: PrincipalDep, rounds: RoundsDep) -> JSONResponse:
    """Opens the school's round for a term and publishes its announcement (宣传告知) to the school's students."""
    request = rounds.request(body.academic_year, body.kind, body.opens_on, body.closes_on)
    opened = rounds.open_for_school(principal, school_id, request)
    created = opened.rounds[0]
    return _answer(round_state(created, rounds.clock.today()), 201, opened.position,
                   {"Location": f"/v1/schools/{school_id}/rounds/{created.id}", "ETag": f'"{created.version}"'})


@router.post("/v1/regions/{region_code}/rounds", status_code=201)
def open_for_region(region_code: str, body: RoundIn, principal: PrincipalDep, rounds: RoundsDep) -> JSONResponse:
    """One round per registered school in the bureau's region; schools that have this term's round are skipped."""
    request = rounds.request(body.academic_year, body.kind, body.opens_on, body.closes_on)
    opened = rounds.open_for_region(principal, region_code, request)
    return _answer(_opened(opened, rounds), 201, opened.position)


@router.get("/v1/regions/{region_code}/rounds")
def region_rounds(region_code: str, principal: PrincipalDep, services: ServicesDep, rounds: RoundsDep,
                  academic_year: Annotated[str | None, Query()] = None,
                  min_position: MinPosition = None) -> JSONResponse:
    stale = _await_view(services, "rounds", min_position)
    if stale is not None:
        return stale
    return _answer({"region_code": region_code,
                    "rounds": rounds.list_for_region(principal, region_code, academic_year)})


@router.get("/v1/regions/{region_code}/rounds/dashboard")
def region_dashboard(region_code: str, principal: PrincipalDep, services: ServicesDep, rounds: RoundsDep,
                     academic_year: Annotated[str, Query(pattern=r"^\d{4}-\d{4}$")],
                     kind: Annotated[Literal["identification", "spring_adjustment"], Query()] = "identification",
                     min_position: MinPosition = None) -> JSONResponse:
    """Per school of the region: where the term's round stands, how many cases are unfinished or overdue."""
    for view in ("rounds", "case_index"):
        stale = _await_view(services, view, min_position)
        if stale is not None:
            return stale
    return _answer(rounds.region_dashboard(principal, region_code, academic_year, kind))


@router.get("/v1/schools/{school_id}/rounds")
def school_rounds(school_id: str, principal: PrincipalDep, services: ServicesDep, rounds: RoundsDep,
                  min_position: MinPosition = None) -> JSONResponse:
    stale = _await_view(services, "rounds", min_position)
    if stale is not None:
        return stale
    return _answer({"school_id": school_id, "rounds": rounds.list_for_school(principal, school_id)})


@router.get("/v1/schools/{school_id}/rounds/current")
def current_round(school_id: str, principal: PrincipalDep, rounds: RoundsDep) -> JSONResponse:
    """The announcement students read: the open round, else the next one, else the last one."""
    found = rounds.current(principal, school_id)
    return _answer(round_state(found, rounds.clock.today()))


@router.get("/v1/schools/{school_id}/rounds/{round_id}")
def read_round(school_id: str, round_id: str, principal: PrincipalDep, rounds: RoundsDep) -> JSONResponse:
    found = rounds.get(principal, school_id, _round_id(round_id))
    return _answer(round_state(found, rounds.clock.today()), headers={"ETag": f'"{found.version}"'})


@router.get("/v1/schools/{school_id}/rounds/{round_id}/dashboard")
def dashboard(school_id: str, round_id: str, principal: PrincipalDep, services: ServicesDep, rounds: RoundsDep,
              min_position: MinPosition = None) -> JSONResponse:
    """Per class: cases at each step, the overdue ones, and whether the round can close."""
    stale = _await_view(services, "case_index", min_position)
    if stale is not None:
        return stale
    return _answer(rounds.dashboard(principal, school_id, _round_id(round_id)))


@router.post("/v1/schools/{school_id}/rounds/{round_id}/close")
def close_round(school_id: str, round_id: str, principal: PrincipalDep, rounds: RoundsDep,
                expected: ExpectedVersion) -> JSONResponse:
    try:
        found, position = rounds.close(principal, school_id, _round_id(round_id), expected)
    except StaleView as exc:
        return problem(503, exc.code, exc.detail, headers={"Retry-After": "1"})
    return _answer(round_state(found, rounds.clock.today()), 200, position, {"ETag": f'"{found.version}"'})
