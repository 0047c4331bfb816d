"""Review queues, case search and region statistics through HTTP, on SQLite and PostgreSQL; read-your-writes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from adapters.settings import Settings
from api.app import create_app
from api.routes import queries
from tests.conftest import TokenFactory
from tests.support import GX_SCHOOL, JS_SCHOOL, form, id_number

GX_OTHER = "S4501030002"  # same county as GX_SCHOOL


def _apply(client: TestClient, auth: TokenFactory, seq: int, **kw: str) -> tuple[str, str]:
    """Applies for student `seq`; returns (case id, X-Min-Position)."""
    school = kw.get("school_id", GX_SCHOOL)
    region = "320102" if school.startswith("S32") else "450103"
    body = form(seq, region=region, **kw)
    response = client.post("/v1/cases", json=body, headers=auth("school", school=school))
    assert response.status_code == 201, response.text
    return response.json()["id"], response.headers["X-Min-Position"]


def _verify(client: TestClient, auth: TokenFactory, case_id: str, school: str = GX_SCHOOL) -> str:
    response = client.post(f"/v1/cases/{case_id}/verify", headers=auth("school", school=school),
                           json={"method": "document", "confirmed_categories": ["minimum_living_allowance"]})
    assert response.status_code == 200, response.text
    return response.headers["X-Min-Position"]


def _queue(client: TestClient, headers: dict[str, str], school: str = GX_SCHOOL, position: str | None = None,
           **params: str | int) -> list[str]:
    if position is not None:
        headers = {**headers, "X-Min-Position": position}
    response = client.get(f"/v1/schools/{school}/queue", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_queue_lists_cases_waiting_at_a_step_oldest_first_with_time_waited(client: TestClient,
                                                                            auth: TokenFactory) -> None:
    first, _ = _apply(client, auth, 1)
    second, _ = _apply(client, auth, 2)
    third, position = _apply(client, auth, 3)
    staff = auth("school", school=GX_SCHOOL)
    assert _queue(client, staff, position=position, stage="applied") == [first, second, third]

    position = _verify(client, auth, second)
    assert _queue(client, staff, position=position, stage="applied") == [first, third]
    body = client.get(f"/v1/schools/{GX_SCHOOL}/queue", params={"stage": "verified"},
                      headers={**staff, "X-Min-Position": position}).json()
    assert [i["id"] for i in body["items"]] == [second]
    item = body["items"][0]
    assert item["status"] == "verified" and item["version"] == 2 and item["waited_seconds"] >= 0
    assert item["student_name"] == "韦小明" and "id_number" not in item


def test_queue_pages_with_a_cursor_and_filters_by_class_and_level(client: TestClient, auth: TokenFactory) -> None:
    ids = [_apply(client, auth, seq, class_id="G10-1" if seq % 2 else "G10-2")[0] for seq in range(1, 6)]
    position = _apply(client, auth, 9, class_id="G10-1")[1]
    staff = {**auth("school", school=GX_SCHOOL), "X-Min-Position": position}

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"stage": "applied", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = client.get(f"/v1/schools/{GX_SCHOOL}/queue", params=params, headers=staff).json()
        assert len(body["items"]) <= 2
        seen += [i["id"] for i in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 6 and len(set(seen)) == 6

    in_class = _queue(client, staff, stage="applied", class_id="G10-2")
    assert in_class == [ids[1], ids[3]]
    assert _queue(client, staff, stage="applied", level="difficult") == []


def test_queue_scope_per_role(client: TestClient, auth: TokenFactory) -> None:
    mine, _ = _apply(client, auth, 1, class_id="G10-3")
    other_class, position = _apply(client, auth, 2, class_id="G10-4")
    p = {"X-Min-Position": position}

    evaluator = {**auth("evaluator", school=GX_SCHOOL, class_id="G10-3"), **p}
    assert _queue(client, evaluator, stage="applied") == [mine]
    assert client.get(f"/v1/schools/{GX_SCHOOL}/queue", params={"stage": "applied", "class_id": "G10-4"},
                      headers=evaluator).status_code == 404

    county_bureau = {**auth("bureau", region="450103"), **p}
    assert _queue(client, county_bureau, stage="applied") == [mine, other_class]
    province_bureau = {**auth("bureau", region="450000"), **p}
    assert _queue(client, province_bureau, stage="applied") == [mine, other_class]
    auditor = {**auth("auditor"), **p}
    assert _queue(client, auditor, stage="applied") == [mine, other_class]

    for headers, school in ((auth("school", school=GX_OTHER), GX_SCHOOL),
                            (auth("bureau", region="320000"), GX_SCHOOL),
                            (auth("auditor"), "S0000000000")):
        response = client.get(f"/v1/schools/{school}/queue", params={"stage": "applied"}, headers=headers)
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "not_found"
    applicant = auth("applicant", student=id_number(1))
    assert client.get(f"/v1/schools/{GX_SCHOOL}/queue", params={"stage": "applied"},
                      headers=applicant).status_code == 403


@pytest.mark.parametrize("params", [{"stage": "waiting"}, {"stage": "applied", "limit": 200},
                                    {"stage": "applied", "limit": 0}, {"stage": "applied", "cursor": "bm9wZQ"},
                                    {"stage": "applied", "level": "poor"}, {}])
def test_queue_refuses_bad_input_with_422_problem(client: TestClient, auth: TokenFactory,
                                                  params: dict[str, str | int]) -> None:
    response = client.get(f"/v1/schools/{GX_SCHOOL}/queue", params=params, headers=auth("school", school=GX_SCHOOL))
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "validation_failed"


def test_case_search_matches_name_fragments_within_scope(client: TestClient, auth: TokenFactory) -> None:
    wei, _ = _apply(client, auth, 1)
    body = form(2)
    body["student"]["name"] = "黄丽娟"
    huang = client.post("/v1/cases", json=body, headers=auth("school", school=GX_SCHOOL)).json()["id"]
    other_school, _ = _apply(client, auth, 3, school_id=GX_OTHER)
    jiangsu, position = _apply(client, auth, 4, school_id=JS_SCHOOL)

    def search(headers: dict[str, str], **params: str) -> list[str]:
        response = client.get("/v1/cases", params=params, headers={**headers, "X-Min-Position": position})
        assert response.status_code == 200, response.text
        return sorted(i["id"] for i in response.json()["items"])

    staff = auth("school", school=GX_SCHOOL)
    assert search(staff, name="小明") == [wei]
    assert search(staff, name="丽") == [huang]
    assert search(staff) == sorted([wei, huang])
    assert search(staff, name="%") == []  # a wildcard is a plain character
    assert search(auth("bureau", region="450100")) == sorted([wei, huang, other_school])
    assert search(auth("auditor"), name="小明") == sorted([wei, other_school, jiangsu])
    assert search(auth("auditor"), status="applied", school_id=JS_SCHOOL) == [jiangsu]
    assert search(auth("applicant", student=id_number(2))) == [huang]
    assert search(auth("evaluator", school=GX_SCHOOL, class_id="G10-9")) == []
    assert client.get("/v1/cases", params={"status": "lost"}, headers=staff).status_code == 422


def test_region_statistics_count_per_school_level_and_status(client: TestClient, auth: TokenFactory) -> None:
    _apply(client, auth, 1)
    second, _ = _apply(client, auth, 2)
    _apply(client, auth, 3, school_id=GX_OTHER)
    _apply(client, auth, 4, school_id=JS_SCHOOL)
    position = _verify(client, auth, second)

    bureau = {**auth("bureau", region="450000"), "X-Min-Position": position}
    response = client.get("/v1/regions/450100/statistics", params={"academic_year": "2025-2026"}, headers=bureau)
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["total"] == 3
    assert stats["by_status"] == {"applied": 2, "verified": 1}
    assert {(r["school_id"], r["status"], r["count"]) for r in stats["rows"]} == {
        (GX_SCHOOL, "applied", 1), (GX_SCHOOL, "verified", 1), (GX_OTHER, "applied", 1)}
    assert client.get("/v1/regions/450100/statistics", params={"academic_year": "2024-2025"},
                      headers=bureau).json()["total"] == 0
    everything = client.get("/v1/regions/100000/statistics", headers=auth("auditor")).json()
    assert everything["total"] == 4

    county = auth("bureau", region="450103")
    assert client.get("/v1/regions/450000/statistics", headers=county).status_code == 404
    assert client.get("/v1/regions/320000/statistics", headers=county).status_code == 404
    assert client.get("/v1/regions/4501/statistics", headers=county).status_code == 422
    assert client.get("/v1/regions/450103/statistics", headers=auth("school", school=GX_SCHOOL)).status_code == 403


@pytest.fixture
def client_without_runner(settings: Settings) -> Iterator[TestClient]:
    """No background runner: only the X-Min-Position wait can bring the views up to date."""
    quiet = settings.model_copy(update={"run_projections": False})
    with TestClient(create_app(quiet), raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_query_with_x_min_position_sees_the_commands_effect(client_without_runner: TestClient,
                                                              auth: TokenFactory) -> None:
    client = client_without_runner
    staff = auth("school", school=GX_SCHOOL)
    case_id, position = _apply(client, auth, 1)

    unsynchronised = client.get(f"/v1/schools/{GX_SCHOOL}/queue", params={"stage": "applied"}, headers=staff)
    assert unsynchronised.json()["items"] == []  # the views lag: nothing runs them
    assert int(unsynchronised.headers["X-View-Position"]) < int(position)

    synchronised = client.get(f"/v1/schools/{GX_SCHOOL}/queue", params={"stage": "applied"},
                              headers={**staff, "X-Min-Position": position})
    assert [i["id"] for i in synchronised.json()["items"]] == [case_id]
    assert int(synchronised.headers["X-View-Position"]) >= int(position)

    position = _verify(client, auth, case_id)
    assert _queue(client, staff, position=position, stage="applied") == []
    assert _queue(client, staff, position=position, stage="verified") == [case_id]


def test_a_view_that_cannot_reach_the_position_answers_503_stale_view(client_without_runner: TestClient,
                                                                      auth: TokenFactory,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "READ_YOUR_WRITES_WAIT", 0.1)
    _, position = _apply(client_without_runner, auth, 1)
    beyond = str(int(position) + 1000)  # a position the log has not reached
    response = client_without_runner.get(f"/v1/schools/{GX_SCHOOL}/queue", params={"stage": "applied"},
                                         headers={**auth("school", school=GX_SCHOOL), "X-Min-Position": beyond})
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "stale_view" and response.headers["Retry-After"] == "1"
    assert response.json()["view_position"] == int(position)
    bad = client_without_runner.get(f"/v1/schools/{GX_SCHOOL}/queue", params={"stage": "applied"},
                                    headers={**auth("school", school=GX_SCHOOL), "X-Min-Position": "soon"})
    assert bad.status_code == 422
