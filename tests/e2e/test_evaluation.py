"""Class democratic evaluation, campus-card warnings and the departures report through HTTP, on SQLite and
PostgreSQL: the group formed per the profile, one ballot per member and never on one's own case, the leader's
closing tally; warnings by the profile's thresholds; how often each school departs from the model."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import TokenFactory
from tests.e2e.steps import problem
from tests.support import GX_SCHOOL, JS_SCHOOL, form, id_number

CLASS = "G10-3"
PANEL = "/v1/schools/{school}/classes/{klass}/panel"


def apply(client: TestClient, auth: TokenFactory, seq: int, **overrides: Any) -> str:
    body = form(seq, **overrides)
    created = client.post("/v1/cases", json=body, headers=auth("applicant", student=body["student"]["id_number"]))
    assert created.status_code == 201, created.text
    case_id: str = created.json()["id"]
    return case_id


def assessed(client: TestClient, auth: TokenFactory, seq: int, school_id: str = GX_SCHOOL, **overrides: Any) -> str:
    school = auth("school", school=school_id)
    case_id = apply(client, auth, seq, school_id=school_id, **overrides)
    client.post(f"/v1/cases/{case_id}/verify", headers=school,
                json={"method": "document", "confirmed_categories": ["minimum_living_allowance"]})
    assert client.post(f"/v1/cases/{case_id}/assess", headers=school, json={}).status_code == 200
    return case_id


def rated(client: TestClient, auth: TokenFactory, seq: int, level: str = "especially_difficult",
          reason: str | None = None, school_id: str = GX_SCHOOL, **overrides: Any) -> str:
    case_id = assessed(client, auth, seq, school_id=school_id, **overrides)
    class_id = overrides.get("class_id", CLASS)
    client.post(f"/v1/cases/{case_id}/evaluate", headers=auth("evaluator", school=school_id, class_id=class_id),
                json={"votes_for": 5, "votes_against": 0, "recommended_level": "especially_difficult"})
    answer = client.post(f"/v1/cases/{case_id}/rate", headers=auth("school", school=school_id),
                         json={"level": level, "reason": reason})
    assert answer.status_code == 200, answer.text
    return case_id


def member(auth: TokenFactory, sub: str) -> dict[str, str]:
    return auth("evaluator", sub=sub, school=GX_SCHOOL, class_id=CLASS)


def form_panel(client: TestClient, auth: TokenFactory, members: list[dict[str, Any]]) -> Any:
    return client.post(PANEL.format(school=GX_SCHOOL, klass=CLASS), headers=auth("school", school=GX_SCHOOL),
                       json={"members": members})


GROUP = [{"sub": "head", "role": "head_teacher"},
         {"sub": "stu-1", "role": "student_representative", "student_id_number": id_number(1)},
         {"sub": "stu-2", "role": "student_representative", "student_id_number": id_number(50)},
         {"sub": "parent", "role": "parent_representative"}]


def test_the_evaluation_group_is_formed_per_the_profile_and_readable_in_scope(client: TestClient,
                                                                               auth: TokenFactory) -> None:
    few = form_panel(client, auth, [GROUP[0], GROUP[1], GROUP[3], {"sub": "t2", "role": "teacher_representative"}])
    assert "0.5" in problem(few, 422, "validation_failed", field="members")["detail"]
    problem(form_panel(client, auth, [GROUP[0], {"sub": "s", "role": "student_representative"}]), 422,
            "validation_failed", field="members[1].student_id_number")

    formed = form_panel(client, auth, GROUP)
    assert formed.status_code == 201, formed.text
    assert formed.json()["student_share"] == "0.50" and formed.json()["revision"] == 1
    assert formed.json()["profile_version"] == "guangxi@2025.1"
    assert id_number(1) not in formed.text
    read = client.get(PANEL.format(school=GX_SCHOOL, klass=CLASS), headers=member(auth, "anyone"))
    assert read.status_code == 200 and [m["sub"] for m in read.json()["members"]] == ["head", "stu-1", "stu-2",
                                                                                        "parent"]
    other_class = auth("evaluator", school=GX_SCHOOL, class_id="G10-4")
    problem(client.get(PANEL.format(school=GX_SCHOOL, klass=CLASS), headers=other_class), 404, "not_found")
    problem(client.get(PANEL.format(school=GX_SCHOOL, klass="G10-4"), headers=auth("school", school=GX_SCHOOL)),
            404, "not_found")
    assert form_panel(client, auth, GROUP).json()["revision"] == 2


def test_members_vote_once_never_on_their_own_case_and_the_head_teacher_closes_with_the_tally(
        client: TestClient, auth: TokenFactory) -> None:
    assert form_panel(client, auth, GROUP).status_code == 201
    mine = assessed(client, auth, 1)  # stu-1's own case
    other = assessed(client, auth, 2)

    first = client.post(f"/v1/cases/{other}/votes", headers=member(auth, "stu-1"),
                        json={"vote": "for", "recommended_level": "difficult"})
    assert first.status_code == 200, first.text
    assert first.headers["ETag"] == '"4"' and "X-Min-Position" in first.headers
    problem(client.post(f"/v1/cases/{other}/votes", headers=member(auth, "stu-1"), json={"vote": "against"}),
            409, "already_voted")
    problem(client.post(f"/v1/cases/{mine}/votes", headers=member(auth, "stu-1"),
                        json={"vote": "for", "recommended_level": "difficult"}), 409, "conflict_of_interest")
    problem(client.post(f"/v1/cases/{other}/votes", headers=member(auth, "stranger"), json={"vote": "against"}),
            409, "not_on_evaluation_panel")
    problem(client.post(f"/v1/cases/{other}/votes", headers=member(auth, "stu-2"), json={"vote": "for"}),
            422, "validation_failed", field="recommended_level")
    problem(client.post(f"/v1/cases/{other}/votes", headers=auth("school", school=GX_SCHOOL),
                        json={"vote": "for", "recommended_level": "difficult"}), 403, "forbidden")
    for sub, vote, level in (("stu-2", "for", "especially_difficult"), ("head", "for", "difficult"),
                             ("parent", "against", None)):
        answer = client.post(f"/v1/cases/{other}/votes", headers=member(auth, sub),
                             json={"vote": vote, "recommended_level": level})
        assert answer.status_code == 200, answer.text

    problem(client.post(f"/v1/cases/{other}/evaluate", headers=member(auth, "stu-2"), json={}), 409,
            "not_on_evaluation_panel")
    closed = client.post(f"/v1/cases/{other}/evaluate", headers=member(auth, "head"), json={})
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "evaluated"
    assert closed.json()["evaluation"] == {
        "votes_for": 3, "votes_against": 1, "recommended_level": "difficult",
        "panel": [{"sub": m["sub"], "role": m["role"]} for m in GROUP]}
    history = client.get(f"/v1/cases/{other}/events", headers=auth("school", school=GX_SCHOOL)).json()
    assert [e["type"] for e in history][3:] == ["EvaluationVoteCast"] * 4 + ["ClassEvaluated"]
    assert history[3]["actor"] == {"sub": "stu-1", "role": "evaluator"}
    assert history[3]["data"]["member"] == {"sub": "stu-1", "role": "student_representative"}
    # The family sees that ballots were cast, not who cast them nor how (secret ballot).
    family = client.get(f"/v1/cases/{other}/events", headers=auth("applicant", student=id_number(2))).json()
    ballots = [e for e in family if e["type"] == "EvaluationVoteCast"]
    assert len(ballots) == 4 and all(e["actor"] == {} and e["data"] == {} for e in ballots)
    assert [e["type"] for e in family] == [e["type"] for e in history]
    problem(client.post(f"/v1/cases/{other}/votes", headers=member(auth, "stu-2"), json={"vote": "against"}), 409,
            "invalid_transition")

    # The other route closes the same way; the school then rates.
    assert client.post(f"/v1/cases/{mine}/votes", headers=member(auth, "stu-2"),
                       json={"vote": "for", "recommended_level": "especially_difficult"}).status_code == 200
    assert client.post(f"/v1/cases/{mine}/evaluation/close", headers=member(auth, "head")).status_code == 200
    rate = client.post(f"/v1/cases/{mine}/rate", headers=auth("school", school=GX_SCHOOL),
                       json={"level": "especially_difficult"})
    assert rate.status_code == 200, rate.text


def spending_file(rows: list[tuple[str, str, str]]) -> bytes:
    lines = ["身份证号,月份,金额,消费类别"] + [f"{number},{month},{amount},食堂" for number, month, amount in rows]
    return ("\n".join(lines) + "\n").encode("gbk")


def test_spending_warnings_list_low_spending_non_applicants_and_high_spending_aided_students(
        client: TestClient, auth: TokenFactory) -> None:
    school = auth("school", school=GX_SCHOOL)
    aided = rated(client, auth, 1)
    applied = apply(client, auth, 2)
    rows = []
    # Six peers of the same stage around 400 a month; a non-applicant at 100; the aided student at 900.
    for seq, amount in ((1, "900"), (2, "390"), (3, "400"), (4, "410"), (5, "400"), (6, "100"), (7, "420")):
        rows += [(id_number(seq), "2025-09", amount), (id_number(seq), "2025-10", amount)]
    imported = client.post(f"/v1/schools/{GX_SCHOOL}/consumption/imports", headers=school,
                           files={"file": ("card.csv", spending_file([*rows, ("4501", "2025-09", "1")]),
                                           "text/csv")})
    assert imported.status_code == 201, imported.text
    assert (imported.json()["accepted"], imported.json()["rejected"][0]["reason"]) == (14, "malformed_id_number")

    answer = client.get(f"/v1/schools/{GX_SCHOOL}/consumption/warnings", headers=school)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["thresholds"] == {"low_spending_ratio": "0.40", "high_spending_ratio": "1.80",
                                  "min_peer_group_size": 5}
    assert body["profile_version"] == "guangxi@2025.1" and "never a decision" in body["advice"]
    assert body["peer_groups"] == [{"stage": "senior_secondary", "students": 7, "median_monthly": "400.00",
                                    "warnings_given": True}]
    assert [(w["id_masked"][-4:], w["monthly_average"], w["ratio"], w["case_status"])
            for w in body["low_spending_non_applicants"]] == [(id_number(6)[-4:], "100.00", "0.25", None)]
    assert [(w["case_id"], w["level"], w["ratio"]) for w in body["high_spending_aided"]] == [
        (aided, "especially_difficult", "2.25")]
    assert applied not in answer.text and id_number(6) not in answer.text
    # Nothing changed on any case: a warning is advice.
    assert client.get(f"/v1/cases/{aided}", headers=school).json()["version"] == 5

    only_shops = client.get(f"/v1/schools/{GX_SCHOOL}/consumption/warnings", params={"category": "shop"},
                            headers=school).json()
    assert only_shops["peer_groups"] == [] and only_shops["low_spending_non_applicants"] == []
    problem(client.get(f"/v1/schools/{GX_SCHOOL}/consumption/warnings",
                       headers=auth("school", school="S4501030002")), 404, "not_found")
    problem(client.post(f"/v1/schools/{GX_SCHOOL}/consumption/imports", headers=school,
                        files={"file": ("card.csv", b"name,month\nx,2025-09\n", "text/csv")}), 422, "file_refused",
            field="id_number")


def test_a_bureau_sees_how_often_each_school_departs_from_the_suggested_level(client: TestClient,
                                                                             auth: TokenFactory) -> None:
    rated(client, auth, 1)
    rated(client, auth, 2, level="difficult", reason="家访核实收入高于申报")
    rated(client, auth, 3, level="not_identified", reason="家庭经济状况已明显改善")
    assessed(client, auth, 4)  # not rated yet: not counted
    rated(client, auth, 5, school_id=JS_SCHOOL, region="320102")

    report = client.get("/v1/regions/450000/departures", headers=auth("bureau", region="450000"))
    assert report.status_code == 200, report.text
    assert report.json()["schools"] == [{
        "school_id": GX_SCHOOL, "school_name": "南宁市青秀区示范高级中学", "rated": 3, "departed": 2,
        "rated_more_difficult": 0, "rated_less_difficult": 2, "share": "0.67"}]
    assert report.json()["total"] == {"rated": 3, "departed": 2, "share": "0.67"}
    everywhere = client.get("/v1/regions/100000/departures", params={"academic_year": "2025-2026"},
                            headers=auth("auditor")).json()
    assert [(s["school_id"], s["rated"], s["departed"]) for s in everywhere["schools"]] == [
        (JS_SCHOOL, 1, 0), (GX_SCHOOL, 3, 2)]
    assert client.get("/v1/regions/450000/departures", params={"academic_year": "2026-2027"},
                      headers=auth("auditor")).json()["schools"] == []
    problem(client.get("/v1/regions/320000/departures", headers=auth("bureau", region="450000")), 404, "not_found")
    problem(client.get("/v1/regions/450000/departures", headers=auth("school", school=GX_SCHOOL)), 403, "forbidden")
