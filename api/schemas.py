"""Request and response shapes of the HTTP interface (API.md). Requests are checked for types here; the domain
checks the rules (resident ID check digit, attestation, categories) and both answer 422 naming the field."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.case import StudentCase

Money = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)]
PositiveMoney = Annotated[Decimal, Field(gt=0, max_digits=14, decimal_places=2)]
Text = Annotated[str, Field(max_length=4000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Short = Annotated[str, Field(max_length=200)]
Phone = Annotated[str, Field(max_length=32)]
IdNumber = Annotated[str, Field(min_length=1, max_length=18)]
# Factor values a policy profile may score under `other` (its own names): plain scalars only.
FactorValue = Annotated[str, Field(max_length=200)] | int | float | bool | None
FACTOR_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class StudentIn(Strict):
    id_number: IdNumber
    name: Annotated[str, Field(min_length=1, max_length=100)]
    school_id: Annotated[str, Field(min_length=1, max_length=32)]
    class_id: Annotated[str, Field(min_length=1, max_length=64)]
    stage: str
    # Optional personal details: kept in the case, masked for roles that do not need them (api/masking.py).
    address: Short | None = None
    phone: Phone | None = None
    date_of_birth: date | None = None
    gender: Annotated[str, Field(max_length=16)] | None = None
    ethnicity: Annotated[str, Field(max_length=32)] | None = None
    student_number: Annotated[str, Field(max_length=64)] | None = None
    notes: Text | None = None


class MemberIn(Strict):
    relation: Annotated[str, Field(min_length=1, max_length=32)]
    age: Annotated[int, Field(ge=0, le=130)] | None = None
    occupation: Annotated[str, Field(max_length=64)] | None = None
    health: Annotated[str, Field(max_length=64)] | None = None
    annual_income: Money | None = None
    name: Annotated[str, Field(max_length=100)] | None = None
    phone: Phone | None = None
    id_number: IdNumber | None = None
    employer: Short | None = None
    disability: Short | None = None
    notes: Text | None = None


class HouseholdIn(Strict):
    region_code: Annotated[str, Field(pattern=r"^\d{6}$")]
    size: Annotated[int, Field(ge=1, le=30)]
    annual_income: Money
    debts: Money = Decimal("0")
    property: Money | None = None
    members: list[MemberIn] = Field(default_factory=list, max_length=30)
    address: Short | None = None
    phone: Phone | None = None
    household_number: Annotated[str, Field(max_length=64)] | None = None
    guardian_name: Annotated[str, Field(max_length=100)] | None = None
    guardian_phone: Phone | None = None
    guardian_id_number: IdNumber | None = None
    guardian_relation: Annotated[str, Field(max_length=32)] | None = None
    notes: Text | None = None


class SuddenEventIn(Strict):
    kind: str
    occurred_on: date | None = None
    loss: Money = Decimal("0")
    description: Text | None = None


class OtherIn(BaseModel):
    """Other burdens. Besides the fields below, the factors a policy profile scores by name (its data, not
    code) are accepted as plain scalars under snake_case names; anything else is refused."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, FactorValue] = Field(init=False)

    siblings_in_school: Annotated[int, Field(ge=0, le=20)] | None = None
    children_in_noncompulsory_schooling: Annotated[int, Field(ge=0, le=20)] | None = None
    medical_costs: Money | None = None
    labour_capacity: Annotated[str, Field(max_length=64)] | None = None
    family_type: Annotated[str, Field(max_length=64)] | None = None
    monthly_consumption: Money | None = None
    notes: Text | None = None

    @model_validator(mode="after")
    def _factor_names(self) -> OtherIn:
        extra = self.__pydantic_extra__ or {}
        bad = sorted(k for k in extra if not FACTOR_NAME.match(k))
        if bad:
            raise ValueError(f"unknown field {bad[0]!r}: other factors have snake_case names")
        if len(extra) > 30:
            raise ValueError("at most 30 further factors")
        return self


class ApplicationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    academic_year: Annotated[str, Field(pattern=r"^\d{4}-\d{4}$")]
    student: StudentIn
    household: HouseholdIn
    claimed_categories: list[str] = Field(default_factory=list, max_length=10)
    sudden_events: list[SuddenEventIn] = Field(default_factory=list, max_length=20)
    other: OtherIn = Field(default_factory=OtherIn)
    applicant: Literal["student", "guardian"] = "guardian"
    attestation: bool


class WithdrawIn(Strict):
    reason: Text = ""


class VerifyIn(Strict):
    method: Literal["data_match", "document", "manual"]
    confirmed_categories: list[str | dict[str, str]] | None = None
    notes: Text = ""


class AssessIn(Strict):
    pass


class PanelMember(Strict):
    sub: Annotated[str, Field(max_length=100)]
    role: Literal["head_teacher", "counsellor", "student_representative", "teacher_representative",
                  "parent_representative", "other"]


class EvaluateIn(Strict):
    """The tally as counted by hand; with no votes at all, the group's leader closes on the recorded ballots."""

    votes_for: Annotated[int, Field(ge=0, le=1000)] | None = None
    votes_against: Annotated[int, Field(ge=0, le=1000)] | None = None
    recommended_level: str | None = None
    panel: list[PanelMember] = Field(default_factory=list, max_length=50)


class RateIn(Strict):
    level: str
    reason: Text | None = None


class CreatedOut(BaseModel):
    id: str
    status: str
    version: int


class EventOut(BaseModel):
    version: int
    type: str
    occurred_at: datetime
    actor: dict[str, str]
    data: dict[str, Any]


def plain(value: Any) -> Any:
    """Event and state values as JSON: Decimal as string (money), dates ISO, enums by value."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    return value


def case_state(case: StudentCase) -> dict[str, Any]:
    """The case as API.md describes it: id, status, level, version, the application and each step's record."""
    state: dict[str, Any] = plain({
        "id": str(case.id),
        "status": case.status,
        "level": case.level,
        "version": case.version,
        "academic_year": case.academic_year,
        "school_id": case.school_id,
        "class_id": case.class_id,
        "profile_version": case.profile_version,
        "created_at": case.created_on,
        "modified_at": case.modified_on,
        "application": case.form,
        "verification": case.verification,
        "assessment": case.assessment,
        "evaluation": case.evaluation,
        "rating": case.rating,
        "publicity": case.publicity,
        "exemption": case.exemption,
        "objections": [
            {k: v for k, v in o.items() if k != "objector"} for o in case.objections.values()
        ],
        "confirmed_on": case.confirmed_on,
        "export_id": case.export_id,
        "follow_up": case.follow_up,
        "home_visits": case.home_visits,
        "readjustments": case.readjustments,
        "aid": {"grants": case.grants, "granted": case.granted, "disbursed": case.disbursed,
                "recovery_ordered": case.recovery_ordered, "recovered": case.recovered,
                "outstanding": case.outstanding},
        "revocation": case.revocation,
        "withdrawal": case.withdrawal,
        "integrity_records": len(case.integrity_records),
    })
    return state
