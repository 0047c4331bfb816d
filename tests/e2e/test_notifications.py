"""Notifications through HTTP on SQLite and PostgreSQL: each caller's inbox holds what concerns them and nothing
else; paging; the outbound dispatcher sends each message once (also across a rebuild of the view) and the logging
gateway logs nothing personal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from adapters.logs import configure_logging
from adapters.notifications import Dispatcher, LoggingNotifier, OutboundMessage
from tests.conftest import TokenFactory
from tests.e2e.aftercare_support import Open, open_service, services_of
from tests.e2e.steps import problem
from tests.support import GX_SCHOOL, form, id_number


class RecordingGateway:
    """A Notifier that keeps what it is given (the same port as the logging one)."""

    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []

    def send(self, message: OutboundMessage) -> None:
        self.sent.append(message)


@pytest.fixture
def open_client(database_url: str) -> Iterator[Open]:
    yield from open_service(database_url)


def inbox(client: TestClient, headers: dict[str, str], position: str | None = None, **params: Any) -> Any:
    extra = {"X-Min-Position": position} if position else {}
    response = client.get("/v1/notifications", headers={**headers, **extra}, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def run_case(client: TestClient, auth: TokenFactory, seq: int, klass: str = "G10-3") -> tuple[str, str]:
    """Applies, verifies, assesses, evaluates, rates and revokes one case; returns (case id, last position)."""
    staff = auth("school", school=GX_SCHOOL)
    body = form(seq, class_id=klass)
    case_id = client.post("/v1/cases", json=body, headers=auth("applicant", student=id_number(seq))).json()["id"]
    client.post(f"/v1/cases/{case_id}/verify", headers=staff,
                json={"method": "document", "confirmed_categories": ["minimum_living_allowance"]})
    client.post(f"/v1/cases/{case_id}/assess", headers=staff, json={})
    client.post(f"/v1/cases/{case_id}/evaluate", headers=auth("evaluator", school=GX_SCHOOL, class_id=klass),
                json={"votes_for": 5, "votes_against": 0, "recommended_level": "especially_difficult"})
    client.post(f"/v1/cases/{case_id}/rate", headers=staff, json={"level": "especially_difficult"})
    revoked = client.post(f"/v1/cases/{case_id}/revoke", headers=staff,
                          json={"reason": "伪造收入证明", "dishonest": True})
    assert revoked.status_code == 200, revoked.text
    return case_id, revoked.headers["X-Min-Position"]


def kinds(page: Any) -> list[str]:
    return [item["kind"] for item in page["items"]]


def test_each_caller_sees_what_concerns_them_and_nothing_else(client: TestClient, auth: TokenFactory) -> None:
    first, _ = run_case(client, auth, 1)
    second, position = run_case(client, auth, 2, klass="G11-1")
    mine = inbox(client, auth("applicant", student=id_number(1)), position)
    # Newest first; only the first student's case.
    assert kinds(mine) == ["case.revoked", "case.rated", "case.verified", "case.applied"]
    assert [item["title"] for item in mine["items"]] == ["认定资格已取消", "学校已作出认定", "身份核验已完成",
                                                         "认定申请已提交，等待身份核验"]
    assert {item["data"]["case_id"] for item in mine["items"]} == {first}
    staff = inbox(client, auth("school", school=GX_SCHOOL), position)
    assert kinds(staff).count("case.applied") == 2 and kinds(staff).count("case.awaiting_rating") == 2
    assert {item["data"]["case_id"] for item in staff["items"]} == {first, second}
    teacher = inbox(client, auth("evaluator", school=GX_SCHOOL, class_id="G11-1"), position)
    assert [(i["kind"], i["data"]["case_id"]) for i in teacher["items"]] == [("case.awaiting_evaluation", second)]
    bureau = inbox(client, auth("bureau", region="450100"), position)
    assert kinds(bureau) == ["case.revoked", "case.revoked"]
    assert inbox(client, auth("bureau", region="320000"), position)["items"] == []
    assert inbox(client, auth("school", school="S4501030002"), position)["items"] == []
    assert inbox(client, auth("auditor"), position)["items"] == []
    text = json.dumps([mine, staff, teacher, bureau], ensure_ascii=False)
    for forbidden in (id_number(1), id_number(2), "韦小明", "minimum_living_allowance", "伪造收入证明"):
        assert forbidden not in text


def test_the_inbox_pages_newest_first(client: TestClient, auth: TokenFactory) -> None:
    _, position = run_case(client, auth, 3)
    staff = auth("school", school=GX_SCHOOL)
    everything = inbox(client, staff, position, limit=100)["items"]
    first = inbox(client, staff, position, limit=2)
    assert [i["id"] for i in first["items"]] == [i["id"] for i in everything[:2]]
    rest = inbox(client, staff, before=first["next_cursor"], limit=100)
    assert [i["id"] for i in first["items"] + rest["items"]] == [i["id"] for i in everything]
    assert rest["next_cursor"] is None
    assert kinds(inbox(client, staff, kind="case.revoked")) == ["case.revoked"]
    problem(client.get("/v1/notifications", params={"limit": 0}, headers=staff), 422, "validation_failed")
    problem(client.get("/v1/notifications", params={"before": "x"}, headers=staff), 422, "validation_failed")


def test_round_openings_and_plans_reach_their_recipients(open_client: Open, auth: TokenFactory) -> None:
    from tests.e2e.aftercare_support import identified

    client = open_client()
    case_id = identified(client, 4)
    opened = client.post(f"/v1/schools/{GX_SCHOOL}/rounds", headers=auth("school", school=GX_SCHOOL),
                         json={"academic_year": "2025-2026", "kind": "identification", "opens_on": "2025-09-16",
                               "closes_on": "2025-11-30"})
    plan = client.post(f"/v1/cases/{case_id}/plan", headers=auth("school", school=GX_SCHOOL))
    staff = inbox(client, auth("school", school=GX_SCHOOL), plan.headers["X-Min-Position"])
    assert staff["items"][0]["kind"] == "round.opened"
    assert staff["items"][0]["data"] == {"round_id": opened.json()["id"], "kind": "identification",
                                         "academic_year": "2025-2026", "opens_on": "2025-09-16",
                                         "closes_on": "2025-11-30"}
    applicant = inbox(client, auth("applicant", student=id_number(4)), plan.headers["X-Min-Position"])
    assert applicant["items"][0]["kind"] == "plan.created"
    assert applicant["items"][0]["data"] == {"plan_id": plan.json()["id"], "case_id": case_id}


def test_the_gateway_gets_each_message_once_even_after_a_rebuild(open_client: Open, auth: TokenFactory) -> None:
    client = open_client()
    _, position = run_case(client, auth, 5)
    services = services_of(client)
    assert services.projections.wait_for("notifications", int(position))
    gateway = RecordingGateway()
    dispatcher = Dispatcher(services.projections, gateway, name="test-gateway", batch_size=3)
    sent = dispatcher.drain()
    expected = inbox(client, auth("school", school=GX_SCHOOL))["items"] + \
        inbox(client, auth("applicant", student=id_number(5)))["items"] + \
        inbox(client, auth("evaluator", school=GX_SCHOOL, class_id="G10-3"))["items"] + \
        inbox(client, auth("bureau", region="450000"))["items"]
    assert sent == len(gateway.sent) == len(expected)
    assert sorted(m.message_id for m in gateway.sent) == sorted(i["id"] for i in expected)
    assert sorted((m.message_id, m.title) for m in gateway.sent) == sorted((i["id"], i["title"]) for i in expected)
    assert dispatcher.drain() == 0
    services.projections.rebuild("notifications")
    assert dispatcher.drain() == 0 and len(gateway.sent) == sent
    _, later = run_case(client, auth, 6)
    assert services.projections.wait_for("notifications", int(later))
    assert dispatcher.drain() > 0
    assert len({m.message_id for m in gateway.sent}) == len(gateway.sent)


def test_the_logging_gateway_logs_that_a_message_went_out_and_nothing_personal(client: TestClient,
                                                                               auth: TokenFactory) -> None:
    case_id, position = run_case(client, auth, 7)
    services = services_of(client)
    assert services.projections.wait_for("notifications", int(position))
    configure_logging("INFO")  # the test settings log at WARNING, which would drop the info lines under test
    try:
        with capture_logs() as logs:
            assert Dispatcher(services.projections, LoggingNotifier(), name="log-check").drain() > 0
    finally:
        configure_logging(services.settings.log_level)
    sent = [entry for entry in logs if entry["event"] == "notification_sent"]
    assert sent and all(set(entry) <= {"event", "log_level", "message_id", "kind", "recipient_kind"}
                        for entry in sent)
    text = json.dumps(logs, ensure_ascii=False)
    for forbidden in (case_id, id_number(7), "韦小明", GX_SCHOOL):
        assert forbidden not in text
