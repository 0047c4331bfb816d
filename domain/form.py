"""The application form (附表1): the rules a form must satisfy before it becomes an `Applied` event."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from domain.errors import ValidationFailed
from domain.values import Category, Stage, parse_enum, validate_academic_year, validate_resident_id

APPLICANTS = frozenset({"student", "guardian"})
SUDDEN_EVENT_KINDS = frozenset({"natural_disaster", "accident", "serious_illness", "death_of_earner", "other"})


def _amount(value: Any, field: str, *, allow_zero: bool = True) -> str:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationFailed("must be a decimal amount in CNY", field=field) from None
    if not amount.is_finite() or amount < 0 or (amount == 0 and not allow_zero):
        raise ValidationFailed("must not be negative", field=field)
    if amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValidationFailed("at most two decimals (fen)", field=field)
    return str(amount.quantize(Decimal("0.01")))


def _region(value: Any, field: str) -> str:
    code = str(value or "")
    if not (len(code) == 6 and code.isdigit() and code[0] != "0"):
        raise ValidationFailed("a region code (行政区划代码) has six digits", field=field)
    return code


def normalise_form(form: Mapping[str, Any], *, today: date) -> dict[str, Any]:
    """Checks an application form and returns it in canonical shape (money as 2-decimal strings)."""
    if form.get("attestation") is not True:
        raise ValidationFailed("the applicant must attest that the information is true (承诺)", field="attestation")
    year = validate_academic_year(str(form.get("academic_year", "")))
    student = dict(form.get("student") or {})
    student["id_number"] = validate_resident_id(student.get("id_number", ""), "student.id_number", today=today)
    for key in ("name", "school_id", "class_id"):
        if not str(student.get(key) or "").strip():
            raise ValidationFailed("is required", field=f"student.{key}")
        student[key] = str(student[key]).strip()
    student["stage"] = parse_enum(Stage, student.get("stage"), "student.stage").value
    household = dict(form.get("household") or {})
    household["region_code"] = _region(household.get("region_code"), "household.region_code")
    size = household.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 30:
        raise ValidationFailed("household size is a whole number from 1 to 30", field="household.size")
    household["annual_income"] = _amount(household.get("annual_income", "0"), "household.annual_income")
    household["debts"] = _amount(household.get("debts", "0") or "0", "household.debts")
    if "property" in household and household["property"] is not None:
        household["property"] = _amount(household["property"], "household.property")
    members = []
    for i, raw in enumerate(household.get("members") or []):
        member = dict(raw)
        age = member.get("age")
        if age is not None and (not isinstance(age, int) or isinstance(age, bool) or not 0 <= age <= 130):
            raise ValidationFailed("age is a whole number from 0 to 130", field=f"household.members[{i}].age")
        if "annual_income" in member and member["annual_income"] is not None:
            member["annual_income"] = _amount(member["annual_income"], f"household.members[{i}].annual_income")
        members.append(member)
    household["members"] = members
    claimed = []
    for i, value in enumerate(form.get("claimed_categories") or []):
        category = parse_enum(Category, value, f"claimed_categories[{i}]").value
        if category in claimed:
            raise ValidationFailed("a category is claimed once", field=f"claimed_categories[{i}]")
        claimed.append(category)
    events = []
    for i, raw in enumerate(form.get("sudden_events") or []):
        item = dict(raw)
        if item.get("kind") not in SUDDEN_EVENT_KINDS:
            raise ValidationFailed(f"kind must be one of {sorted(SUDDEN_EVENT_KINDS)}",
                                   field=f"sudden_events[{i}].kind")
        occurred = item.get("occurred_on")
        if occurred is not None:
            try:
                when = date.fromisoformat(str(occurred))
            except ValueError:
                raise ValidationFailed("must be a date (YYYY-MM-DD)", field=f"sudden_events[{i}].occurred_on") from None
            if when > today:
                raise ValidationFailed("cannot be in the future", field=f"sudden_events[{i}].occurred_on")
            item["occurred_on"] = when.isoformat()
        item["loss"] = _amount(item.get("loss", "0") or "0", f"sudden_events[{i}].loss")
        events.append(item)
    other = dict(form.get("other") or {})
    if "medical_costs" in other and other["medical_costs"] is not None:
        other["medical_costs"] = _amount(other["medical_costs"], "other.medical_costs")
    for key in ("siblings_in_school", "children_in_noncompulsory_schooling"):
        if key in other and other[key] is not None:
            value = other[key]
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 20:
                raise ValidationFailed("a whole number from 0 to 20", field=f"other.{key}")
    applicant = str(form.get("applicant") or "guardian")
    if applicant not in APPLICANTS:
        raise ValidationFailed("applicant is student or guardian", field="applicant")
    result = {k: v for k, v in form.items()}
    result.update(academic_year=year, student=student, household=household, claimed_categories=claimed,
                  sudden_events=events, other=other, applicant=applicant, attestation=True)
    return result
