"""Two staff rate the same case at once through HTTP, on both stores: one wins, the other gets 409 or 412, and the
log holds exactly one Rated event."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from domain.case import StudentCase
from tests.conftest import TokenFactory
from tests.e2e.steps import advance, apply, module_client, services_of
from tests.support import GX_SCHOOL


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    yield from module_client(request, tmp_path_factory)


def at_once(*requests: Callable[[], Response]) -> list[Response]:
    """Sends the requests from separate threads at the same moment; returns their answers in order."""
    start = threading.Barrier(len(requests), timeout=30)
    answers: list[Any] = [None] * len(requests)

    def send(i: int) -> None:
        start.wait()
        try:
            answers[i] = requests[i]()
        except BaseException as exc:  # reported by the assertion below
            answers[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert all(isinstance(a, Response) for a in answers), answers
    return answers


def rated_events(client: TestClient, auth: TokenFactory, case_id: str) -> int:
    history = client.get(f"/v1/cases/{case_id}/events", headers=auth("auditor")).json()
    return sum(1 for event in history if event["type"] == "Rated")


def test_two_staff_rating_with_the_same_if_match_one_wins(client: TestClient, auth: TokenFactory) -> None:
    case_id = apply(client, auth, 101)
    version = advance(client, auth, case_id, "evaluated")["version"]
    first, second = (auth("school", sub=name, school=GX_SCHOOL) for name in ("staff-a", "staff-b"))
    answers = at_once(
        lambda: client.post(f"/v1/cases/{case_id}/rate", json={"level": "especially_difficult"},
                            headers={**first, "If-Match": f'"{version}"'}),
        lambda: client.post(f"/v1/cases/{case_id}/rate", json={"level": "difficult", "reason": "second opinion"},
                            headers={**second, "If-Match": f'"{version}"'}))
    statuses = sorted(a.status_code for a in answers)
    assert statuses[0] == 200 and statuses[1] in {409, 412}, [a.text for a in answers]
    loser = next(a for a in answers if a.status_code != 200)
    assert loser.headers["content-type"].startswith("application/problem+json")
    assert loser.json()["code"] in {"conflict", "precondition_failed"}
    assert rated_events(client, auth, case_id) == 1
    winner = next(a for a in answers if a.status_code == 200).json()
    final = client.get(f"/v1/cases/{case_id}", headers=first).json()
    assert final["level"] == winner["level"] and final["version"] == version + 1


def test_two_staff_rating_truly_at_once_without_if_match_one_gets_409(client: TestClient,
                                                                      auth: TokenFactory) -> None:
    case_id = apply(client, auth, 102)
    advance(client, auth, case_id, "evaluated")
    cases = services_of(client).cases
    # Both requests must have loaded the case before either saves; the barrier holds each at the save.
    overlap = threading.Barrier(2, timeout=20)
    original = cases._save

    def held(case: StudentCase) -> int | None:
        overlap.wait()
        return original(case)

    cases._save = held  # type: ignore[method-assign]
    try:
        answers = at_once(
            lambda: client.post(f"/v1/cases/{case_id}/rate", json={"level": "especially_difficult"},
                                headers=auth("school", sub="staff-a", school=GX_SCHOOL)),
            lambda: client.post(f"/v1/cases/{case_id}/rate", json={"level": "especially_difficult"},
                                headers=auth("school", sub="staff-b", school=GX_SCHOOL)))
    finally:
        del cases._save  # back to the class's method
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    loser = next(a for a in answers if a.status_code == 409)
    assert loser.json()["code"] == "conflict"
    assert rated_events(client, auth, case_id) == 1
