"""The archive export (附表2) through HTTP on SQLite and PostgreSQL: content as .xlsx and .csv, archiving with a
deterministic export id, idempotence, cases confirmed later, exempted cases, and who may export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from adapters.exports import COLUMNS, export_id_for
from tests.conftest import TokenFactory
from tests.e2e.test_publicity import (
    Open,
    case,
    client_factory,
    events,
    open_notice,
    rated_case,
    services_of,
)
from tests.support import GX_SCHOOL, JS_SCHOOL, id_number

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
YEAR = "2025-2026"


@pytest.fixture
def open_client(database_url: str) -> Iterator[Open]:
    yield from client_factory(database_url)


def export(client: TestClient, headers: dict[str, str], school: str = GX_SCHOOL, year: str = YEAR) -> Any:
    return client.get("/v1/exports/national", params={"school_id": school, "academic_year": year},
                      headers=headers)


def xlsx_rows(content: bytes) -> tuple[str, list[list[Any]]]:
    sheet = load_workbook(io.BytesIO(content)).active
    assert sheet is not None
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    return sheet.title, rows


def csv_rows(content: bytes) -> list[list[str]]:
    assert content.startswith(b"\xef\xbb\xbf")  # BOM: opens in a Chinese-locale spreadsheet without garbling
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))


def run_deadlines(client: TestClient) -> Any:
    deadlines = services_of(client).deadlines
    assert deadlines is not None
    return deadlines.run_once()


def test_the_export_lists_confirmed_cases_as_annex_2_and_archives_them_once(open_client: Open,
                                                                           auth: TokenFactory) -> None:
    client = open_client()
    staff = auth("school", school=GX_SCHOOL)
    first = rated_case(client, auth, 1, class_id="G10-3")
    second = rated_case(client, auth, 2, class_id="G11-1", level="difficult")
    still_rated = rated_case(client, auth, 3)
    disputed = rated_case(client, auth, 4, class_id="G12-5", level="generally_difficult")
    open_notice(client, auth, [first, second, disputed])
    objection = client.post(f"/v1/cases/{disputed}/object", json={"grounds": "待核实"}, headers=staff)
    objection_id = objection.json()["objections"][0]["objection_id"]

    client = open_client(now="2025-09-22T09:00:00+08:00")
    assert sorted(run_deadlines(client).confirmed) == sorted([first, second])
    expected_id = export_id_for(GX_SCHOOL, YEAR)

    answer = export(client, staff)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == XLSX
    assert answer.headers["X-Export-Id"] == expected_id and answer.headers["X-Archived"] == "2"
    assert "filename*=UTF-8''" in answer.headers["content-disposition"]
    title, rows = xlsx_rows(answer.content)
    assert title == "附表2"
    assert rows[0] == list(COLUMNS)
    school_name = services_of(client).schools.get(GX_SCHOOL).name  # type: ignore[union-attr]
    assert rows[1:] == [
        [1, "韦小明", "居民身份证", id_number(1), school_name, "普通高中", "G10-3", "特别困难",
         "最低生活保障家庭学生", "2025-09-22", YEAR, "公示无异议", expected_id],
        [2, "韦小明", "居民身份证", id_number(2), school_name, "普通高中", "G11-1", "比较困难",
         "最低生活保障家庭学生", "2025-09-22", YEAR, "公示无异议", expected_id],
    ]
    for case_id in (first, second):
        state = case(client, auth, case_id)
        assert state["status"] == "archived" and state["export_id"] == expected_id
        archived = [e for e in events(client, auth, case_id) if e["type"] == "Archived"]
        assert len(archived) == 1 and archived[0]["actor"] == {"sub": "school-1", "role": "school"}
    assert case(client, auth, still_rated)["status"] == "rated"
    assert case(client, auth, disputed)["status"] == "in_publicity"

    # Exporting again (as CSV) gives the same rows and archives nothing twice.
    again = export(client, {**staff, "Accept": "text/csv"})
    assert again.status_code == 200 and again.headers["content-type"].startswith("text/csv")
    assert again.headers["X-Export-Id"] == expected_id and again.headers["X-Archived"] == "0"
    assert csv_rows(again.content) == [[str(v) for v in row] for row in rows]
    for case_id in (first, second):
        assert [e["type"] for e in events(client, auth, case_id)].count("Archived") == 1

    # A case confirmed later joins the same export, archived under the same id.
    client.post(f"/v1/cases/{disputed}/resolve-objection", headers=staff,
                json={"objection_id": objection_id, "outcome": "dismissed", "reason": "已核实"})
    assert run_deadlines(client).confirmed == [disputed]
    later = export(client, staff)
    assert later.headers["X-Archived"] == "1"
    _, later_rows = xlsx_rows(later.content)
    assert [r[3] for r in later_rows[1:]] == [id_number(1), id_number(2), id_number(4)]
    assert later_rows[3][7] == "一般困难" and later_rows[3][12] == expected_id
    assert case(client, auth, disputed)["export_id"] == expected_id


def test_exempted_cases_are_exported_with_their_ground_and_cells_never_run_as_formulas(
        open_client: Open, auth: TokenFactory) -> None:
    client = open_client()
    staff = auth("school", school=JS_SCHOOL)
    exempted = rated_case(client, auth, 1, school=JS_SCHOOL, name="=HYPERLINK(\"http://x\")")
    client.post(f"/v1/cases/{exempted}/exempt-publicity", json={"ground": "low_amount"}, headers=staff)
    answer = export(client, staff, school=JS_SCHOOL)
    assert answer.status_code == 200, answer.text
    _, rows = xlsx_rows(answer.content)
    assert rows[1][1] == "'=HYPERLINK(\"http://x\")"  # text, not a formula
    assert rows[1][11] == "免于公示（资助金额较低）"
    assert rows[1][7] == "特别困难"
    listed = csv_rows(export(client, {**staff, "Accept": "text/csv"}, school=JS_SCHOOL).content)
    assert listed[1][1].startswith("'=")


def test_only_the_school_and_its_bureau_export_and_the_year_is_checked(open_client: Open,
                                                                      auth: TokenFactory) -> None:
    client = open_client()
    allowed = [auth("school", school=GX_SCHOOL), auth("bureau", region="450000"), auth("bureau", region="450100")]
    for headers in allowed:
        answer = export(client, headers)
        assert answer.status_code == 200, answer.text
        _, rows = xlsx_rows(answer.content)
        assert rows == [list(COLUMNS)]  # nothing confirmed yet: the header alone
    for headers in (auth("school", school=JS_SCHOOL), auth("bureau", region="320000")):
        assert export(client, headers).status_code == 404
    for headers in (auth("applicant", student=id_number(1)),
                    auth("evaluator", school=GX_SCHOOL, class_id="G10-3"), auth("auditor")):
        assert export(client, headers).status_code == 403
    assert export(client, auth("bureau", region="450000"), school="S0000000000").status_code == 404
    bad_year = export(client, auth("school", school=GX_SCHOOL), year="2025-2027")
    assert bad_year.status_code == 422 and bad_year.json()["field"] == "academic_year"
