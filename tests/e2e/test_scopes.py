"""The role/scope matrix through HTTP on both stores: who can read a case and who gets 404 (existence never leaks),
commands outside scope answer 404 too, and reads of earlier states (?version=N, ?as_of=) with their ETag."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from adapters.auth import issue_token
from tests.conftest import SECRET, TokenFactory
from tests.e2e.steps import advance, apply, case_log, module_client, problem
from tests.support import GX_SCHOOL, JS_SCHOOL, id_number

GX_OTHER = "S4501030002"  # another school in the same county (450103)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    yield from module_client(request, tmp_path_factory)


@pytest.fixture(scope="module")
def cases(client: TestClient) -> dict[str, str]:
    """A Guangxi case (school 450103, class G10-3, student 1) and a Jiangsu one (school 320102, student 2)."""

    def auth(role: str, **scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(SECRET, sub=f'{role}-1', role=role, **scope)}"}

    return {"gx": apply(client, auth, 1), "js": apply(client, auth, 2, school=JS_SCHOOL)}


READERS_OF_THE_GUANGXI_CASE = [
    ("school", {"school": GX_SCHOOL}),
    ("evaluator", {"school": GX_SCHOOL, "class_id": "G10-3"}),
    ("applicant", {"student": id_number(1)}),
    ("bureau", {"region": "450000"}),  # the province
    ("bureau", {"region": "450100"}),  # Nanning
    ("bureau", {"region": "450103"}),  # Qingxiu district itself
    ("auditor", {}),
]
STRANGERS_TO_THE_GUANGXI_CASE = [
    ("school", {"school": GX_OTHER}),
    ("school", {"school": JS_SCHOOL}),
    ("evaluator", {"school": GX_SCHOOL, "class_id": "G10-4"}),  # another class of the same school
    ("evaluator", {"school": GX_OTHER, "class_id": "G10-3"}),  # the same class name at another school
    ("applicant", {"student": id_number(2, region="320102")}),  # another student
    ("bureau", {"region": "320000"}),  # another province
    ("bureau", {"region": "450200"}),  # another city of the province
    ("bureau", {"region": "450102"}),  # the neighbouring district
]


@pytest.mark.parametrize(("role", "scope"), READERS_OF_THE_GUANGXI_CASE)
def test_the_case_is_readable_within_scope(client: TestClient, auth: TokenFactory, cases: dict[str, str],
                                           role: str, scope: dict[str, str]) -> None:
    headers = auth(role, **scope)
    state = client.get(f"/v1/cases/{cases['gx']}", headers=headers)
    assert state.status_code == 200 and state.json()["id"] == cases["gx"]
    events = client.get(f"/v1/cases/{cases['gx']}/events", headers=headers)
    assert events.status_code == 200 and events.json()[0]["type"] == "Applied"


@pytest.mark.parametrize(("role", "scope"), STRANGERS_TO_THE_GUANGXI_CASE)
def test_a_case_outside_scope_answers_404_as_if_it_did_not_exist(client: TestClient, auth: TokenFactory,
                                                                 cases: dict[str, str], role: str,
                                                                 scope: dict[str, str]) -> None:
    headers = auth(role, **scope)
    problem(client.get(f"/v1/cases/{cases['gx']}", headers=headers), 404, "not_found")
    problem(client.get(f"/v1/cases/{cases['gx']}/events", headers=headers), 404, "not_found")
    problem(client.get(f"/v1/cases/{cases['gx']}", params={"version": 1}, headers=headers), 404, "not_found")


def test_the_jiangsu_case_is_seen_by_its_own_school_and_bureau_and_the_auditor_only(
        client: TestClient, auth: TokenFactory, cases: dict[str, str]) -> None:
    for headers in (auth("school", school=JS_SCHOOL), auth("bureau", region="320000"), auth("bureau", region="320102"),
                    auth("auditor"), auth("applicant", student=id_number(2, region="320102"))):
        assert client.get(f"/v1/cases/{cases['js']}", headers=headers).status_code == 200
    for headers in (auth("school", school=GX_SCHOOL), auth("bureau", region="450000"),
                    auth("applicant", student=id_number(1))):
        problem(client.get(f"/v1/cases/{cases['js']}", headers=headers), 404, "not_found")


def test_commands_outside_scope_answer_404_not_403_and_change_nothing(client: TestClient, auth: TokenFactory,
                                                                     cases: dict[str, str]) -> None:
    case_id = apply(client, auth, 3)
    log = case_log(client)
    verify = {"method": "document", "confirmed_categories": []}
    problem(client.post(f"/v1/cases/{case_id}/verify", json=verify, headers=auth("school", school=GX_OTHER)), 404,
            "not_found")
    problem(client.post(f"/v1/cases/{case_id}/withdraw", json={"reason": "x"},
                        headers=auth("applicant", student=id_number(4))), 404, "not_found")
    # A role that may never rate is refused alike whether the case exists or not: nothing leaks either way.
    bureau = auth("bureau", region="320000")
    refused = problem(client.post(f"/v1/cases/{case_id}/rate", json={"level": "difficult"}, headers=bureau),
                      403, "forbidden")
    unknown = problem(client.post(f"/v1/cases/{uuid.uuid4()}/rate", json={"level": "difficult"}, headers=bureau),
                      403, "forbidden")
    assert refused == unknown
    assert case_log(client) == log
    advance(client, auth, case_id, "assessed")
    log = case_log(client)
    problem(client.post(f"/v1/cases/{case_id}/evaluate", json={"votes_for": 1, "votes_against": 0},
                        headers=auth("evaluator", school=GX_SCHOOL, class_id="G10-4")), 404, "not_found")
    assert case_log(client) == log
    # Inside scope, the same evaluation by the case's own class goes through.
    done = client.post(f"/v1/cases/{case_id}/evaluate", json={"votes_for": 1, "votes_against": 0},
                       headers=auth("evaluator", school=GX_SCHOOL, class_id="G10-3"))
    assert done.status_code == 200 and done.json()["status"] == "evaluated"


def test_the_auditor_reads_everything_and_changes_nothing(client: TestClient, auth: TokenFactory,
                                                         cases: dict[str, str]) -> None:
    auditor = auth("auditor")
    log = case_log(client)
    for case_id in cases.values():
        assert client.get(f"/v1/cases/{case_id}", headers=auditor).status_code == 200
        assert client.get(f"/v1/cases/{case_id}/events", headers=auditor).status_code == 200
        problem(client.post(f"/v1/cases/{case_id}/withdraw", json={"reason": "x"}, headers=auditor), 403,
                "forbidden")
    assert case_log(client) == log


# ---------------------------------------------------------------------------------------------- earlier states


def test_reads_carry_an_etag_and_earlier_states_come_back_by_version_or_time(client: TestClient,
                                                                            auth: TokenFactory) -> None:
    case_id = apply(client, auth, 5)
    advance(client, auth, case_id, "evaluated")
    staff = auth("school", school=GX_SCHOOL)
    current = client.get(f"/v1/cases/{case_id}", headers=staff)
    assert current.headers["ETag"] == '"4"' and current.json()["status"] == "evaluated"

    at_two = client.get(f"/v1/cases/{case_id}", params={"version": 2}, headers=staff)
    assert at_two.status_code == 200 and at_two.headers["ETag"] == '"2"'
    assert at_two.json()["status"] == "verified" and at_two.json()["assessment"] is None
    assert at_two.json()["verification"]["confirmed"] == [{"category": "minimum_living_allowance",
                                                            "source": "document"}]

    history = client.get(f"/v1/cases/{case_id}/events", headers=staff).json()
    assert [e["version"] for e in history] == [1, 2, 3, 4]
    assert [e["type"] for e in history] == ["Applied", "Verified", "Assessed", "ClassEvaluated"]
    assert history[0]["actor"] == {"sub": "applicant-1", "role": "applicant"}
    assert history[3]["actor"] == {"sub": "evaluator-1", "role": "evaluator"}
    for event in history:
        as_of = client.get(f"/v1/cases/{case_id}", params={"as_of": event["occurred_at"]}, headers=staff)
        assert as_of.status_code == 200 and as_of.json()["version"] == event["version"]
    before = client.get(f"/v1/cases/{case_id}", params={"as_of": "2025-09-15T08:00:00+08:00"}, headers=staff)
    problem(before, 404, "not_found")
    later = client.get(f"/v1/cases/{case_id}", params={"as_of": "2030-01-01T00:00:00+08:00"}, headers=staff)
    assert later.json()["version"] == 4
    beyond = problem(client.get(f"/v1/cases/{case_id}", params={"version": 5}, headers=staff), 404, "not_found")
    assert beyond["current_version"] == 4
    problem(client.get(f"/v1/cases/{case_id}", params={"as_of": "2025-09-15T09:00:00"}, headers=staff), 422,
            "validation_failed", field="as_of")
    problem(client.get(f"/v1/cases/{case_id}", params={"version": 2, "as_of": history[0]["occurred_at"]},
                       headers=staff), 422, "validation_failed", field="as_of")
