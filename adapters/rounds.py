"""Identification rounds: opening (per school, or per region for every school in the registry), the announcement
students read, the round dashboard, closing, and the admission check every application passes.

Rounds live in the event store beside the cases (domain/round.py). Whether a school runs rounds, and whether one
is open, is read from the round aggregates themselves (their IDs are derived), never from a view, so an application
sent the moment after a round opens or closes is judged on the round's true state. The dashboard and the close
rule count cases from the case index; closing first waits until that view has caught up with the log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from sqlalchemy import select

from adapters.auth import Principal
from adapters.clock import CHINA, Clock
from adapters.policies import Profiles
from adapters.schools import School, SchoolRegistry, schools_table
from adapters.store import CaseStore
from domain.errors import CaseNotFound, DomainError, Forbidden, ValidationFailed, VersionMismatch
from domain.policy import PolicyProfile
from domain.round import (
    IDENTIFICATION,
    KINDS,
    SPRING_ADJUSTMENT,
    UNFINISHED,
    IdentificationRound,
    RoundNotFound,
    RoundOverlaps,
    RoundsNotConfigured,
    admit,
    allowed_window,
    is_emergency,
    parse_kind,
    round_id_for,
)
from domain.values import Role, validate_academic_year
from projections.queries import region_prefix, region_range
from projections.runner import Projections, as_utc

CLOSE_WAIT = 5.0  # seconds the close waits for the case index to reach the log's head


class StaleView(DomainError):
    """A view this answer depends on has not caught up with the log yet (the route answers 503)."""

    code = "stale_view"


@dataclass(frozen=True)
class RoundRequest:
    academic_year: str
    kind: str
    opens_on: date
    closes_on: date


@dataclass(frozen=True)
class Opened:
    rounds: list[IdentificationRound]
    skipped: list[dict[str, str]]
    position: int | None


def region_in_scope(principal: Principal, region_code: str) -> str:
    """The region's code prefix, if the caller may act on that region (bureau within its own, auditor anywhere);
    a region outside a bureau's answers as unknown."""
    if not (len(region_code) == 6 and region_code.isdigit()):
        raise ValidationFailed("a region code has six digits", field="region_code")
    prefix = region_prefix(region_code)
    if principal.role is Role.AUDITOR:
        return prefix
    if principal.role is not Role.BUREAU:
        raise Forbidden(f"the {principal.role.value} role has no region-wide view")
    mine = principal.region_prefix
    if not mine or not prefix.startswith(mine):
        raise CaseNotFound("no such region")
    return prefix


def _china_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=CHINA)


def announcement(profile: PolicyProfile, school: School, request: RoundRequest) -> dict[str, Any]:
    """宣传告知: what the policy offers, who may apply, how, by when, and where to object."""
    rules = profile.rounds
    assert rules is not None
    plan = profile.support_plan
    title = "家庭经济困难学生认定" if request.kind == IDENTIFICATION else "家庭经济困难学生春季动态调整"
    return {
        "title": f"{school.name} {request.academic_year}学年{title}",
        "offers": {
            "levels": [lv.value for lv in profile.levels],
            "programmes": list(profile.programmes),
            "annual_aid_targets": {lv.value: str(v) for lv, v in profile.aid_targets.items()},
            "aid_lists": {lv.value: [{"programme": p, "amount": str(a)} for p, a in lines]
                          for lv, lines in (plan.aid_lists.items() if plan else [])},
        },
        "who_may_apply": rules.announcement["who_may_apply"],
        "how_to_apply": rules.announcement["how_to_apply"],
        "opens_on": request.opens_on.isoformat(),
        "apply_by": request.closes_on.isoformat(),
        "emergency": f"遭遇突发事件（{rules.emergency_days}天内）的学生可随时申请，不受认定时段限制",
        "where_to_object": rules.announcement["where_to_object"],
        "notice_working_days": profile.notice_working_days,
    }


class RoundService:
    def __init__(self, store: CaseStore, clock: Clock, profiles: Profiles, schools: SchoolRegistry,
                 projections: Projections) -> None:
        self.store = store
        self.clock = clock
        self.profiles = profiles
        self.schools = schools
        self.projections = projections

    # ------------------------------------------------------------------------------------------ plumbing

    def _find(self, round_id: UUID) -> IdentificationRound | None:
        try:
            found: object = self.store.repository.get(round_id)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, IdentificationRound) else None

    def _save(self, *rounds: IdentificationRound) -> int | None:
        try:
            recordings = self.store.save(*rounds)
        except IntegrityError:
            raise RoundOverlaps("a round for this school and term was opened at the same moment") from None
        return max((r.notification.id for r in recordings), default=None)

    def _school(self, principal: Principal, school_id: str, *, manage: bool) -> School:
        """The school, if the caller may see it (manage: open and close its rounds); else 404 or 403."""
        school = self.schools.get(school_id)
        role = principal.role
        visible = school is not None and (
            role is Role.AUDITOR
            or (role in {Role.SCHOOL, Role.EVALUATOR} and principal.school == school_id)
            or (role is Role.BUREAU and bool(principal.region_prefix)
                and school.region_code.startswith(principal.region_prefix))
            or (role is Role.APPLICANT and principal.school in {None, school_id}))
        if school is None or not visible:
            raise CaseNotFound("no such school")
        if manage and role not in {Role.SCHOOL, Role.BUREAU}:
            raise Forbidden(f"the {role.value} role cannot open or close rounds")
        return school

    def _round_of(self, principal: Principal, school_id: str, round_id: UUID, *,
                  manage: bool) -> IdentificationRound:
        self._school(principal, school_id, manage=manage)
        found = self._find(round_id)
        if found is None or found.school_id != school_id:
            raise RoundNotFound("no such round")
        return found

    def _build(self, principal: Principal, school: School, request: RoundRequest,
               now: datetime) -> IdentificationRound:
        profile = self.profiles.for_region(school.region_code)
        if profile.rounds is None:
            raise RoundsNotConfigured(f"the {profile.profile_id} profile sets no round rules")
        window = allowed_window(request.kind, request.academic_year, profile.rounds, profile.spring_term_start,
                                profile.readjustment_window_months)
        return IdentificationRound.open(
            school_id=school.school_id, school_region=school.region_code, academic_year=request.academic_year,
            kind=request.kind, opens_on=request.opens_on, closes_on=request.closes_on, window=window,
            today=self.clock.today(), announcement=announcement(profile, school, request),
            profile_version=profile.tag, actor=principal.actor, now=now)

    @staticmethod
    def request(academic_year: str, kind: str, opens_on: date, closes_on: date) -> RoundRequest:
        return RoundRequest(validate_academic_year(academic_year), parse_kind(kind), opens_on, closes_on)

    # ------------------------------------------------------------------------------------------ commands

    def open_for_school(self, principal: Principal, school_id: str, request: RoundRequest) -> Opened:
        school = self._school(principal, school_id, manage=True)
        round_id = round_id_for(school_id, request.academic_year, request.kind)
        if self._find(round_id) is not None:
            raise RoundOverlaps(f"this school already has a {request.kind} round for {request.academic_year}",
                                round_id=str(round_id))
        opened = self._build(principal, school, request, self.clock.now())
        return Opened([opened], [], self._save(opened))

    def open_for_region(self, principal: Principal, region_code: str, request: RoundRequest) -> Opened:
        """One round per registered school in the region, saved in one transaction; schools that already have
        this term's round are listed as skipped (so a bureau can re-run after adding schools)."""
        if principal.role is not Role.BUREAU:
            raise Forbidden("only an education bureau opens rounds for a region")
        prefix = region_in_scope(principal, region_code)
        low, high = region_range(prefix)
        with self.projections.engine.connect() as conn:
            rows = conn.execute(select(schools_table).where(schools_table.c.region_code.between(low, high))
                                .order_by(schools_table.c.school_id)).all()
        if not rows:
            raise CaseNotFound("no registered school in this region")
        now = self.clock.now()
        opened: list[IdentificationRound] = []
        skipped: list[dict[str, str]] = []
        for row in rows:
            school = School(row.school_id, row.name, row.region_code, row.stage)
            if self._find(round_id_for(school.school_id, request.academic_year, request.kind)) is not None:
                skipped.append({"school_id": school.school_id, "reason": "round_overlaps"})
                continue
            opened.append(self._build(principal, school, request, now))
        if not opened:
            raise RoundOverlaps(f"every school in the region already has a {request.kind} round for "
                                f"{request.academic_year}")
        return Opened(opened, skipped, self._save(*opened))

    def close(self, principal: Principal, school_id: str, round_id: UUID,
              expected_version: int | None = None) -> tuple[IdentificationRound, int | None]:
        found = self._round_of(principal, school_id, round_id, manage=True)
        if expected_version is not None and expected_version != found.version:
            raise VersionMismatch(f"the round is at version {found.version}, not {expected_version}",
                                  current_version=found.version)
        # Every case applied so far must be counted: wait until the index has applied the whole log.
        if not self.projections.wait_for("case_index", self.projections.head(), timeout=CLOSE_WAIT):
            raise StaleView("the case index is still catching up; try closing again shortly")
        board = self.dashboard_of(found)
        found.close(unfinished=board["unfinished"], cases=board["cases"], today=self.clock.today(),
                    actor=principal.actor, now=self.clock.now())
        return found, self._save(found)

    # ------------------------------------------------------------------------------------------ admission

    def admit(self, form: Mapping[str, Any], school: School, profile: PolicyProfile, today: date,
              memo: dict[Any, Any] | None = None) -> None:
        """The CaseService's admission check: see domain/round.py for the rule. With a request's `memo` (bulk
        entry), the school's rounds of a year are read once per request, not once per form."""
        year = str(form["academic_year"])
        key = ("rounds", school.school_id, year)
        rounds = memo.get(key) if memo is not None else None
        if rounds is None:
            first = int(year[:4])
            # The school's rounds of this year and the year before, read in one query (four IDs, one round trip).
            # A single application reads them through the store's lookup cache, which spares the read when it knows
            # all four: a round opened or closed by this process counts at once, one opened or closed by another
            # process within CaseCache.REFRESH_SECONDS (as published profile versions take a while). Bulk entry
            # reads them once per request anyway.
            ids = [round_id_for(school.school_id, y, k) for y in (year, f"{first - 1}-{first}") for k in KINDS]
            found = self.store.get_many(ids) if memo is not None else self.store.get_many_cached(ids)
            rounds = [r for i in ids if isinstance(r := found.get(i), IdentificationRound)]
            if memo is not None:
                memo[key] = rounds
        emergency = profile.rounds is not None and is_emergency(form, today, profile.rounds.emergency_days)
        admit(rounds, uses_rounds=bool(rounds), academic_year=year, today=today, emergency=emergency)

    # ------------------------------------------------------------------------------------------ queries

    def get(self, principal: Principal, school_id: str, round_id: UUID) -> IdentificationRound:
        if principal.role is Role.APPLICANT:
            raise Forbidden("applicants read the current round's announcement")
        return self._round_of(principal, school_id, round_id, manage=False)

    def current(self, principal: Principal, school_id: str) -> IdentificationRound:
        """The open round, else the next scheduled one, else the one that ended last (announcements stay up)."""
        self._school(principal, school_id, manage=False)
        today = self.clock.today()
        years = [f"{y}-{y + 1}" for y in (today.year - 1, today.year)]
        found = [r for y in years for k in KINDS if (r := self._find(round_id_for(school_id, y, k))) is not None]
        if not found:
            raise RoundNotFound("this school has announced no round")
        open_now = [r for r in found if r.state_on(today) == "open"]
        if open_now:
            return open_now[0]
        scheduled = sorted((r for r in found if r.state_on(today) == "scheduled"), key=lambda r: r.opens_on)
        if scheduled:
            return scheduled[0]
        return max(found, key=lambda r: r.closes_on)

    def list_for_school(self, principal: Principal, school_id: str) -> list[dict[str, Any]]:
        if principal.role is Role.APPLICANT:
            raise Forbidden("applicants read the current round's announcement")
        self._school(principal, school_id, manage=False)
        table = self.projections.active_tables("rounds")["rounds"]
        return self._listed(select(table).where(table.c.school_id == school_id))

    def list_for_region(self, principal: Principal, region_code: str,
                        academic_year: str | None) -> list[dict[str, Any]]:
        low, high = region_range(region_in_scope(principal, region_code))
        table = self.projections.active_tables("rounds")["rounds"]
        query = select(table).where(table.c.school_region.between(low, high))
        if academic_year is not None:
            query = query.where(table.c.academic_year == validate_academic_year(academic_year))
        return self._listed(query)

    def _listed(self, query: Any) -> list[dict[str, Any]]:
        today = self.clock.today()
        with self.projections.engine.connect() as conn:
            rows = conn.execute(query.order_by("academic_year", "school_id", "kind")).all()
        result = []
        for row in rows:
            state = ("closed" if row.closed_on is not None else "scheduled" if today < row.opens_on
                     else "ended" if today > row.closes_on else "open")
            result.append({"id": row.round_id, "school_id": row.school_id, "academic_year": row.academic_year,
                           "kind": row.kind, "opens_on": row.opens_on, "closes_on": row.closes_on,
                           "closed_on": row.closed_on, "state": state})
        return result

    def cases_window(self, found: IdentificationRound) -> tuple[datetime | None, datetime | None]:
        """Which of the school's cases of that year belong to the round, by application time: the spring round
        takes those applied from its opening day; the identification round the rest."""
        if found.kind == SPRING_ADJUSTMENT:
            return _china_midnight(found.opens_on), None
        spring = self._find(round_id_for(found.school_id, found.academic_year, SPRING_ADJUSTMENT))
        return None, (_china_midnight(spring.opens_on) if spring is not None else None)

    def dashboard(self, principal: Principal, school_id: str, round_id: UUID) -> dict[str, Any]:
        if principal.role is Role.APPLICANT:
            raise Forbidden("applicants have no round dashboard")
        found = self._round_of(principal, school_id, round_id, manage=False)
        board = self.dashboard_of(found)
        if principal.role is Role.EVALUATOR:
            board["classes"] = [c for c in board["classes"] if c["class_id"] == principal.class_id]
            board["overdue"] = [c for c in board["overdue"] if c["class_id"] == principal.class_id]
        return board

    def region_dashboard(self, principal: Principal, region_code: str, academic_year: str,
                         kind: str) -> dict[str, Any]:
        """Per school of the region: the round's state, cases at each step, unfinished and overdue counts."""
        low, high = region_range(region_in_scope(principal, region_code))
        validate_academic_year(academic_year)
        table = self.projections.active_tables("rounds")["rounds"]
        with self.projections.engine.connect() as conn:
            ids = conn.execute(select(table.c.round_id).where(
                table.c.school_region.between(low, high), table.c.academic_year == academic_year,
                table.c.kind == parse_kind(kind)).order_by(table.c.school_id)).scalars().all()
        schools = []
        for round_id in ids:
            found = self._find(UUID(round_id))
            if found is None:
                continue
            board = self.dashboard_of(found)
            schools.append({"school_id": found.school_id, "round_id": str(found.id),
                            "state": board["round"]["state"], "cases": board["cases"], "totals": board["totals"],
                            "unfinished": sum(board["unfinished"].values()), "overdue": len(board["overdue"]),
                            "can_close": board["can_close"]})
        return {"region_code": region_code, "academic_year": academic_year, "kind": kind, "as_of": self.clock.today(),
                "schools": schools}

    def dashboard_of(self, found: IdentificationRound) -> dict[str, Any]:
        """Per class: cases at each step and how many are overdue; whether the round can close."""
        table = self.projections.active_tables("case_index")["cases"]
        since, until = self.cases_window(found)
        query = select(table.c.case_id, table.c.class_id, table.c.status, table.c.status_since).where(
            table.c.school_id == found.school_id, table.c.academic_year == found.academic_year)
        if since is not None:
            query = query.where(table.c.applied_at >= since)
        if until is not None:
            query = query.where(table.c.applied_at < until)
        with self.projections.engine.connect() as conn:
            rows = conn.execute(query.order_by(table.c.class_id, table.c.status_since, table.c.case_id)).all()
        profile = self.profiles.for_region(found.school_region)
        step_days = profile.rounds.step_overdue_days if profile.rounds else None
        now = self.clock.now()
        today = self.clock.today()
        ended = today > found.closes_on
        classes: dict[str, dict[str, Any]] = {}
        totals: dict[str, int] = {}
        overdue: list[dict[str, Any]] = []
        for row in rows:
            entry = classes.setdefault(row.class_id, {"class_id": row.class_id, "counts": {}, "unfinished": 0,
                                                      "overdue": 0})
            entry["counts"][row.status] = entry["counts"].get(row.status, 0) + 1
            totals[row.status] = totals.get(row.status, 0) + 1
            if row.status not in UNFINISHED:
                continue
            entry["unfinished"] += 1
            waited = now - as_utc(row.status_since)
            late = "round_ended" if ended else (
                "step_overdue" if step_days is not None and waited > timedelta(days=step_days) else None)
            if late:
                entry["overdue"] += 1
                overdue.append({"case_id": row.case_id, "class_id": row.class_id, "status": row.status,
                                "since": as_utc(row.status_since), "days_waiting": waited.days, "reason": late})
        unfinished = {status: totals[status] for status in UNFINISHED if totals.get(status)}
        return {
            "round": round_state(found, today),
            "as_of": today,
            "step_overdue_days": step_days,
            "cases": len(rows),
            "totals": totals,
            "classes": list(classes.values()),
            "unfinished": unfinished,
            "overdue": overdue,
            "can_close": found.closed_on is None and not unfinished,
        }


def round_state(found: IdentificationRound, today: date) -> dict[str, Any]:
    return {"id": str(found.id), "school_id": found.school_id, "academic_year": found.academic_year,
            "kind": found.kind, "opens_on": found.opens_on, "closes_on": found.closes_on,
            "state": found.state_on(today), "closed_on": found.closed_on, "version": found.version,
            "profile_version": found.profile_version, "announcement": found.announcement}


def opened_summary(opened: Sequence[IdentificationRound], today: date) -> list[dict[str, Any]]:
    return [{k: v for k, v in round_state(r, today).items() if k != "announcement"} for r in opened]
