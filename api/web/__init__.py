"""The web console and the mobile application form: server-rendered zh-CN pages (Jinja2) with small scripts.

Each page is rendered here with its headings, labels, forms and option lists; the data a page shows and every
change it makes go through the /v1 API from the browser, with the bearer token the person signed in with (held in
sessionStorage). So the pages have no write path, scope rule or masking of their own: what a page shows is what the
API answers that token, masked as the API masks it. The page routes themselves are public (api/access.py) because
they carry no data; without a token their scripts send the person to the sign-in page.

Sign-in: locally a page that takes a token from `zizhu token`; in production the deployment's identity provider
(ZIZHU_WEB_SIGNIN_URL: the page links there, and the provider sends the person back to `/#access_token=…`, the
token the API checks against ZIZHU_OIDC_* like any other).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.deps import Services
from api.web import labels

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["L"] = labels
router = APIRouter(include_in_schema=False)

def _academic_years(request: Request) -> list[str]:
    """This academic year first (a year starts in September, China time), then the next one."""
    services: Services = request.app.state.services
    today = services.clock.today()
    first = today.year if today.month >= 9 else today.year - 1
    return [f"{first}-{first + 1}", f"{first + 1}-{first + 2}"]


def _page(request: Request, template: str, title: str, **context: Any) -> HTMLResponse:
    services: Services = request.app.state.services
    settings = services.settings
    return templates.TemplateResponse(request, template, {
        "title": title, "labels": labels.all_labels(), "signin_url": settings.web_signin_url,
        "production": settings.env == "production", **context})


@router.get("/", response_class=HTMLResponse)
def signin(request: Request) -> HTMLResponse:
    return _page(request, "signin.html", "登录")


@router.get("/me", response_class=HTMLResponse)
def applicant_home(request: Request) -> HTMLResponse:
    return _page(request, "me.html", "我的认定申请")


@router.get("/apply", response_class=HTMLResponse)
def apply_form(request: Request) -> HTMLResponse:
    return _page(request, "apply.html", "家庭经济困难学生认定申请", years=_academic_years(request))


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(request: Request, case_id: str) -> HTMLResponse:
    return _page(request, "case.html", "认定案件", case_id=case_id)


@router.get("/school", response_class=HTMLResponse)
def school_console(request: Request) -> HTMLResponse:
    return _page(request, "school.html", "学校资助工作台", years=_academic_years(request))


@router.get("/bureau", response_class=HTMLResponse)
def bureau_dashboard(request: Request) -> HTMLResponse:
    return _page(request, "bureau.html", "教育局资助工作概览", years=_academic_years(request))


@router.get("/audit", response_class=HTMLResponse)
def audit_home(request: Request) -> HTMLResponse:
    return _page(request, "audit.html", "纪检审计")


@router.get("/audit/cases/{case_id}", response_class=HTMLResponse)
def audit_case(request: Request, case_id: str) -> HTMLResponse:
    return _page(request, "audit_case.html", "案件审计", case_id=case_id)


def install_web(app: FastAPI) -> None:
    """The pages at / and their scripts and styles at /static (shipped inside the package: no build step)."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
