"""Test helpers shared by every layer: resident ID numbers, application forms, tokens and actors."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.values import Actor, Role, check_digit

T0 = datetime(2025, 9, 15, 9, 0, tzinfo=UTC)
GX_SCHOOL = "S4501030001"
JS_SCHOOL = "S3201020001"


def id_number(seq: int, region: str = "450103", born: str = "20100101") -> str:
    """A valid 18-character resident ID number (GB 11643 check digit), distinct per seq."""
    first17 = f"{region}{born}{seq % 1000:03d}"
    return first17 + check_digit(first17)


def form(seq: int = 1, *, school_id: str = GX_SCHOOL, class_id: str = "G10-3", region: str = "450103",
         year: str = "2025-2026", claimed: list[str] | None = None, **overrides: Any) -> dict[str, Any]:
    """The minimum application body of API.md, for student number `seq`."""
    body: dict[str, Any] = {
        "academic_year": year,
        "student": {"id_number": id_number(seq, region=region), "name": "韦小明", "school_id": school_id,
                    "class_id": class_id, "stage": "senior_secondary"},
        "household": {"region_code": region, "size": 4, "annual_income": "18000.00", "debts": "30000.00",
                      "members": [{"relation": "father", "age": 46, "occupation": "farmer",
                                   "health": "chronic_illness", "annual_income": "9000.00"}]},
        "claimed_categories": ["minimum_living_allowance"] if claimed is None else claimed,
        "sudden_events": [{"kind": "serious_illness", "occurred_on": "2025-03-01", "loss": "50000.00"}],
        "other": {"siblings_in_school": 1, "medical_costs": "12000.00"},
        "attestation": True,
    }
    merged = copy.deepcopy(body)
    merged.update(overrides)
    return merged


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


STAFF = Actor("staff-1", Role.SCHOOL)
GUARDIAN = Actor("guardian-1", Role.APPLICANT)
EVALUATOR = Actor("teacher-1", Role.EVALUATOR)
