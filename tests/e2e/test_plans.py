"""One student, one plan through HTTP on SQLite and PostgreSQL: the plan of an identified student, its aid list
against the case's grants, help items and actions with their owners, scope, and the year-end review."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TokenFactory
from tests.e2e.aftercare_support import Open, identified, open_service
from tests.e2e.steps import apply as apply_case
from tests.e2e.steps import problem
from tests.support import GX_SCHOOL, JS_SCHOOL, id_number

GX_OTHER = "S4501030002"


@pytest.fixture
def open_client(database_url: str) -> Iterator[Open]:
    yield from open_service(database_url)


def make_plan(client: TestClient, auth: TokenFactory, case_id: str) -> dict[str, Any]:
    response = client.post(f"/v1/cases/{case_id}/plan", headers=auth("school", school=GX_SCHOOL))
    assert response.status_code == 201, response.text
    return response.json()


def grant(client: TestClient, auth: TokenFactory, case_id: str, programme: str, amount: str,
          **extra: str) -> Any:
    return client.post(f"/v1/cases/{case_id}/grant-aid", json={"programme": programme, "amount": amount, **extra},
                       headers=auth("school", school=GX_SCHOOL))


def lines(plan: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {line["programme"]: (line["planned"], line["granted"], line["status"]) for line in plan["aid"]["lines"]}


def test_an_identified_student_gets_the_aid_list_of_their_level(open_client: Open, auth: TokenFactory) -> None:
    client = open_client()
    case_id = identified(client, 1)
    plan = make_plan(client, auth, case_id)
    assert plan["case_id"] == case_id and plan["level"] == "especially_difficult" and plan["version"] == 1
    assert lines(plan) == {"national_grant": ("2500.00", "0.00", "short"),
                           "accommodation_subsidy": ("500.00", "0.00", "short")}
    assert (plan["aid"]["target"], plan["aid"]["granted"], plan["aid"]["status"]) == ("3000.00", "0.00",
                                                                                      "shortfall")
    assert client.get(f"/v1/cases/{case_id}/plan", headers=auth("school", school=GX_SCHOOL)).json()["id"] == \
        plan["id"]
    mine = client.get(f"/v1/plans/{plan['id']}", headers=auth("applicant", student=id_number(1)))
    assert mine.status_code == 200 and mine.json()["aid"]["target"] == "3000.00"
    problem(client.get(f"/v1/plans/{plan['id']}", headers=auth("applicant", student=id_number(2))), 404,
            "not_found")
    problem(client.get(f"/v1/plans/{plan['id']}", headers=auth("evaluator", school=GX_SCHOOL, class_id="G10-3")),
            403, "forbidden")
    problem(client.get(f"/v1/cases/{case_id}/plan", headers=auth("school", school=GX_OTHER)), 404, "not_found")
    problem(client.post(f"/v1/cases/{case_id}/plan", headers=auth("school", school=GX_SCHOOL)), 409, "plan_exists")


def test_only_identified_students_get_a_plan(open_client: Open, auth: TokenFactory) -> None:
    client = open_client()
    pending = apply_case(client, auth, 5)
    problem(client.post(f"/v1/cases/{pending}/plan", headers=auth("school", school=GX_SCHOOL)), 409,
            "case_not_identified")
    problem(client.get(f"/v1/cases/{pending}/plan", headers=auth("school", school=GX_SCHOOL)), 404, "not_found")
    problem(client.post(f"/v1/cases/{pending}/plan", headers=auth("school", school=GX_OTHER)), 404, "not_found")


def test_the_plan_shows_what_was_granted_against_the_target(open_client: Open, auth: TokenFactory) -> None:
    client = open_client()
    case_id = identified(client, 2, level="difficult")
    make_plan(client, auth, case_id)
    assert grant(client, auth, case_id, "national_grant", "1500.00").status_code == 200
    assert grant(client, auth, case_id, "emergency_aid", "800.00").status_code == 200
    plan = client.get(f"/v1/cases/{case_id}/plan", headers=auth("school", school=GX_SCHOOL)).json()
    assert lines(plan) == {"national_grant": ("2000.00", "1500.00", "short")}
    assert (plan["aid"]["granted"], plan["aid"]["emergency"], plan["aid"]["total_granted"],
            plan["aid"]["shortfall"]) == ("1500.00", "800.00", "2300.00", "500.00")
    # Past the target only with an override reason (过度资助), and the plan then shows the over-aid.
    problem(grant(client, auth, case_id, "tuition_waiver", "600.00"), 409, "over_aid")
    assert grant(client, auth, case_id, "tuition_waiver", "600.00",
                 override_reason="学费减免按政策全额").status_code == 200
    plan = client.get(f"/v1/cases/{case_id}/plan", headers=auth("school", school=GX_SCHOOL)).json()
    assert lines(plan)["tuition_waiver"] == ("0.00", "600.00", "over")
    assert (plan["aid"]["status"], plan["aid"]["over_aid"]) == ("over_aid", "100.00")


def test_owners_record_actions_on_help_items(open_client: Open, auth: TokenFactory) -> None:
    client = open_client()
    case_id = identified(client, 3)
    plan = make_plan(client, auth, case_id)
    staff = auth("school", school=GX_SCHOOL)
    added = client.post(f"/v1/plans/{plan['id']}/items", headers={**staff, "If-Match": '"1"'},
                        json={"kind": "psychological_support", "description": "每月一次谈心谈话"})
    assert added.status_code == 201, added.text
    assert added.json()["item_id"] == "I1" and added.headers["ETag"] == '"2"'
    item = added.json()["items"][0]
    assert (item["owner"], item["owner_name"]) == ("counselling", "心理")
    career = client.post(f"/v1/plans/{plan['id']}/items", headers=staff,
                         json={"kind": "employment_guidance", "owner": "employment", "description": "实习推荐",
                               "due_on": "2026-05-31"})
    assert career.json()["item_id"] == "I2"
    acted = client.post(f"/v1/plans/{plan['id']}/items/I1/actions", headers=staff,
                        json={"description": "首次谈话", "outcome": "情绪稳定，学习有计划", "acted_on": "2025-09-12"})
    assert acted.status_code == 201, acted.text
    assert acted.json()["items"][0]["actions"] == [{"description": "首次谈话", "outcome": "情绪稳定，学习有计划",
                                                    "acted_on": "2025-09-12", "recorded_by": "school-1"}]
    problem(client.post(f"/v1/plans/{plan['id']}/items/I1/actions", headers=auth("school", school=GX_OTHER),
                        json={"description": "x"}), 404, "not_found")
    problem(client.post(f"/v1/plans/{plan['id']}/items/I9/actions", headers=staff, json={"description": "x"}),
            404, "not_found")
    problem(client.post(f"/v1/plans/{plan['id']}/items", headers={**staff, "If-Match": '"1"'},
                        json={"kind": "skills", "description": "x"}), 412, "precondition_failed")
    problem(client.post(f"/v1/plans/{plan['id']}/items", headers=auth("applicant", student=id_number(3)),
                        json={"kind": "skills", "description": "x"}), 403, "forbidden")
    problem(client.post(f"/v1/plans/{plan['id']}/items", headers=staff,
                        json={"kind": "tutoring", "description": "x"}), 422, "validation_failed")


def test_the_year_end_review_needs_a_reason_for_a_shortfall_and_closes_the_plan(open_client: Open,
                                                                                auth: TokenFactory) -> None:
    client = open_client()
    case_id = identified(client, 4, school=JS_SCHOOL, region="320102", level="generally_difficult")
    staff = auth("school", school=JS_SCHOOL)
    plan = client.post(f"/v1/cases/{case_id}/plan", headers=staff).json()
    assert plan["aid"]["target"] == "1500.00" and plan["profile_version"] == "jiangsu@2025.1"
    client.post(f"/v1/cases/{case_id}/grant-aid", json={"programme": "national_grant", "amount": "1000.00"},
                headers=staff)
    body = problem(client.post(f"/v1/plans/{plan['id']}/review", headers=staff, json={"summary": "年度评估"}),
                   409, "review_not_due")
    assert body["review_opens"] == "2026-06-01"
    client = open_client("2026-06-10T10:00:00+08:00")
    problem(client.post(f"/v1/plans/{plan['id']}/review", headers=staff, json={"summary": "年度评估"}), 409,
            "shortfall_reason_required", "shortfall_reason")
    reviewed = client.post(f"/v1/plans/{plan['id']}/review", headers=staff,
                           json={"summary": "学业进步明显", "shortfall_reason": "省助学金名额已满，改由校内资助"})
    assert reviewed.status_code == 200, reviewed.text
    review = reviewed.json()["review"]
    assert (review["granted"], review["target"], review["shortfall_reason"]) == ("1000.00", "1500.00",
                                                                                 "省助学金名额已满，改由校内资助")
    problem(client.post(f"/v1/plans/{plan['id']}/items", headers=staff,
                        json={"kind": "skills", "description": "x"}), 409, "plan_closed")
    problem(client.post(f"/v1/plans/{plan['id']}/review", headers=staff, json={"summary": "again"}), 409,
            "plan_closed")
