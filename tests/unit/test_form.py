"""The application form (附表1): what normalise_form accepts, the canonical shape it returns, and each refusal
naming the field."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from domain.errors import InvalidResidentId, ValidationFailed
from domain.form import normalise_form
from domain.values import check_digit
from tests.support import form

TODAY = date(2025, 9, 15)


def test_a_valid_form_comes_back_in_canonical_shape() -> None:
    raw = form(1, claimed=["orphan", "disabled"])
    raw["household"]["annual_income"] = "18000"
    raw["household"]["members"][0]["annual_income"] = 9000
    raw["student"]["name"] = "  韦小明 "
    raw["student"]["id_number"] = raw["student"]["id_number"].lower()
    result = normalise_form(raw, today=TODAY)
    assert result["household"]["annual_income"] == "18000.00"
    assert result["household"]["debts"] == "30000.00"
    assert result["household"]["members"][0]["annual_income"] == "9000.00"
    assert result["sudden_events"] == [{"kind": "serious_illness", "occurred_on": "2025-03-01", "loss": "50000.00"}]
    assert result["other"]["medical_costs"] == "12000.00"
    assert result["student"]["name"] == "韦小明" and result["student"]["id_number"] == form(1)["student"]["id_number"]
    assert result["claimed_categories"] == ["orphan", "disabled"]
    assert result["applicant"] == "guardian" and result["attestation"] is True


def _set(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target: Any = body
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is KeyError:
        del target[last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value


@pytest.mark.parametrize(("path", "value", "field"), [
    ("household.annual_income", "-1.00", "household.annual_income"),
    ("household.annual_income", "100.001", "household.annual_income"),
    ("household.annual_income", "lots", "household.annual_income"),
    ("household.debts", "-5", "household.debts"),
    ("household.members.0.annual_income", "-9000", "household.members[0].annual_income"),
    ("household.members.0.age", 131, "household.members[0].age"),
    ("household.region_code", "45010", "household.region_code"),
    ("household.region_code", "050103", "household.region_code"),
    ("household.size", 0, "household.size"),
    ("household.size", True, "household.size"),
    ("attestation", KeyError, "attestation"),
    ("attestation", False, "attestation"),
    ("attestation", "yes", "attestation"),
    ("claimed_categories", ["orphan", "rich_uncle"], "claimed_categories[1]"),
    ("claimed_categories", ["orphan", "orphan"], "claimed_categories[1]"),
    ("sudden_events.0.occurred_on", "2025-09-16", "sudden_events[0].occurred_on"),
    ("sudden_events.0.occurred_on", "last spring", "sudden_events[0].occurred_on"),
    ("sudden_events.0.kind", "bad_luck", "sudden_events[0].kind"),
    ("sudden_events.0.loss", "-1", "sudden_events[0].loss"),
    ("other.medical_costs", "-12000", "other.medical_costs"),
    ("other.siblings_in_school", 21, "other.siblings_in_school"),
    ("student.name", "  ", "student.name"),
    ("student.class_id", KeyError, "student.class_id"),
    ("student.stage", "kindergarten", "student.stage"),
    ("academic_year", "2025-2027", "academic_year"),
    ("applicant", "neighbour", "applicant"),
])
def test_each_malformed_value_is_refused_naming_its_field(path: str, value: Any, field: str) -> None:
    body = form(1)
    _set(body, path, value)
    with pytest.raises(ValidationFailed) as caught:
        normalise_form(body, today=TODAY)
    assert caught.value.field == field


def test_a_wrong_resident_id_or_one_born_after_today_is_refused() -> None:
    body = form(1)
    number = body["student"]["id_number"]
    body["student"]["id_number"] = number[:-1] + ("0" if number[-1] != "0" else "1")
    with pytest.raises(InvalidResidentId) as caught:
        normalise_form(body, today=TODAY)
    assert caught.value.field == "student.id_number"
    unborn = "45010320251001001"
    body["student"]["id_number"] = unborn + check_digit(unborn)
    with pytest.raises(InvalidResidentId, match="impossible birth date"):
        normalise_form(body, today=TODAY)


def test_a_sudden_event_of_today_is_accepted() -> None:
    body = form(1)
    body["sudden_events"][0]["occurred_on"] = TODAY.isoformat()
    assert normalise_form(body, today=TODAY)["sudden_events"][0]["occurred_on"] == "2025-09-15"
