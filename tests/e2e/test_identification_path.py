"""The whole foundation path through HTTP: apply → verify → assess → evaluate → rate, then history and versions."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import TokenFactory
from tests.support import GX_SCHOOL, form, id_number


def test_guardian_applies_and_school_rates_through_the_whole_path(client: TestClient, auth: TokenFactory) -> None:
    applicant = auth("applicant", student=id_number(1))
    school = auth("school", school=GX_SCHOOL)
    evaluator = auth("evaluator", school=GX_SCHOOL, class_id="G10-3")

    created = client.post("/v1/cases", json=form(1), headers=applicant)
    assert created.status_code == 201, created.text
    case_id = created.json()["id"]
    assert created.json()["status"] == "applied" and created.json()["version"] == 1

    verified = client.post(f"/v1/cases/{case_id}/verify", headers=school,
                           json={"method": "document", "confirmed_categories": ["minimum_living_allowance"]})
    assert verified.json()["status"] == "verified"
    assessed = client.post(f"/v1/cases/{case_id}/assess", headers=school, json={})
    assessment = assessed.json()["assessment"]
    assert assessment["suggested_level"] == "especially_difficult"
    assert assessment["profile_version"] == "guangxi@2025.1"
    evaluated = client.post(f"/v1/cases/{case_id}/evaluate", headers=evaluator,
                            json={"votes_for": 6, "votes_against": 1, "recommended_level": "especially_difficult"})
    assert evaluated.json()["status"] == "evaluated"
    rated = client.post(f"/v1/cases/{case_id}/rate", headers={**school, "If-Match": '"4"'},
                        json={"level": "especially_difficult"})
    assert rated.status_code == 200, rated.text
    assert rated.json()["level"] == "especially_difficult" and rated.headers["ETag"] == '"5"'

    history = client.get(f"/v1/cases/{case_id}/events", headers=school).json()
    assert [e["type"] for e in history] == ["Applied", "Verified", "Assessed", "ClassEvaluated", "Rated"]
    assert history[4]["actor"] == {"sub": "school-1", "role": "school"}
    earlier = client.get(f"/v1/cases/{case_id}", params={"version": 2}, headers=school).json()
    assert earlier["status"] == "verified" and earlier["assessment"] is None
