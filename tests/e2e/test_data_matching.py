"""Registry imports and verification by data matching through HTTP and the command line, on SQLite and PostgreSQL:
confirmations with their sources, discrepancies and notes, idempotent re-runs, outreach (资助找人), and Guangxi
Art. 8(4): a special group confirmed by data goes to the school's rating without class evaluation."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.cli import cli
from tests.conftest import SECRET, TokenFactory
from tests.e2e.steps import case_log, problem
from tests.support import GX_SCHOOL, JS_SCHOOL, form, id_number

HEADER = "身份证号,姓名,类别,有效期起,有效期止,来源部门\n"


def registry(*lines: str, encoding: str = "gbk") -> bytes:
    return (HEADER + "".join(line + "\n" for line in lines)).encode(encoding)


def upload(client: TestClient, headers: dict[str, str], source: str, raw: bytes,
           name: str = "list.csv") -> Any:
    return client.post(f"/v1/registries/{source}/imports", headers=headers, files={"file": (name, raw, "text/csv")})


def apply(client: TestClient, auth: TokenFactory, seq: int, **overrides: Any) -> str:
    body = form(seq, **overrides)
    created = client.post("/v1/cases", json=body, headers=auth("applicant", student=body["student"]["id_number"]))
    assert created.status_code == 201, created.text
    case_id: str = created.json()["id"]
    return case_id


def events(client: TestClient, school: dict[str, str], case_id: str) -> list[str]:
    return [e["type"] for e in client.get(f"/v1/cases/{case_id}/events", headers=school).json()]


def test_a_registry_list_is_imported_over_http_with_every_rejected_row_reported(client: TestClient,
                                                                                auth: TokenFactory) -> None:
    school = auth("school", school=GX_SCHOOL)
    raw = registry(f"{id_number(1)},韦小明,低保,2025-01-01,2025-12-31,南宁市民政局",
                   f"{id_number(2)},韦小红,低保边缘,2025-13-01,,南宁市民政局",
                   "45010320100101001X,韦小刚,低保,2025-01-01,,",
                   f"{id_number(3)},韦小强,金卡会员,2025-01-01,,",
                   f"{id_number(4)},韦小丽,低保,2025-06-01,2025-05-01,",
                   f"{id_number(5)},,孤儿,2025-01-01,,",
                   f"{id_number(1)},韦小明,低保,2025-01-01,2025-12-31,南宁市民政局")
    first = upload(client, school, "civil_affairs", raw)
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["rows"], body["accepted"], body["stored"], body["rejected_count"]) == (7, 1, 1, 6)
    assert [(r["line"], r["reason"]) for r in body["rejected"]] == [
        (3, "malformed_date"), (4, "malformed_id_number"), (5, "unknown_category"), (6, "dates_out_of_order"),
        (7, "empty_required_field"), (8, "duplicate_row")]
    assert body["imported_by"] == {"sub": "school-1", "role": "school"} and len(body["file_sha256"]) == 64
    assert id_number(1) not in first.text

    again = upload(client, auth("bureau", region="450000"), "civil_affairs", raw)
    assert again.status_code == 200 and again.json()["already_imported"] is True
    assert again.json()["import_id"] == body["import_id"]
    listed = client.get("/v1/registries/imports", headers=auth("auditor")).json()["items"]
    assert [i["import_id"] for i in listed] == [body["import_id"]]


def test_a_file_in_the_wrong_shape_is_refused_over_http_naming_the_column(client: TestClient,
                                                                          auth: TokenFactory) -> None:
    school = auth("school", school=GX_SCHOOL)
    missing = upload(client, school, "civil_affairs", "身份证号,姓名,有效期起,有效期止\n1,2,3,4\n".encode("gbk"))
    refused = problem(missing, 422, "file_refused", field="category")
    assert refused["column"] == "category" and "类别" in refused["detail"]
    problem(upload(client, school, "civil_affairs", b""), 422, "file_refused", field="file")
    problem(upload(client, school, "tax_bureau", registry()), 422, "validation_failed", field="source")
    problem(upload(client, auth("evaluator", school=GX_SCHOOL, class_id="G10-3"), "civil_affairs", registry()),
            403, "forbidden")
    assert client.get("/v1/registries/imports", headers=school).json()["items"] == []


def test_data_matching_confirms_in_force_entries_and_records_discrepancies_with_notes(
        client: TestClient, auth: TokenFactory) -> None:
    school = auth("school", school=GX_SCHOOL)
    upload(client, school, "civil_affairs", registry(
        f"{id_number(1)},韦小明,低保,2025-01-01,2025-12-31,",
        f"{id_number(2)},韦小明,低保,2024-01-01,2025-06-30,",  # expired before the application
        f"{id_number(3)},韦大明,低保,2025-01-01,,"))  # the ID number under another name
    upload(client, school, "disability_federation", registry(f"{id_number(4)},韦小明,残疾,2025-01-01,,"))
    upload(client, school, "veterans_affairs", registry(f"{id_number(4)},韦小明,烈士子女,2020-01-01,,"))
    upload(client, school, "rural_revitalisation", registry(f"{id_number(4)},韦小明,脱贫户,2021-01-01,,"))
    ids = [apply(client, auth, seq) for seq in (1, 2, 3)]
    ids.append(apply(client, auth, 4, claimed=["disabled", "martyr_family"]))

    one = client.post(f"/v1/cases/{ids[0]}/verify", headers=school, json={"method": "data_match"})
    assert one.status_code == 200, one.text
    assert one.json()["verification"] == {
        "method": "data_match", "confirmed": [{"category": "minimum_living_allowance", "source": "civil_affairs"}],
        "discrepancies": [], "unclaimed_confirmed": [], "notes": ""}

    summary = client.post(f"/v1/schools/{GX_SCHOOL}/verify-by-data", headers=school)
    assert summary.status_code == 200, summary.text
    result = summary.json()
    assert (result["considered"], result["verified"], result["unchanged"]) == (4, 3, 1)
    outcome = {c["case_id"]: c for c in result["cases"]}
    assert outcome[ids[0]]["outcome"] == "unchanged"
    assert outcome[ids[1]]["confirmed"] == [] and outcome[ids[1]]["discrepancies"] == ["minimum_living_allowance"]
    assert outcome[ids[2]]["discrepancies"] == ["minimum_living_allowance"]
    assert outcome[ids[3]]["confirmed"] == [
        {"category": "disabled", "source": "disability_federation"},
        {"category": "martyr_family", "source": "veterans_affairs"},
        {"category": "poverty_alleviated", "source": "rural_revitalisation"}]
    assert outcome[ids[3]]["unclaimed_confirmed"] == ["poverty_alleviated"]

    expired = client.get(f"/v1/cases/{ids[1]}", headers=school).json()["verification"]
    assert expired["notes"] == ("minimum_living_allowance: civil_affairs entry not in force on the application "
                                "date (valid 2024-01-01 to 2025-06-30)")
    renamed = client.get(f"/v1/cases/{ids[2]}", headers=school).json()["verification"]
    assert renamed["notes"] == ("minimum_living_allowance: civil_affairs lists this ID number under another name; "
                                "not confirmed")

    before = case_log(client)
    rerun = client.post(f"/v1/schools/{GX_SCHOOL}/verify-by-data", headers=school).json()
    assert (rerun["verified"], rerun["unchanged"]) == (0, 4)
    assert case_log(client) == before
    assert events(client, school, ids[0]) == ["Applied", "Verified"]


def test_a_registry_row_arriving_after_verification_puts_the_student_on_the_outreach_list(
        client: TestClient, auth: TokenFactory) -> None:
    school = auth("school", school=GX_SCHOOL)
    case_id = apply(client, auth, 1)
    upload(client, school, "civil_affairs", registry(f"{id_number(1)},韦小明,低保,2025-01-01,,"))
    client.post(f"/v1/cases/{case_id}/verify", headers=school, json={"method": "data_match"})
    assert client.get(f"/v1/schools/{GX_SCHOOL}/outreach", headers=school).json()["unclaimed_categories"] == []

    # Later: the trade union lists the family, and a student who never applied is in two registries.
    upload(client, school, "trade_union", registry(f"{id_number(1)},韦小明,困难职工,2025-03-01,,",
                                                   f"{id_number(9)},黄小花,困难职工,2025-03-01,,"))
    upload(client, school, "rural_revitalisation", registry(f"{id_number(9)},黄小花,监测对象,2024-01-01,,",
                                                            f"{id_number(8)},蒙小草,监测对象,2024-01-01,,"))
    spending = (f"id_number,name,month,amount,category\n{id_number(9)},黄小花,2025-09,120,canteen\n"
                f"{id_number(8)},别的名字,2025-09,120,canteen\n{id_number(1)},韦小明,2025-09,300,canteen\n").encode()
    assert client.post(f"/v1/schools/{GX_SCHOOL}/consumption/imports", headers=school,
                       files={"file": ("card.csv", spending, "text/csv")}).status_code == 201

    report = client.get(f"/v1/schools/{GX_SCHOOL}/outreach", headers=school)
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["unclaimed_categories"] == [{
        "case_id": case_id, "name": "韦小明", "class_id": "G10-3", "status": "verified", "verified_before": True,
        "categories": [{"category": "needy_worker_family", "sources": ["trade_union"]}]}]
    # Student 8's card names someone else than the registry does: not listed (the limit is stated).
    assert body["did_not_apply"] == [{
        "id_masked": id_number(9)[:6] + "********" + id_number(9)[-4:], "name": "黄小花",
        "categories": [{"category": "monitored_household", "sources": ["rural_revitalisation"]},
                       {"category": "needy_worker_family", "sources": ["trade_union"]}]}]
    assert id_number(9) not in report.text and "campus-card" in body["limits"]
    # An official sees the list without names or categories unless they give a reason.
    official = client.get(f"/v1/schools/{GX_SCHOOL}/outreach", headers=auth("bureau", region="450100")).json()
    assert official["did_not_apply"][0]["name"] == "黄**" and official["did_not_apply"][0]["categories"] == "[masked]"
    problem(client.get(f"/v1/schools/{GX_SCHOOL}/outreach", headers=auth("bureau", region="320000")), 404,
            "not_found")


def test_a_data_matched_special_group_skips_class_evaluation_in_guangxi_but_not_in_jiangsu(
        client: TestClient, auth: TokenFactory) -> None:
    gx_school = auth("school", school=GX_SCHOOL)
    js_school = auth("school", school=JS_SCHOOL)
    js_student = id_number(7, region="320102")
    upload(client, gx_school, "civil_affairs", registry(f"{id_number(1)},韦小明,低保,2025-01-01,,",
                                                        f"{js_student},韦小明,低保,2025-01-01,,"))
    gx_case = apply(client, auth, 1)
    js_case = apply(client, auth, 7, school_id=JS_SCHOOL, region="320102")
    for case_id, headers in ((gx_case, gx_school), (js_case, js_school)):
        verified = client.post(f"/v1/cases/{case_id}/verify", headers=headers, json={"method": "data_match"})
        assert verified.json()["verification"]["confirmed"] == [
            {"category": "minimum_living_allowance", "source": "civil_affairs"}]
        assert client.post(f"/v1/cases/{case_id}/assess", headers=headers, json={}).status_code == 200

    rated = client.post(f"/v1/cases/{gx_case}/rate", headers=gx_school, json={"level": "especially_difficult"})
    assert rated.status_code == 200, rated.text
    assert events(client, gx_school, gx_case) == ["Applied", "Verified", "Assessed", "Rated"]
    problem(client.post(f"/v1/cases/{js_case}/rate", headers=js_school, json={"level": "especially_difficult"}),
            409, "invalid_transition")


def test_the_command_line_imports_a_registry_the_service_then_matches_against(
        client: TestClient, auth: TokenFactory, database_url: str, tmp_path: Any) -> None:
    env = {"ZIZHU_SECRET": SECRET, "ZIZHU_LOG_LEVEL": "WARNING", "ZIZHU_DATABASE_URL": database_url,
           "ZIZHU_NOW": "2025-09-15T09:00:00+08:00"}
    good = tmp_path / "低保名单.csv"
    good.write_bytes(registry(f"{id_number(1)},韦小明,低保,2025-01-01,,", "123,韦小刚,低保,2025-01-01,,"))
    first = CliRunner().invoke(cli, ["registry", "import", str(good), "--source", "civil_affairs", "--by", "ops"],
                               env=env)
    assert first.exit_code == 0, first.output
    assert "2 rows, accepted 1 (1 new), rejected 1" in first.output
    assert "line 3: malformed_id_number" in first.output
    again = CliRunner().invoke(cli, ["registry", "import", str(good), "--source", "civil_affairs"], env=env)
    assert again.exit_code == 0 and "already imported" in again.output and "by ops" in again.output

    wrong = tmp_path / "wrong.csv"
    wrong.write_bytes("姓名,类别\n韦小明,低保\n".encode("gbk"))
    refused = CliRunner().invoke(cli, ["registry", "import", str(wrong), "--source", "civil_affairs"], env=env)
    assert refused.exit_code == 1 and "missing column id_number" in refused.output

    case_id = apply(client, auth, 1)
    verified = client.post(f"/v1/cases/{case_id}/verify", headers=auth("school", school=GX_SCHOOL),
                           json={"method": "data_match"})
    assert verified.json()["verification"]["confirmed"] == [
        {"category": "minimum_living_allowance", "source": "civil_affairs"}]
    listed = client.get("/v1/registries/imports", headers=auth("bureau", region="450000")).json()["items"]
    assert [(i["imported_by"]["sub"], i["imported_by"]["role"], i["stored"]) for i in listed] == [
        ("ops", "operator", 1)]


def test_a_class_can_be_verified_by_data_on_its_own(client: TestClient, auth: TokenFactory) -> None:
    school = auth("school", school=GX_SCHOOL)
    upload(client, school, "civil_affairs", registry(f"{id_number(1)},韦小明,低保,2025-01-01,,",
                                                     f"{id_number(2)},韦小明,低保,2025-01-01,,"))
    in_class = apply(client, auth, 1, class_id="G10-4")
    elsewhere = apply(client, auth, 2)
    answer = client.post(f"/v1/schools/{GX_SCHOOL}/verify-by-data", headers=school,
                         json={"class_id": "G10-4", "academic_year": "2025-2026"})
    assert answer.status_code == 200, answer.text
    assert [(c["case_id"], c["outcome"]) for c in answer.json()["cases"]] == [(in_class, "verified")]
    assert int(answer.headers["X-Min-Position"]) > 0
    assert events(client, school, elsewhere) == ["Applied"]
    other_year = client.post(f"/v1/schools/{GX_SCHOOL}/verify-by-data", headers=school,
                             json={"academic_year": "2026-2027"}).json()
    assert other_year["considered"] == 0
    problem(client.post("/v1/schools/S4501030002/verify-by-data", headers=school), 404, "not_found")
    problem(client.post(f"/v1/schools/{GX_SCHOOL}/verify-by-data", headers=auth("bureau", region="450000")), 403,
            "forbidden")
