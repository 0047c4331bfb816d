"""Property-based run of the whole HTTP interface from its OpenAPI document (schemathesis): a bounded number of
generated requests per operation, each sent with a token of a role the access matrix allows there, must never
get a 5xx, and every error must be application/problem+json with a stable `code`.

On SQLite (the embedded default); PostgreSQL runs the same routes and error mapping in the other e2e tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi

from adapters.auth import issue_token
from adapters.settings import Settings
from api.access import PUBLIC, rule_for
from api.app import create_app
from domain.values import Role
from tests.conftest import SECRET
from tests.support import GX_SCHOOL, id_number

EXAMPLES = 20
# Which role's token each operation is called with: the first its rule allows, most capable first.
PREFERENCE = (Role.SCHOOL, Role.AUDITOR, Role.BUREAU, Role.EVALUATOR, Role.APPLICANT)
SCOPES: dict[Role, dict[str, str]] = {
    Role.SCHOOL: {"school": GX_SCHOOL}, Role.AUDITOR: {}, Role.BUREAU: {"region": "450000"},
    Role.EVALUATOR: {"school": GX_SCHOOL, "class_id": "G10-3"}, Role.APPLICANT: {"student": id_number(1)},
}


@pytest.fixture
def api_schema(tmp_path: Any) -> Iterator[Any]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'var' / 'zizhu.db'}", secret=SECRET,
                        now="2025-09-15T09:00:00+08:00", log_level="CRITICAL", seal_interval=0,
                        rate_limit_writes_per_second=0)
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))
    # schemathesis started the app's lifespan (store, projection runner) and keeps it until told.
    asgi.shutdown_lifespans()


def problem_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every error answer is RFC 9457 problem+json with our stable members."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type.startswith("application/problem+json"), f"{response.status_code} as {content_type}"
    body = response.json()
    assert body["status"] == response.status_code and isinstance(body.get("code"), str) and body["code"]
    assert isinstance(body.get("title"), str) and isinstance(body.get("detail"), str)
    assert "Traceback" not in response.text
    return True


def _headers(method: str, path: str) -> dict[str, str]:
    rule = rule_for(method, path)
    if rule is None or rule == PUBLIC:
        return {}
    role = next(r for r in PREFERENCE if r in rule)
    return {"Authorization": f"Bearer {issue_token(SECRET, sub=f'{role.value}-st', role=role.value, **SCOPES[role])}"}


SEEN: dict[str, Counter[int]] = {}


def exercise(operation: Any, headers: dict[str, str]) -> Any:
    @given(case=operation.as_strategy())
    @hypothesis_settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck), derandomize=True, database=None)
    def run(case: Any) -> None:
        response = case.call(headers=headers)
        SEEN.setdefault(operation.label, Counter())[response.status_code] += 1
        case.validate_response(response, checks=[not_a_server_error, problem_json])

    return run


def test_no_server_error_and_every_error_is_problem_json(api_schema: Any) -> None:
    """Each operation in turn (schemathesis' pytest plugin does not run under this pytest; hypothesis drives
    each operation's strategy directly), failures collected so one run names every operation that fails."""
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20  # the document really was read

    for operation in operations:
        try:
            exercise(operation, _headers(operation.method.upper(), operation.path))()
        except Exception as exc:  # collected: the report names every failing operation at once
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
        statuses.update(SEEN.pop(operation.label, {}))
    assert not failures, "\n\n".join(failures)
    # Every request was let in by the matrix (the token fits the operation), and some went all the way through.
    assert statuses[401] == statuses[403] == 0, statuses
    assert sum(n for status, n in statuses.items() if status < 300) > 0, statuses
