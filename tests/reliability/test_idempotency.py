"""A client retrying a command with the same `Idempotency-Key` after a lost response gets the first result and the
case gets no second event; the same key for another request is refused (422 idempotency_key_reused)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, insert, select, update

from adapters.db import create_db_engine
from adapters.idempotency import RequestKey, ResponseLog, idempotency_keys, idempotent_responses
from adapters.settings import Settings
from api import idempotency as api_idempotency
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
    """The process died between saving the event and writing the index row and the kept answer: the event itself
    holds the key. The answer's row, left `running`, is taken over once its lease has run out."""
    case_id = _verified(client, auth, 8)
    school = {**auth("school", school=GX_SCHOOL), "Idempotency-Key": "crash-window"}
    first = client.post(f"/v1/cases/{case_id}/assess", json={}, headers=school)
    assert first.status_code == 200
    engine = create_db_engine(settings)
    with engine.begin() as conn:
        # Its claim was new, so nothing indexed the key outside the event (adapters/idempotency.py).
        assert conn.execute(delete(idempotency_keys)).rowcount == 0
        died = datetime.now(UTC) - ResponseLog.LEASE - timedelta(seconds=1)
        assert conn.execute(update(idempotent_responses).values(
            state="running", status=None, headers=None, body=None, started_at=died)).rowcount == 1
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


# ------------------------------------------------------------------------------------------ every other POST


def _history_lengths(client: TestClient, auth: TokenFactory, case_ids: list[str]) -> list[int]:
    return [len(_event_types(client, auth, c)) for c in case_ids]


def test_a_retried_batch_gets_the_first_answer_and_changes_nothing_more(
        client: TestClient, auth: TokenFactory, figures: dict[str, Any]) -> None:
    school = {**auth("school", school=GX_SCHOOL), "Idempotency-Key": "enter-30-32"}
    body = {"applications": [form(30), form(31), form(32)]}
    first = client.post(f"/v1/schools/{GX_SCHOOL}/applications", json=body, headers=school)
    assert first.status_code == 200, first.text
    assert [r["outcome"] for r in first.json()["applications"]] == ["ok", "ok", "ok"]
    assert "Idempotent-Replayed" not in first.headers
    retried = client.post(f"/v1/schools/{GX_SCHOOL}/applications", json=body, headers=school)
    # Without the key a rerun is harmless but answers differently ("skipped", conflict): with it, the first answer.
    assert (retried.status_code, retried.json()) == (first.status_code, first.json())
    assert retried.headers["X-Min-Position"] == first.headers["X-Min-Position"]
    assert retried.headers["Idempotent-Replayed"] == "true"
    ids = [r["case_id"] for r in first.json()["applications"]]
    assert _history_lengths(client, auth, ids) == [1, 1, 1]
    rerun = client.post(f"/v1/schools/{GX_SCHOOL}/applications", json=body, headers=auth("school", school=GX_SCHOOL))
    assert [r["code"] for r in rerun.json()["applications"]] == ["conflict"] * 3
    figures.update(requests_sent=3, replayed=1, events_recorded=3)


def test_concurrent_copies_of_a_batch_wait_for_the_first_and_share_its_answer(
        client: TestClient, auth: TokenFactory, figures: dict[str, Any]) -> None:
    ids = [_verified(client, auth, 40 + i) for i in range(4)]
    school = {**auth("school", school=GX_SCHOOL), "Idempotency-Key": "assess-all"}
    copies = 6

    def send(_: int) -> httpx.Response:
        return client.post(f"/v1/schools/{GX_SCHOOL}/assess-verified", json={}, headers=school)

    with ThreadPoolExecutor(max_workers=copies) as pool:
        responses = list(pool.map(send, range(copies)))
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses]
    assert len({str(r.json()) for r in responses}) == 1
    assert responses[0].json()["ok"] == 4
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == copies - 1
    assert _history_lengths(client, auth, ids) == [3, 3, 3, 3]  # applied, verified, assessed: once each
    figures.update(requests_sent=copies, ran=1, replayed=copies - 1, events_recorded=len(ids))


def test_a_refused_request_keeps_nothing_and_its_key_stays_usable(client: TestClient, auth: TokenFactory) -> None:
    school = {**auth("school", school=GX_SCHOOL), "Idempotency-Key": "enter-50"}
    refused = client.post(f"/v1/schools/{GX_SCHOOL}/applications", json={"applications": []}, headers=school)
    assert refused.status_code == 422, refused.text
    entered = client.post(f"/v1/schools/{GX_SCHOOL}/applications", json={"applications": [form(50)]},
                          headers=school)
    assert entered.status_code == 200 and entered.json()["applications"][0]["outcome"] == "ok", entered.text


def test_a_key_used_for_a_batch_is_refused_for_a_case_command_and_the_other_way_round(
        client: TestClient, auth: TokenFactory) -> None:
    case_id = _apply(client, auth, 60)
    school = {**auth("school", school=GX_SCHOOL), "Idempotency-Key": "one-use"}
    assert client.post(f"/v1/cases/{case_id}/verify", json=VERIFY, headers=school).status_code == 200
    refused = client.post(f"/v1/schools/{GX_SCHOOL}/assess-verified", json={}, headers=school)
    assert refused.status_code == 422 and refused.json()["code"] == "idempotency_key_reused", refused.text
    assert _event_types(client, auth, case_id) == ["Applied", "Verified"]
    batch = {**school, "Idempotency-Key": "batch-use"}
    assert client.post(f"/v1/schools/{GX_SCHOOL}/assess-verified", json={}, headers=batch).status_code == 200
    refused = client.post(f"/v1/cases/{case_id}/assess", json={}, headers=batch)
    assert refused.status_code == 422 and refused.json()["code"] == "idempotency_key_reused", refused.text
    assert _event_types(client, auth, case_id) == ["Applied", "Verified", "Assessed"]


def test_a_copy_that_waits_too_long_for_the_first_is_told_to_retry(
        client: TestClient, auth: TokenFactory, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first copy is still running (its row is `running` and within its lease): the copy gets 409
    request_in_progress with Retry-After, and runs nothing."""
    case_id = _verified(client, auth, 70)
    school = {**auth("school", school=GX_SCHOOL), "Idempotency-Key": "slow-first"}
    path = f"/v1/cases/{case_id}/assess"
    request = RequestKey.derive(sub="school-1", header="slow-first", method="POST", path=path, query=b"",
                                body=b"{}")
    engine = create_db_engine(settings)
    with engine.begin() as conn:
        conn.execute(insert(idempotent_responses).values(key=request.key, fingerprint=request.fingerprint,
                                                         state="running", started_at=datetime.now(UTC)))
    engine.dispose()
    monkeypatch.setattr(api_idempotency, "WAIT", 0.3)
    busy = client.post(path, json={}, headers=school)
    assert busy.status_code == 409 and busy.json()["code"] == "request_in_progress", busy.text
    assert busy.headers["Retry-After"] == "1"
    assert _event_types(client, auth, case_id) == ["Applied", "Verified"]


def test_a_command_that_failed_after_saving_is_not_applied_again_by_its_retry(
        client: TestClient, auth: TokenFactory, monkeypatch: pytest.MonkeyPatch, figures: dict[str, Any]) -> None:
    """The event is stored, then the request fails (500): its claim is abandoned, not released, so the retry takes it
    over, searches the case's events, finds the key and answers with the first event's result. (Released, the
    retry's claim would be new, skip the search, and assess the case a second time.)"""
    case_id = _verified(client, auth, 80)
    store = client.app.state.services.store  # type: ignore[attr-defined]
    original = store.save
    failures = [RuntimeError("the answer could not be written")]

    def save_then_fail(*objs: Any, **kwargs: Any) -> Any:
        recordings = original(*objs, **kwargs)
        if failures:
            raise failures.pop()
        return recordings

    monkeypatch.setattr(store, "save", save_then_fail)
    school = {**auth("school", school=GX_SCHOOL), "Idempotency-Key": "failed-after-save"}
    failed = client.post(f"/v1/cases/{case_id}/assess", json={}, headers=school)
    assert failed.status_code == 500, failed.text
    assert _event_types(client, auth, case_id) == ["Applied", "Verified", "Assessed"]
    retried = client.post(f"/v1/cases/{case_id}/assess", json={}, headers=school)
    assert retried.status_code == 200, retried.text
    assert retried.json()["version"] == 3 and retried.json()["status"] == "assessed"
    assert _event_types(client, auth, case_id) == ["Applied", "Verified", "Assessed"]
    replayed = client.post(f"/v1/cases/{case_id}/assess", json={}, headers=school)
    assert replayed.headers.get("Idempotent-Replayed") == "true"
    assert replayed.json() == retried.json()
    figures.update(commands_sent=3, failed_after_saving=1, events_recorded=1, duplicates_suppressed=2)


def test_only_a_claim_that_is_not_new_searches_for_an_earlier_event(
        client: TestClient, auth: TokenFactory, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new key cannot be in any event: the command reads nothing for it and indexes nothing. A claim taken over
    (its first request's process died) searches."""
    case_id = _verified(client, auth, 81)
    searched: list[str] = []
    requests = client.app.state.services.cases.requests  # type: ignore[attr-defined]
    original = requests.earlier

    def counted(request: RequestKey, *args: Any, **kwargs: Any) -> Any:
        searched.append(request.key)
        return original(request, *args, **kwargs)

    monkeypatch.setattr(requests, "earlier", counted)
    school = {**auth("school", school=GX_SCHOOL), "Idempotency-Key": "new-key"}
    first = client.post(f"/v1/cases/{case_id}/assess", json={}, headers=school)
    assert first.status_code == 200 and searched == []
    engine = create_db_engine(settings)
    with engine.begin() as conn:
        assert conn.execute(select(idempotency_keys)).first() is None
        died = datetime.now(UTC) - ResponseLog.LEASE - timedelta(seconds=1)
        conn.execute(update(idempotent_responses).values(state="running", status=None, headers=None, body=None,
                                                         started_at=died))
    retried = client.post(f"/v1/cases/{case_id}/assess", json={}, headers=school)
    assert (retried.status_code, retried.json()) == (first.status_code, first.json())
    assert len(searched) == 1
    with engine.connect() as conn:
        assert conn.execute(select(idempotency_keys.c.version)).scalars().all() == [3]  # indexed once searched
    engine.dispose()
    assert _event_types(client, auth, case_id) == ["Applied", "Verified", "Assessed"]
