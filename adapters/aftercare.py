"""Use cases after identification: follow-up samples and checks, home visits, spring readjustment, aid, revocation,
recovery, integrity records, and the school and region views over them (follow-ups, home-visit coverage, aid
lists, ledgers, the integrity register).

Case commands go through `CaseService.execute` (scope, role, If-Match, idempotency, save); the policy numbers
they need (aid targets, the readjustment window, programmes) come from the case's profile here. Drawing a
follow-up sample saves the sample and every drawn case's `FollowUpSelected` in one transaction.

Who may read what:
- a school's views (follow-ups, home visits, aid lists, ledger): that school's aid office; a bureau whose region
  covers the school; an auditor. Another school or an out-of-region bureau gets 404 (the school does not exist
  for them); applicants and evaluators 403.
- a region's ledger: a bureau covering the region, an auditor; everyone else 403 (out-of-region bureau: 404).
- the integrity register (`integrity_records`): see that method.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from sqlalchemy import and_, func, select
from sqlalchemy import case as sql_case

from adapters.auth import Principal, require_command
from adapters.cases import CaseService, Outcome
from adapters.logs import get_logger
from adapters.person_keys import PersonKeys
from adapters.schools import School
from domain.case import IDENTIFIED, StudentCase
from domain.errors import CaseNotFound, Conflict, Forbidden, ValidationFailed
from domain.followup import FollowUpSample, check_seed, sample_id_for
from domain.policy import PolicyProfile
from domain.terms import current_semester, parse_semester, readjustment_window, semester_end
from domain.values import Role, parse_level_or_none, validate_academic_year, validate_resident_id
from projections.ledger import IDENTIFIED as IDENTIFIED_STATUSES
from projections.ledger import to_cny
from projections.queries import REGION_CODE, region_prefix, region_range
from projections.runner import Projections

VIEW_WAIT = 30.0  # seconds a draw waits for the case index to reach the log head


@dataclass(frozen=True)
class SampleResult:
    sample: FollowUpSample
    created: bool
    position: int | None


class Aftercare:
    def __init__(self, cases: CaseService, projections: Projections, keys: PersonKeys) -> None:
        self.cases = cases
        self.projections = projections
        self.keys = keys
        self.log = get_logger("zizhu.aftercare")

    # ------------------------------------------------------------------------------------------ scope

    def school_in_scope(self, principal: Principal, school_id: str, *, write: bool = False) -> School:
        """The school, if the caller may read (or, with `write`, act for) it; see the module docstring."""
        school = self.cases.schools.get(school_id)
        role = principal.role
        if role is Role.APPLICANT:
            raise Forbidden("applicants have no school views")
        if school is None:
            raise CaseNotFound("no such school")
        if role in {Role.SCHOOL, Role.EVALUATOR}:
            if principal.school != school_id:
                raise CaseNotFound("no such school")
            if role is Role.EVALUATOR:
                raise Forbidden("only the school aid office works on follow-ups, visits and aid")
            return school
        if role is Role.BUREAU:
            if not (principal.region_prefix and school.region_code.startswith(principal.region_prefix)):
                raise CaseNotFound("no such school")
        elif role is not Role.AUDITOR:
            raise Forbidden(f"the {role.value} role has no school views")
        if write:
            raise Forbidden("only the school aid office does this")
        return school

    @staticmethod
    def region_in_scope(principal: Principal, region_code: str, *, write: bool = False) -> str:
        """The region's code prefix, if the caller may read (or, with `write`, act in) it."""
        if not REGION_CODE.match(region_code or ""):
            raise ValidationFailed("region_code is a 6-digit administrative division code", field="region_code")
        prefix = region_prefix(region_code)
        if principal.role is Role.BUREAU:
            if not (principal.region_prefix and prefix.startswith(principal.region_prefix)):
                raise CaseNotFound("no such region")
            return prefix
        if principal.role is Role.AUDITOR and not write:
            return prefix
        raise Forbidden(f"the {principal.role.value} role cannot {'act in' if write else 'read'} a region")

    def _profile(self, school: School) -> PolicyProfile:
        return self.cases.profiles.for_region(school.region_code)

    def current_academic_year(self, profile: PolicyProfile) -> str:
        return parse_semester(current_semester(self.cases.clock.today(), profile.semester_ends))[0]

    def _year(self, academic_year: str | None, profile: PolicyProfile) -> str:
        if academic_year is None:
            return self.current_academic_year(profile)
        return validate_academic_year(academic_year)

    # ------------------------------------------------------------------------------------------ case commands

    def record_follow_up(self, principal: Principal, case_id: UUID, *, method: str, checked_on: date,
                         finding: str, notes: str, attachments: Sequence[str],
                         expected_version: int | None = None) -> Outcome:
        return self.cases.execute(principal, case_id, "follow_up", expected_version,
                                  lambda case, now: case.record_follow_up(
                                      method=method, checked_on=checked_on, finding=finding, notes=notes,
                                      attachments=attachments, actor=principal.actor, now=now))

    def record_home_visit(self, principal: Principal, case_id: UUID, *, visited_on: date, notes: str,
                          expected_version: int | None = None) -> Outcome:
        return self.cases.execute(principal, case_id, "home_visit", expected_version,
                                  lambda case, now: case.record_home_visit(visited_on=visited_on, notes=notes,
                                                                           actor=principal.actor, now=now))

    def readjust(self, principal: Principal, case_id: UUID, *, level: str, reason: str,
                 expected_version: int | None = None) -> Outcome:
        parsed = parse_level_or_none(level, "level")

        def decide(case: StudentCase, now: datetime) -> None:
            profile = self.cases.profile_for(case)
            window = readjustment_window(case.academic_year, profile.spring_term_start,
                                         profile.readjustment_window_months)
            case.readjust(level=parsed, reason=reason, window=window, levels=profile.levels,
                          profile_version=profile.tag, actor=principal.actor, now=now)

        return self.cases.execute(principal, case_id, "readjust", expected_version, decide)

    def grant_aid(self, principal: Principal, case_id: UUID, *, programme: str, amount: str,
                  override_reason: str | None, expected_version: int | None = None) -> Outcome:
        def decide(case: StudentCase, now: datetime) -> None:
            profile = self.cases.profile_for(case)
            target = profile.aid_targets.get(case.level) if case.level is not None else None
            case.grant_aid(programme=programme, amount=amount, programmes=profile.programmes, target=target,
                           override_reason=override_reason, profile_version=profile.tag, actor=principal.actor,
                           now=now)

        return self.cases.execute(principal, case_id, "grant_aid", expected_version, decide)

    def disburse(self, principal: Principal, case_id: UUID, *, amount: str,
                 expected_version: int | None = None) -> Outcome:
        return self.cases.execute(principal, case_id, "disburse", expected_version,
                                  lambda case, now: case.disburse(amount=amount, actor=principal.actor, now=now))

    def revoke(self, principal: Principal, case_id: UUID, *, reason: str, dishonest: bool,
               expected_version: int | None = None) -> Outcome:
        return self.cases.execute(principal, case_id, "revoke", expected_version,
                                  lambda case, now: case.revoke(reason=reason, dishonest=dishonest,
                                                                actor=principal.actor, now=now))

    def order_recovery(self, principal: Principal, case_id: UUID, *, amount: str,
                       expected_version: int | None = None) -> Outcome:
        return self.cases.execute(principal, case_id, "order_recovery", expected_version,
                                  lambda case, now: case.order_recovery(amount=amount, actor=principal.actor,
                                                                        now=now))

    def record_recovery(self, principal: Principal, case_id: UUID, *, amount: str,
                        expected_version: int | None = None) -> Outcome:
        return self.cases.execute(principal, case_id, "record_recovery", expected_version,
                                  lambda case, now: case.record_recovery(amount=amount, actor=principal.actor,
                                                                         now=now))

    def record_integrity_violation(self, principal: Principal, case_id: UUID, *, person: str, id_number: str,
                                   description: str, expected_version: int | None = None) -> Outcome:
        return self.cases.execute(principal, case_id, "record_integrity_violation", expected_version,
                                  lambda case, now: case.record_integrity_violation(
                                      person=person, id_number=id_number, description=description,
                                      actor=principal.actor, now=now))

    # ------------------------------------------------------------------------------------------ follow-up sample

    def draw_follow_up_sample(self, principal: Principal, school_id: str, *, semester: str | None = None,
                              seed: str | None = None) -> SampleResult:
        """Draws this semester's follow-up checks, or returns the sample already drawn (unchanged)."""
        school = self.school_in_scope(principal, school_id, write=True)
        profile = self._profile(school)
        semester = semester or current_semester(self.cases.clock.today(), profile.semester_ends)
        academic_year, _ = parse_semester(semester)
        deadline = semester_end(semester, profile.semester_ends)
        sample_id = sample_id_for(school_id, semester)
        existing = self._sample(sample_id)
        if existing is not None:
            return SampleResult(existing, False, None)
        seed = check_seed(seed) if seed is not None else secrets.token_hex(8)
        for _attempt in range(3):
            strata = self._identified_by_level(school_id, academic_year, profile)
            sample, drawn = self._draw_checked(principal, school, semester, seed, deadline, strata, profile)
            try:
                recordings = self.cases.store.save(sample, *drawn)
            except IntegrityError:
                existing = self._sample(sample_id)
                if existing is not None:  # a concurrent draw of the same sample won: it is the sample
                    return SampleResult(existing, False, None)
                continue  # a drawn case changed meanwhile: draw again from the current states
            position = max((r.notification.id for r in recordings), default=None)
            self.log.info("follow_up_sample_drawn", school_id=school_id, semester=semester,
                          drawn=len(drawn), sample_id=str(sample.id))
            return SampleResult(sample, True, position)
        raise Conflict("the school's cases kept changing while the sample was drawn; try again")

    def _draw_checked(self, principal: Principal, school: School, semester: str, seed: str, deadline: date,
                      strata: dict[str, list[str]], profile: PolicyProfile,
                      ) -> tuple[FollowUpSample, list[StudentCase]]:
        """Draws, loads the drawn cases and selects them; a drawn case the index showed identified but that no
        longer is (a revocation racing the draw) leaves the population and the draw is redone."""
        rates = {lvl.value: rate for lvl, rate in profile.follow_up_rates.items()}
        now = self.cases.clock.now()
        while True:
            sample = FollowUpSample.draw(school_id=school.school_id, school_region=school.region_code,
                                         semester=semester, seed=seed, deadline=deadline, strata=strata,
                                         rates=rates, profile_version=profile.tag, actor=principal.actor, now=now)
            loaded: list[StudentCase] = []
            stale: list[tuple[str, str]] = []
            found = self.cases.store.get_many(UUID(i) for i in sample.drawn_cases)  # one query per 500 cases
            for case_id, level in sample.drawn_cases.items():
                case = found.get(UUID(case_id))
                if (not isinstance(case, StudentCase) or case.status not in IDENTIFIED or case.level is None
                        or case.level.value != level):
                    stale.append((level, case_id))
                    continue
                require_command(principal, case, "select_follow_up")
                case.select_for_follow_up(sample_id=str(sample.id), deadline=deadline, actor=principal.actor,
                                          now=now)
                loaded.append(case)
            if not stale:
                return sample, loaded
            for level, case_id in stale:
                strata[level].remove(case_id)

    def _identified_by_level(self, school_id: str, academic_year: str, profile: PolicyProfile,
                             ) -> dict[str, list[str]]:
        if not self.projections.wait_for("case_index", self.projections.head(), timeout=VIEW_WAIT):
            raise Conflict("the case index is still catching up with the log; try again shortly")
        cases = self.projections.active_tables("case_index")["cases"]
        query = select(cases.c.case_id, cases.c.level).where(
            cases.c.school_id == school_id, cases.c.academic_year == academic_year,
            cases.c.status.in_(IDENTIFIED_STATUSES), cases.c.level.is_not(None))
        strata: dict[str, list[str]] = {lvl.value: [] for lvl in profile.levels}
        with self.projections.engine.connect() as conn:
            for row in conn.execute(query):
                strata.setdefault(row.level, []).append(row.case_id)
        return strata

    def _sample(self, sample_id: UUID) -> FollowUpSample | None:
        try:
            sample: object = self.cases.store.repository.get(sample_id)
        except AggregateNotFoundError:
            return None
        return sample if isinstance(sample, FollowUpSample) else None

    # ------------------------------------------------------------------------------------------ school views

    def follow_up_status(self, principal: Principal, school_id: str, semester: str | None = None,
                         ) -> dict[str, Any]:
        """Completion per level against the required count and the deadline, with each drawn case."""
        school = self.school_in_scope(principal, school_id)
        profile = self._profile(school)
        today = self.cases.clock.today()
        semester = semester or current_semester(today, profile.semester_ends)
        deadline = semester_end(semester, profile.semester_ends)
        tables = self.projections.active_tables("follow_ups")
        samples, strata, checks = tables["samples"], tables["strata"], tables["checks"]
        with self.projections.engine.connect() as conn:
            sample = conn.execute(select(samples).where(samples.c.school_id == school_id,
                                                        samples.c.semester == semester)).first()
            if sample is None:
                return {"school_id": school_id, "semester": semester, "drawn": False, "deadline": deadline,
                        "overdue": False, "levels": [], "cases": []}
            stratum_rows = conn.execute(select(strata).where(strata.c.sample_id == sample.sample_id)
                                        .order_by(strata.c.level)).all()
            check_rows = conn.execute(select(checks).where(checks.c.sample_id == sample.sample_id)
                                      .order_by(checks.c.level, checks.c.case_id)).all()
        levels = []
        for stratum in stratum_rows:
            mine = [c for c in check_rows if c.level == stratum.level]
            done = sum(1 for c in mine if c.checks > 0)
            levels.append({
                "level": stratum.level, "required_share": stratum.rate, "population": stratum.population,
                "required": stratum.required, "selected": len(mine), "completed": done,
                "remaining": max(stratum.required - done, 0),
                "inconsistent": sum(1 for c in mine if c.inconsistent),
                "share_checked": _share(done, stratum.population),
                "meets_required_share": done >= stratum.required,
            })
        incomplete = any(lv["remaining"] > 0 for lv in levels)
        return {
            "school_id": school_id, "semester": semester, "drawn": True, "sample_id": sample.sample_id,
            "seed": sample.seed, "deadline": sample.deadline, "profile_version": sample.profile_version,
            "drawn_at": sample.drawn_at, "complete": not incomplete,
            "overdue": incomplete and today > sample.deadline, "levels": levels,
            "cases": [{"case_id": c.case_id, "level": c.level, "checked": c.checks > 0, "checks": c.checks,
                       "first_checked_on": c.first_checked_on, "last_finding": c.last_finding}
                      for c in check_rows],
        }

    def home_visit_coverage(self, principal: Principal, school_id: str, academic_year: str | None = None,
                            ) -> dict[str, Any]:
        """Families of the school's identified cases and which were visited this year (from any sibling's case)."""
        school = self.school_in_scope(principal, school_id)
        profile = self._profile(school)
        year = self._year(academic_year, profile)
        tables = self.projections.active_tables("home_visits")
        cases, visits = tables["cases"], tables["visits"]
        with self.projections.engine.connect() as conn:
            mine = conn.execute(select(cases.c.case_id, cases.c.family_key).where(
                cases.c.school_id == school_id, cases.c.academic_year == year,
                cases.c.status.in_(IDENTIFIED_STATUSES)).order_by(cases.c.family_key, cases.c.case_id)).all()
            families: dict[str, list[str]] = {}
            for row in mine:
                families.setdefault(row.family_key, []).append(row.case_id)
            visited: dict[str, tuple[date, str, str]] = {}
            if families:
                rows = conn.execute(
                    select(cases.c.family_key, cases.c.school_id, visits.c.visited_on, visits.c.case_id)
                    .join(visits, visits.c.case_id == cases.c.case_id)
                    .where(cases.c.family_key.in_(list(families)), cases.c.academic_year == year)
                    .order_by(visits.c.visited_on)).all()
                for row in rows:
                    visited.setdefault(row.family_key, (row.visited_on, row.school_id, row.case_id))
        detail = []
        for family, case_ids in families.items():
            visit = visited.get(family)
            detail.append({
                "family": family[:12], "case_ids": case_ids, "visited": visit is not None,
                "visited_on": visit[0] if visit else None,
                # The sibling's case it was recorded on, when that case is this school's own.
                "recorded_on_case": visit[2] if visit and visit[1] == school_id else None,
                "recorded_at_this_school": bool(visit and visit[1] == school_id),
            })
        return {"school_id": school_id, "academic_year": year, "required": profile.home_visit_required,
                "families": len(families), "visited": len(visited), "unvisited": len(families) - len(visited),
                "coverage": _share(len(visited), len(families)), "items": detail}

    def aid_list(self, principal: Principal, school_id: str, academic_year: str | None = None, *,
                 under_target: bool = False) -> dict[str, Any]:
        """The aid list (资助名单): identified cases, their level's annual target and what they got; with
        `under_target`, only those below their target (the under-aid list, 远远不够)."""
        school = self.school_in_scope(principal, school_id)
        profile = self._profile(school)
        year = self._year(academic_year, profile)
        ledger = self.projections.active_tables("ledger")["ledger"]
        with self.projections.engine.connect() as conn:
            rows = conn.execute(select(ledger).where(
                ledger.c.school_id == school_id, ledger.c.academic_year == year,
                ledger.c.status.in_(IDENTIFIED_STATUSES), ledger.c.level.is_not(None))
                .order_by(ledger.c.class_id, ledger.c.student_name, ledger.c.case_id)).all()
        targets = {lvl.value: amount for lvl, amount in profile.aid_targets.items()}
        items = []
        for row in rows:
            target = targets.get(row.level)
            granted = to_cny(row.granted_regular_fen)
            shortfall = max(target - granted, Decimal("0.00")) if target is not None else None
            if under_target and not (shortfall and shortfall > 0):
                continue
            items.append({"case_id": row.case_id, "student_name": row.student_name, "class_id": row.class_id,
                          "level": row.level, "target": target, "granted": granted,
                          "emergency": to_cny(row.emergency_fen), "disbursed": to_cny(row.disbursed_fen),
                          "shortfall": shortfall,
                          "over_target": bool(target is not None and granted > target)})
        return {"school_id": school_id, "academic_year": year, "profile_version": profile.tag,
                "targets": targets, "count": len(items), "items": items}

    def school_ledger(self, principal: Principal, school_id: str, academic_year: str | None = None,
                      ) -> dict[str, Any]:
        """Per case with money or a revocation: granted, disbursed, ordered back, recovered, outstanding."""
        self.school_in_scope(principal, school_id)
        if academic_year is not None:
            validate_academic_year(academic_year)
        ledger = self.projections.active_tables("ledger")["ledger"]
        query = select(ledger).where(ledger.c.school_id == school_id,
                                     (ledger.c.granted_fen > 0) | (ledger.c.status == "revoked"))
        if academic_year is not None:
            query = query.where(ledger.c.academic_year == academic_year)
        with self.projections.engine.connect() as conn:
            rows = conn.execute(query.order_by(ledger.c.academic_year, ledger.c.case_id)).all()
        items = [{"case_id": r.case_id, "academic_year": r.academic_year, "status": r.status, "level": r.level,
                  **_money(r.granted_fen, r.disbursed_fen, r.recovery_ordered_fen, r.recovered_fen)}
                 for r in rows]
        totals = _money(*(sum(getattr(r, f) for r in rows) for f in
                          ("granted_fen", "disbursed_fen", "recovery_ordered_fen", "recovered_fen")))
        return {"school_id": school_id, "academic_year": academic_year, "totals": totals,
                "revoked_cases": sum(1 for r in rows if r.status == "revoked"), "items": items}

    def region_ledger(self, principal: Principal, region_code: str, academic_year: str | None = None,
                      ) -> dict[str, Any]:
        """Per school under the region code: the sums of its cases' ledgers, and the region's totals."""
        prefix = self.region_in_scope(principal, region_code)
        if academic_year is not None:
            validate_academic_year(academic_year)
        ledger = self.projections.active_tables("ledger")["ledger"]
        low, high = region_range(prefix)
        sums = [func.sum(ledger.c[f]).label(f) for f in
                ("granted_fen", "disbursed_fen", "recovery_ordered_fen", "recovered_fen")]
        revoked = func.sum(sql_case((ledger.c.status == "revoked", 1), else_=0)).label("revoked")
        query = (select(ledger.c.school_id, *sums, revoked)
                 .where(ledger.c.school_region.between(low, high),
                        (ledger.c.granted_fen > 0) | (ledger.c.status == "revoked")))
        if academic_year is not None:
            query = query.where(ledger.c.academic_year == academic_year)
        with self.projections.engine.connect() as conn:
            rows = conn.execute(query.group_by(ledger.c.school_id).order_by(ledger.c.school_id)).all()
        fields = ("granted_fen", "disbursed_fen", "recovery_ordered_fen", "recovered_fen")
        items = [{"school_id": r.school_id, "revoked_cases": int(r.revoked or 0),
                  **_money(*(int(getattr(r, f) or 0) for f in fields))} for r in rows]
        totals = _money(*(sum(int(getattr(r, f) or 0) for r in rows) for f in fields))
        return {"region_code": region_code, "academic_year": academic_year, "totals": totals,
                "revoked_cases": sum(i["revoked_cases"] for i in items), "items": items}

    # ------------------------------------------------------------------------------------------ integrity register

    def integrity_records(self, principal: Principal, id_number: str) -> dict[str, Any]:
        """A person's dishonesty records (诚信记录), across years and schools.

        - auditor: every record, in full;
        - bureau: every record of the person wherever it was made (a person moves between regions, and a record
          must follow them to the bureau handling their next application); the case ID only for cases in the
          bureau's own region (the others it could not open anyway);
        - school aid office: only about a person on one of its own cases (the student, a guardian named on the
          form, or someone a record was made against there); then every record of that person, with school and
          case only for its own; any other person: 404, as if unknown (it does not learn whether a record exists);
        - applicants and evaluators: 403.
        """
        role = principal.role
        if role in {Role.APPLICANT, Role.EVALUATOR} or role not in {Role.SCHOOL, Role.BUREAU, Role.AUDITOR}:
            raise Forbidden(f"the {role.value} role cannot query integrity records")
        number = validate_resident_id(id_number, "id_number")
        person = self.keys.person(number)
        tables = self.projections.active_tables("integrity_register")
        records, links, cases = tables["records"], tables["links"], tables["cases"]
        with self.projections.engine.connect() as conn:
            if role is Role.SCHOOL:
                # The student of one of its cases, or a guardian or person recorded against on one.
                linked = conn.execute(select(cases.c.case_id).where(and_(
                    cases.c.student_key == person, cases.c.school_id == principal.school)).limit(1)).first() or \
                    conn.execute(select(links.c.case_id).where(and_(
                        links.c.person_key == person, links.c.school_id == principal.school)).limit(1)).first()
                if not linked:
                    self.log.info("integrity_records_refused", sub=principal.sub, role=role.value)
                    raise CaseNotFound("no such person among this school's cases")
            rows = conn.execute(select(records).where(records.c.person_key == person)
                                .order_by(records.c.recorded_on, records.c.record_id)).all()
        items = []
        for r in rows:
            own = (role is Role.AUDITOR
                   or (role is Role.BUREAU and r.school_region.startswith(principal.region_prefix))
                   or (role is Role.SCHOOL and r.school_id == principal.school))
            items.append({"person": r.person, "description": r.description, "recorded_on": r.recorded_on,
                          "academic_year": r.academic_year, "origin": r.source,
                          "province_code": r.school_region[:2],
                          "school_id": r.school_id if own or role is Role.BUREAU else None,
                          "case_id": r.case_id if own else None})
        # Every read of the register is logged, without the number: the key's prefix identifies the person to
        # someone holding the secret, and to nobody else.
        self.log.info("integrity_records_read", sub=principal.sub, role=role.value, person_ref=person[:12],
                      records=len(items))
        return {"person_ref": person[:12], "count": len(items), "records": items}


def _share(part: int, whole: int) -> str:
    if whole == 0:
        return "1.00"
    return str((Decimal(part) / Decimal(whole)).quantize(Decimal("0.01")))


def _money(granted: int, disbursed: int, ordered: int, recovered: int) -> dict[str, Decimal]:
    return {"granted": to_cny(granted), "disbursed": to_cny(disbursed), "recovery_ordered": to_cny(ordered),
            "recovered": to_cny(recovered), "outstanding": to_cny(ordered - recovered)}
