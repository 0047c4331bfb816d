"""The web console end to end in Debian's Chromium against a real `zizhu serve`: an applicant applies on a phone,
the school verifies, assesses, rates (after the class group's evaluation) and opens a notice for the case in a
batch, the applicant objects, the school resolves the objection, and an auditor views the case at an earlier
version; the bureau's dashboard draws its charts and searches integrity records; pages keep the API's scope and
masking. Every main page passes the accessibility check (tests/browser/a11y.js) and is saved as a screenshot under
test-output/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser.conftest import DESKTOP, PHONE, Server, accessible, ready, screenshot
from tests.support import GX_SCHOOL, JS_SCHOOL, form, id_number

pytestmark = pytest.mark.xdist_group("browser")

Page = Any
OpenPage = Callable[..., Page]


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _wrong_check_digit(number: str) -> str:
    return number[:17] + ("0" if number[17] != "0" else "1")


def _case_id(page: Page) -> str:
    match = re.search(r"/cases/([0-9a-f-]{36})", page.url)
    assert match, page.url
    return match.group(1)


def _apply_on_a_phone(page: Page, student: str) -> str:
    expect = _expect()
    ready(page)
    assert page.url.endswith("/me")
    accessible(page)
    page.get_by_role("link", name="填写认定申请").first.click()
    ready(page)
    expect(page.get_by_role("heading", name="第 1 步：学生信息")).to_be_visible()
    id_field = page.get_by_label("学生居民身份证号")
    expect(id_field).to_have_value(student)  # taken from the applicant's token
    # Inline validation: a wrong check digit is named at once and the form does not move on.
    id_field.fill(_wrong_check_digit(student))
    page.get_by_label("学生姓名").fill("韦小明")
    expect(page.locator("#f-student-id_number-error")).to_contain_text("校验码不正确")
    expect(id_field).to_have_attribute("aria-invalid", "true")
    page.get_by_label("学校代码").fill(GX_SCHOOL)
    page.get_by_label("年级班级").fill("G10-3")
    page.get_by_label("学段").select_option("senior_secondary")
    page.get_by_role("button", name="下一步").click()
    expect(page.get_by_role("heading", name="第 1 步：学生信息")).to_be_visible()
    id_field.fill(student)
    id_field.blur()
    expect(page.locator("#f-student-id_number-error")).to_be_hidden()
    accessible(page)
    screenshot(page, "01-applicant-form-step1")
    page.get_by_role("button", name="下一步").click()

    expect(page.get_by_role("heading", name="第 2 步：家庭经济情况")).to_be_visible()
    page.get_by_label("户籍所在地行政区划代码").fill("450103")
    page.get_by_label("家庭人口数").fill("4")
    income = page.get_by_label("家庭年收入（元）")
    income.fill("18000.123")
    income.blur()
    expect(page.locator("#f-household-annual_income-error")).to_contain_text("最多两位小数")
    income.fill("18000.00")
    page.get_by_label("家庭负债（元）").fill("30000")
    page.get_by_role("button", name="添加家庭成员").click()
    member = page.locator("#members fieldset").last
    member.get_by_label("与学生关系").select_option("father")
    member.get_by_label("年龄").fill("46")
    member.get_by_label("职业").select_option("farmer")
    member.get_by_label("健康状况").select_option("chronic_illness")
    member.get_by_label("年收入（元）").fill("9000.00")
    accessible(page)
    screenshot(page, "02-applicant-form-household")
    page.get_by_role("button", name="下一步").click()

    expect(page.get_by_role("heading", name="第 3 步：特殊群体与突发状况")).to_be_visible()
    page.get_by_label("最低生活保障家庭（低保）").check()
    page.get_by_role("button", name="添加突发状况").click()
    event = page.locator("#events fieldset").last
    event.get_by_label("类型").select_option("serious_illness")
    event.get_by_label("发生日期").fill("2025-03-01")
    event.get_by_label("损失或支出（元）").fill("50000.00")
    page.get_by_role("button", name="下一步").click()

    expect(page.get_by_role("heading", name="第 4 步：其他情况")).to_be_visible()
    page.get_by_label("在读的兄弟姐妹人数").fill("1")
    page.get_by_label("年医疗支出（元）").fill("12000.00")
    page.get_by_role("button", name="下一步").click()

    expect(page.get_by_role("heading", name="第 5 步：核对信息并签署承诺")).to_be_visible()
    review = page.locator("#review")
    expect(review).to_contain_text(student)
    expect(review).to_contain_text("最低生活保障家庭（低保）")
    expect(review).to_contain_text("¥18000.00")
    page.get_by_role("button", name="提交申请").click()
    expect(page.locator("#f-attestation-error")).to_contain_text("个人承诺")  # no submission without attesting
    page.get_by_label("我已阅读并承诺以上信息属实").check()
    accessible(page)
    _fits_a_phone(page)
    screenshot(page, "03-applicant-review-attestation")
    page.get_by_role("button", name="提交申请").click()

    page.wait_for_url(re.compile(r"/cases/[0-9a-f-]{36}"))
    ready(page)
    expect(page.locator("#progress")).to_contain_text("等待学校资助管理机构核验身份")
    expect(page.locator("#progress li.current")).to_have_text(re.compile("个人申请"))
    expect(page.locator("#actions")).to_contain_text("修改申请")
    accessible(page)
    _fits_a_phone(page)
    screenshot(page, "04-applicant-case-progress")
    return _case_id(page)


def _fits_a_phone(page: Page) -> None:
    """Phone first: nothing makes the whole page scroll sideways at 390 px."""
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def _command(page: Page, name: str) -> Any:
    return page.locator(f"form[data-command={name}]")


def test_apply_verify_rate_notice_object_resolve_and_replay(server: Server, open_page: OpenPage) -> None:
    expect = _expect()
    student = id_number(101)
    applicant = open_page(server.token("applicant", sub="guardian-101", student=student), PHONE)
    case_id = _apply_on_a_phone(applicant, student)

    # The school: queues with counts, then the case's verification and assessment.
    server.views_current()
    school = open_page(server.token("school", sub="staff-1", school=GX_SCHOOL), DESKTOP)
    ready(school)
    assert school.url.endswith("/school")
    expect(school.locator("button[data-stage=applied] .n")).to_have_text("1")
    accessible(school)
    screenshot(school, "05-school-queues")
    school.get_by_role("link", name="韦小明").click()
    ready(school)
    verify = _command(school, "verify")
    verify.get_by_label("核验方式").select_option("document")
    expect(verify.get_by_label("最低生活保障家庭（低保）")).to_be_checked()
    verify.get_by_label("核验说明").fill("低保证明原件已核对")
    verify.get_by_role("button", name="记录核验结果").click()
    expect(school.locator("#case-heading")).to_contain_text("身份已核验")
    expect(school.locator("#verification")).to_contain_text("最低生活保障家庭（低保）")
    _command(school, "assess").get_by_role("button", name="计算得分").click()
    expect(school.locator("#case-heading")).to_contain_text("已定量评价")
    breakdown = school.locator("#assessment table tbody tr")
    expect(breakdown.first).to_be_visible()
    assert breakdown.count() >= 5  # each scoring item with its points
    expect(school.locator("#assessment")).to_contain_text("突发状况")
    expect(school.locator("#assessment")).to_contain_text("特别困难")  # the suggested level
    expect(_command(school, "rate")).to_have_count(0)  # the class group evaluates first (Guangxi)
    expect(school.locator("#actions")).to_contain_text("等待班级认定评议小组民主评议")

    # The class evaluation group records its tally.
    evaluator = open_page(server.token("evaluator", sub="teacher-1", school=GX_SCHOOL, class_id="G10-3"), DESKTOP)
    evaluator.goto(f"{server.url}/cases/{case_id}")
    ready(evaluator)
    tally = _command(evaluator, "evaluate")
    tally.get_by_label("同意票数").fill("7")
    tally.get_by_label("反对票数").fill("1")
    tally.get_by_label("建议认定等级").select_option("especially_difficult")
    tally.get_by_role("button", name="提交评议结果").click()
    expect(evaluator.locator("#case-heading")).to_contain_text("已民主评议")
    expect(evaluator.locator("#application")).not_to_contain_text(student)  # masked for the class group
    accessible(evaluator)

    # The school rates at the suggested level and opens the notice from the batch panel.
    school.reload()
    ready(school)
    rate = _command(school, "rate")
    expect(rate.get_by_label("认定等级")).to_have_value("especially_difficult")
    rate.get_by_role("button", name="作出认定").click()
    expect(school.locator("#case-heading")).to_contain_text("学校已认定")
    accessible(school)
    screenshot(school, "06-school-case-assessment")
    server.views_current()
    school.goto(f"{server.url}/school")
    ready(school)
    school.locator(f"#batch-list input[value='{case_id}']").check()
    school.get_by_role("button", name="为选中案件开启公示").click()
    expect(school.locator("#batch-result")).to_contain_text("已为 1 个案件开启公示：2025-09-15 至 2025-09-19")
    board = school.locator("#board-list")
    expect(board).to_contain_text("韦小明")
    expect(board).to_contain_text("特别困难")
    expect(board).not_to_contain_text(student)
    expect(board).not_to_contain_text("低保")  # the category is never on the board
    accessible(school)
    screenshot(school, "07-school-notice-board")

    # The applicant sees the window and objects.
    applicant.reload()
    ready(applicant)
    expect(applicant.locator("#progress")).to_contain_text("2025-09-15 至 2025-09-19")
    objection = _command(applicant, "object")
    objection.get_by_label("异议理由").fill("家庭近期经营收入有所增加，请复核")
    objection.get_by_role("button", name="提交异议").click()
    expect(applicant.locator("#publicity")).to_contain_text("待处理")
    expect(applicant.locator("#messages")).to_contain_text("认定结果进入公示期")
    accessible(applicant)
    _fits_a_phone(applicant)
    screenshot(applicant, "08-applicant-objection")

    # The school finds the objection awaiting resolution and dismisses it with a reason.
    server.views_current()
    school.goto(f"{server.url}/school")
    ready(school)
    waiting = school.locator("#objection-list")
    expect(waiting).to_contain_text("韦小明")
    waiting.get_by_role("link", name="处理").click()
    ready(school)
    resolve = _command(school, "resolve-objection")
    expect(resolve).to_contain_text("家庭近期经营收入有所增加")
    resolve.get_by_label("处理结果").select_option("dismissed")
    resolve.get_by_label("处理理由").fill("经核实收入仍低于当地低保标准，维持认定")
    resolve.get_by_role("button", name="提交处理结果").click()
    expect(school.locator("#publicity")).to_contain_text("异议不成立")
    expect(_command(school, "resolve-objection")).to_have_count(0)
    accessible(school)

    # The auditor: the log is intact, the timeline lists every event, and version 2 is the verified case.
    auditor = open_page(server.token("auditor", sub="auditor-1"), DESKTOP)
    ready(auditor)
    auditor.get_by_role("button", name="立即校验").click()
    expect(auditor.locator("#verify-result")).to_contain_text("日志完整")
    accessible(auditor)
    auditor.get_by_label("案件编号").fill(case_id)
    auditor.get_by_role("button", name="查看时间线").click()
    ready(auditor)
    timeline = auditor.locator("#timeline > li")
    expect(timeline).to_have_count(8)  # applied, verified, assessed, evaluated, rated, publicized, objected, resolved
    expect(timeline.nth(6)).to_contain_text("提出异议")
    expect(auditor.locator("#version-state")).to_contain_text("公示中")
    auditor.locator("#v2").get_by_role("button", name="查看此版本的案件状态").click()
    expect(auditor.locator("#version-state")).to_have_attribute("data-version", "2")
    expect(auditor.locator("#version-state")).to_contain_text("身份已核验")
    expect(auditor.get_by_label("案件版本")).to_have_value("2")
    expect(auditor.locator("#case-integrity")).to_contain_text("未被篡改")
    with auditor.expect_download() as download:
        auditor.get_by_role("button", name="下载案卷（JSON）").click()
    assert download.value.suggested_filename == f"dossier-{case_id}.json"
    accessible(auditor)
    screenshot(auditor, "09-auditor-timeline")


def test_bureau_dashboard_charts_spot_checks_and_integrity_search(server: Server, open_page: OpenPage) -> None:
    expect = _expect()
    school = server.token("school", sub="staff-2", school=GX_SCHOOL)
    for seq in (201, 202):
        token = server.token("applicant", sub=f"guardian-{seq}", student=id_number(seq))
        created = server.api("POST", "/v1/cases", token, json=form(seq))
        assert created.status_code == 201, created.text
        case_id = created.json()["id"]
        assert server.api("POST", f"/v1/cases/{case_id}/verify", school,
                          json={"method": "document", "confirmed_categories": []}).status_code == 200
    server.views_current()
    bureau = open_page(server.token("bureau", sub="bureau-1", region="450000"), DESKTOP)
    ready(bureau)
    assert bureau.url.endswith("/bureau")
    levels = bureau.locator("#chart-levels svg[role=img]")
    expect(levels).to_have_attribute("aria-label", re.compile("各认定等级案件数"))
    schools = bureau.locator("#chart-schools svg[role=img]")
    expect(schools).to_have_attribute("aria-label", re.compile(GX_SCHOOL + r" \d+"))
    expect(bureau.locator("#chart-money svg")).to_have_attribute("aria-label", re.compile("已发放 ¥"))
    expect(bureau.locator("#chart-overdue svg")).to_be_visible()
    expect(bureau.locator("#chart-departures figure")).to_be_visible()
    # Integrity records: a malformed number is refused in the page, a valid one is asked of the API.
    search = bureau.get_by_label("居民身份证号")
    search.fill(_wrong_check_digit(id_number(201)))
    bureau.get_by_role("button", name="查询").click()
    expect(bureau.locator("#integrity-error")).to_contain_text("校验码")
    search.fill(id_number(201))
    bureau.get_by_role("button", name="查询").click()
    expect(bureau.locator("#integrity-result")).to_contain_text("共 0 条记录")
    accessible(bureau)
    screenshot(bureau, "10-bureau-dashboard")


def test_pages_show_only_what_the_api_lets_the_token_see(server: Server, open_page: OpenPage) -> None:
    expect = _expect()
    owner = server.token("applicant", sub="guardian-301", student=id_number(301))
    created = server.api("POST", "/v1/cases", owner, json=form(301))
    assert created.status_code == 201, created.text
    case_id = created.json()["id"]

    stranger = open_page(server.token("applicant", sub="guardian-302", student=id_number(302)), PHONE)
    ready(stranger)
    stranger.goto(f"{server.url}/cases/{case_id}")
    expect(stranger.locator("#case-heading")).to_contain_text("未找到此案件")
    expect(stranger.locator("#application")).to_be_hidden()
    stranger.goto(f"{server.url}/school")
    expect(stranger.get_by_role("heading", name="无权访问")).to_be_visible()

    bureau = open_page(server.token("bureau", sub="bureau-2", region="450000"), DESKTOP)
    ready(bureau)
    bureau.goto(f"{server.url}/cases/{case_id}")
    ready(bureau)
    application = bureau.locator("#application")
    expect(application).to_contain_text("韦**")  # the official view masks the name and the ID number
    expect(application).not_to_contain_text(id_number(301))
    expect(application).to_contain_text("按您的角色不显示家庭成员信息")
    accessible(bureau)
    # Stating a reason lifts the mask, as in the API, and the reading lands in the auditors' access log.
    disclose = _command(bureau, "disclose")
    disclose.get_by_label("查阅理由").fill("抽查核实家庭情况")
    disclose.get_by_role("button", name="说明理由并查看").click()
    bureau.wait_for_url(re.compile(r"reason="))
    ready(bureau)
    expect(bureau.locator("#application")).to_contain_text(id_number(301))
    auditor = open_page(server.token("auditor", sub="auditor-2"), DESKTOP)
    ready(auditor)
    expect(auditor.locator("#access-log")).to_contain_text("抽查核实家庭情况")
    expect(auditor.locator("#access-log")).to_contain_text("bureau-2")
    accessible(auditor)


def test_a_page_without_a_token_sends_the_person_to_sign_in(server: Server, browser: Any) -> None:
    context = browser.new_context(viewport=PHONE, locale="zh-CN")
    try:
        page = context.new_page()
        page.goto(f"{server.url}/school")
        page.wait_for_url(f"{server.url}/")
        _expect()(page.get_by_role("textbox", name="访问令牌")).to_be_visible()
        page.get_by_role("textbox", name="访问令牌").fill("not-a-token")
        page.get_by_role("button", name="登录").click()
        _expect()(page.locator("#token-error")).to_contain_text("令牌无效")
        accessible(page)
        screenshot(page, "00-sign-in")
    finally:
        context.close()


def test_school_exempts_where_allowed_then_keeps_a_support_plan(server: Server, open_page: OpenPage) -> None:
    """Jiangsu's special channel confirms without a notice; the school then makes the one-student-one-plan with a
    department's help item and records an action, which the applicant reads on their phone."""
    expect = _expect()
    student = id_number(401, region="320102")
    owner = server.token("applicant", sub="guardian-401", student=student)
    staff = server.token("school", sub="staff-js", school=JS_SCHOOL)
    created = server.api("POST", "/v1/cases", owner, json=form(401, school_id=JS_SCHOOL, region="320102"))
    assert created.status_code == 201, created.text
    case_id = created.json()["id"]
    steps = [(staff, "verify", {"method": "document", "confirmed_categories": ["minimum_living_allowance"]}),
             (staff, "assess", {}),
             (server.token("evaluator", school=JS_SCHOOL, class_id="G10-3"), "evaluate",
              {"votes_for": 6, "votes_against": 0, "recommended_level": "especially_difficult"})]
    for token, command, body in steps:
        answer = server.api("POST", f"/v1/cases/{case_id}/{command}", token, json=body)
        assert answer.status_code == 200, answer.text
    suggested = answer.json()["assessment"]["suggested_level"]
    assert server.api("POST", f"/v1/cases/{case_id}/rate", staff, json={"level": suggested}).status_code == 200

    school = open_page(staff, DESKTOP)
    school.goto(f"{server.url}/cases/{case_id}")
    ready(school)
    exempt = _command(school, "exempt-publicity")
    exempt.get_by_label("免于公示的理由").select_option("sufficient_basis")
    exempt.get_by_role("button", name="免于公示并确认").click()
    expect(school.locator("#case-heading")).to_contain_text("认定已确认")
    expect(school.locator("#publicity")).to_contain_text("认定依据充分")
    _command(school, "create-plan").get_by_role("button", name="制定帮扶计划").click()
    expect(school.locator("#plan")).to_contain_text("国家助学金")
    item = _command(school, "plan-item")
    item.get_by_label("类型").select_option("psychological_support")
    item.get_by_label("内容").fill("每月一次心理辅导")
    item.get_by_role("button", name="添加").click()
    expect(school.locator("#plan")).to_contain_text("心理支持 · 心理")
    action = _command(school, "plan-action")
    action.get_by_label("心理支持：本次措施").fill("首次谈话")
    action.get_by_label("效果").fill("情绪稳定")
    action.get_by_role("button", name="记录措施").click()
    expect(school.locator("#plan")).to_contain_text("首次谈话 → 情绪稳定")
    accessible(school)
    screenshot(school, "11-school-support-plan")

    applicant = open_page(owner, PHONE)
    applicant.goto(f"{server.url}/cases/{case_id}")
    ready(applicant)
    expect(applicant.locator("#plan")).to_contain_text("每月一次心理辅导")
    expect(_command(applicant, "plan-item")).to_have_count(0)  # the applicant reads the plan, never edits it
    accessible(applicant)
    _fits_a_phone(applicant)


def test_a_command_whose_answer_is_lost_is_sent_again_and_applied_once(server: Server, open_page: OpenPage) -> None:
    """The console sends every command with an Idempotency-Key of its own. Here the school's assess reaches the
    server and is applied, but its answer is lost on the way back (the connection is reset): the console sends it
    again with the same key, shows the first answer, and the case has one assessment."""
    expect = _expect()
    student = id_number(501)
    staff = server.token("school", sub="staff-retry", school=GX_SCHOOL)
    created = server.api("POST", "/v1/cases", server.token("applicant", sub="guardian-501", student=student),
                         json=form(501))
    assert created.status_code == 201, created.text
    case_id = created.json()["id"]
    verified = server.api("POST", f"/v1/cases/{case_id}/verify", staff,
                          json={"method": "document", "confirmed_categories": ["minimum_living_allowance"]})
    assert verified.status_code == 200, verified.text

    school = open_page(staff, DESKTOP)
    keys: list[str] = []

    def lose_the_first_answer(route: Any) -> None:
        keys.append(route.request.headers.get("idempotency-key", ""))
        if len(keys) == 1:
            applied = route.fetch()  # the server gets the command and answers…
            assert applied.status == 200, applied.text()
            route.abort("connectionreset")  # …and the answer never reaches the browser
        else:
            route.continue_()

    school.route(f"**/v1/cases/{case_id}/assess", lose_the_first_answer)
    school.goto(f"{server.url}/cases/{case_id}")
    ready(school)
    _command(school, "assess").get_by_role("button", name="计算得分").click()
    expect(school.locator("#case-heading")).to_contain_text("已定量评价")
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0].startswith("web-"), keys
    events = server.api("GET", f"/v1/cases/{case_id}/events", staff)
    assert [e["type"] for e in events.json()] == ["Applied", "Verified", "Assessed"]
    accessible(school)
