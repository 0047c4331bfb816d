"""Least privilege: what each role sees of a case's personal data, and the access log of unmasked readings."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.masking import MASK, View, mask
from tests.conftest import TokenFactory
from tests.support import GX_SCHOOL, form, id_number

STUDENT = id_number(7)


def application() -> dict[str, Any]:
    body = form(7, claimed=["minimum_living_allowance", "disabled"])
    body["student"]["address"] = "南宁市青秀区某街道12号"
    body["student"]["phone"] = "13800138000"
    body["household"]["members"][0].update(name="韦大山", phone="13912345678", id_number=id_number(8))
    return body


@pytest.fixture
def case_id(client: TestClient, auth: TokenFactory) -> str:
    created = client.post("/v1/cases", json=application(), headers=auth("school", school=GX_SCHOOL))
    assert created.status_code == 201, created.text
    case = created.json()["id"]
    verified = client.post(f"/v1/cases/{case}/verify", headers=auth("school", school=GX_SCHOOL),
                           json={"method": "document", "confirmed_categories": ["minimum_living_allowance"]})
    assert verified.status_code == 200, verified.text
    assessed = client.post(f"/v1/cases/{case}/assess", headers=auth("school", school=GX_SCHOOL), json={})
    assert assessed.status_code == 200, assessed.text
    return str(case)


def test_applicant_and_school_see_the_whole_application(client: TestClient, auth: TokenFactory,
                                                        case_id: str) -> None:
    for headers in (auth("applicant", student=STUDENT), auth("school", school=GX_SCHOOL)):
        state = client.get(f"/v1/cases/{case_id}", headers=headers).json()
        assert state["application"]["student"]["id_number"] == STUDENT
        assert state["application"]["student"]["phone"] == "13800138000"
        assert state["application"]["claimed_categories"] == ["minimum_living_allowance", "disabled"]
        assert state["verification"]["confirmed"][0]["source"] == "document"


def test_the_class_group_sees_the_economics_but_no_identifiers_or_categories(client: TestClient,
                                                                            auth: TokenFactory,
                                                                            case_id: str) -> None:
    evaluator = auth("evaluator", school=GX_SCHOOL, class_id="G10-3")
    state = client.get(f"/v1/cases/{case_id}", headers=evaluator).json()
    student = state["application"]["student"]
    assert student["id_number"] == STUDENT[:3] + "*" * 11 + STUDENT[-4:]
    assert student["phone"] == "138****8000" and student["address"] == MASK
    assert student["name"] == "韦小明"  # the class knows its classmates
    member = state["application"]["household"]["members"][0]
    assert (member["relation"], member["occupation"], member["annual_income"]) == ("father", "farmer", "9000.00")
    assert member["name"] == "韦**" and id_number(8) not in str(member)
    assert state["application"]["claimed_categories"] == MASK
    assert state["verification"]["confirmed"] == MASK and state["verification"]["discrepancies"] == MASK
    revealing = [b for b in state["assessment"]["breakdown"] if b["kind"] in {"categories", "direct_identification"}]
    assert revealing and all(b["detail"] == MASK and b["item"] == MASK for b in revealing)
    # A reason does not lift the mask for the class group.
    again = client.get(f"/v1/cases/{case_id}", params={"reason": "I want to know"}, headers=evaluator)
    assert STUDENT not in again.text
    events = client.get(f"/v1/cases/{case_id}/events", headers=evaluator).text
    assert STUDENT not in events and "minimum_living_allowance" not in events and "13800138000" not in events


def test_officials_see_the_course_but_not_the_person_unless_they_state_why(client: TestClient,
                                                                          auth: TokenFactory,
                                                                          case_id: str) -> None:
    for headers in (auth("bureau", region="450000"), auth("auditor")):
        masked = client.get(f"/v1/cases/{case_id}", headers=headers)
        state = masked.json()
        assert state["status"] == "assessed" and state["assessment"]["score"]
        assert state["application"]["household"]["members"] == MASK
        assert state["application"]["student"]["name"] == "韦**"
        assert STUDENT not in masked.text and "disabled" not in masked.text
    assert client.get("/v1/audit/access-log", headers=auth("auditor")).json()["items"] == []

    reasoned = client.get(f"/v1/cases/{case_id}/events", headers=auth("auditor", sub="auditor-7"),
                          params={"reason": "complaint 2025-118 about this rating"})
    assert STUDENT in reasoned.text
    purposed = client.get(f"/v1/cases/{case_id}", headers=auth("bureau", sub="official-3", region="450000"),
                          params={"purpose": "spot check of school S4501030001"})
    assert purposed.json()["application"]["student"]["id_number"] == STUDENT

    log = client.get("/v1/audit/access-log", headers=auth("auditor", sub="auditor-9")).json()["items"]
    assert [(e["who"], e["case_id"], e["resource"], e["reason"]) for e in log] == [
        ({"sub": "auditor-7", "role": "auditor"}, case_id, "GET /v1/cases/{case_id}/events",
         "complaint 2025-118 about this rating"),
        ({"sub": "official-3", "role": "bureau"}, case_id, "GET /v1/cases/{case_id}",
         "spot check of school S4501030001"),
    ]
    assert log[0]["at"].startswith("2025-09-15")
    only_bureau = client.get("/v1/audit/access-log", headers=auth("auditor"), params={"sub": "official-3"})
    assert [e["who"]["sub"] for e in only_bureau.json()["items"]] == ["official-3"]


def test_a_reason_too_short_to_mean_anything_is_refused(client: TestClient, auth: TokenFactory,
                                                        case_id: str) -> None:
    response = client.get(f"/v1/cases/{case_id}", params={"reason": "x"}, headers=auth("auditor"))
    assert response.status_code == 422 and response.json()["code"] == "validation_failed"


def test_the_access_log_is_for_auditors_only(client: TestClient, auth: TokenFactory) -> None:
    for headers in (auth("bureau", region="450000"), auth("school", school=GX_SCHOOL)):
        assert client.get("/v1/audit/access-log", headers=headers).status_code == 403


def test_masking_is_by_key_anywhere_and_leaves_the_original_alone() -> None:
    body = {"extra": {"deep": [{"id_number": "450103201001010016", "mobile": "13800138000"}]}, "score": "90"}
    masked = mask(body, View.CLASS)
    assert masked == {"extra": {"deep": [{"id_number": "450***********0016", "mobile": "138****8000"}]},
                      "score": "90"}
    assert body["extra"]["deep"][0]["id_number"] == "450103201001010016"
    assert mask(body, View.FULL) is body
