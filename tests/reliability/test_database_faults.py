"""Database faults on PostgreSQL: connections cut mid-run, then the database refusing connections for a while.

While the faults last, requests fail cleanly: 503 problem+json (`unavailable`, with Retry-After), never a 500; when
the database is back the same service (no restart) answers again, the projection runner catches up, and every
command acknowledged is in the log exactly once (commands answered 503 are retried with their Idempotency-Key,
as a client would, so each ends acknowledged or refused).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest
from eventsourcing import persistence
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg_pool import PoolTimeout
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from adapters.settings import Settings
from api.errors import install_error_handlers
from tests.conftest import SECRET, TokenFactory, _pg_admin
from tests.reliability.logcheck import Sent, path_errors, presence_errors
from tests.support import GX_SCHOOL, form, id_number

CASES = 4
CLIENTS = 4
CUTS = 6  # bursts of pg_terminate_backend, while the clients send
MIN_REQUESTS_PER_CLIENT = 10
RECOVERY_ATTEMPTS = 400  # × 50 ms


@pytest.fixture
def pg_settings(postgres_url: str) -> Settings:
    return Settings(database_url=postgres_url, secret=SECRET, now="2025-09-15T09:00:00+08:00", log_level="ERROR")


@pytest.fixture
def pg_client(pg_settings: Settings) -> Iterator[TestClient]:
    from api.app import create_app

    with TestClient(create_app(pg_settings), raise_server_exceptions=False) as client:
        yield client


def _cut(dbname: str, admin: psycopg.Connection[Any]) -> int:
    """Terminates every server process serving the test database (the service's pooled connections)."""
    rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,)).fetchall()
    return sum(1 for (ok,) in rows if ok)


def _is_clean_503(response: httpx.Response) -> bool:
    return (response.status_code == 503 and response.headers["content-type"] == "application/problem+json"
            and response.json()["code"] == "unavailable" and "Retry-After" in response.headers)


def test_cut_connections_give_503_and_the_service_recovers_without_restart(
        pg_client: TestClient, pg_settings: Settings, auth: TokenFactory, figures: dict[str, Any]) -> None:
    client = pg_client
    dbname = make_url(pg_settings.database_url).database or ""
    school_id = {"school": GX_SCHOOL}
    cases = []
    for seq in range(1, CASES + 1):
        created = client.post("/v1/cases", json=form(seq), headers=auth("applicant", sub="setup",
                                                                         student=id_number(seq)))
        assert created.status_code == 201, created.text
        cases.append(created.json()["id"])
    sent: list[Sent] = []
    keys: dict[str, dict[str, str]] = {}
    statuses: Counter[int] = Counter()
    done = threading.Event()
    cuts = 0

    def cutter() -> None:
        nonlocal cuts
        try:
            with _pg_admin() as admin:
                for _ in range(CUTS):
                    time.sleep(0.2)
                    cuts += _cut(dbname, admin)
        finally:
            done.set()

    def run_client(number: int) -> None:
        rng = random.Random(number)
        i = 0
        while not done.is_set() or i < MIN_REQUESTS_PER_CLIENT:
            i += 1
            case_id = rng.choice(cases)
            kind = rng.choice(["command", "command", "read", "query"])
            if kind == "command":
                request = Sent(sub=f"c{number}-r{i}", case_id=case_id, command="verify")
                headers = {**auth("school", sub=request.sub, **school_id), "Idempotency-Key": request.sub}
                keys[request.sub] = headers
                response = client.post(f"/v1/cases/{case_id}/verify", headers=headers, json=_verify(request.sub))
                request.status = response.status_code
                if response.is_success:
                    request.version = int(response.headers["ETag"].strip('"'))
                sent.append(request)
            elif kind == "read":
                response = client.get(f"/v1/cases/{case_id}/events", headers=auth("auditor", sub="reader"))
            else:
                response = client.get(f"/v1/schools/{GX_SCHOOL}/queue", params={"stage": "verified"},
                                      headers=auth("school", sub="reader", **school_id))
            statuses[response.status_code] += 1
            assert response.status_code in {200, 409} or _is_clean_503(response), (kind, response.text)

    thread = threading.Thread(target=cutter, daemon=True)
    thread.start()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        list(pool.map(run_client, range(CLIENTS)))
    thread.join()
    cut_phase = dict(statuses)

    # A hard outage: the database refuses every connection for a while.
    with _pg_admin() as admin:
        admin.execute(f'ALTER DATABASE "{dbname}" WITH ALLOW_CONNECTIONS false')
        try:
            cuts += _cut(dbname, admin)
            down = [
                client.post(f"/v1/cases/{cases[0]}/verify", json=_verify("down"),
                            headers=auth("school", sub="down", **school_id)),
                client.get(f"/v1/schools/{GX_SCHOOL}/queue", params={"stage": "verified"},
                           headers=auth("school", sub="reader", **school_id)),
            ]
            assert all(_is_clean_503(r) for r in down), [(r.status_code, r.text) for r in down]
            assert client.get("/healthz").status_code == 503
        finally:
            admin.execute(f'ALTER DATABASE "{dbname}" WITH ALLOW_CONNECTIONS true')

    # Back without a restart: the same app answers, and every command in doubt is settled by its key.
    attempts = _until_healthy(client)
    in_doubt = [r for r in sent if r.status == 503]
    for request in in_doubt:
            response = client.post(f"/v1/cases/{request.case_id}/verify", headers=keys[request.sub],
                                   json=_verify(request.sub))
            assert response.status_code in {200, 409}, response.text
            request.status = response.status_code
            request.version = int(response.headers["ETag"].strip('"')) if response.is_success else None
    logs = {c: client.get(f"/v1/cases/{c}/events", headers=auth("auditor", sub="reader")).json() for c in cases}
    for case_id, events in logs.items():
        assert path_errors(events) == [], case_id
    assert presence_errors(sent, logs, frozenset({"setup"})) == []
    assert _views_caught_up(client)
    figures.update(connections_cut=cuts, requests_during_cuts=sum(cut_phase.values()),
                   answered_503=cut_phase.get(503, 0), answered_200=cut_phase.get(200, 0),
                   answered_409=cut_phase.get(409, 0), server_errors_500=0,
                   hard_outage_requests_503=len(down), recovery_health_checks=attempts,
                   commands_sent=len(sent), commands_retried_with_key=len(in_doubt),
                   commands_acknowledged=sum(1 for r in sent if r.status == 200), events_lost=0, duplicated_events=0)


def _verify(notes: str) -> dict[str, Any]:
    return {"method": "document", "confirmed_categories": ["minimum_living_allowance"], "notes": notes}


def _until_healthy(client: TestClient) -> int:
    for attempt in range(1, RECOVERY_ATTEMPTS + 1):
        if client.get("/healthz").status_code == 200:
            return attempt
        time.sleep(0.05)
    pytest.fail("the service did not recover after the database came back")


def _views_caught_up(client: TestClient) -> bool:
    for _ in range(RECOVERY_ATTEMPTS):
        views = client.get("/healthz").json().get("views", {})
        if views and all(v.get("lag") == 0 for v in views.values()):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("error", [
    pytest.param(lambda: persistence.OperationalError("gone"), id="store"),
    pytest.param(lambda: persistence.InterfaceError("closed"), id="store-if"),
    pytest.param(lambda: sa_exc.OperationalError("SELECT 1", {}, Exception("refused")), id="sqlalchemy"),
    pytest.param(lambda: sa_exc.InterfaceError("SELECT 1", {}, Exception("closed")), id="sqlalchemy-if"),
    pytest.param(lambda: sa_exc.TimeoutError("QueuePool limit reached"), id="sqlalchemy-pool"),
    pytest.param(lambda: psycopg.OperationalError("terminating connection"), id="psycopg"),
    pytest.param(lambda: PoolTimeout("couldn't get a connection"), id="psycopg-pool"),
])
def test_every_kind_of_lost_database_answers_503(error: Any) -> None:
    """However the database is lost (store, read-model engine or driver, connection or pool), the answer is 503."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise error()

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert _is_clean_503(response), response.text


def test_a_programming_error_is_still_a_500() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise sa_exc.ProgrammingError("SELECT nonsense", {}, Exception("syntax error"))

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/boom").status_code == 500
