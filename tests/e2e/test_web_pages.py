"""The web console's server side on both stores, without a browser: every page renders in Chinese with the same
accessibility rules the browser tests check (lang, a label for every control, headings in order), pages hold no
data and need no token, the page CSP forbids inline script, the static files are served from the package, and
GET /v1/me answers the caller's role and scope (401 without a token)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from api.access import WEB_PAGES
from tests.conftest import TokenFactory
from tests.support import GX_SCHOOL, id_number

CONTROLS = {"input", "select", "textarea"}


class PageAudit(HTMLParser):
    """Collects what the accessibility rules need from server-rendered HTML (template content excluded: it is
    inert until a script clones it, and the browser tests check the clones)."""

    def __init__(self) -> None:
        super().__init__()
        self.lang: str | None = None
        self.label_for: set[str] = set()
        self.controls: list[tuple[str, dict[str, str | None]]] = []
        self.wrapped: list[bool] = []
        self.headings: list[int] = []
        self.inline_scripts: list[str] = []
        self.labels_open = 0
        self.template_depth = 0
        self._script_type: str | None = None
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "template":
            self.template_depth += 1
        if self.template_depth:
            return
        if tag == "html":
            self.lang = attributes.get("lang")
        elif tag == "label":
            self.labels_open += 1
            if attributes.get("for"):
                self.label_for.add(str(attributes["for"]))
        elif tag in CONTROLS and attributes.get("type") != "hidden":
            self.controls.append((tag, attributes))
            self.wrapped.append(self.labels_open > 0)
        elif len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
            self.headings.append(int(tag[1]))
        elif tag == "script":
            self._in_script = "src" not in attributes
            self._script_type = attributes.get("type")

    def handle_endtag(self, tag: str) -> None:
        if tag == "template":
            self.template_depth -= 1
        elif tag == "label" and not self.template_depth:
            self.labels_open -= 1
        elif tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip() and self._script_type != "application/json":
            self.inline_scripts.append(data.strip()[:60])


def _path(template: str) -> str:
    return template.replace("{case_id}", "604b7b29-a87e-5c23-b538-6a3edb6c2222")


@pytest.mark.parametrize("page", WEB_PAGES)
def test_each_page_renders_in_chinese_with_labels_and_headings_in_order(client: TestClient, page: str) -> None:
    response = client.get(_path(page))  # no token: the page itself carries no data
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    audit = PageAudit()
    audit.feed(response.text)
    assert audit.lang == "zh-CN"
    unlabelled = [attrs for (tag, attrs), wrapped in zip(audit.controls, audit.wrapped, strict=True)
                  if not wrapped and attrs.get("id") not in audit.label_for and not attrs.get("aria-label")]
    assert unlabelled == []
    assert audit.headings[0] == 1 and audit.headings.count(1) == 1, audit.headings
    skips = [(a, b) for a, b in zip(audit.headings, audit.headings[1:], strict=False) if b > a + 1]
    assert skips == []
    assert audit.inline_scripts == []  # the CSP would block them: every script is a file under /static


def test_the_application_form_offers_the_api_codes_with_chinese_names(client: TestClient) -> None:
    html = client.get("/apply").text
    for code, name in (("senior_secondary", "普通高中"), ("minimum_living_allowance", "最低生活保障家庭（低保）"),
                       ("serious_illness", "重大疾病"), ("2025-2026", "2025-2026 学年")):
        assert f'value="{code}"' in html and name in html
    assert "个人承诺" in html and 'id="f-attestation"' in html


def test_static_files_are_served_from_the_package(client: TestClient) -> None:
    for name, kind in (("core.js", "javascript"), ("apply.js", "javascript"), ("app.css", "text/css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert client.get("/static/missing.js").status_code == 404


def test_me_answers_the_callers_role_and_scope(client: TestClient, auth: TokenFactory) -> None:
    assert client.get("/v1/me").status_code == 401
    student = id_number(7)
    mine = client.get("/v1/me", headers=auth("applicant", sub="guardian-7", student=student)).json()
    assert mine == {"sub": "guardian-7", "role": "applicant", "school": None, "class_id": None, "region": None,
                    "student": student}
    staff = client.get("/v1/me", headers=auth("school", school=GX_SCHOOL)).json()
    assert staff["role"] == "school" and staff["school"] == GX_SCHOOL and staff["student"] is None
