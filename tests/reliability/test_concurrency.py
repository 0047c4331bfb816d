"""Concurrency: many clients send conflicting commands to the same few cases through the HTTP app.

Afterwards every case's log is a valid path through the status machine, each accepted command appears exactly once
(at the version its response named), every refused one got 409 or 412 and left nothing, and no request got a 5xx.
"""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import TokenFactory
from tests.reliability.logcheck import Sent, path_errors, presence_errors
from tests.support import GX_SCHOOL, form, id_number

CLIENTS = 8
COMMANDS_PER_CLIENT = 20
CASES = 4
# Weighted so the cases keep moving: withdrawals end a case, amendments send it back to the start.
COMMANDS = [("verify", 5), ("assess", 5), ("evaluate", 4), ("rate", 4), ("amend", 1), ("withdraw", 0.2)]


def _request(command: str, seq: int, sub: str, auth: TokenFactory) -> tuple[dict[str, str], dict[str, Any]]:
    if command == "amend":
        return auth("applicant", sub=sub, student=id_number(seq)), form(seq, class_id="G10-3")
    if command == "evaluate":
        return (auth("evaluator", sub=sub, school=GX_SCHOOL, class_id="G10-3"),
                {"votes_for": 5, "votes_against": 1, "recommended_level": "especially_difficult"})
    # Distinct notes and reasons: a repeat of an identical verification is accepted without an event.
    body: dict[str, Any] = {
        "verify": {"method": "document", "confirmed_categories": ["minimum_living_allowance"], "notes": sub},
        "assess": {},
        "rate": {"level": "especially_difficult", "reason": f"school decision {sub}"},
        "withdraw": {"reason": "moved away"},
    }[command]
    return auth("school", sub=sub, school=GX_SCHOOL), body


def test_conflicting_commands_from_many_clients_leave_valid_logs(
        client: TestClient, auth: TokenFactory, figures: dict[str, Any]) -> None:
    cases: dict[str, int] = {}
    for seq in range(1, CASES + 1):
        created = client.post("/v1/cases", json=form(seq), headers=auth("applicant", sub="setup",
                                                                         student=id_number(seq)))
        assert created.status_code == 201, created.text
        cases[created.json()["id"]] = seq
    reader = auth("auditor", sub="reader")
    names, weights = zip(*COMMANDS, strict=True)
    codes: list[str] = []

    def run_client(number: int) -> list[Sent]:
        rng = random.Random(number)
        sent = []
        for i in range(COMMANDS_PER_CLIENT):
            case_id = rng.choice(list(cases))
            command = rng.choices(names, weights)[0]
            request = Sent(sub=f"c{number}-r{i}", case_id=case_id, command=command)
            headers, body = _request(command, cases[case_id], request.sub, auth)
            if rng.random() < 0.4:
                # Read-then-write with If-Match: another client may write in between (412).
                headers["If-Match"] = client.get(f"/v1/cases/{case_id}", headers=reader).headers["ETag"]
            response = client.post(f"/v1/cases/{case_id}/{command}", json=body, headers=headers)
            request.status = response.status_code
            if response.is_success:
                request.version = int(response.headers["ETag"].strip('"'))
            else:
                assert response.headers["content-type"] == "application/problem+json", response.text
                codes.append(response.json()["code"])
            sent.append(request)
        return sent

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        sent = [r for batch in pool.map(run_client, range(CLIENTS)) for r in batch]

    statuses = Counter(r.status for r in sent)
    lost_races = sum(1 for c in codes if c == "conflict")
    assert set(statuses) <= {200, 409, 412}, statuses
    logs = {}
    for case_id in cases:
        history = client.get(f"/v1/cases/{case_id}/events", headers=reader)
        assert history.status_code == 200
        logs[case_id] = history.json()
        assert path_errors(logs[case_id]) == [], (case_id, [e["type"] for e in logs[case_id]])
    assert presence_errors(sent, logs, frozenset({"setup"})) == []
    accepted = sum(1 for r in sent if r.status == 200)
    assert sum(len(events) - 1 for events in logs.values()) == accepted
    figures.update(clients=CLIENTS, cases=CASES, commands_sent=len(sent), accepted=accepted,
                   refused_409=statuses[409], lost_version_races=lost_races, stale_412=statuses[412], server_errors=0,
                   events_in_logs=sum(len(e) for e in logs.values()), events_lost=0, duplicated_events=0)
