"""Public notice through HTTP on SQLite and PostgreSQL: windows on the official calendar, the board, exemption,
objections, automatic confirmation by the deadline job, and loading an unknown year's calendar."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.publicity import objector_hash
from adapters.settings import Settings
from api.deps import Services
from tests.conftest import SECRET, TokenFactory
from tests.support import GX_SCHOOL, JS_SCHOOL, form, id_number

START = "2025-09-15T09:00:00+08:00"  # a Monday
Open = Callable[..., TestClient]


@pytest.fixture
def open_client(database_url: str) -> Iterator[Open]:
    yield from client_factory(database_url)


def client_factory(database_url: str) -> Iterator[Open]:
    """open_client(now=…, **settings) → a running app on the test's store; calling again with a later `now` is a
    restart of the service on the same store (the previous app is shut down first)."""
    stack = ExitStack()
    current: list[ExitStack] = []

    def make(now: str = START, **overrides: Any) -> TestClient:
        if current:
            current.pop().close()
        inner = ExitStack()
        values: dict[str, Any] = {"run_deadlines": False, **overrides}
        settings = Settings(database_url=database_url, secret=SECRET, now=now, log_level="WARNING", **values)
        from api.app import create_app

        client = inner.enter_context(TestClient(create_app(settings), raise_server_exceptions=False))
        current.append(inner)
        return client

    with stack:
        yield make
        if current:
            current.pop().close()


def zizhu(database_url: str, *args: str, now: str | None = None) -> subprocess.CompletedProcess[str]:
    """The `zizhu` command line in its own process, as an administrator runs it."""
    env = {**os.environ, "ZIZHU_DATABASE_URL": database_url, "ZIZHU_SECRET": SECRET, "ZIZHU_LOG_LEVEL": "WARNING"}
    if now:
        env["ZIZHU_NOW"] = now
    return subprocess.run([sys.executable, "-c", "from api.cli import main; main()", *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])


def services_of(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def rated_case(client: TestClient, auth: TokenFactory, seq: int, *, school: str = GX_SCHOOL,
               class_id: str = "G10-3", level: str = "especially_difficult", name: str = "韦小明") -> str:
    """A case taken through apply → verify → assess → evaluate → rate by HTTP; returns its id."""
    region = "450103" if school == GX_SCHOOL else "320102"
    staff = auth("school", school=school)
    body = form(seq, school_id=school, region=region, class_id=class_id)
    body["student"]["name"] = name
    created = client.post("/v1/cases", json=body,
                          headers=auth("applicant", sub=f"guardian-{seq}", student=id_number(seq, region=region)))
    assert created.status_code == 201, created.text
    case_id: str = created.json()["id"]
    steps = [("verify", {"method": "document", "confirmed_categories": ["minimum_living_allowance"]}, staff),
             ("assess", {}, staff),
             ("evaluate", {"votes_for": 5, "votes_against": 0, "recommended_level": level},
              auth("evaluator", school=school, class_id=class_id)),
             ("rate", {"level": level, "reason": "班级评议与学校审核一致"}, staff)]
    for command, body, headers in steps:
        answer = client.post(f"/v1/cases/{case_id}/{command}", json=body, headers=headers)
        assert answer.status_code == 200, (command, answer.text)
    assert answer.json()["status"] == "rated"
    return case_id


def open_notice(client: TestClient, auth: TokenFactory, case_ids: list[str], school: str = GX_SCHOOL,
                **body: Any) -> Any:
    return client.post(f"/v1/schools/{school}/publicity", json={"case_ids": case_ids, **body},
                       headers=auth("school", school=school))


def board(client: TestClient, headers: dict[str, str], school: str = GX_SCHOOL) -> Any:
    return client.get(f"/v1/schools/{school}/publicity", headers=headers)


def case(client: TestClient, auth: TokenFactory, case_id: str, school: str = GX_SCHOOL) -> Any:
    return client.get(f"/v1/cases/{case_id}", headers=auth("school", school=school)).json()


def events(client: TestClient, auth: TokenFactory, case_id: str, school: str = GX_SCHOOL) -> list[Any]:
    answer = client.get(f"/v1/cases/{case_id}/events", headers=auth("school", school=school))
    result: list[Any] = answer.json()
    return result


# ---------------------------------------------------------------------------------------------- opening


def test_school_opens_a_five_working_day_window_for_rated_cases(open_client: Open, auth: TokenFactory) -> None:
    client = open_client()
    ids = [rated_case(client, auth, 1), rated_case(client, auth, 2, level="difficult")]
    opened = open_notice(client, auth, ids)
    assert opened.status_code == 200, opened.text
    body = opened.json()
    assert (body["starts_on"], body["ends_on"]) == ("2025-09-15", "2025-09-19")  # default: today, Mon–Fri
    assert body["case_ids"] == ids and body["working_days"] == 5 and body["profile_version"] == "guangxi@2025.1"
    for case_id in ids:
        state = case(client, auth, case_id)
        assert state["status"] == "in_publicity"
        assert state["publicity"]["ends_on"] == "2025-09-19"
        publicized = events(client, auth, case_id)[-1]
        assert publicized["type"] == "Publicized"
        assert publicized["data"]["notice_id"] == body["notice_id"]
        assert publicized["data"]["profile_version"] == "guangxi@2025.1"


def test_windows_across_national_day_2025_count_only_working_days(open_client: Open, auth: TokenFactory) -> None:
    client = open_client()
    first = open_notice(client, auth, [rated_case(client, auth, 1)], starts_on="2025-09-26").json()
    assert (first["starts_on"], first["ends_on"]) == ("2025-09-26", "2025-10-09")
    second = open_notice(client, auth, [rated_case(client, auth, 2)], starts_on="2025-09-27").json()
    assert (second["starts_on"], second["ends_on"]) == ("2025-09-28", "2025-10-10")  # the adjusted Sunday
    third = open_notice(client, auth, [rated_case(client, auth, 3)], starts_on="2025-10-03").json()
    assert (third["starts_on"], third["ends_on"]) == ("2025-10-09", "2025-10-14")


def test_a_request_naming_any_unready_case_is_refused_whole_listing_them(open_client: Open,
                                                                         auth: TokenFactory) -> None:
    client = open_client()
    ready = rated_case(client, auth, 1)
    other_school = rated_case(client, auth, 2, school=JS_SCHOOL)
    applied = client.post("/v1/cases", json=form(3),
                          headers=auth("applicant", student=id_number(3))).json()["id"]
    unknown = "00000000-0000-4000-8000-000000000000"
    refused = open_notice(client, auth, [ready, applied, other_school, unknown])
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["code"] == "cases_not_rated"
    assert problem["cases"] == [
        {"case_id": applied, "problem": "not_rated", "status": "applied"},
        {"case_id": other_school, "problem": "not_found"},  # another school's case is not revealed
        {"case_id": unknown, "problem": "not_found"},
    ]
    assert case(client, auth, ready)["status"] == "rated"
    assert [e["type"] for e in events(client, auth, ready)][-1] == "Rated"


def test_opening_is_for_the_school_office_of_that_school_and_not_in_the_past(open_client: Open,
                                                                           auth: TokenFactory) -> None:
    client = open_client()
    case_id = rated_case(client, auth, 1)
    url = f"/v1/schools/{GX_SCHOOL}/publicity"
    as_evaluator = client.post(url, json={"case_ids": [case_id]},
                               headers=auth("evaluator", school=GX_SCHOOL, class_id="G10-3"))
    assert as_evaluator.status_code == 403
    other = client.post(url, json={"case_ids": [case_id]}, headers=auth("school", school=JS_SCHOOL))
    assert other.status_code == 404
    past = open_notice(client, auth, [case_id], starts_on="2025-09-12")
    assert past.status_code == 422 and past.json()["field"] == "starts_on"
    assert open_notice(client, auth, []).status_code == 422
    assert open_notice(client, auth, ["not-a-uuid"]).json()["field"] == "case_ids[0]"
    assert case(client, auth, case_id)["status"] == "rated"


def test_a_window_reaching_an_unknown_year_is_refused_until_its_calendar_is_loaded(
        open_client: Open, auth: TokenFactory, database_url: str, tmp_path: Path) -> None:
    client = open_client()
    case_id = rated_case(client, auth, 1)
    refused = open_notice(client, auth, [case_id], starts_on="2026-12-28")
    assert refused.status_code == 409 and refused.json()["code"] == "calendar_unknown"
    assert refused.json()["year"] == 2027
    assert case(client, auth, case_id)["status"] == "rated"

    schedule = tmp_path / "2027.json"
    schedule.write_text(json.dumps({"year": 2027, "source": "国务院办公厅通知（演练）",
                                    "holidays": ["2027-01-01", "2027-01-02", "2027-01-03"],
                                    "workdays": []}), encoding="utf-8")
    loaded = zizhu(database_url, "calendar", "load", str(schedule))
    assert loaded.returncode == 0, loaded.stderr
    assert "calendar 2027 loaded: 3 holidays, 0 adjusted workdays" in loaded.stdout

    opened = open_notice(client, auth, [case_id], starts_on="2026-12-28")
    assert opened.status_code == 200, opened.text
    # Mon 28 … Thu 31 Dec 2026; Fri 1 Jan 2027 is a holiday in the loaded schedule; Mon 4 Jan.
    assert opened.json()["ends_on"] == "2027-01-04"


def test_calendar_load_refuses_a_malformed_file_naming_the_problem(database_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "2027.csv"
    bad.write_text("date,kind\n2027-01-04,workday\n", encoding="utf-8")
    refused = zizhu(database_url, "calendar", "load", str(bad))
    assert refused.returncode == 1
    assert "2027-01-04 is a weekday" in refused.stderr


# ---------------------------------------------------------------------------------------------- the board


def test_the_board_shows_members_of_the_school_only_name_class_and_level(open_client: Open,
                                                                         auth: TokenFactory) -> None:
    client = open_client()
    shown = rated_case(client, auth, 1, class_id="G10-3")
    also = rated_case(client, auth, 2, class_id="G11-1", level="generally_difficult")
    not_yet = rated_case(client, auth, 3)
    opened = open_notice(client, auth, [shown, also])
    open_notice(client, auth, [not_yet], starts_on="2025-09-22")  # opens next week: not on today's board
    position = {"X-Min-Position": opened.headers["X-Min-Position"]}

    members = [auth("school", school=GX_SCHOOL), auth("evaluator", school=GX_SCHOOL, class_id="G11-1"),
               auth("applicant", student=id_number(3))]
    for headers in members:
        answer = board(client, {**headers, **position})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["school_id"] == GX_SCHOOL and body["on"] == "2025-09-15"
        assert body["entries"] == [
            {"name": "韦小明", "grade_class": "G10-3", "level": "especially_difficult",
             "starts_on": "2025-09-15", "ends_on": "2025-09-19"},
            {"name": "韦小明", "grade_class": "G11-1", "level": "generally_difficult",
             "starts_on": "2025-09-15", "ends_on": "2025-09-19"},
        ]
        text = answer.text
        for secret in (id_number(1), id_number(2), "minimum_living_allowance", "farmer", "2010-01-01", shown):
            assert secret not in text

    outsiders = [auth("school", school=JS_SCHOOL), auth("evaluator", school=JS_SCHOOL, class_id="G10-3"),
                 auth("applicant", student=id_number(9))]
    for headers in outsiders:
        assert board(client, headers).status_code == 404
    # Roles with no place in any school's notice are stopped by the access gate (api/access.py) before the
    # service; the board is never theirs to see.
    for headers in (auth("bureau", region="450000"), auth("auditor")):
        assert board(client, headers).status_code in {403, 404}
    assert board(client, auth("school", school=GX_SCHOOL), school="S0000000000").status_code == 404


# ---------------------------------------------------------------------------------------------- exemption


def test_jiangsu_exempts_a_case_which_is_confirmed_and_never_on_the_board(open_client: Open,
                                                                        auth: TokenFactory) -> None:
    client = open_client()
    staff = auth("school", school=JS_SCHOOL)
    exempted = rated_case(client, auth, 1, school=JS_SCHOOL)
    noticed = rated_case(client, auth, 2, school=JS_SCHOOL, class_id="G11-2")
    bad = client.post(f"/v1/cases/{exempted}/exempt-publicity", json={"ground": "pity"}, headers=staff)
    assert bad.status_code == 422
    answer = client.post(f"/v1/cases/{exempted}/exempt-publicity", json={"ground": "urgent"}, headers=staff)
    assert answer.status_code == 200, answer.text
    state = answer.json()
    assert state["status"] == "confirmed" and state["exemption"]["ground"] == "urgent"
    assert state["exemption"]["profile_version"] == "jiangsu@2025.1"
    assert [e["type"] for e in events(client, auth, exempted, JS_SCHOOL)][-2:] == ["PublicityExempted",
                                                                                  "Confirmed"]
    opened = open_notice(client, auth, [noticed], school=JS_SCHOOL)
    entries = board(client, {**staff, "X-Min-Position": opened.headers["X-Min-Position"]},
                    school=JS_SCHOOL).json()["entries"]
    assert [e["grade_class"] for e in entries] == ["G11-2"]


def test_guangxi_refuses_exemption(open_client: Open, auth: TokenFactory) -> None:
    client = open_client()
    case_id = rated_case(client, auth, 1)
    answer = client.post(f"/v1/cases/{case_id}/exempt-publicity", json={"ground": "low_amount"},
                         headers=auth("school", school=GX_SCHOOL))
    assert answer.status_code == 409 and answer.json()["code"] == "exemption_not_allowed"
    assert case(client, auth, case_id)["status"] == "rated"


# ---------------------------------------------------------------------------------------------- objections


def test_objections_keep_the_objector_hidden_and_resolution_reopens_or_keeps_the_window(
        open_client: Open, auth: TokenFactory) -> None:
    client = open_client()
    staff = auth("school", school=GX_SCHOOL)
    case_id = rated_case(client, auth, 1)
    open_notice(client, auth, [case_id])
    applicant = auth("applicant", sub="guardian-1", student=id_number(1))
    evaluator = auth("evaluator", sub="teacher-7", school=GX_SCHOOL, class_id="G10-3")

    first = client.post(f"/v1/cases/{case_id}/object", json={"grounds": "家庭收入填报偏低"}, headers=evaluator)
    assert first.status_code == 200, first.text
    assert id_number(1) not in first.text  # the evaluator's answer is masked like any case read
    second = client.post(f"/v1/cases/{case_id}/object", json={"grounds": "应为比较困难"}, headers=applicant)
    assert second.status_code == 200
    objections = second.json()["objections"]
    assert [o["status"] for o in objections] == ["open", "open"]
    assert all(set(o) == {"objection_id", "grounds", "raised_at", "status", "resolution"} for o in objections)

    # The applicant reads the case's history: no objector's subject appears in it, only the keyed hash.
    history = client.get(f"/v1/cases/{case_id}/events", headers=applicant)
    assert history.status_code == 200
    assert "teacher-7" not in history.text and '"guardian-1"' not in history.text.split("Objected", 1)[1]
    objected = [e for e in history.json() if e["type"] == "Objected"]
    assert objected[0]["actor"]["sub"] == objector_hash(SECRET, "teacher-7")
    assert objected[0]["data"]["objector"] == objector_hash(SECRET, "teacher-7")

    outsider = client.post(f"/v1/cases/{case_id}/object", json={"grounds": "x"},
                           headers=auth("school", school=JS_SCHOOL))
    assert outsider.status_code == 404

    first_id, second_id = (o["objection_id"] for o in objections)
    dismissed = client.post(f"/v1/cases/{case_id}/resolve-objection", headers=staff,
                            json={"objection_id": first_id, "outcome": "dismissed", "reason": "经核实收入属实"})
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "in_publicity"
    again = client.post(f"/v1/cases/{case_id}/resolve-objection", headers=staff,
                        json={"objection_id": first_id, "outcome": "dismissed", "reason": "重复"})
    assert again.status_code == 409 and again.json()["code"] == "objection_already_resolved"
    no_level = client.post(f"/v1/cases/{case_id}/resolve-objection", headers=staff,
                           json={"objection_id": second_id, "outcome": "upheld", "reason": "复核"})
    assert no_level.status_code == 422 and no_level.json()["field"] == "new_level"
    by_applicant = client.post(f"/v1/cases/{case_id}/resolve-objection", headers=applicant,
                               json={"objection_id": second_id, "outcome": "dismissed", "reason": "x"})
    assert by_applicant.status_code == 403
    upheld = client.post(f"/v1/cases/{case_id}/resolve-objection", headers=staff,
                         json={"objection_id": second_id, "outcome": "upheld", "reason": "复核后调整",
                               "new_level": "difficult"})
    assert upheld.status_code == 200, upheld.text
    assert upheld.json()["status"] == "rated" and upheld.json()["level"] == "difficult"
    position = {"X-Min-Position": upheld.headers["X-Min-Position"]}
    assert board(client, {**staff, **position}).json()["entries"] == []

    # The re-rated case needs a new window, which shows the new level.
    reopened = open_notice(client, auth, [case_id], starts_on="2025-09-16")
    assert reopened.status_code == 200
    assert reopened.json()["ends_on"] == "2025-09-22"


def test_after_the_window_an_objection_is_refused_and_the_deadline_job_confirms(
        open_client: Open, auth: TokenFactory) -> None:
    client = open_client()
    quiet, disputed = rated_case(client, auth, 1), rated_case(client, auth, 2)
    open_notice(client, auth, [quiet, disputed])
    objected = client.post(f"/v1/cases/{disputed}/object", json={"grounds": "有车辆未申报"},
                           headers=auth("school", school=GX_SCHOOL))
    objection_id = objected.json()["objections"][0]["objection_id"]

    # Still inside the window on its last day, Friday 19 September.
    client = open_client(now="2025-09-19T17:00:00+08:00")
    run = services_of(client).deadlines.run_once()  # type: ignore[union-attr]
    assert run.confirmed == [] and run.held_by_objection == []

    # The service restarts on Monday 22 September: the window has ended.
    client = open_client(now="2025-09-22T08:30:00+08:00")
    late = client.post(f"/v1/cases/{quiet}/object", json={"grounds": "迟到的异议"},
                       headers=auth("applicant", student=id_number(1)))
    assert late.status_code == 409 and late.json()["code"] == "notice_window_closed"
    run = services_of(client).deadlines.run_once()  # type: ignore[union-attr]
    assert run.confirmed == [quiet] and run.held_by_objection == [disputed]
    confirmed = case(client, auth, quiet)
    assert confirmed["status"] == "confirmed" and confirmed["confirmed_on"] == "2025-09-22"
    assert events(client, auth, quiet)[-1]["actor"] == {"sub": "system", "role": "system"}
    assert case(client, auth, disputed)["status"] == "in_publicity"  # never closes with an objection open

    resolved = client.post(f"/v1/cases/{disputed}/resolve-objection", headers=auth("school", school=GX_SCHOOL),
                           json={"objection_id": objection_id, "outcome": "dismissed", "reason": "车辆已报废"})
    assert resolved.status_code == 200
    run = services_of(client).deadlines.run_once()  # type: ignore[union-attr]
    assert run.confirmed == [disputed]
    assert services_of(client).deadlines.run_once().confirmed == []  # type: ignore[union-attr]
    for case_id in (quiet, disputed):
        assert [e["type"] for e in events(client, auth, case_id)].count("Confirmed") == 1


def test_the_scheduler_inside_the_service_confirms_ended_windows_after_a_restart(
        open_client: Open, auth: TokenFactory) -> None:
    client = open_client()
    case_id = rated_case(client, auth, 1)
    open_notice(client, auth, [case_id])
    # Restart with the scheduler on, days after the window ended: its first run is at start-up.
    client = open_client(now="2025-09-23T10:00:00+08:00", run_deadlines=True, deadline_interval=0.2)
    deadline = time.monotonic() + 20
    while case(client, auth, case_id)["status"] != "confirmed" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert case(client, auth, case_id)["status"] == "confirmed"
    assert [e["type"] for e in events(client, auth, case_id)].count("Confirmed") == 1


def test_zizhu_deadlines_run_concludes_ended_windows_once(open_client: Open, auth: TokenFactory,
                                                          database_url: str) -> None:
    client = open_client()
    case_id = rated_case(client, auth, 1)
    open_notice(client, auth, [case_id])
    client = open_client(now="2025-09-19T12:00:00+08:00")
    early = zizhu(database_url, "deadlines", "run", now="2025-09-19T12:00:01+08:00")
    assert early.returncode == 0, early.stderr
    assert "2025-09-19: confirmed 0" in early.stdout
    done = zizhu(database_url, "deadlines", "run", now="2025-09-20T08:00:00+08:00")
    assert "2025-09-20: confirmed 1, held by open objections 0, refused 0" in done.stdout
    assert [e["type"] for e in events(client, auth, case_id)].count("Confirmed") == 1
