"""FastAPI dependencies: the caller (from the bearer token), the services, and If-Match versions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.engine import Engine

from adapters.auth import InvalidToken, Principal
from adapters.batches import BatchCommands
from adapters.calendar import WorkingCalendar
from adapters.cases import CaseService
from adapters.clock import Clock
from adapters.exports import ExportService
from adapters.idempotency import ResponseLog
from adapters.matching import IdentificationEngine
from adapters.policies import Profiles
from adapters.publicity import PublicityService
from adapters.scheduler import DeadlineJob
from adapters.schools import SchoolRegistry
from adapters.settings import Settings
from adapters.store import CaseStore
from domain.case import StudentCase
from domain.errors import ValidationFailed
from projections.runner import Projections


@dataclass
class Services:
    """Everything a request may need, built once in create_app's lifespan."""

    settings: Settings
    store: CaseStore
    engine: Engine
    clock: Clock
    profiles: Profiles
    schools: SchoolRegistry
    cases: CaseService
    projections: Projections
    # Registry data matching for verify {"method": "data_match"} (set when registries are wired).
    matcher: Callable[[StudentCase], list[dict[str, str]]] | None = None
    # Public notice, its deadlines and the archive export (built in build_services).
    calendar: WorkingCalendar | None = None
    publicity: PublicityService | None = None
    deadlines: DeadlineJob | None = None
    exports: ExportService | None = None
    # Registry imports, data matching, class evaluation groups, consumption warnings (adapters/matching.py).
    identification: IdentificationEngine | None = None
    # Batch commands of a school's aid office and of a class evaluation group (adapters/batches.py).
    batches: BatchCommands | None = None
    # The first answers of POST requests sent with an Idempotency-Key (adapters/idempotency.py, api/idempotency.py).
    responses: ResponseLog | None = None


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    known = getattr(request.state, "principal", None)
    if isinstance(known, Principal):
        return known  # already checked by the access gate (api/access.py) for this request
    if not authorization or not authorization.lower().startswith("bearer "):
        raise InvalidToken("no bearer token")
    from adapters.jwks import TokenVerifier

    verifier = getattr(request.app.state, "token_verifier", None)
    if not isinstance(verifier, TokenVerifier):
        # Built once per app: it caches the identity provider's keys.
        verifier = request.app.state.token_verifier = TokenVerifier(get_services(request).settings)
    principal = verifier.verify(authorization[7:].strip())
    request.state.principal = principal
    return principal


def get_expected_version(if_match: Annotated[str | None, Header()] = None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    tag = if_match.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise ValidationFailed('If-Match must be a case version like "3"', field="If-Match")
    return int(tag)


ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
ExpectedVersion = Annotated[int | None, Depends(get_expected_version)]
