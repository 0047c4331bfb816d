"""Crash: `zizhu serve` is SIGKILLed at random points during a stream of commands and restarted each time.

Every command has a unique `sub` (so its event can be found) and an `Idempotency-Key`; a command whose answer was lost
to the kill is retried with its key once the service is back, so every command ends acknowledged or refused. Then:
every acknowledged command is in the log exactly once at the version it was told, no refused one is, every log is a
valid path through the status machine, and after the last restart each view equals a clean rebuild from the log.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select

from adapters.auth import Principal, issue_token
from adapters.settings import Settings
from api.app import build_services
from api.deps import Services
from domain.errors import CaseNotFound
from domain.values import Role
from tests.conftest import SECRET
from tests.reliability.logcheck import Sent, path_errors, presence_errors
from tests.reliability.server import Launcher, Server
from tests.support import GX_SCHOOL, form, id_number

KILLS = 5
MIN_CASES = 4
RETRY_ATTEMPTS = 1200  # × 50 ms: how long a command waits for the service to come back


def _token(role: str, sub: str, **scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, sub=sub, role=role, **scope)}"}  # type: ignore[arg-type]


class Client:
    """Sends the commands one after another, retrying with the same key while the service is down."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.sent: list[Sent] = []
        self.in_doubt = 0
        self.n = 0
        # Subs unique to this run: an event from any other client (another test's, on a shared machine) shows up as
        # "by unknown" instead of passing for one of ours.
        self.run = secrets.token_hex(4)

    def command(self, case_id: str, command: str, body: dict[str, Any], role: str, **scope: str) -> Sent:
        self.n += 1
        request = Sent(sub=f"r{self.n}-{self.run}", case_id=case_id, command=command)
        headers = {**_token(role, request.sub, **scope), "Idempotency-Key": f"key-{self.n}"}
        path = "/v1/cases" if command == "apply" else f"/v1/cases/{case_id}/{command}"
        for attempt in range(RETRY_ATTEMPTS):
            try:
                response = self.http.post(path, json=body, headers=headers)
                break
            except httpx.TransportError:
                self.in_doubt += attempt == 0
                time.sleep(0.05)
        else:
            raise AssertionError(f"{command} got no answer in {RETRY_ATTEMPTS} attempts")
        assert response.status_code < 500, response.text
        request.status = response.status_code
        if response.is_success:
            request.version = int(response.headers["ETag"].strip('"'))
            request.case_id = response.json()["id"]
        self.sent.append(request)
        return request

    def identify(self, seq: int) -> None:
        """One student through the identification path, with two commands the state refuses on the way."""
        school = {"school": GX_SCHOOL}
        applied = self.command("", "apply", form(seq), "applicant", student=id_number(seq))
        assert applied.status == 201
        case = applied.case_id
        tag = f"case {seq}"
        steps: list[tuple[str, dict[str, Any], str, dict[str, str]]] = [
            ("rate", {"level": "especially_difficult", "reason": tag}, "school", school),  # refused: not assessed
            ("verify", {"method": "document", "confirmed_categories": ["minimum_living_allowance"], "notes": tag},
             "school", school),
            ("evaluate", {"votes_for": 5, "votes_against": 0, "recommended_level": "especially_difficult"},
             "evaluator", {"school": GX_SCHOOL, "class_id": "G10-3"}),  # refused: not assessed yet
            ("assess", {}, "school", school),
            ("evaluate", {"votes_for": 5, "votes_against": 0, "recommended_level": "especially_difficult"},
             "evaluator", {"school": GX_SCHOOL, "class_id": "G10-3"}),
            ("rate", {"level": "especially_difficult", "reason": tag}, "school", school),
        ]
        for command, body, role, scope in steps:
            self.command(case, command, body, role, **scope)


def _view_rows(services: Services) -> dict[str, list[tuple[Any, ...]]]:
    rows = {}
    with services.engine.connect() as conn:
        for view in services.projections.views:
            for name, table in services.projections.active_tables(view).items():
                rows[f"{view}.{name}"] = sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
    return rows


def _digest(rows: dict[str, list[tuple[Any, ...]]]) -> str:
    return hashlib.sha256(repr(sorted(rows.items())).encode()).hexdigest()[:16]


def test_acknowledged_commands_survive_sigkill_and_views_converge(
        settings: Settings, database_url: str, tmp_path: Path, launcher: Launcher, figures: dict[str, Any]) -> None:
    server = Server(launcher, {"ZIZHU_DATABASE_URL": database_url, "ZIZHU_SECRET": SECRET,
                               "ZIZHU_NOW": settings.now or "", "ZIZHU_LOG_LEVEL": "WARNING"}, tmp_path / "serve.log")
    server.start()
    client = Client(server.url)
    done = threading.Event()
    failure: list[BaseException] = []

    def killer() -> None:
        rng = random.Random(7)
        try:
            for _ in range(KILLS):
                time.sleep(rng.uniform(0.1, 0.6))
                server.kill()
                server.start()
        except BaseException as exc:  # reported by the test thread below
            failure.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=killer, daemon=True)
    try:
        thread.start()
        seq = 0
        while not done.is_set() or seq < MIN_CASES:
            seq += 1
            client.identify(seq)
        thread.join()
        assert not failure, failure
        head = _wait_for_views(client.http)
    finally:
        server.stop()
        client.http.close()

    services = build_services(settings)
    try:
        auditor = Principal(sub="auditor", role=Role.AUDITOR)
        # Every apply here was acknowledged (identify() asserts 201), so each of these cases must be in the log.
        case_ids = {r.case_id for r in client.sent if r.command == "apply"}
        logs: dict[str, list[dict[str, Any]]] = {}
        lost = []
        for c in sorted(case_ids):
            try:
                logs[c] = [{"version": v.version, "type": v.type, "actor": v.actor, "data": v.data}
                           for v in services.cases.events(auditor, UUID(c))]
            except CaseNotFound:
                lost.append(c)
        assert lost == [], f"acknowledged applies missing from the log: {lost}"
        for case_id, events in logs.items():
            assert path_errors(events) == [], (case_id, [e["type"] for e in events])
        assert presence_errors(client.sent, logs, frozenset()) == []
        live = _view_rows(services)
        for view in services.projections.views:
            services.projections.rebuild(view)
        rebuilt = _view_rows(services)
        assert live == rebuilt
    finally:
        services.store.close()
        services.engine.dispose()
    acknowledged = sum(1 for r in client.sent if r.status is not None and r.status < 300)
    figures.update(crashes_survived=server.starts - 1, commands_sent=len(client.sent), acknowledged=acknowledged,
                   refused=len(client.sent) - acknowledged, answers_lost_to_kills=client.in_doubt,
                   cases=len(case_ids), log_position=head, events_lost=0, duplicated_events=0,
                   views_equal_clean_rebuild=True, view_rows=sum(len(v) for v in live.values()),
                   views_digest=_digest(live))


def _wait_for_views(http: httpx.Client, attempts: int = 600) -> int:
    for _ in range(attempts):
        health = http.get("/healthz").json()
        views = health.get("views", {})
        if views and all(v.get("lag") == 0 and "rebuilding" not in v for v in views.values()):
            return int(health["log_position"])
        time.sleep(0.05)
    pytest.fail(f"views did not catch up: {health}")
