"""A client retrying a command with the same `Idempotency-Key` after a lost response gets the first result and the
case gets no second event; the same key for another request is refused (422 idempotency_key_reused)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import delete

from adapters.db import create_db_engine
from adapters.idempotency import idempotency_keys
from adapters.settings import Settings
from tests.conftest import TokenFactory
from tests.support import GX_SCHOOL, form, id_number

VERIFY = {"method": "document", "confirmed_categories": ["minimum_living_allowance"], "notes": "checked"}


def _apply(client: TestClient, auth: TokenFactory, seq: int) -> str:
    created = client.post("/v1/cases", json=form(seq), headers=auth("applicant", student=id_number(seq)))
    assert created.status_code == 201, created.text
    case_id: str = created.json()["id"]
    return case_id


def _event_types(client: TestClient, auth: TokenFactory, case_id: str) -> list[str]:
    history = client.get(f"/v1/cases/{case_id}/events", headers=auth("school", school=GX_SCHOOL))
    assert history.status_code == 200, history.text
    return [e["type"] for e in history.json()]


def _same(first: httpx.Response, second: httpx.Response) -> None:
    assert (second.status_code, second.json()) == (first.status_code, first.json())
    assert second.headers["ETag"] == first.headers["ETag"]


def _verified(client: TestClient, auth: TokenFactory, seq: int) -> str:
    case_id = _apply(client, auth, seq)
    verified = client.post(f"/v1/cases/{case_id}/verify", json=VERIFY, headers=auth("school", school=GX_SCHOOL))
    assert verified.status_code == 200, verified.text
    return case_id


def test_a_retried_command_gets_the_first_result_and_no_second_event(
        client: TestClient, auth: TokenFactory, figures: dict[str, Any]) -> None:
    case_id = _verified(client, auth, 1)
    school = {**auth("school", school=GX_SCHOOL), "Idempotency-Key": "assess-1"}
    first = client.post(f"/v1/cases/{case_id}/assess", json={}, headers=school)
    assert first.status_code == 200, first.text
    # Assess is allowed again on an assessed case and records a new event each time: only the key stops a retry.
    retried = client.post(f"/v1/cases/{case_id}/assess", content=b"{ }",
                          headers={**school, "Content-Type": "application/json"})
    _same(first, retried)
    assert retried.headers["X-Min-Position"] == first.headers["X-Min-Position"]
    assert _event_types(client, auth, case_id) == ["Applied", "Verified", "Assessed"]
    unkeyed = client.post(f"/v1/cases/{case_id}/assess", json={}, headers=auth("school", school=GX_SCHOOL))
    assert unkeyed.status_code == 200 and unkeyed.json()["version"] == 4
    figures.update(commands_sent=3, events_recorded=2, duplicates_suppressed=1)


def test_a_retried_application_gets_the_first_201(client: TestClient, auth: TokenFactory) -> None:
    applicant = {**auth("applicant", student=id_number(2)), "Idempotency-Key": "apply-2"}
    first = client.post("/v1/cases", json=form(2), headers=applicant)
    assert first.status_code == 201, first.text
    retried = client.post("/v1/cases", json=form(2), headers=applicant)
    _same(first, retried)
    assert _event_types(client, auth, first.json()["id"]) == ["Applied"]
    # Without the key the same application is the documented duplicate: 409.
    again = client.post("/v1/cases", json=form(2), headers=auth("applicant", student=id_number(2)))
    assert again.status_code == 409


def test_the_retry_answers_the_state_right_after_the_first_even_when_the_case_moved_on(
        client: TestClient, auth: TokenFactory) -> None:
    case_id = _apply(client, auth, 3)
    school = auth("school", school=GX_SCHOOL)
    keyed = {**school, "Idempotency-Key": "verify-3", "If-Match": '"1"'}
    first = client.post(f"/v1/cases/{case_id}/verify", json=VERIFY, headers=keyed)
    assert first.status_code == 200, first.text
    assert client.post(f"/v1/cases/{case_id}/assess", json={}, headers=school).status_code == 200
    retried = client.post(f"/v1/cases/{case_id}/verify", json=VERIFY, headers=keyed)
    _same(first, retried)  # not 412 (If-Match "1" is stale now) and not the assessed state
    assert _event_types(client, auth, case_id) == ["Applied", "Verified", "Assessed"]


def test_the_same_key_for_another_request_is_refused(client: TestClient, auth: TokenFactory) -> None:
    case_id = _apply(client, auth, 4)
    other_case = _apply(client, auth, 5)
    school = {**auth("school", school=GX_SCHOOL), "Idempotency-Key": "k-4"}
    assert client.post(f"/v1/cases/{case_id}/verify", json=VERIFY, headers=school).status_code == 200
    for path, body in ((f"/v1/cases/{case_id}/verify", {**VERIFY, "notes": "other"}),
                       (f"/v1/cases/{other_case}/verify", VERIFY),
                       (f"/v1/cases/{case_id}/assess", {})):
        refused = client.post(path, json=body, headers=school)
        assert refused.status_code == 422, (path, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "idempotency_key_reused"
    assert _event_types(client, auth, case_id) == ["Applied", "Verified"]
    assert _event_types(client, auth, other_case) == ["Applied"]


def test_keys_belong_to_their_caller(client: TestClient, auth: TokenFactory) -> None:
    first, second = _apply(client, auth, 6), _apply(client, auth, 7)
    for sub, case_id in (("clerk-a", first), ("clerk-b", second)):
        headers = {**auth("school", sub=sub, school=GX_SCHOOL), "Idempotency-Key": "shared-name"}
        assert client.post(f"/v1/cases/{case_id}/verify", json=VERIFY, headers=headers).status_code == 200
    assert _event_types(client, auth, first) == _event_types(client, auth, second) == ["Applied", "Verified"]


def test_a_key_saved_in_the_event_but_not_indexed_is_still_found(
        client: TestClient, auth: TokenFactory, settings: Settings) -> None:
    """The process died between saving the event and writing the index row: the event itself holds the key."""
    case_id = _verified(client, auth, 8)
    school = {**auth("school", school=GX_SCHOOL), "Idempotency-Key": "crash-window"}
    first = client.post(f"/v1/cases/{case_id}/assess", json={}, headers=school)
    assert first.status_code == 200
    engine = create_db_engine(settings)
    with engine.begin() as conn:
        assert conn.execute(delete(idempotency_keys)).rowcount == 1
    engine.dispose()
    retried = client.post(f"/v1/cases/{case_id}/assess", json={}, headers=school)
    assert (retried.status_code, retried.json()) == (first.status_code, first.json())
    assert _event_types(client, auth, case_id) == ["Applied", "Verified", "Assessed"]
    reused = client.post(f"/v1/cases/{case_id}/verify", json=VERIFY, headers=school)
    assert reused.json()["code"] == "idempotency_key_reused"


def test_concurrent_duplicates_record_one_event(client: TestClient, auth: TokenFactory,
                                                figures: dict[str, Any]) -> None:
    cases = [_verified(client, auth, 20 + i) for i in range(3)]
    school = auth("school", school=GX_SCHOOL)
    copies = 6

    def send(case_id: str) -> httpx.Response:
        return client.post(f"/v1/cases/{case_id}/assess", json={},
                           headers={**school, "Idempotency-Key": f"dup-{case_id}"})

    with ThreadPoolExecutor(max_workers=copies) as pool:
        responses = list(pool.map(send, [c for c in cases for _ in range(copies)]))
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses if r.status_code != 200]
    for case_id in cases:
        bodies = {str(r.json()) for r in responses if r.json()["id"] == case_id}
        assert len(bodies) == 1
        assert _event_types(client, auth, case_id) == ["Applied", "Verified", "Assessed"]
    figures.update(commands_sent=len(responses), cases=len(cases), events_recorded=len(cases),
                   duplicates_suppressed=len(responses) - len(cases))


def test_a_malformed_key_is_refused(client: TestClient, auth: TokenFactory) -> None:
    case_id = _apply(client, auth, 9)
    refused = client.post(f"/v1/cases/{case_id}/verify", json=VERIFY,
                          headers={**auth("school", school=GX_SCHOOL), "Idempotency-Key": "x" * 300})
    assert refused.status_code == 422 and refused.json()["field"] == "Idempotency-Key"
    assert _event_types(client, auth, case_id) == ["Applied"]
