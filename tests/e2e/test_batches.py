"""The batch commands through HTTP on SQLite and PostgreSQL: a school enters its forms in one request, verifies and
assesses them, its class group enters its results, the school rates at them and opens the notice; limits and
scope answer problem+json and change nothing."""

from __future__ import annotations

from fastapi.testclient import TestClient

from adapters.batches import MAX_APPLICATIONS
from domain.values import case_id_for
from tests.conftest import TokenFactory
from tests.e2e.steps import problem
from tests.support import GX_SCHOOL, form, id_number


def test_a_school_runs_apply_to_notice_in_batches_over_http(client: TestClient, auth: TokenFactory) -> None:
    school = auth("school", school=GX_SCHOOL)
    panel = auth("evaluator", sub="teacher-1", school=GX_SCHOOL, class_id="G10-3")
    entered = client.post(f"/v1/schools/{GX_SCHOOL}/applications", headers=school,
                          json={"applications": [form(1), form(2), form(3), form(2), {"student": {}}]})
    assert entered.status_code == 200, entered.text
    rows = entered.json()["applications"]
    assert [r["outcome"] for r in rows] == ["ok", "ok", "ok", "skipped", "skipped"]
    assert rows[3]["code"] == "conflict" and rows[4]["code"] == "validation_failed"
    assert "X-Min-Position" in entered.headers
    ids = [r["case_id"] for r in rows[:3]]
    assert client.post(f"/v1/schools/{GX_SCHOOL}/verify-by-data", headers=school, json={}).status_code == 200
    assessed = client.post(f"/v1/schools/{GX_SCHOOL}/assess-verified", headers=school, json={})
    assert assessed.status_code == 200 and assessed.json()["ok"] == 3, assessed.text
    suggested = {i: client.get(f"/v1/cases/{i}", headers=school).json()["assessment"]["suggested_level"]
                 for i in ids}
    results = [{"case_id": i, "votes_for": 4, "votes_against": 1, "recommended_level": suggested[i],
                "panel": [{"sub": "teacher-1", "role": "head_teacher"}]} for i in ids]
    evaluated = client.post(f"/v1/schools/{GX_SCHOOL}/classes/G10-3/evaluations", headers=panel,
                            json={"evaluations": results})
    assert evaluated.status_code == 200 and evaluated.json()["ok"] == 3, evaluated.text
    again = client.post(f"/v1/schools/{GX_SCHOOL}/classes/G10-3/evaluations", headers=panel,
                        json={"evaluations": results[:1]})
    assert again.json()["cases"][0]["code"] == "invalid_transition"
    rated = client.post(f"/v1/schools/{GX_SCHOOL}/rate-evaluated", headers=school, json={})
    assert rated.status_code == 200 and rated.json()["ok"] == 3, rated.text
    levels = {c["case_id"]: c["status"] for c in rated.json()["cases"]}
    to_notice = [i for i in ids if levels[i] == "rated"]
    if to_notice:
        opened = client.post(f"/v1/schools/{GX_SCHOOL}/publicity", headers=school, json={"case_ids": to_notice})
        assert opened.status_code == 200, opened.text
    for case_id in ids:
        state = client.get(f"/v1/cases/{case_id}", headers=school).json()
        assert state["status"] in {"in_publicity", "not_identified"}
        assert state["evaluation"]["votes_for"] == 4


def test_batch_limits_and_scope_answer_problems_and_change_nothing(client: TestClient, auth: TokenFactory) -> None:
    school = auth("school", school=GX_SCHOOL)
    other = auth("school", school="S3201020001")
    panel = auth("evaluator", school=GX_SCHOOL, class_id="G10-3")
    over = client.post(f"/v1/schools/{GX_SCHOOL}/applications", headers=school,
                       json={"applications": [form(i) for i in range(MAX_APPLICATIONS + 1)]})
    problem(over, 422, "validation_failed")
    problem(client.post(f"/v1/schools/{GX_SCHOOL}/applications", headers=other,
                        json={"applications": [form(1)]}), 404, "not_found")
    problem(client.post(f"/v1/schools/{GX_SCHOOL}/assess-verified", headers=other, json={}), 404, "not_found")
    problem(client.post(f"/v1/schools/{GX_SCHOOL}/assess-verified", headers=panel, json={}), 403, "forbidden")
    problem(client.post(f"/v1/schools/{GX_SCHOOL}/classes/G10-4/evaluations", headers=panel,
                        json={"evaluations": [{"case_id": "x", "votes_for": 1, "votes_against": 0}]}),
            404, "not_found")
    problem(client.post(f"/v1/schools/{GX_SCHOOL}/classes/G10-3/evaluations", headers=school,
                        json={"evaluations": [{"case_id": "x", "votes_for": 1, "votes_against": 0}]}),
            403, "forbidden")
    for seq in (0, 1):  # neither the over-limit request nor the other school's recorded anything
        problem(client.get(f"/v1/cases/{case_id_for(id_number(seq), '2025-2026')}", headers=school), 404, "not_found")
