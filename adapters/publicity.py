"""Public notice use cases (结果公示): open a window for a school's rated cases, exempt a case, raise and resolve
objections, and read the notice board.

Opening a window touches many cases. Every case is loaded and checked first; if any is not rated (or not this
school's), the whole request is refused naming them and nothing is written. Then all the cases' `Publicized`
events are appended in ONE store transaction (the event store's `save` of several aggregates is atomic), so a
concurrent change to any one of them makes the whole opening fail with 409 and none of them is publicised: there
is no half-opened notice to report or repair.

The objector's identity is protected: the event records an HMAC of the objector's token subject keyed with
ZIZHU_SECRET (never the subject itself), so an auditor holding the secret can check a named person against it,
and neither the board nor the applicant (who reads the case's history) can learn who objected.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from sqlalchemy import select

from adapters.auth import Principal, require_command
from adapters.calendar import WorkingCalendar
from adapters.cases import CaseService, Outcome
from domain.case import StudentCase, local_date
from domain.errors import CaseNotFound, Conflict, Forbidden, RuleViolated, ValidationFailed
from domain.policy import PolicyProfile
from domain.values import Role, Status, case_id_for, parse_level_or_none
from projections.notices import board_entries
from projections.runner import Projections

MAX_CASES_PER_NOTICE = 1000
OBJECTOR_HASH_PREFIX = "hmac-sha256:"


class CasesNotReady(RuleViolated):
    """Some cases of a notice request cannot enter public notice; the problem lists each with why."""

    code = "cases_not_rated"


@dataclass(frozen=True)
class Window:
    notice_id: str
    starts_on: date
    ends_on: date
    working_days: int
    case_ids: list[str]
    profile_version: str
    position: int | None


@dataclass
class PreparedWindow:
    """Checked cases with their `Publicized` events pending: nothing is stored until `commit`."""

    window: Window
    cases: list[StudentCase]


@dataclass(frozen=True)
class Board:
    school_id: str
    school_name: str
    on: date
    entries: list[dict[str, Any]]  # projections.notices.BOARD_FIELDS only


def objector_hash(secret: str, sub: str) -> str:
    digest = hmac.new(secret.encode(), b"objector\x00" + sub.encode(), hashlib.sha256).hexdigest()
    return OBJECTOR_HASH_PREFIX + digest


class PublicityService:
    def __init__(self, cases: CaseService, calendar: WorkingCalendar, projections: Projections,
                 secret: str) -> None:
        self.cases = cases
        self.calendar = calendar
        self.projections = projections
        self._secret = secret

    # ------------------------------------------------------------------------------------------ opening

    def open_window(self, principal: Principal, school_id: str, case_ids: Sequence[str],
                    starts_on: date | None = None) -> Window:
        return self.commit(self.prepare(principal, school_id, case_ids, starts_on))

    def prepare(self, principal: Principal, school_id: str, case_ids: Sequence[str],
                starts_on: date | None = None) -> PreparedWindow:
        """Checks everything and decides every case; stores nothing."""
        self._require_school_staff(principal, school_id)
        ids = _parse_ids(case_ids)
        today = self.cases.clock.today()
        first_day = starts_on or today
        if first_day < today:
            raise ValidationFailed(f"a notice cannot start in the past (today is {today})", field="starts_on")
        loaded: list[StudentCase] = []
        problems: list[dict[str, Any]] = []
        found = self.cases.store.get_many(ids)  # one query per 500 cases
        for case_id in ids:
            case = found.get(case_id)
            if not isinstance(case, StudentCase) or case.school_id != school_id:
                problems.append({"case_id": str(case_id), "problem": "not_found"})
            elif case.status is not Status.RATED:
                problems.append({"case_id": str(case_id), "problem": "not_rated", "status": case.status.value})
            else:
                loaded.append(case)
        if problems:
            raise CasesNotReady(f"{len(problems)} of {len(ids)} cases cannot enter public notice; nothing was "
                                "opened", cases=problems)
        profile = self._profile(loaded)
        first, last = self.calendar.window(first_day, profile.notice_working_days)
        notice_id = uuid.uuid4().hex
        now = self.cases.clock.now()
        for case in loaded:
            require_command(principal, case, "publicize")
            case.publicize(notice_id=notice_id, starts_on=first, ends_on=last,
                           working_days=profile.notice_working_days, profile_version=profile.tag,
                           actor=principal.actor, now=now)
        window = Window(notice_id, first, last, profile.notice_working_days, [str(c.id) for c in loaded],
                        profile.tag, None)
        return PreparedWindow(window, loaded)

    def commit(self, prepared: PreparedWindow) -> Window:
        try:
            recordings = self.cases.store.save(*prepared.cases)
        except IntegrityError:
            raise Conflict("a concurrent change to one of these cases won; no case was publicised; reload the "
                           "cases and try again") from None
        position = max((r.notification.id for r in recordings), default=None)
        w = prepared.window
        return Window(w.notice_id, w.starts_on, w.ends_on, w.working_days, w.case_ids, w.profile_version, position)

    def _profile(self, cases: Sequence[StudentCase]) -> PolicyProfile:
        profiles = {self.cases.profile_for(c).tag: self.cases.profile_for(c) for c in cases}
        if len(profiles) != 1:  # one school, one region: only a registry change mid-year could cause this
            raise RuleViolated("these cases fall under different policy profiles; open one notice per profile",
                               profiles=sorted(profiles))
        return next(iter(profiles.values()))

    def _require_school_staff(self, principal: Principal, school_id: str) -> None:
        if self.cases.schools.get(school_id) is None:
            raise CaseNotFound("no such school")
        if principal.role is Role.SCHOOL and principal.school == school_id:
            return
        if principal.role is Role.EVALUATOR and principal.school == school_id:
            raise Forbidden("only the school aid office opens a public notice")
        raise CaseNotFound("no such school")  # another school's notices do not exist for this caller

    # ------------------------------------------------------------------------------------------ case commands

    def exempt(self, principal: Principal, case_id: UUID, ground: str,
               expected_version: int | None = None) -> Outcome:
        def decide(case: StudentCase, now: datetime) -> None:
            profile = self.cases.profile_for(case)
            case.exempt_publicity(ground=ground, allowed=profile.exemption_allowed,
                                  allowed_grounds=profile.exemption_grounds, profile_version=profile.tag,
                                  actor=principal.actor, now=now)

        return self.cases.execute(principal, case_id, "exempt_publicity", expected_version, decide)

    def object(self, principal: Principal, case_id: UUID, grounds: str,
               expected_version: int | None = None) -> Outcome:
        objector = objector_hash(self._secret, principal.sub)

        def decide(case: StudentCase, now: datetime) -> None:
            case.raise_objection(objection_id=uuid.uuid4().hex, grounds=grounds, objector=objector,
                                 today=local_date(now), actor=principal.actor, now=now)

        return self.cases.execute(principal, case_id, "object", expected_version, decide)

    def resolve(self, principal: Principal, case_id: UUID, *, objection_id: str, outcome: str, reason: str,
                new_level: str | None, expected_version: int | None = None) -> Outcome:
        if outcome == "upheld" and not new_level:
            raise ValidationFailed("an upheld objection re-rates the case: give new_level (a level or "
                                   "not_identified)", field="new_level")
        level = parse_level_or_none(new_level, "new_level") if outcome == "upheld" else None

        def decide(case: StudentCase, now: datetime) -> None:
            case.resolve_objection(objection_id=objection_id, outcome=outcome, reason=reason, new_level=level,
                                   levels=self.cases.profile_for(case).levels, actor=principal.actor, now=now)

        return self.cases.execute(principal, case_id, "resolve_objection", expected_version, decide)

    # ------------------------------------------------------------------------------------------ the board

    def board(self, principal: Principal, school_id: str) -> Board:
        """The notice board of one school, for members of that school only (others: 404). Entries are the
        cases whose window is open today, from the notices view; only name, grade/class and level."""
        school = self.cases.schools.get(school_id)
        if school is None:
            raise CaseNotFound("no such school")
        notices = self.projections.active_tables("notices")["notices"]
        if not self._member(principal, school_id, notices):
            raise CaseNotFound("no such school")
        today = self.cases.clock.today()
        with self.projections.engine.connect() as conn:
            entries = board_entries(conn, notices, school_id, today)
        return Board(school_id, school.name, today, entries)

    def _member(self, principal: Principal, school_id: str, notices: Any) -> bool:
        if principal.role in {Role.SCHOOL, Role.EVALUATOR}:
            return principal.school == school_id
        if principal.role is Role.APPLICANT and principal.student:
            # An applicant belongs to the school where they have a case (in any year the school has cases).
            with self.projections.engine.connect() as conn:
                years = list(conn.execute(select(notices.c.academic_year).distinct()
                                          .where(notices.c.school_id == school_id)).scalars())
                own = [str(case_id_for(principal.student, y)) for y in years]
                found = conn.execute(select(notices.c.case_id).where(
                    notices.c.school_id == school_id, notices.c.case_id.in_(own)).limit(1)).first()
            return found is not None
        return False


def _parse_ids(case_ids: Sequence[str]) -> list[UUID]:
    if not case_ids:
        raise ValidationFailed("name at least one case", field="case_ids")
    if len(case_ids) > MAX_CASES_PER_NOTICE:
        raise ValidationFailed(f"at most {MAX_CASES_PER_NOTICE} cases per notice", field="case_ids")
    ids: dict[UUID, None] = {}
    for i, value in enumerate(case_ids):
        try:
            ids[UUID(str(value))] = None
        except ValueError:
            raise ValidationFailed("not a case id", field=f"case_ids[{i}]") from None
    return list(ids)
