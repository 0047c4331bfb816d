"""Identification rounds through HTTP on SQLite and PostgreSQL: opening (school and region), the announcement
students read, the admission rule, the dashboard's counts and overdue cases, and closing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TokenFactory
from tests.e2e.aftercare_support import Open, open_service
from tests.e2e.steps import problem
from tests.support import GX_SCHOOL, JS_SCHOOL, form, id_number

GX_OTHER = "S4501030002"
AUTUMN = {"academic_year": "2025-2026", "kind": "identification", "opens_on": "2025-09-01",
          "closes_on": "2025-11-30"}


@pytest.fixture
def open_client(database_url: str) -> Iterator[Open]:
    yield from open_service(database_url)


def open_round(client: TestClient, auth: TokenFactory, school: str = GX_SCHOOL, **changes: str) -> dict[str, Any]:
    response = client.post(f"/v1/schools/{school}/rounds", json={**AUTUMN, **changes},
                           headers=auth("school", school=school))
    assert response.status_code == 201, response.text
    return {**response.json(), "position": response.headers["X-Min-Position"]}


def apply(client: TestClient, auth: TokenFactory, seq: int, school: str = GX_SCHOOL, **overrides: Any) -> Any:
    region = "320102" if school.startswith("S32") else "450103"
    return client.post("/v1/cases", json=form(seq, school_id=school, region=region, **overrides),
                       headers=auth("applicant", student=id_number(seq, region=region)))


def test_a_school_opens_its_round_and_students_read_the_announcement(client: TestClient,
                                                                      auth: TokenFactory) -> None:
    opened = open_round(client, auth)
    assert opened["state"] == "open" and opened["profile_version"] == "guangxi@2025.1"
    notice = client.get(f"/v1/schools/{GX_SCHOOL}/rounds/current",
                        headers=auth("applicant", student=id_number(1))).json()
    assert notice["id"] == opened["id"]
    announcement = notice["announcement"]
    assert announcement["apply_by"] == "2025-11-30" and announcement["opens_on"] == "2025-09-01"
    assert announcement["offers"]["annual_aid_targets"]["especially_difficult"] == "3000.00"
    assert {"who_may_apply", "how_to_apply", "where_to_object", "emergency"} <= set(announcement)
    assert client.get(f"/v1/schools/{GX_SCHOOL}/rounds/current",
                      headers=auth("evaluator", school=GX_SCHOOL, class_id="G10-3")).status_code == 200
    problem(client.get(f"/v1/schools/{GX_SCHOOL}/rounds/current", headers=auth("school", school=GX_OTHER)),
            404, "not_found")


def test_dates_outside_the_profile_are_refused_and_nothing_is_opened(client: TestClient,
                                                                     auth: TokenFactory) -> None:
    body = problem(client.post(f"/v1/schools/{GX_SCHOOL}/rounds", json={**AUTUMN, "closes_on": "2025-12-15"},
                               headers=auth("school", school=GX_SCHOOL)), 422, "round_outside_policy", "closes_on")
    assert (body["earliest_open"], body["latest_close"]) == ("2025-08-02", "2025-11-30")
    # Jiangsu's profile allows 75 days after its autumn term starts: mid-November.
    body = problem(client.post(f"/v1/schools/{JS_SCHOOL}/rounds", json=AUTUMN,
                               headers=auth("school", school=JS_SCHOOL)), 422, "round_outside_policy")
    assert body["latest_close"] == "2025-11-15"
    spring = {**AUTUMN, "kind": "spring_adjustment", "opens_on": "2026-03-01", "closes_on": "2026-05-15"}
    assert problem(client.post(f"/v1/schools/{GX_SCHOOL}/rounds", json=spring,
                               headers=auth("school", school=GX_SCHOOL)), 422,
                   "round_outside_policy")["latest_close"] == "2026-04-30"
    problem(client.get(f"/v1/schools/{GX_SCHOOL}/rounds/current", headers=auth("school", school=GX_SCHOOL)),
            404, "not_found")


def test_an_overlapping_round_for_the_same_term_is_refused(client: TestClient, auth: TokenFactory) -> None:
    open_round(client, auth)
    problem(client.post(f"/v1/schools/{GX_SCHOOL}/rounds", json={**AUTUMN, "opens_on": "2025-10-01"},
                        headers=auth("school", school=GX_SCHOOL)), 409, "round_overlaps")
    spring = {**AUTUMN, "kind": "spring_adjustment", "opens_on": "2026-03-01", "closes_on": "2026-04-30"}
    assert client.post(f"/v1/schools/{GX_SCHOOL}/rounds", json=spring,
                       headers=auth("school", school=GX_SCHOOL)).status_code == 201
    problem(client.post(f"/v1/schools/{GX_SCHOOL}/rounds", json=AUTUMN,
                        headers=auth("school", school=GX_OTHER)), 404, "not_found")
    problem(client.post(f"/v1/schools/{GX_SCHOOL}/rounds", json=AUTUMN,
                        headers=auth("evaluator", school=GX_SCHOOL, class_id="G10-3")), 403, "forbidden")


def test_applications_outside_an_open_round_are_refused_with_the_next_rounds_dates(client: TestClient,
                                                                                   auth: TokenFactory) -> None:
    open_round(client, auth, opens_on="2025-09-20")
    body = problem(apply(client, auth, 1), 409, "no_open_round")
    assert body["next_round"] == {"kind": "identification", "opens_on": "2025-09-20", "closes_on": "2025-11-30"}
    # A sudden event in the last 30 days is an emergency: admitted outside the round.
    emergency = apply(client, auth, 2, sudden_events=[{"kind": "accident", "occurred_on": "2025-09-01",
                                                       "loss": "20000.00"}])
    assert emergency.status_code == 201, emergency.text
    # A school that runs no rounds keeps taking applications at any time.
    assert apply(client, auth, 3, school=GX_OTHER).status_code == 201


def test_a_bureau_opens_the_round_for_every_school_in_its_region(client: TestClient, auth: TokenFactory) -> None:
    open_round(client, auth)  # this school has its round already: skipped, not an error
    bureau = auth("bureau", region="450000")
    response = client.post("/v1/regions/450000/rounds", json=AUTUMN, headers=bureau)
    assert response.status_code == 201, response.text
    opened = response.json()
    schools = {r["school_id"] for r in opened["opened"]}
    assert GX_OTHER in schools and GX_SCHOOL not in schools and not any(s.startswith("S32") for s in schools)
    assert opened["skipped"] == [{"school_id": GX_SCHOOL, "reason": "round_overlaps"}]
    listed = client.get("/v1/regions/450000/rounds", params={"academic_year": "2025-2026"},
                        headers={**bureau, "X-Min-Position": response.headers["X-Min-Position"]}).json()
    assert {r["school_id"] for r in listed["rounds"]} == schools | {GX_SCHOOL}
    assert all(r["state"] == "open" for r in listed["rounds"])
    problem(client.post("/v1/regions/450000/rounds", json=AUTUMN, headers=bureau), 409, "round_overlaps")
    problem(client.post("/v1/regions/320000/rounds", json=AUTUMN, headers=bureau), 404, "not_found")
    problem(client.post("/v1/regions/450000/rounds", json=AUTUMN, headers=auth("school", school=GX_SCHOOL)),
            403, "forbidden")
    # Every school of the region now refuses applications outside its round, and takes them inside it.
    assert apply(client, auth, 4, school=GX_OTHER).status_code == 201


def test_the_dashboard_counts_per_class_and_closing_waits_for_every_step(client: TestClient,
                                                                        auth: TokenFactory) -> None:
    opened = open_round(client, auth)
    staff = auth("school", school=GX_SCHOOL)
    cases = []
    for seq, klass in ((1, "G10-3"), (2, "G10-3"), (3, "G11-1")):
        response = apply(client, auth, seq, student={"id_number": id_number(seq), "name": "学生",
                                                     "school_id": GX_SCHOOL, "class_id": klass,
                                                     "stage": "senior_secondary"})
        assert response.status_code == 201, response.text
        cases.append(response.json()["id"])
    verified = client.post(f"/v1/cases/{cases[0]}/verify", headers=staff,
                           json={"method": "document", "confirmed_categories": ["minimum_living_allowance"]})
    board = client.get(f"/v1/schools/{GX_SCHOOL}/rounds/{opened['id']}/dashboard",
                       headers={**staff, "X-Min-Position": verified.headers["X-Min-Position"]}).json()
    assert board["cases"] == 3 and board["totals"] == {"applied": 2, "verified": 1}
    assert {c["class_id"]: c["counts"] for c in board["classes"]} == {"G10-3": {"applied": 1, "verified": 1},
                                                                     "G11-1": {"applied": 1}}
    assert board["unfinished"] == {"applied": 2, "verified": 1} and board["can_close"] is False
    assert board["overdue"] == []  # nobody has waited 10 days yet
    teacher = client.get(f"/v1/schools/{GX_SCHOOL}/rounds/{opened['id']}/dashboard",
                         headers=auth("evaluator", school=GX_SCHOOL, class_id="G11-1")).json()
    assert [c["class_id"] for c in teacher["classes"]] == ["G11-1"]

    refused = problem(client.post(f"/v1/schools/{GX_SCHOOL}/rounds/{opened['id']}/close", headers=staff),
                      409, "round_steps_unfinished")
    assert refused["unfinished"] == {"applied": 2, "verified": 1}
    for case_id in cases:
        assert client.post(f"/v1/cases/{case_id}/withdraw", json={"reason": "test"}, headers=staff).status_code == 200
    closed = client.post(f"/v1/schools/{GX_SCHOOL}/rounds/{opened['id']}/close", headers=staff)
    assert closed.status_code == 200, closed.text
    assert closed.json()["state"] == "closed" and closed.json()["closed_on"] == "2025-09-15"
    problem(client.post(f"/v1/schools/{GX_SCHOOL}/rounds/{opened['id']}/close", headers=staff), 409,
            "round_already_closed")
    assert problem(apply(client, auth, 9), 409, "no_open_round").get("next_round") is None
    problem(client.get(f"/v1/schools/{GX_OTHER}/rounds/{opened['id']}/dashboard",
                       headers=auth("school", school=GX_OTHER)), 404, "not_found")


def test_cases_waiting_too_long_and_cases_left_when_the_round_ends_are_overdue(open_client: Open,
                                                                               auth: TokenFactory) -> None:
    client = open_client()
    opened = open_round(client, auth)
    first = apply(client, auth, 1).json()["id"]
    # Eleven days later the case still waits for verification: past the profile's 10 days at one step.
    client = open_client("2025-09-26T10:00:00+08:00")
    second = apply(client, auth, 2)
    staff = auth("school", school=GX_SCHOOL)
    board = client.get(f"/v1/schools/{GX_SCHOOL}/rounds/{opened['id']}/dashboard",
                       headers={**staff, "X-Min-Position": second.headers["X-Min-Position"]}).json()
    assert [(o["case_id"], o["reason"], o["days_waiting"]) for o in board["overdue"]] == [
        (first, "step_overdue", 11)]
    assert board["classes"][0]["overdue"] == 1
    # After the round's last day everything unfinished is overdue, and the round still cannot close.
    client = open_client("2025-12-02T10:00:00+08:00")
    board = client.get(f"/v1/schools/{GX_SCHOOL}/rounds/{opened['id']}/dashboard", headers=staff).json()
    assert board["round"]["state"] == "ended"
    assert sorted(o["reason"] for o in board["overdue"]) == ["round_ended", "round_ended"]
    problem(client.post(f"/v1/schools/{GX_SCHOOL}/rounds/{opened['id']}/close", headers=staff), 409,
            "round_steps_unfinished")


def test_the_region_dashboard_shows_each_schools_round(client: TestClient, auth: TokenFactory) -> None:
    bureau = auth("bureau", region="450100")
    opened = client.post("/v1/regions/450100/rounds", json=AUTUMN, headers=bureau)
    assert opened.status_code == 201, opened.text
    apply(client, auth, 1)
    last = apply(client, auth, 2, school=GX_OTHER)
    withdrawn = client.post(f"/v1/cases/{last.json()['id']}/withdraw", json={"reason": "x"},
                            headers=auth("school", school=GX_OTHER))
    response = client.get("/v1/regions/450100/rounds/dashboard", params={"academic_year": "2025-2026"},
                          headers={**bureau, "X-Min-Position": withdrawn.headers["X-Min-Position"]})
    assert response.status_code == 200, response.text
    schools = {s["school_id"]: s for s in response.json()["schools"]}
    assert {k: (v["cases"], v["unfinished"], v["can_close"]) for k, v in schools.items()
            if k in {GX_SCHOOL, GX_OTHER}} == {GX_SCHOOL: (1, 1, False), GX_OTHER: (1, 0, True)}
    assert all(v["state"] == "open" for v in schools.values())
    problem(client.get("/v1/regions/450000/rounds/dashboard", params={"academic_year": "2025-2026"},
                       headers=bureau), 404, "not_found")
    problem(client.get("/v1/regions/450100/rounds/dashboard", params={"academic_year": "2025-2026"},
                       headers=auth("school", school=GX_SCHOOL)), 403, "forbidden")
