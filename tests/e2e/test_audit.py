"""Replay for auditors over HTTP: a case as of a version or a moment, the diff between two versions, the dossier
(JSON and printable HTML), and the log's integrity (verify, seal, export) with `zizhu verify-log` alike."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from adapters.logs import configure_logging
from adapters.settings import Settings
from api.cli import cli
from tests.conftest import SECRET, TokenFactory
from tests.support import GX_SCHOOL, JS_SCHOOL, form, id_number

REASON = {"reason": "discipline inspection file 2025-07"}


@pytest.fixture
def rated_case(client: TestClient, auth: TokenFactory) -> str:
    school = auth("school", school=GX_SCHOOL)
    case = client.post("/v1/cases", json=form(3), headers=auth("applicant", student=id_number(3))).json()["id"]
    steps = [("verify", {"method": "document", "confirmed_categories": ["minimum_living_allowance"]}, school),
             ("assess", {}, school),
             ("evaluate", {"votes_for": 5, "votes_against": 2, "recommended_level": "especially_difficult"},
              auth("evaluator", school=GX_SCHOOL, class_id="G10-3")),
             ("rate", {"level": "difficult", "reason": "household income rose this summer"}, school)]
    for command, body, headers in steps:
        answer = client.post(f"/v1/cases/{case}/{command}", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
    return str(case)


def test_an_auditor_reads_a_case_as_it_stood_at_a_version_and_a_moment(client: TestClient, auth: TokenFactory,
                                                                       rated_case: str) -> None:
    auditor = auth("auditor")
    at_two = client.get(f"/v1/cases/{rated_case}", params={"version": 2}, headers=auditor).json()
    assert (at_two["status"], at_two["version"], at_two["assessment"]) == ("verified", 2, None)
    applied_at = client.get(f"/v1/cases/{rated_case}/events", headers=auditor).json()[0]["occurred_at"]
    as_of = client.get(f"/v1/cases/{rated_case}", params={"as_of": applied_at}, headers=auditor).json()
    assert as_of["status"] == "applied" and as_of["version"] == 1


def test_the_diff_names_each_changed_path_with_before_and_after(client: TestClient, auth: TokenFactory,
                                                                 rated_case: str) -> None:
    answer = client.get(f"/v1/cases/{rated_case}/diff", params={"from": 3, "to": 5, **REASON},
                        headers=auth("auditor"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [e["type"] for e in body["events"]] == ["ClassEvaluated", "Rated"]
    assert body["events"][1]["actor"] == {"sub": "school-1", "role": "school"}
    changes = {c["path"]: c for c in body["changes"]}
    assert changes["status"] == {"path": "status", "change": "changed", "before": "assessed", "after": "rated"}
    assert changes["level"]["before"] is None and changes["level"]["after"] == "difficult"
    assert changes["rating.reason"]["after"] == "household income rose this summer"
    assert changes["evaluation.votes_for"] == {"path": "evaluation.votes_for", "change": "changed",
                                               "before": None, "after": 5} or \
        changes["evaluation.votes_for"]["change"] == "added"
    assert "application.student.id_number" not in changes  # unchanged paths are not listed


def test_the_diff_masks_personal_data_without_a_reason_and_checks_its_range(client: TestClient,
                                                                            auth: TokenFactory,
                                                                            rated_case: str) -> None:
    auditor = auth("auditor")
    masked = client.get(f"/v1/cases/{rated_case}/diff", params={"from": 1, "to": 2}, headers=auditor)
    assert masked.status_code == 200 and id_number(3) not in masked.text
    assert client.get(f"/v1/cases/{rated_case}/diff", params={"from": 4, "to": 2},
                      headers=auditor).json()["code"] == "validation_failed"
    assert client.get(f"/v1/cases/{rated_case}/diff", params={"from": 1, "to": 9},
                      headers=auditor).status_code == 422
    assert client.get(f"/v1/cases/{rated_case}/diff", params={"from": 1, "to": 2},
                      headers=auth("school", school=GX_SCHOOL)).status_code == 403


def test_the_dossier_holds_every_event_and_the_state_after_each(client: TestClient, auth: TokenFactory,
                                                                rated_case: str) -> None:
    answer = client.get(f"/v1/cases/{rated_case}/dossier", params=REASON, headers=auth("auditor", sub="aud-2"))
    assert answer.status_code == 200, answer.text
    dossier = answer.json()
    assert [e["version"] for e in dossier["events"]] == [1, 2, 3, 4, 5]
    assert [e["state_after"]["status"] for e in dossier["events"]] == [
        "applied", "verified", "assessed", "evaluated", "rated"]
    assert dossier["events"][0]["state_after"]["application"]["student"]["id_number"] == id_number(3)
    assert dossier["current"]["level"] == "difficult"
    assert dossier["integrity"] == {"intact": True, "damages": [], "replay_error": None}
    assert dossier["generated_by"] == {"sub": "aud-2", "role": "auditor"} and dossier["view"] == "full"
    log = client.get("/v1/audit/access-log", headers=auth("auditor")).json()["items"]
    assert [(e["resource"], e["case_id"]) for e in log] == [("GET /v1/cases/{case_id}/dossier", rated_case)]


def test_the_printable_dossier_is_an_html_page_with_chinese_labels(client: TestClient, auth: TokenFactory,
                                                                   rated_case: str) -> None:
    page = client.get(f"/v1/cases/{rated_case}/dossier", params={"format": "html"},
                      headers=auth("school", school=GX_SCHOOL))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    assert "家庭经济困难学生认定案卷" in text and "学校认定" in text and "民主评议" in text
    assert "household income rose this summer" in text and "完整 intact" in text
    assert "<script" not in text and "style-src 'unsafe-inline'" in page.headers["Content-Security-Policy"]


def test_only_the_cases_own_school_and_auditors_get_the_dossier(client: TestClient, auth: TokenFactory,
                                                                rated_case: str) -> None:
    assert client.get(f"/v1/cases/{rated_case}/dossier", headers=auth("school", school=JS_SCHOOL)).status_code == 404
    for headers in (auth("applicant", student=id_number(3)), auth("bureau", region="450000"),
                    auth("evaluator", school=GX_SCHOOL, class_id="G10-3")):
        assert client.get(f"/v1/cases/{rated_case}/dossier", headers=headers).status_code == 403
    masked = client.get(f"/v1/cases/{rated_case}/dossier", headers=auth("auditor"))
    assert masked.json()["view"] == "official" and id_number(3) not in masked.text


def _tamper_one_byte(settings: Settings, case_id: str, version: int) -> None:
    from uuid import UUID

    uid = UUID(case_id)
    if settings.is_sqlite:
        with sqlite3.connect(settings.sqlite_path) as conn:
            state = bytearray(conn.execute("SELECT state FROM stored_events WHERE originator_id=? AND "
                                           "originator_version=?", (uid.hex, version)).fetchone()[0])
            state[5] ^= 0x01
            conn.execute("UPDATE stored_events SET state=? WHERE originator_id=? AND originator_version=?",
                         (bytes(state), uid.hex, version))
    else:
        url = settings.database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url) as pg:
            pg.execute("UPDATE zizhu_events SET state = set_byte(state, 5, get_byte(state, 5) # 1) "
                       "WHERE originator_id=%s AND originator_version=%s", (uid, version))


def test_verify_log_seals_and_exports_over_http_and_the_command_line(client: TestClient, auth: TokenFactory,
                                                                       settings: Settings, rated_case: str,
                                                                       tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    auditor = auth("auditor")
    clean = client.get("/v1/audit/verify-log", headers=auditor).json()
    assert clean["clean"] is True and clean["events"] == 5 and clean["cases"] == 1
    sealed = client.post("/v1/audit/seals", headers=auditor).json()
    assert sealed["created"] is True and sealed["seal"]["position"] >= 5
    assert client.post("/v1/audit/seals", headers=auditor).json() == {"created": False, "seal": None}
    exported = client.get("/v1/audit/seals", headers=auditor).json()
    assert [s["digest"] for s in exported] == [sealed["seal"]["digest"]]

    for name, value in {"ZIZHU_DATABASE_URL": settings.database_url, "ZIZHU_SECRET": SECRET,
                        "ZIZHU_LOG_LEVEL": "WARNING"}.items():
        monkeypatch.setenv(name, value)
    kept = tmp_path / "seals.json"
    runner = CliRunner()
    assert runner.invoke(cli, ["seals", "export", "--out", str(kept)]).exit_code == 0
    ok = runner.invoke(cli, ["verify-log", "--seals", str(kept)])
    assert ok.exit_code == 0, ok.output
    assert "log verified: 5 events in 1 cases" in ok.output

    configure_logging("WARNING")  # the CLI bound logging to its own captured stderr, closed by now

    _tamper_one_byte(settings, rated_case, 4)
    damaged = runner.invoke(cli, ["verify-log", "--seals", str(kept)])
    configure_logging("WARNING")
    assert damaged.exit_code == 1
    # stdout only: the app's background runner may log the undecodable event to the (captured) stderr meanwhile.
    lines = damaged.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"case {rated_case} version 4: version 4 altered")
    report = client.get("/v1/audit/verify-log", headers=auditor).json()
    assert report["clean"] is False
    assert report["damaged_cases"][0]["case_id"] == rated_case
    assert report["damaged_cases"][0]["first_version"] == 4
    answer = client.get(f"/v1/cases/{rated_case}/dossier", headers=auditor)
    dossier = answer.json()
    assert dossier["integrity"]["intact"] is False
    assert dossier["integrity"]["damages"][0]["version"] == 4
    assert json.loads(kept.read_text())[0]["format"] == "zizhu.seal.v1"
    assert client.get("/v1/audit/verify-log", headers=auth("bureau", region="450000")).status_code == 403
