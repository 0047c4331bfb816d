"""Helpers for the after-identification end-to-end tests: a service on the test's store at a chosen time, and
identified (confirmed) cases made through the use cases of the real store.

Cases are brought to `confirmed` through CaseService itself (apply, verify, assess, evaluate, rate) and the
domain's publicize/confirm commands with the window's end passed as "today", so these tests do not depend on the
notice calendar; what is under test (the after-identification endpoints) is driven over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from fastapi.testclient import TestClient

from adapters.auth import Principal
from adapters.settings import Settings
from api.deps import Services
from domain.case import StudentCase
from domain.values import Role
from tests.conftest import SECRET
from tests.support import GX_SCHOOL, form, id_number

AUTUMN = "2025-09-15T09:00:00+08:00"
Open = Callable[..., TestClient]
NOTICE = (date(2025, 9, 1), date(2025, 9, 5))


def open_service(database_url: str) -> Iterator[Open]:
    """For a fixture: yields service_at(now) → a running app on the test's store at `now`; calling it again
    restarts the service on the same store at a later time (the previous app is shut down first)."""
    current: list[ExitStack] = []

    def make(now: str = AUTUMN) -> TestClient:
        if current:
            current.pop().close()
        stack = ExitStack()
        settings = Settings(database_url=database_url, secret=SECRET, now=now, log_level="WARNING",
                            run_deadlines=False)
        from api.app import create_app

        client = stack.enter_context(TestClient(create_app(settings), raise_server_exceptions=False))
        current.append(stack)
        return client

    yield make
    if current:
        current.pop().close()


def services_of(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def staff(school: str) -> Principal:
    return Principal(sub="school-1", role=Role.SCHOOL, school=school)


def identified(client: TestClient, seq: int, *, school: str = GX_SCHOOL, region: str = "450103",
               level: str = "especially_difficult", year: str = "2025-2026", **overrides: Any) -> str:
    """A confirmed case of student `seq` at `school` with `level`; returns its id."""
    services = services_of(client)
    body = form(seq, school_id=school, region=region, year=year, **overrides)
    applicant = Principal(sub=f"guardian-{seq}", role=Role.APPLICANT, student=id_number(seq, region=region))
    case_id = services.cases.apply(applicant, body).case.id
    office = staff(school)
    services.cases.verify(office, case_id, method="document", confirmed_categories=["minimum_living_allowance"],
                          notes="")
    services.cases.assess(office, case_id)
    teacher = Principal(sub="teacher-1", role=Role.EVALUATOR, school=school, class_id=body["student"]["class_id"])
    services.cases.evaluate(teacher, case_id, votes_for=5, votes_against=0, recommended_level=level, panel=[])
    services.cases.rate(office, case_id, level=level, reason="level set by the test")
    confirm(services, office, case_id)
    return str(case_id)


def confirm(services: Services, office: Principal, case_id: UUID) -> None:
    """Publicizes for a past window and confirms it (the domain takes `today`; the calendar is not under test)."""
    profile_of: Callable[[StudentCase], str] = lambda case: services.cases.profile_for(case).tag  # noqa: E731

    def publicize(case: StudentCase, now: datetime) -> None:
        case.publicize(notice_id="test-notice", starts_on=NOTICE[0], ends_on=NOTICE[1], working_days=5,
                       profile_version=profile_of(case), actor=office.actor, now=now)

    def close(case: StudentCase, now: datetime) -> None:
        case.confirm(today=NOTICE[1] + timedelta(days=1), actor=office.actor, now=now)

    services.cases.execute(office, case_id, "publicize", None, publicize)
    services.cases.execute(office, case_id, "confirm", None, close)


def version_of(client: TestClient, headers: dict[str, str], case_id: str) -> int:
    version: int = client.get(f"/v1/cases/{case_id}", headers=headers).json()["version"]
    return version
