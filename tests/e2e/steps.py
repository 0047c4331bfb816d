"""HTTP steps shared by the end-to-end tests of errors, scopes and concurrency: bring a case to a status, read
the event log behind the API, and check a problem+json answer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from adapters.settings import Settings
from api.app import create_app
from api.deps import Services
from tests.conftest import PG_HOST, PG_USER, SECRET, TokenFactory, _pg_admin
from tests.support import GX_SCHOOL, form, id_number

PROBLEM_MEMBERS = {"type", "title", "status", "detail", "code"}


def module_client(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One service per test module and store (request.param: sqlite or postgres), so the many small error and
    scope checks do not each pay for a database and a start-up. Tests sharing it use distinct students."""
    name = f"zizhu_test_{uuid.uuid4().hex[:16]}"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'zizhu.db'}"
    else:
        request.getfixturevalue("postgres_ready")
        with _pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:5432/{name}"
    settings = Settings(database_url=url, secret=SECRET, now="2025-09-15T09:00:00+08:00", log_level="WARNING")
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield client
    finally:
        if request.param == "postgres":
            with _pg_admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def services_of(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def case_log(client: TestClient) -> list[tuple[str, int, str]]:
    """Every case event in the store, in log order: what must not change when a request is refused."""
    recorder = services_of(client).store.recorder
    return [(str(n.originator_id), n.originator_version, n.topic)
            for n in recorder.select_notifications(None, 100_000) if n.topic.startswith("case.")]


def problem(response: Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    """Checks an error answer is problem+json with the standard members, the status and the stable code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_MEMBERS, body
    assert body["status"] == status and body["code"] == code, body
    assert body["type"].endswith(f"/{code}") and body["title"] and body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return body


def apply(client: TestClient, auth: TokenFactory, seq: int = 1, *, school: str = GX_SCHOOL,
          class_id: str = "G10-3") -> str:
    region = "320102" if school.startswith("S32") else "450103"
    body = form(seq, school_id=school, class_id=class_id, region=region)
    response = client.post("/v1/cases", json=body, headers=auth("applicant", student=id_number(seq, region=region)))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def advance(client: TestClient, auth: TokenFactory, case_id: str, to: str, *, school: str = GX_SCHOOL,
            class_id: str = "G10-3") -> dict[str, Any]:
    """Moves a case along the main line from where it stands up to `to` (verified, assessed, evaluated, rated)."""
    staff = auth("school", school=school)
    current = client.get(f"/v1/cases/{case_id}", headers=staff).json()["status"]
    steps = [("verified", "verify", staff, {"method": "document",
                                            "confirmed_categories": ["minimum_living_allowance"]}),
             ("assessed", "assess", staff, {}),
             ("evaluated", "evaluate", auth("evaluator", school=school, class_id=class_id),
              {"votes_for": 5, "votes_against": 1, "recommended_level": "especially_difficult"}),
             ("rated", "rate", staff, {"level": "especially_difficult"})]
    state: dict[str, Any] = {}
    order = ["applied"] + [status for status, *_ in steps]
    for status, command, headers, body in steps[order.index(current):]:
        response = client.post(f"/v1/cases/{case_id}/{command}", json=body, headers=headers)
        assert response.status_code == 200, response.text
        state = response.json()
        assert state["status"] == status
        if status == to:
            return state
    raise AssertionError(f"unknown target status {to}")
