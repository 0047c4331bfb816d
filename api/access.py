"""The role × endpoint matrix: which roles may call each route, in one table.

It is enforced for every request by a dependency installed on the whole app (before the body is read, so a role
that may not call a route gets 403 rather than a validation error), and the suite iterates the app's route table
so a route added without a rule here fails the tests (tests/e2e/test_access_matrix.py). A route missing from the
table is let through at run time with a `route_without_access_rule` warning, so work in progress is not blocked;
the suite is what keeps it from shipping. The services below still check scope and per-command roles: this is the
first of two locks, not the only one.

Scope (which cases, schools or regions) is not decided here: a case outside the caller's scope answers 404.
"""

from __future__ import annotations

from typing import Final, Literal

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from adapters.logs import get_logger
from domain.errors import CaseNotFound, Forbidden
from domain.values import Role

A, E, S, B, AU = Role.APPLICANT, Role.EVALUATOR, Role.SCHOOL, Role.BUREAU, Role.AUDITOR
PUBLIC: Final = "public"
EVERYONE = frozenset({A, E, S, B, AU})
Rule = frozenset[Role] | Literal["public"]
# The web console's pages (api/web): public because they hold no data; their scripts call the API with a token.
WEB_PAGES = ("/", "/me", "/apply", "/cases/{case_id}", "/school", "/bureau", "/audit", "/audit/cases/{case_id}")

ACCESS: dict[tuple[str, str], Rule] = {
    ("GET", "/healthz"): PUBLIC,
    # cases: apply, read, history and commands (per-command roles mirror adapters.auth.COMMAND_ROLES)
    ("POST", "/v1/cases"): frozenset({A, S}),
    ("GET", "/v1/cases"): EVERYONE,
    ("GET", "/v1/cases/{case_id}"): EVERYONE,
    ("GET", "/v1/cases/{case_id}/events"): EVERYONE,
    ("POST", "/v1/cases/{case_id}/amend"): frozenset({A}),
    ("POST", "/v1/cases/{case_id}/withdraw"): frozenset({A, S}),
    ("POST", "/v1/cases/{case_id}/verify"): frozenset({S}),
    ("POST", "/v1/cases/{case_id}/assess"): frozenset({S}),
    ("POST", "/v1/cases/{case_id}/evaluate"): frozenset({E}),
    ("POST", "/v1/cases/{case_id}/rate"): frozenset({S}),
    ("POST", "/v1/cases/{case_id}/object"): frozenset({A, E, S}),
    ("POST", "/v1/cases/{case_id}/resolve-objection"): frozenset({S}),
    ("POST", "/v1/cases/{case_id}/follow-up"): frozenset({S}),
    ("POST", "/v1/cases/{case_id}/home-visit"): frozenset({S}),
    ("POST", "/v1/cases/{case_id}/readjust"): frozenset({S}),
    ("POST", "/v1/cases/{case_id}/grant-aid"): frozenset({S}),
    ("POST", "/v1/cases/{case_id}/disburse"): frozenset({S}),
    ("POST", "/v1/cases/{case_id}/revoke"): frozenset({S}),
    ("POST", "/v1/cases/{case_id}/order-recovery"): frozenset({S}),
    ("POST", "/v1/cases/{case_id}/record-recovery"): frozenset({S}),
    ("POST", "/v1/cases/{case_id}/record-integrity-violation"): frozenset({S, B}),
    # read models
    ("GET", "/v1/schools/{school_id}/queue"): frozenset({E, S, B, AU}),
    ("GET", "/v1/regions/{region_code}/statistics"): frozenset({B, AU}),
    ("POST", "/v1/cases/{case_id}/exempt-publicity"): frozenset({S}),
    # public notice and the archive export
    ("POST", "/v1/schools/{school_id}/publicity"): frozenset({S}),
    ("GET", "/v1/schools/{school_id}/publicity"): frozenset({A, E, S}),
    ("GET", "/v1/exports/national"): frozenset({S, B}),
    # after identification: follow-ups, visits, aid, ledgers, spot checks, integrity records
    ("POST", "/v1/schools/{school_id}/follow-ups/sample"): frozenset({S}),
    ("GET", "/v1/schools/{school_id}/follow-ups"): frozenset({S, B, AU}),
    ("GET", "/v1/schools/{school_id}/home-visits"): frozenset({S, B, AU}),
    ("GET", "/v1/schools/{school_id}/aid"): frozenset({S, B, AU}),
    ("GET", "/v1/schools/{school_id}/aid/under-target"): frozenset({S, B, AU}),
    ("GET", "/v1/schools/{school_id}/ledger"): frozenset({S, B, AU}),
    ("GET", "/v1/regions/{region_code}/ledger"): frozenset({B, AU}),
    ("POST", "/v1/regions/{region_code}/spot-checks"): frozenset({B}),
    ("GET", "/v1/regions/{region_code}/spot-checks"): frozenset({B, AU}),
    ("GET", "/v1/regions/{region_code}/spot-checks/{check_id}"): frozenset({B, AU}),
    ("POST", "/v1/regions/{region_code}/spot-checks/{check_id}/assign"): frozenset({B}),
    ("POST", "/v1/regions/{region_code}/spot-checks/{check_id}/results"): frozenset({B}),
    ("GET", "/v1/integrity-records"): frozenset({S, B, AU}),
    # audit: replay, dossier, the log's integrity and who read what
    ("GET", "/v1/cases/{case_id}/diff"): frozenset({AU}),
    ("GET", "/v1/cases/{case_id}/dossier"): frozenset({S, AU}),
    ("GET", "/v1/audit/verify-log"): frozenset({AU}),
    ("GET", "/v1/audit/seals"): frozenset({AU}),
    ("POST", "/v1/audit/seals"): frozenset({AU}),
    ("GET", "/v1/audit/access-log"): frozenset({AU}),
    # rounds, one-student-one-plan, notifications, model review (adapters/rounds.py, plans.py, notifications.py,
    # model_review.py)
    ("POST", "/v1/schools/{school_id}/rounds"): frozenset({S, B}),
    ("POST", "/v1/regions/{region_code}/rounds"): frozenset({B}),
    ("GET", "/v1/regions/{region_code}/rounds"): frozenset({B, AU}),
    ("GET", "/v1/regions/{region_code}/rounds/dashboard"): frozenset({B, AU}),
    ("GET", "/v1/schools/{school_id}/rounds"): frozenset({E, S, B, AU}),
    ("GET", "/v1/schools/{school_id}/rounds/current"): EVERYONE,
    ("GET", "/v1/schools/{school_id}/rounds/{round_id}"): frozenset({E, S, B, AU}),
    ("GET", "/v1/schools/{school_id}/rounds/{round_id}/dashboard"): frozenset({E, S, B, AU}),
    ("POST", "/v1/schools/{school_id}/rounds/{round_id}/close"): frozenset({S, B}),
    ("POST", "/v1/cases/{case_id}/plan"): frozenset({S}),
    ("GET", "/v1/cases/{case_id}/plan"): frozenset({A, S, B, AU}),
    ("GET", "/v1/plans/{plan_id}"): frozenset({A, S, B, AU}),
    ("POST", "/v1/plans/{plan_id}/items"): frozenset({S}),
    ("POST", "/v1/plans/{plan_id}/items/{item_id}/actions"): frozenset({S}),
    ("POST", "/v1/plans/{plan_id}/review"): frozenset({S}),
    ("GET", "/v1/notifications"): EVERYONE,
    ("GET", "/v1/regions/{region_code}/model-review"): frozenset({B, AU}),
    ("GET", "/v1/regions/{region_code}/profiles"): frozenset({B, AU}),
    ("POST", "/v1/regions/{region_code}/profiles"): frozenset({B}),
    # identification engine: registry lists and data matching, class evaluation groups, campus-card warnings
    ("POST", "/v1/registries/{source}/imports"): frozenset({S, B}),
    ("GET", "/v1/registries/imports"): frozenset({S, B, AU}),
    ("POST", "/v1/schools/{school_id}/verify-by-data"): frozenset({S}),
    ("GET", "/v1/schools/{school_id}/outreach"): frozenset({S, B, AU}),
    ("POST", "/v1/schools/{school_id}/classes/{class_id}/panel"): frozenset({S}),
    ("GET", "/v1/schools/{school_id}/classes/{class_id}/panel"): frozenset({E, S, B, AU}),
    ("POST", "/v1/cases/{case_id}/votes"): frozenset({E}),
    ("POST", "/v1/cases/{case_id}/evaluation/close"): frozenset({E}),
    ("POST", "/v1/schools/{school_id}/consumption/imports"): frozenset({S}),
    ("GET", "/v1/schools/{school_id}/consumption/warnings"): frozenset({S, B, AU}),
    ("GET", "/v1/regions/{region_code}/departures"): frozenset({B, AU}),
    # batch commands: a school's bulk entry, assessment and rating, a class group's results (adapters/batches.py)
    ("POST", "/v1/schools/{school_id}/applications"): frozenset({S}),
    ("POST", "/v1/schools/{school_id}/assess-verified"): frozenset({S}),
    ("POST", "/v1/schools/{school_id}/rate-evaluated"): frozenset({S}),
    ("POST", "/v1/schools/{school_id}/classes/{class_id}/evaluations"): frozenset({E}),
    # the caller's own role and scope (the web console's navigation)
    ("GET", "/v1/me"): EVERYONE,
    # the web console's pages carry no data (their scripts call the API with the caller's token): api/web
    **{("GET", page): PUBLIC for page in WEB_PAGES},
}


# Outside these routes' rules the caller is told the resource does not exist (404), as the service itself answers
# for anything out of scope: a school's notice board does not exist for anyone outside the school.
NOT_FOUND_OUTSIDE: frozenset[tuple[str, str]] = frozenset({("GET", "/v1/schools/{school_id}/publicity")})


def rule_for(method: str, path: str) -> Rule | None:
    return ACCESS.get((method.upper(), path))


async def enforce_access(request: Request) -> None:
    """The app-wide gate: the caller's role must be in the route's rule (after a valid token, for any rule but
    public). It also decides what the caller may see of personal data (api/masking.py) for the whole request;
    being async, what it sets is seen by the route, which runs in a copy of this context."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return
    rule = rule_for(request.method, path)
    if rule == PUBLIC:
        return
    from api.deps import get_principal, get_services
    from api.masking import begin_disclosure

    if rule is None:
        # Let through (the route's own dependencies authenticate), so work in progress is not blocked; the matrix
        # test fails the suite until the route has a rule. Case data still leaves masked: no view was granted.
        get_logger("zizhu.access").warning("route_without_access_rule", method=request.method, route=path)
        return
    # Token checks may fetch the identity provider's keys: keep them off the event loop.
    principal = await run_in_threadpool(get_principal, request, request.headers.get("authorization"))
    if principal.role not in rule:
        if (request.method.upper(), path) in NOT_FOUND_OUTSIDE:
            raise CaseNotFound("not found")
        raise Forbidden(f"the {principal.role.value} role cannot call {request.method} {path}")
    begin_disclosure(request, principal, get_services(request))
