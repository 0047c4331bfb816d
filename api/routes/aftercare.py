"""After identification: follow-up checks, home visits, spring readjustment, aid, revocation and recovery, integrity
records, bureau spot checks, and the school and region views over them (adapters.aftercare, adapters.spot_checks).

Money is a decimal string in CNY both ways (a JSON number is refused: binary floats have no place in money).
Views answer `X-View-Position`; a query sent with `X-Min-Position` waits for its view to reach that position
(503 `stale_view` if it does not in time), like every other read-model query.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse
from pydantic import Field

from adapters.aftercare import Aftercare, SampleResult
from adapters.cases import Outcome
from adapters.person_keys import PersonKeys
from adapters.spot_checks import SpotChecks, check_state
from api.deps import ExpectedVersion, PrincipalDep, ServicesDep
from api.errors import problem
from api.masking import current_disclosure
from api.schemas import Strict, Text, case_state, plain
from domain.case import case_uuid
from domain.errors import ValidationFailed

router = APIRouter(tags=["after identification"])

READ_YOUR_WRITES_WAIT = 5.0
MoneyText = Annotated[str, Field(pattern=r"^\d{1,12}(\.\d{1,2})?$", description="CNY, e.g. \"1500.00\"")]
Reference = Annotated[str, Field(min_length=1, max_length=500)]
Attachments = Annotated[list[Reference], Field(default_factory=list, max_length=20)]
MinPosition = Annotated[str | None, Header(alias="X-Min-Position")]
Year = Annotated[str | None, Query(description="academic year, e.g. 2025-2026")]


# ---------------------------------------------------------------------------------------------- request bodies


class FollowUpIn(Strict):
    method: Literal["letter", "phone", "interview", "home_visit"]
    checked_on: date
    finding: Literal["consistent", "inconsistent"]
    notes: Text = ""
    attachments: Attachments


class HomeVisitIn(Strict):
    visited_on: date
    notes: Text = ""


class ReadjustIn(Strict):
    level: str
    reason: Text


class GrantAidIn(Strict):
    programme: Annotated[str, Field(min_length=1, max_length=64)]
    amount: MoneyText
    override_reason: Text | None = None


class AmountIn(Strict):
    amount: MoneyText


class RevokeIn(Strict):
    reason: Text
    dishonest: bool = False


class IntegrityViolationIn(Strict):
    person: Literal["student", "guardian"]
    id_number: Annotated[str, Field(min_length=1, max_length=18)]
    description: Text


class SampleIn(Strict):
    semester: Annotated[str, Field(pattern=r"^\d{4}-\d{4}-[12]$")] | None = None
    seed: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class SpotCheckIn(Strict):
    academic_year: Annotated[str, Field(pattern=r"^\d{4}-\d{4}$")] | None = None
    seed: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    due_on: date | None = None


class AssignIn(Strict):
    inspector: Annotated[str, Field(min_length=1, max_length=100)]
    case_ids: Annotated[list[str], Field(max_length=1000)] | None = None


class ResultIn(Strict):
    case_id: Annotated[str, Field(min_length=1, max_length=36)]
    finding: Literal["consistent", "inconsistent"]
    checked_on: date
    notes: Text = ""
    attachments: Attachments


# ---------------------------------------------------------------------------------------------- plumbing


def get_aftercare(services: ServicesDep) -> Aftercare:
    return Aftercare(services.cases, services.projections, PersonKeys(services.settings.secret))


def get_spot_checks(services: ServicesDep, aftercare: Annotated[Aftercare, Depends(get_aftercare)]) -> SpotChecks:
    return SpotChecks(services.cases, services.projections, aftercare)


AftercareDep = Annotated[Aftercare, Depends(get_aftercare)]
SpotChecksDep = Annotated[SpotChecks, Depends(get_spot_checks)]


def _case_response(outcome: Outcome) -> JSONResponse:
    headers = {"ETag": f'"{outcome.case.version}"'}
    if outcome.position is not None:
        headers["X-Min-Position"] = str(outcome.position)
    # Personal fields are masked for roles that do not need them, as for every case answer (api/masking.py).
    return JSONResponse(current_disclosure().apply(case_state(outcome.case), case_id=str(outcome.case.id)),
                        headers=headers)


def _answer(body: dict[str, Any], status_code: int = 200, position: int | None = None,
            view_position: int | None = None) -> JSONResponse:
    headers = {}
    if position is not None:
        headers["X-Min-Position"] = str(position)
    if view_position is not None:
        headers["X-View-Position"] = str(view_position)
    return JSONResponse(current_disclosure().apply(plain(body), case_id=None), status_code=status_code,
                        headers=headers)


def _await_view(services: ServicesDep, view: str, min_position: str | None) -> JSONResponse | int:
    """The view's position once it has reached the caller's X-Min-Position; else the 503 to send."""
    if min_position is not None:
        if not min_position.strip().isdigit():
            raise ValidationFailed("X-Min-Position is the log position a command returned", field="X-Min-Position")
        wanted = int(min_position)
        if not services.projections.wait_for(view, wanted, timeout=READ_YOUR_WRITES_WAIT):
            return problem(503, "stale_view", f"the {view} view has not yet reached position {wanted}; "
                           "retry shortly", headers={"Retry-After": "1"}, view=view,
                           view_position=services.projections.position(view), min_position=wanted)
    return services.projections.position(view)


def _case_id(value: str) -> UUID:
    return case_uuid(value)


# ---------------------------------------------------------------------------------------------- case commands


@router.post("/v1/cases/{case_id}/follow-up")
def follow_up(case_id: str, body: FollowUpIn, principal: PrincipalDep, aftercare: AftercareDep,
              expected: ExpectedVersion) -> JSONResponse:
    """Records a follow-up check (附表3/附表4) on a case drawn in a sample; otherwise 409 not_selected_for_follow_up."""
    return _case_response(aftercare.record_follow_up(
        principal, _case_id(case_id), method=body.method, checked_on=body.checked_on, finding=body.finding,
        notes=body.notes, attachments=body.attachments, expected_version=expected))


@router.post("/v1/cases/{case_id}/home-visit")
def home_visit(case_id: str, body: HomeVisitIn, principal: PrincipalDep, aftercare: AftercareDep,
               expected: ExpectedVersion) -> JSONResponse:
    """Records a home visit; it covers the student's whole family (see GET /v1/schools/{id}/home-visits)."""
    return _case_response(aftercare.record_home_visit(principal, _case_id(case_id), visited_on=body.visited_on,
                                                      notes=body.notes, expected_version=expected))


@router.post("/v1/cases/{case_id}/readjust")
def readjust(case_id: str, body: ReadjustIn, principal: PrincipalDep, aftercare: AftercareDep,
             expected: ExpectedVersion) -> JSONResponse:
    """Spring readjustment to a level or `not_identified`; outside the profile's window 409 with its dates."""
    return _case_response(aftercare.readjust(principal, _case_id(case_id), level=body.level, reason=body.reason,
                                             expected_version=expected))


@router.post("/v1/cases/{case_id}/grant-aid")
def grant_aid(case_id: str, body: GrantAidIn, principal: PrincipalDep, aftercare: AftercareDep,
              expected: ExpectedVersion) -> JSONResponse:
    """Grants aid from a profile programme; above the level's annual target only with `override_reason`
    (else 409 over_aid). `emergency_aid` goes to any open case, identified or not."""
    return _case_response(aftercare.grant_aid(principal, _case_id(case_id), programme=body.programme,
                                              amount=body.amount, override_reason=body.override_reason,
                                              expected_version=expected))


@router.post("/v1/cases/{case_id}/disburse")
def disburse(case_id: str, body: AmountIn, principal: PrincipalDep, aftercare: AftercareDep,
             expected: ExpectedVersion) -> JSONResponse:
    return _case_response(aftercare.disburse(principal, _case_id(case_id), amount=body.amount,
                                             expected_version=expected))


@router.post("/v1/cases/{case_id}/revoke")
def revoke(case_id: str, body: RevokeIn, principal: PrincipalDep, aftercare: AftercareDep,
           expected: ExpectedVersion) -> JSONResponse:
    """Cancels the qualification; with `dishonest` also records an integrity violation of the student."""
    return _case_response(aftercare.revoke(principal, _case_id(case_id), reason=body.reason,
                                           dishonest=body.dishonest, expected_version=expected))


@router.post("/v1/cases/{case_id}/order-recovery")
def order_recovery(case_id: str, body: AmountIn, principal: PrincipalDep, aftercare: AftercareDep,
                   expected: ExpectedVersion) -> JSONResponse:
    return _case_response(aftercare.order_recovery(principal, _case_id(case_id), amount=body.amount,
                                                   expected_version=expected))


@router.post("/v1/cases/{case_id}/record-recovery")
def record_recovery(case_id: str, body: AmountIn, principal: PrincipalDep, aftercare: AftercareDep,
                    expected: ExpectedVersion) -> JSONResponse:
    """A (partial) repayment; more than is owed → 409 amount_exceeds_owed."""
    return _case_response(aftercare.record_recovery(principal, _case_id(case_id), amount=body.amount,
                                                    expected_version=expected))


@router.post("/v1/cases/{case_id}/record-integrity-violation")
def record_integrity_violation(case_id: str, body: IntegrityViolationIn, principal: PrincipalDep,
                               aftercare: AftercareDep, expected: ExpectedVersion) -> JSONResponse:
    return _case_response(aftercare.record_integrity_violation(
        principal, _case_id(case_id), person=body.person, id_number=body.id_number, description=body.description,
        expected_version=expected))


# ---------------------------------------------------------------------------------------------- schools


def _sample_body(result: SampleResult) -> dict[str, Any]:
    sample = result.sample
    return {"sample_id": str(sample.id), "school_id": sample.school_id, "semester": sample.semester,
            "seed": sample.seed, "deadline": sample.deadline, "profile_version": sample.profile_version,
            "drawn_at": sample.created_on, "drawn_now": result.created,
            "levels": [{"level": s["name"], "required_share": s["rate"], "population": s["population"],
                        "required": s["required"], "drawn": s["drawn"]} for s in sample.strata]}


@router.post("/v1/schools/{school_id}/follow-ups/sample")
def draw_sample(school_id: str, principal: PrincipalDep, aftercare: AftercareDep,
                body: SampleIn | None = None) -> JSONResponse:
    """Draws the semester's follow-up sample (201), or returns the one already drawn, unchanged (200)."""
    body = body or SampleIn()
    result = aftercare.draw_follow_up_sample(principal, school_id, semester=body.semester, seed=body.seed)
    return _answer(_sample_body(result), 201 if result.created else 200, result.position)


@router.get("/v1/schools/{school_id}/follow-ups")
def follow_ups(school_id: str, principal: PrincipalDep, services: ServicesDep, aftercare: AftercareDep,
               semester: str | None = None, min_position: MinPosition = None) -> JSONResponse:
    position = _await_view(services, "follow_ups", min_position)
    if isinstance(position, JSONResponse):
        return position
    return _answer(aftercare.follow_up_status(principal, school_id, semester), view_position=position)


@router.get("/v1/schools/{school_id}/home-visits")
def home_visits(school_id: str, principal: PrincipalDep, services: ServicesDep, aftercare: AftercareDep,
                academic_year: Year = None, min_position: MinPosition = None) -> JSONResponse:
    position = _await_view(services, "home_visits", min_position)
    if isinstance(position, JSONResponse):
        return position
    return _answer(aftercare.home_visit_coverage(principal, school_id, academic_year), view_position=position)


@router.get("/v1/schools/{school_id}/aid")
def aid_list(school_id: str, principal: PrincipalDep, services: ServicesDep, aftercare: AftercareDep,
             academic_year: Year = None, min_position: MinPosition = None) -> JSONResponse:
    position = _await_view(services, "ledger", min_position)
    if isinstance(position, JSONResponse):
        return position
    return _answer(aftercare.aid_list(principal, school_id, academic_year), view_position=position)


@router.get("/v1/schools/{school_id}/aid/under-target")
def under_target(school_id: str, principal: PrincipalDep, services: ServicesDep, aftercare: AftercareDep,
                 academic_year: Year = None, min_position: MinPosition = None) -> JSONResponse:
    position = _await_view(services, "ledger", min_position)
    if isinstance(position, JSONResponse):
        return position
    return _answer(aftercare.aid_list(principal, school_id, academic_year, under_target=True),
                   view_position=position)


@router.get("/v1/schools/{school_id}/ledger")
def school_ledger(school_id: str, principal: PrincipalDep, services: ServicesDep, aftercare: AftercareDep,
                  academic_year: Year = None, min_position: MinPosition = None) -> JSONResponse:
    position = _await_view(services, "ledger", min_position)
    if isinstance(position, JSONResponse):
        return position
    return _answer(aftercare.school_ledger(principal, school_id, academic_year), view_position=position)


# ---------------------------------------------------------------------------------------------- regions


@router.get("/v1/regions/{region_code}/ledger")
def region_ledger(region_code: str, principal: PrincipalDep, services: ServicesDep, aftercare: AftercareDep,
                  academic_year: Year = None, min_position: MinPosition = None) -> JSONResponse:
    position = _await_view(services, "ledger", min_position)
    if isinstance(position, JSONResponse):
        return position
    return _answer(aftercare.region_ledger(principal, region_code, academic_year), view_position=position)


@router.post("/v1/regions/{region_code}/spot-checks")
def draw_spot_check(region_code: str, principal: PrincipalDep, services: ServicesDep, spot_checks: SpotChecksDep,
                    body: SpotCheckIn | None = None) -> JSONResponse:
    """Draws schools, then cases in each, at random with a recorded seed (201); the same seed again returns the
    same check (200). Sizes: n = min(N, max(min, min(max, ceil(rate × N)))) with the profile's `spot_check`."""
    body = body or SpotCheckIn()
    result = spot_checks.draw(principal, region_code, academic_year=body.academic_year, seed=body.seed,
                              due_on=body.due_on)
    return _answer(check_state(result.check, services.clock.today()), 201 if result.created else 200,
                   result.position)


@router.get("/v1/regions/{region_code}/spot-checks")
def spot_check_overview(region_code: str, principal: PrincipalDep, services: ServicesDep,
                        spot_checks: SpotChecksDep, academic_year: Year = None,
                        min_position: MinPosition = None) -> JSONResponse:
    position = _await_view(services, "spot_checks", min_position)
    if isinstance(position, JSONResponse):
        return position
    return _answer(spot_checks.overview(principal, region_code, academic_year), view_position=position)


@router.get("/v1/regions/{region_code}/spot-checks/{check_id}")
def spot_check(region_code: str, check_id: str, principal: PrincipalDep, services: ServicesDep,
               spot_checks: SpotChecksDep) -> JSONResponse:
    return _answer(check_state(spot_checks.get(principal, region_code, check_id), services.clock.today()))


@router.post("/v1/regions/{region_code}/spot-checks/{check_id}/assign")
def assign_spot_check(region_code: str, check_id: str, body: AssignIn, principal: PrincipalDep,
                      services: ServicesDep, spot_checks: SpotChecksDep) -> JSONResponse:
    """Assigns drawn cases (all without a finding when `case_ids` is omitted) to an inspector (a token sub)."""
    check, position = spot_checks.assign(principal, region_code, check_id, inspector=body.inspector,
                                         case_ids=body.case_ids)
    return _answer(check_state(check, services.clock.today()), position=position)


@router.post("/v1/regions/{region_code}/spot-checks/{check_id}/results")
def record_spot_check_result(region_code: str, check_id: str, body: ResultIn, principal: PrincipalDep,
                             services: ServicesDep, spot_checks: SpotChecksDep) -> JSONResponse:
    """The assigned inspector's finding on one drawn case."""
    check, position = spot_checks.record_result(principal, region_code, check_id, case_id=body.case_id,
                                                finding=body.finding, checked_on=body.checked_on,
                                                notes=body.notes, attachments=body.attachments)
    return _answer(check_state(check, services.clock.today()), position=position)


# ---------------------------------------------------------------------------------------------- integrity records


@router.get("/v1/integrity-records")
def integrity_records(principal: PrincipalDep, services: ServicesDep, aftercare: AftercareDep,
                      id_number: Annotated[str, Query(min_length=1, max_length=18)],
                      min_position: MinPosition = None) -> JSONResponse:
    """A person's dishonesty records: auditors and bureaus; a school only about persons on its own cases (else
    404); applicants and evaluators 403."""
    position = _await_view(services, "integrity_register", min_position)
    if isinstance(position, JSONResponse):
        return position
    return _answer(aftercare.integrity_records(principal, id_number), view_position=position)
