"""Integrity records (诚信记录) through HTTP on SQLite and PostgreSQL: who may ask about whom (the visibility
matrix), records following a person across years and schools, and no plain ID number in the register."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import TokenFactory
from tests.e2e.aftercare_support import Open, identified, open_service, services_of
from tests.support import GX_SCHOOL, JS_SCHOOL, form, id_number

STUDENT = id_number(1)
GUARDIAN = id_number(901, born="19800101")
JS_STUDENT = id_number(2, region="320102")
HOUSEHOLD = {"region_code": "450103", "size": 4, "annual_income": "18000.00", "debts": "0.00",
             "guardian_id_number": GUARDIAN, "members": []}


@pytest.fixture
def service_at(database_url: str) -> Iterator[Open]:
    yield from open_service(database_url)


def query(client: TestClient, headers: dict[str, str], number: str, position: str | None = None) -> Any:
    extra = {"X-Min-Position": position} if position else {}
    return client.get("/v1/integrity-records", params={"id_number": number}, headers={**headers, **extra})


def setup_records(client: TestClient, auth: TokenFactory) -> tuple[str, str]:
    """A Guangxi case revoked as dishonest, with a violation of its guardian; a Jiangsu case with none."""
    school = auth("school", school=GX_SCHOOL)
    case_id = identified(client, 1, household=HOUSEHOLD)
    identified(client, 2, school=JS_SCHOOL, region="320102")
    client.post(f"/v1/cases/{case_id}/grant-aid", headers=school,
                json={"programme": "national_grant", "amount": "1000.00"})
    revoked = client.post(f"/v1/cases/{case_id}/revoke", headers=school,
                          json={"reason": "forged the village committee's income statement", "dishonest": True})
    assert revoked.status_code == 200, revoked.text
    guardian = client.post(f"/v1/cases/{case_id}/record-integrity-violation", headers=auth("bureau", region="450100"),
                           json={"person": "guardian", "id_number": GUARDIAN,
                                 "description": "signed the false statement"})
    assert guardian.status_code == 200, guardian.text
    return case_id, guardian.headers["X-Min-Position"]


def test_the_visibility_matrix_of_integrity_records(service_at: Open, auth: TokenFactory) -> None:
    client = service_at()
    case_id, position = setup_records(client, auth)
    # caller → (status, case_id shown, school_id shown) for the student's record
    matrix: list[tuple[str, dict[str, str], int, str | None, str | None]] = [
        ("auditor", auth("auditor"), 200, case_id, GX_SCHOOL),
        ("province bureau", auth("bureau", region="450000"), 200, case_id, GX_SCHOOL),
        ("city bureau", auth("bureau", region="450100"), 200, case_id, GX_SCHOOL),
        ("other province's bureau", auth("bureau", region="320000"), 200, None, GX_SCHOOL),
        ("the case's school", auth("school", school=GX_SCHOOL), 200, case_id, GX_SCHOOL),
        ("another school, same county", auth("school", school="S4501030002"), 404, None, None),
        ("another province's school", auth("school", school=JS_SCHOOL), 404, None, None),
        ("the case's class evaluator", auth("evaluator", school=GX_SCHOOL, class_id="G10-3"), 403, None, None),
        ("the applicant themself", auth("applicant", student=STUDENT), 403, None, None),
    ]
    wrong = []
    for name, headers, status, shown_case, shown_school in matrix:
        answer = query(client, headers, STUDENT, position)
        got: tuple[Any, ...] = (answer.status_code,)
        if answer.status_code == 200:
            (record,) = answer.json()["records"]
            got += (record["case_id"], record["school_id"])
            assert record["person"] == "student" and record["origin"] == "revocation"
            assert record["description"] == "forged the village committee's income statement"
            assert record["academic_year"] == "2025-2026" and record["province_code"] == "45"
        else:
            assert answer.headers["content-type"].startswith("application/problem+json")
            got += (None, None)
        if got != (status, shown_case, shown_school):
            wrong.append((name, got))
        assert STUDENT not in answer.text
    assert wrong == []


def test_guardians_are_asked_about_by_the_school_whose_form_names_them(service_at: Open,
                                                                      auth: TokenFactory) -> None:
    client = service_at()
    _, position = setup_records(client, auth)
    mine = query(client, auth("school", school=GX_SCHOOL), GUARDIAN, position)
    assert mine.status_code == 200
    (record,) = mine.json()["records"]
    assert record["person"] == "guardian" and record["origin"] == "violation"
    assert query(client, auth("school", school=JS_SCHOOL), GUARDIAN, position).status_code == 404
    own_clean = query(client, auth("school", school=JS_SCHOOL), JS_STUDENT, position)
    assert own_clean.status_code == 200 and own_clean.json()["count"] == 0
    assert query(client, auth("auditor"), "450103201001010019", position).status_code == 422


def test_a_record_follows_the_person_to_another_school_and_year(service_at: Open, auth: TokenFactory) -> None:
    client = service_at()
    case_id, _ = setup_records(client, auth)
    js_school = auth("school", school=JS_SCHOOL)
    assert query(client, js_school, STUDENT).status_code == 404  # not yet one of its students

    moved = client.post("/v1/cases", headers=auth("applicant", student=STUDENT),
                        json=form(1, school_id=JS_SCHOOL, year="2026-2027"))
    assert moved.status_code == 201, moved.text
    answer = query(client, js_school, STUDENT, moved.headers["X-Min-Position"])
    assert answer.status_code == 200
    (record,) = answer.json()["records"]
    assert record["academic_year"] == "2025-2026" and record["description"].startswith("forged")
    assert (record["case_id"], record["school_id"]) == (None, None)  # made at another school
    assert case_id not in answer.text


def test_the_register_keeps_keyed_hashes_never_the_number(service_at: Open, auth: TokenFactory) -> None:
    client = service_at()
    _, position = setup_records(client, auth)
    services = services_of(client)
    assert services.projections.wait_for("integrity_register", int(position))
    tables = services.projections.active_tables("integrity_register")
    stored = []
    with services.engine.connect() as conn:
        for table in tables.values():
            stored += [str(value) for row in conn.execute(select(table)) for value in row]
    text = "|".join(stored)
    assert STUDENT not in text and GUARDIAN not in text and JS_STUDENT not in text
    for number in (STUDENT, GUARDIAN):  # a plain (unkeyed) hash would be enumerable: none is stored
        assert hashlib.sha256(number.encode()).hexdigest() not in text
    records = tables["records"]
    with services.engine.connect() as conn:
        keys = {row.person for row in conn.execute(select(records.c.person))}
    assert keys == {"student", "guardian"}
