"""Least privilege for personal data: what each role sees of a case, decided and applied here, once.

Views (by role):
- ``full``: the applicant (own case), the school (its own cases) and the system see everything.
- ``class``: the class evaluation group sees the household's economics (members' relation, age, occupation,
  health, income) to evaluate them, but no ID numbers, addresses, phones, dates of birth, names of family
  members, special-group categories or verification sources (Guangxi Art. 8(5) keeps categories out of view).
- ``official``: a bureau official or a discipline auditor sees the case's course (statuses, levels, scores,
  decisions, aid) but, on top of the class view, neither the household members nor the student's full name.
  Giving a ``reason`` (or ``purpose``) query parameter lifts the mask; the reading is then recorded in the access
  log (who, which case, what, when, why), which other auditors read at GET /v1/audit/access-log.

Masking is by key, anywhere in a response body, so a field added to the form later under one of these names is
masked without anyone remembering to. The access gate (api/access.py) decides the view once per request; routes
answer case data through ``current_disclosure().apply(...)`` (routes/cases.py does it in ``_state_response``, so
every case command and read is covered), and the role × endpoint matrix test scans every route's answers for the
fixture's ID number to keep it so.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from adapters.access_log import AccessLog
from adapters.auth import Principal
from api.deps import PrincipalDep, Services, ServicesDep
from domain.errors import ValidationFailed
from domain.values import Role

MASK = "[masked]"

# Identifiers and contacts: masked in the class and official views.
IDENTIFYING = frozenset({"id_number", "address", "home_address", "phone", "phones", "mobile", "telephone",
                         "contact_phone", "guardian_phone", "date_of_birth", "birth_date", "guardian_name",
                         "email", "wechat", "bank_account"})
# Special-group categories and where they were confirmed.
CATEGORIES = frozenset({"claimed_categories", "confirmed_categories", "confirmed", "discrepancies",
                        "unclaimed", "unclaimed_confirmed", "category", "categories", "source", "sources"})
# Breakdown entries of these kinds name the category that scored or identified the level.
REVEALING_KINDS = frozenset({"categories", "direct_identification", "rule"})
# The official view hides the household and the names as well.
OFFICIAL_ONLY = frozenset({"members", "name"})
PERSON_NAMES = frozenset({"guardian_name", "father_name", "mother_name", "parent_name", "contact_name"})
REASON_MIN = 4
REASON_MAX = 500


class View(Enum):
    FULL = "full"
    CLASS = "class"
    OFFICIAL = "official"


def view_for(principal: Principal, reason: str | None) -> View:
    role = principal.role
    if role in {Role.APPLICANT, Role.SCHOOL, Role.SYSTEM}:
        return View.FULL
    if role is Role.EVALUATOR:
        return View.CLASS
    return View.FULL if reason else View.OFFICIAL


def mask_id_number(value: str) -> str:
    return value[:3] + "*" * max(len(value) - 7, 0) + value[-4:] if len(value) > 7 else MASK


def mask_phone(value: str) -> str:
    digits = str(value)
    return digits[:3] + "****" + digits[-4:] if len(digits) >= 11 else MASK


def mask_name(value: str) -> str:
    return value[:1] + "*" * max(len(value) - 1, 1) if value else value


def _mask_value(key: str, value: Any) -> Any:
    if value is None or value == [] or value == {}:
        return value
    if key.endswith("id_number") and isinstance(value, str):
        return mask_id_number(value)
    if (key.endswith("phone") or key in {"mobile", "telephone"}) and isinstance(value, str):
        return mask_phone(value)
    if (key == "name" or key in PERSON_NAMES) and isinstance(value, str):
        return mask_name(value)
    return MASK


def mask(body: Any, view: View) -> Any:
    """A copy of `body` with what `view` may not see masked; the body itself is not changed."""
    if view is View.FULL:
        return body
    hidden = IDENTIFYING | CATEGORIES | (OFFICIAL_ONLY if view is View.OFFICIAL else frozenset())
    return _walk(body, hidden, inside_members=False, view=view)


def _walk(value: Any, hidden: frozenset[str], *, inside_members: bool, view: View) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in hidden or _identifying(key) or (inside_members and key == "name"):
                out[key] = _mask_value(key, item)
            elif key == "breakdown" and isinstance(item, list):
                out[key] = [_mask_breakdown(entry) for entry in item]
            else:
                out[key] = _walk(item, hidden, inside_members=inside_members or key == "members", view=view)
        return out
    if isinstance(value, list):
        return [_walk(v, hidden, inside_members=inside_members, view=view) for v in value]
    return value


def _identifying(key: str) -> bool:
    # Any *id_number, *phone or *address added to the form later is caught by its name.
    return key.endswith(("id_number", "phone", "address", "household_number")) or key in PERSON_NAMES


def _mask_breakdown(entry: Any) -> Any:
    if isinstance(entry, Mapping) and entry.get("kind") in REVEALING_KINDS:
        return {k: (MASK if k in {"item", "label", "detail"} else v) for k, v in entry.items()}
    return entry


@dataclass
class Disclosure:
    """The caller's view of personal data for this request, and the duty to record an unmasked reading."""

    principal: Principal | None
    view: View
    reason: str | None
    services: Services | None
    resource: str

    @property
    def recorded(self) -> bool:
        return (self.view is View.FULL and self.principal is not None
                and self.principal.role in {Role.AUDITOR, Role.BUREAU})

    def record(self, *, case_id: str | None) -> None:
        """Writes the access-log entry if this is an official's unmasked reading."""
        if self.recorded and self.services is not None and self.principal is not None:
            AccessLog(self.services.engine).record(
                at=self.services.clock.now(), sub=self.principal.sub, role=self.principal.role.value,
                case_id=case_id, resource=self.resource, reason=self.reason or "")

    def apply(self, body: Any, *, case_id: str | None) -> Any:
        """Masks `body` for this caller; an official's unmasked reading of a case is recorded first."""
        self.record(case_id=case_id)
        return mask(body, self.view)


# Set per request by the access gate (api/access.py, an async dependency, so the route's thread sees it).
_current: ContextVar[Disclosure | None] = ContextVar("zizhu_disclosure", default=None)
# Without a caller (no gate ran), the strictest view applies and nothing is recorded.
_NOBODY = Disclosure(None, View.OFFICIAL, None, None, "")


def current_disclosure() -> Disclosure:
    """This request's disclosure; every route that answers with case data masks through it."""
    return _current.get() or _NOBODY


def begin_disclosure(request: Request, principal: Principal, services: Services) -> Disclosure:
    """Decides the caller's view from the role and a stated `reason`/`purpose`, for the rest of the request."""
    stated = (request.query_params.get("reason") or request.query_params.get("purpose") or "").strip()
    if stated and len(stated) < REASON_MIN and principal.role in {Role.AUDITOR, Role.BUREAU}:
        raise ValidationFailed(f"state the reason in at least {REASON_MIN} characters", field="reason")
    if len(stated) > REASON_MAX:
        raise ValidationFailed(f"the reason is at most {REASON_MAX} characters", field="reason")
    route = request.scope.get("route")
    resource = f"{request.method} {getattr(route, 'path', request.url.path)}"
    disclosure = Disclosure(principal, view_for(principal, stated or None), stated or None, services, resource)
    _current.set(disclosure)
    return disclosure


def get_disclosure(
    request: Request, principal: PrincipalDep, services: ServicesDep,
    reason: Annotated[str | None, Query(max_length=REASON_MAX, description=(
        "auditors and bureau officials: why you need the personal data unmasked; the reading is recorded"))] = None,
    purpose: Annotated[str | None, Query(max_length=REASON_MAX, description="the same as reason")] = None,
) -> Disclosure:
    """For routes that take `reason`/`purpose` (declared here so the API documents them)."""
    known = _current.get()
    if known is not None and known.principal == principal:
        return known
    return begin_disclosure(request, principal, services)


DisclosureDep = Annotated[Disclosure, Depends(get_disclosure)]
