"""Every error class through HTTP on both stores: 401, 403, 404, 409, 412 and 422, each as problem+json with its
stable code, and each leaving the event log exactly as it was."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.auth import issue_token
from tests.conftest import SECRET, TokenFactory
from tests.e2e.steps import advance, apply, case_log, module_client, problem
from tests.support import GX_SCHOOL, form, id_number


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    yield from module_client(request, tmp_path_factory)


def test_401_without_a_token_or_with_a_bad_one(client: TestClient, auth: TokenFactory) -> None:
    case_id = apply(client, auth, 11)
    log = case_log(client)
    good = issue_token(SECRET, sub="staff-1", role="school", school=GX_SCHOOL)
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Basic {good}"},
        {"Authorization": "Bearer " + issue_token("another-secret-of-at-least-thirty-two-chars", sub="x",
                                                  role="school", school=GX_SCHOOL)},
        {"Authorization": "Bearer " + issue_token(SECRET, sub="x", role="school", school=GX_SCHOOL, ttl=60,
                                                  now=1_000_000)},  # expired long ago
        {"Authorization": "Bearer " + issue_token(SECRET, sub="x", role="school")},  # no school claim
        {"Authorization": "Bearer " + issue_token(SECRET, sub="x", role="applicant")},  # no student claim
    ]
    for headers in bad_headers:
        answer = problem(client.get(f"/v1/cases/{case_id}", headers=headers), 401, "unauthorized")
        assert "Bearer" in client.get(f"/v1/cases/{case_id}", headers=headers).headers["WWW-Authenticate"], answer
        problem(client.post(f"/v1/cases/{case_id}/verify", headers=headers,
                            json={"method": "document", "confirmed_categories": []}), 401, "unauthorized")
        problem(client.post("/v1/cases", headers=headers, json=form(12)), 401, "unauthorized")
    assert case_log(client) == log
    assert client.get(f"/v1/cases/{case_id}", headers={"Authorization": f"Bearer {good}"}).status_code == 200


def test_403_when_the_role_may_not_issue_the_command(client: TestClient, auth: TokenFactory) -> None:
    case_id = advance(client, auth, apply(client, auth, 21), "evaluated")["id"]
    log = case_log(client)
    auditor, bureau = auth("auditor"), auth("bureau", region="450000")
    evaluator = auth("evaluator", school=GX_SCHOOL, class_id="G10-3")
    applicant = auth("applicant", student=id_number(21))
    refused: list[tuple[dict[str, str], str, dict[str, Any]]] = [
        (evaluator, "rate", {"level": "especially_difficult"}),
        (applicant, "rate", {"level": "especially_difficult"}),
        (applicant, "verify", {"method": "document", "confirmed_categories": []}),
        (bureau, "rate", {"level": "especially_difficult"}),
        (auditor, "rate", {"level": "especially_difficult"}),
        (auditor, "assess", {}),
        (auditor, "evaluate", {"votes_for": 1, "votes_against": 0}),
        (auditor, "verify", {"method": "document", "confirmed_categories": []}),
        (auditor, "withdraw", {"reason": "x"}),
        (auditor, "amend", form(21)),
    ]
    for headers, command, body in refused:
        answer = problem(client.post(f"/v1/cases/{case_id}/{command}", json=body, headers=headers), 403,
                         "forbidden")
        assert command.replace("_", " ") in answer["detail"]
    problem(client.post("/v1/cases", json=form(22), headers=auditor), 403, "forbidden")
    problem(client.post("/v1/cases", json=form(22), headers=bureau), 403, "forbidden")
    # An applicant applies only for the student named in the token; a school only for its own students.
    problem(client.post("/v1/cases", json=form(22), headers=applicant), 403, "forbidden")
    problem(client.post("/v1/cases", json=form(22), headers=auth("school", school="S4501030002")), 403, "forbidden")
    assert case_log(client) == log


def test_404_for_a_case_that_does_not_exist(client: TestClient, auth: TokenFactory) -> None:
    apply(client, auth, 31)
    log = case_log(client)
    unknown = uuid.uuid4()
    for headers in (auth("auditor"), auth("school", school=GX_SCHOOL)):
        problem(client.get(f"/v1/cases/{unknown}", headers=headers), 404, "not_found")
        problem(client.get(f"/v1/cases/{unknown}/events", headers=headers), 404, "not_found")
    problem(client.post(f"/v1/cases/{unknown}/rate", json={"level": "difficult"},
                        headers=auth("school", school=GX_SCHOOL)), 404, "not_found")
    problem(client.get("/v1/nowhere", headers=auth("auditor")), 404, "not_found")
    assert case_log(client) == log


def test_409_when_the_status_forbids_the_command(client: TestClient, auth: TokenFactory) -> None:
    case_id = apply(client, auth, 41)
    staff = auth("school", school=GX_SCHOOL)
    log = case_log(client)
    answer = problem(client.post(f"/v1/cases/{case_id}/rate", json={"level": "especially_difficult"},
                                 headers=staff), 409, "invalid_transition")
    assert answer["case_status"] == "applied" and answer["command"] == "rate"
    problem(client.post(f"/v1/cases/{case_id}/assess", json={}, headers=staff), 409, "invalid_transition")
    assert case_log(client) == log

    advance(client, auth, case_id, "rated")
    log = case_log(client)
    applicant = auth("applicant", student=id_number(41))
    answer = problem(client.post(f"/v1/cases/{case_id}/amend", json=form(41), headers=applicant), 409,
                     "invalid_transition")
    assert answer["case_status"] == "rated"
    problem(client.post(f"/v1/cases/{case_id}/withdraw", json={"reason": "x"}, headers=applicant), 409,
            "invalid_transition")
    problem(client.post(f"/v1/cases/{case_id}/verify", json={"method": "document", "confirmed_categories": []},
                        headers=staff), 409, "invalid_transition")
    assert case_log(client) == log


def test_409_for_a_second_application_of_the_same_student_and_year(client: TestClient, auth: TokenFactory) -> None:
    case_id = apply(client, auth, 51)
    log = case_log(client)
    second = form(51)
    second["student"]["name"] = "另一个名字"
    second["household"]["annual_income"] = "1.00"
    answer = problem(client.post("/v1/cases", json=second, headers=auth("applicant", student=id_number(51))), 409,
                     "conflict")
    assert answer["case_id"] == case_id
    # The school entering the same student for the same year is recognised too.
    problem(client.post("/v1/cases", json=second, headers=auth("school", school=GX_SCHOOL)), 409, "conflict")
    assert case_log(client) == log
    first = client.get(f"/v1/cases/{case_id}", headers=auth("school", school=GX_SCHOOL)).json()
    assert first["version"] == 1 and first["application"]["student"]["name"] == "韦小明"
    assert first["application"]["household"]["annual_income"] == "18000.00"
    # Another academic year is another case.
    other_year = client.post("/v1/cases", json=form(51, year="2026-2027"), headers=auth("applicant",
                                                                                         student=id_number(51)))
    assert other_year.status_code == 201 and other_year.json()["id"] != case_id


def test_412_when_if_match_names_a_stale_version(client: TestClient, auth: TokenFactory) -> None:
    case_id = advance(client, auth, apply(client, auth, 61), "verified")["id"]
    staff = auth("school", school=GX_SCHOOL)
    log = case_log(client)
    answer = problem(client.post(f"/v1/cases/{case_id}/assess", json={}, headers={**staff, "If-Match": '"1"'}),
                     412, "precondition_failed")
    assert answer["current_version"] == 2
    problem(client.post(f"/v1/cases/{case_id}/assess", json={}, headers={**staff, "If-Match": "soon"}), 422,
            "validation_failed", field="If-Match")
    assert case_log(client) == log
    fresh = client.post(f"/v1/cases/{case_id}/assess", json={}, headers={**staff, "If-Match": '"2"'})
    assert fresh.status_code == 200 and fresh.headers["ETag"] == '"3"'


def _malformed_applications() -> list[tuple[str, Callable[[dict[str, Any]], Any], str, str]]:
    def wrong_check_digit(body: dict[str, Any]) -> None:
        number = body["student"]["id_number"]
        body["student"]["id_number"] = number[:-1] + ("0" if number[-1] != "0" else "1")

    return [
        ("wrong check digit", wrong_check_digit, "invalid_resident_id", "student.id_number"),
        ("negative income", lambda b: b["household"].update(annual_income="-1.00"), "validation_failed",
         "household.annual_income"),
        ("negative member income", lambda b: b["household"]["members"][0].update(annual_income="-5"),
         "validation_failed", "household.members[0].annual_income"),
        ("unknown category", lambda b: b.update(claimed_categories=["orphan", "rich_uncle"]), "validation_failed",
         "claimed_categories[1]"),
        ("missing attestation", lambda b: b.pop("attestation"), "validation_failed", "attestation"),
        ("attestation refused", lambda b: b.update(attestation=False), "validation_failed", "attestation"),
        ("unknown school", lambda b: b["student"].update(school_id="S4501039999"), "validation_failed",
         "student.school_id"),
        ("future sudden event", lambda b: b["sudden_events"][0].update(occurred_on="2030-01-01"),
         "validation_failed", "sudden_events[0].occurred_on"),
        ("unknown stage", lambda b: b["student"].update(stage="kindergarten"), "validation_failed",
         "student.stage"),
    ]


def test_422_naming_the_field_for_each_malformed_application(client: TestClient, auth: TokenFactory) -> None:
    applicant = auth("applicant", student=id_number(71))
    log = case_log(client)
    for name, spoil, code, field in _malformed_applications():
        body = form(71)
        spoil(body)
        answer = problem(client.post("/v1/cases", json=body, headers=applicant), 422, code, field=field)
        assert answer["detail"], name
    answer = problem(client.post("/v1/cases", content=b'{"academic_year": "2025-2026", "student": ',
                                 headers={**applicant, "Content-Type": "application/json"}), 422,
                     "validation_failed", field="body")
    assert "malformed JSON" in answer["detail"]
    problem(client.post("/v1/cases", content=b"[1, 2]", headers={**applicant, "Content-Type": "application/json"}),
            422, "validation_failed", field="body")
    assert case_log(client) == log
    assert client.post("/v1/cases", json=form(71), headers=applicant).status_code == 201


def test_422_naming_the_field_for_malformed_commands(client: TestClient, auth: TokenFactory) -> None:
    case_id = apply(client, auth, 81)
    staff = auth("school", school=GX_SCHOOL)
    evaluator = auth("evaluator", school=GX_SCHOOL, class_id="G10-3")
    log = case_log(client)
    problem(client.post(f"/v1/cases/{case_id}/verify", json={"method": "document",
                                                             "confirmed_categories": ["rich_uncle"]},
                        headers=staff), 422, "validation_failed", field="confirmed_categories[0]")
    problem(client.post(f"/v1/cases/{case_id}/verify", json={"method": "astrology"}, headers=staff), 422,
            "validation_failed", field="method")
    assert case_log(client) == log
    advance(client, auth, case_id, "assessed")
    log = case_log(client)
    problem(client.post(f"/v1/cases/{case_id}/evaluate", json={"votes_for": 3, "votes_against": 0,
                                                               "recommended_level": "very_difficult"},
                        headers=evaluator), 422, "validation_failed", field="recommended_level")
    problem(client.post(f"/v1/cases/{case_id}/evaluate", json={"votes_for": -1, "votes_against": 0},
                        headers=evaluator), 422, "validation_failed", field="votes_for")
    advance(client, auth, case_id, "evaluated")
    log = case_log(client)
    problem(client.post(f"/v1/cases/{case_id}/rate", json={"level": "very_difficult"}, headers=staff), 422,
            "validation_failed", field="level")
    problem(client.post(f"/v1/cases/{case_id}/rate", json={}, headers=staff), 422, "validation_failed",
            field="level")
    problem(client.post(f"/v1/cases/{case_id}/rate", json={"level": "difficult"}, headers=staff), 409,
            "reason_required", field="reason")
    problem(client.get(f"/v1/cases/{case_id}", params={"version": 0}, headers=staff), 422, "validation_failed",
            field="version")
    assert case_log(client) == log
