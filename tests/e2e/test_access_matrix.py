"""The role × endpoint matrix (api/access.py), generated from the app's route table: a route without a rule fails
here; every role gets what its rule says on every route (403 when the rule leaves it out, never 401/403 when it
lets it in); no route answers a resident ID number to a role that may not see one unmasked."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi import routing
from fastapi.testclient import TestClient

from adapters.auth import COMMAND_ROLES
from adapters.settings import Settings
from api.access import ACCESS, NOT_FOUND_OUTSIDE, PUBLIC, rule_for
from api.app import create_app
from domain.values import Role
from tests.conftest import SECRET, TokenFactory
from tests.support import GX_SCHOOL, form, id_number

SKIPPED = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
ROLES = ("applicant", "evaluator", "school", "bureau", "auditor")
# Roles that may not see an ID number without stating a reason (api/masking.py).
MASKED = ("evaluator", "bureau", "auditor")
STUDENT = id_number(1)


def api_routes(app: object) -> list[tuple[str, str]]:
    found = set()
    for context in routing.iter_route_contexts(app.routes):  # type: ignore[attr-defined]
        path = getattr(context, "path", None)
        if path is None or path in SKIPPED:
            continue
        for method in getattr(context, "methods", None) or ():
            if method != "HEAD":
                found.add((method, path))
    return sorted(found)


def test_every_route_has_a_rule_in_the_matrix(tmp_path: object) -> None:
    app = create_app(Settings(database_url="sqlite:///unused.db", secret=SECRET, log_level="WARNING"))
    routes = api_routes(app)
    assert ("GET", "/v1/cases/{case_id}") in routes  # the route table really was read
    missing = [f"{method} {path}" for method, path in routes if rule_for(method, path) is None]
    assert not missing, f"add these routes to api/access.py ACCESS: {missing}"


def test_case_command_rules_agree_with_the_domain_command_roles() -> None:
    for (method, path), rule in ACCESS.items():
        if method != "POST" or not path.startswith("/v1/cases/{case_id}/"):
            continue
        command = path.rsplit("/", 1)[1].replace("-", "_")
        command = {"follow_up": "follow_up", "object": "object"}.get(command, command)
        if command in COMMAND_ROLES:
            assert rule != PUBLIC
            assert set(rule) == set(COMMAND_ROLES[command]) - {Role.SYSTEM}, path


def _headers(auth: TokenFactory) -> dict[str, dict[str, str]]:
    return {
        "applicant": auth("applicant", student=STUDENT),
        "evaluator": auth("evaluator", school=GX_SCHOOL, class_id="G10-3"),
        "school": auth("school", school=GX_SCHOOL),
        "bureau": auth("bureau", region="450000"),
        "auditor": auth("auditor"),
    }


def _fill(path: str, case_id: str) -> str:
    values = {"case_id": case_id, "school_id": GX_SCHOOL, "region_code": "450103", "source": "civil_affairs",
              "check_id": str(uuid.uuid4())}
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


@pytest.fixture
def case_in_everyones_scope(client: TestClient, auth: TokenFactory) -> Iterator[str]:
    headers = _headers(auth)
    created = client.post("/v1/cases", json=form(1), headers=headers["applicant"])
    assert created.status_code == 201, created.text
    case_id = created.json()["id"]
    client.post(f"/v1/cases/{case_id}/verify", headers=headers["school"],
                json={"method": "document", "confirmed_categories": ["minimum_living_allowance"]})
    yield case_id


def test_each_role_gets_what_the_matrix_says_on_every_route(client: TestClient, auth: TokenFactory,
                                                             case_in_everyones_scope: str) -> None:
    headers = _headers(auth)
    wrong: list[str] = []
    for method, template in api_routes(client.app):
        rule = rule_for(method, template)
        if rule is None:
            continue  # reported by test_every_route_has_a_rule_in_the_matrix
        path = _fill(template, case_in_everyones_scope)
        kwargs = {"json": {}} if method in {"POST", "PUT", "PATCH"} else {}
        anonymous = client.request(method, path, **kwargs)
        if rule == PUBLIC:
            if anonymous.status_code == 401:
                wrong.append(f"{method} {template}: public, but 401 without a token")
            continue
        if anonymous.status_code != 401:
            wrong.append(f"{method} {template}: {anonymous.status_code} without a token, expected 401")
        for role in ROLES:
            response = client.request(method, path, headers=headers[role], **kwargs)
            allowed = Role(role) in rule
            if allowed and response.status_code in {401, 403}:
                wrong.append(f"{method} {template}: {role} is allowed by the matrix but got "
                             f"{response.status_code} {response.text[:160]}")
            refused = 404 if (method, template) in NOT_FOUND_OUTSIDE else 403
            if not allowed and response.status_code != refused:
                wrong.append(f"{method} {template}: {role} is not in the matrix but got {response.status_code}, "
                             f"expected {refused}")
            if role in MASKED and STUDENT in response.text:
                wrong.append(f"{method} {template}: answered the student's ID number to the {role} role")
    assert not wrong, "\n".join(wrong)
