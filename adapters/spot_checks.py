"""Use cases of bureau spot checks: draw (schools, then cases, within the region), assign, record findings, list.

Population: the schools under the region code with identified (confirmed or archived) cases in the academic year,
each with those cases, read from the case index once it has reached the log head. Sample sizes follow the
profile's `spot_check` parameters (formula in domain.sampling). Only a bureau covering the region draws, assigns
and records; an auditor reads; nobody else sees spot checks.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from sqlalchemy import select

from adapters.aftercare import VIEW_WAIT, Aftercare
from adapters.auth import Principal
from adapters.cases import CaseService
from adapters.logs import get_logger
from domain.errors import CaseNotFound, Conflict, RuleViolated
from domain.followup import check_seed
from domain.spotcheck import SpotCheck, SpotCheckParams, spot_check_id_for
from domain.values import validate_academic_year
from projections.ledger import IDENTIFIED
from projections.queries import region_range
from projections.runner import Projections


@dataclass(frozen=True)
class DrawResult:
    check: SpotCheck
    created: bool
    position: int | None


class SpotChecks:
    def __init__(self, cases: CaseService, projections: Projections, aftercare: Aftercare) -> None:
        self.cases = cases
        self.projections = projections
        self.aftercare = aftercare
        self.log = get_logger("zizhu.spot_checks")

    def draw(self, principal: Principal, region_code: str, *, academic_year: str | None = None,
             seed: str | None = None, due_on: date | None = None) -> DrawResult:
        prefix = self.aftercare.region_in_scope(principal, region_code, write=True)
        profile = self.cases.profiles.for_region(region_code)
        if not profile.spot_check:
            raise RuleViolated("the region's policy profile defines no spot-check parameters", field="spot_check")
        params = SpotCheckParams.from_mapping(profile.spot_check)
        year = validate_academic_year(academic_year) if academic_year else \
            self.aftercare.current_academic_year(profile)
        today = self.cases.clock.today()
        seed = check_seed(seed) if seed is not None else secrets.token_hex(8)
        check_id = spot_check_id_for(region_code, year, seed)
        existing = self._load(check_id)
        if existing is not None:
            return DrawResult(existing, False, None)
        check = SpotCheck.draw(region_code=region_code, academic_year=year, seed=seed,
                               due_on=due_on or today + timedelta(days=params.due_days),
                               population=self._population(prefix, year), params=params,
                               profile_version=profile.tag, actor=principal.actor, today=today,
                               now=self.cases.clock.now())
        try:
            recordings = self.cases.store.save(check)
        except IntegrityError:
            existing = self._load(check_id)
            if existing is None:
                raise Conflict("a concurrent change won; try again") from None
            return DrawResult(existing, False, None)
        self.log.info("spot_check_drawn", region_code=region_code, academic_year=year, check_id=str(check.id),
                      cases=len(check.items))
        return DrawResult(check, True, max((r.notification.id for r in recordings), default=None))

    def _population(self, prefix: str, academic_year: str) -> dict[str, list[str]]:
        if not self.projections.wait_for("case_index", self.projections.head(), timeout=VIEW_WAIT):
            raise Conflict("the case index is still catching up with the log; try again shortly")
        cases = self.projections.active_tables("case_index")["cases"]
        low, high = region_range(prefix)
        population: dict[str, list[str]] = {}
        with self.projections.engine.connect() as conn:
            for row in conn.execute(select(cases.c.school_id, cases.c.case_id).where(
                    cases.c.school_region.between(low, high), cases.c.academic_year == academic_year,
                    cases.c.status.in_(IDENTIFIED))):
                population.setdefault(row.school_id, []).append(row.case_id)
        return population

    def _load(self, check_id: UUID) -> SpotCheck | None:
        try:
            check: object = self.cases.store.repository.get(check_id)
        except AggregateNotFoundError:
            return None
        return check if isinstance(check, SpotCheck) else None

    def get(self, principal: Principal, region_code: str, check_id: str) -> SpotCheck:
        self.aftercare.region_in_scope(principal, region_code)
        return self._check_of(region_code, check_id)

    def _check_of(self, region_code: str, check_id: str) -> SpotCheck:
        try:
            uid = UUID(check_id)
        except ValueError:
            raise CaseNotFound("no such spot check") from None
        check = self._load(uid)
        if check is None or check.region_code != region_code:
            raise CaseNotFound("no such spot check")
        return check

    def _save(self, check: SpotCheck) -> int | None:
        try:
            recordings = self.cases.store.save(check)
        except IntegrityError:
            raise Conflict("a concurrent change to this spot check won; reload it and try again") from None
        return max((r.notification.id for r in recordings), default=None)

    def assign(self, principal: Principal, region_code: str, check_id: str, *, inspector: str,
               case_ids: Sequence[str] | None) -> tuple[SpotCheck, int | None]:
        self.aftercare.region_in_scope(principal, region_code, write=True)
        check = self._check_of(region_code, check_id)
        check.assign(case_ids=case_ids, inspector=inspector, actor=principal.actor, now=self.cases.clock.now())
        return check, self._save(check)

    def record_result(self, principal: Principal, region_code: str, check_id: str, *, case_id: str,
                      finding: str, checked_on: date, notes: str, attachments: Sequence[str],
                      ) -> tuple[SpotCheck, int | None]:
        self.aftercare.region_in_scope(principal, region_code, write=True)
        check = self._check_of(region_code, check_id)
        check.record_result(case_id=case_id, finding=finding, checked_on=checked_on, notes=notes,
                            attachments=attachments, today=self.cases.clock.today(), actor=principal.actor,
                            now=self.cases.clock.now())
        return check, self._save(check)

    def overview(self, principal: Principal, region_code: str, academic_year: str | None = None,
                 ) -> dict[str, Any]:
        """Every spot check drawn under the region: progress, findings and overdue cases."""
        prefix = self.aftercare.region_in_scope(principal, region_code)
        if academic_year is not None:
            validate_academic_year(academic_year)
        tables = self.projections.active_tables("spot_checks")
        checks, items = tables["checks"], tables["items"]
        low, high = region_range(prefix)
        query = select(checks).where(checks.c.region_code.between(low, high))
        if academic_year is not None:
            query = query.where(checks.c.academic_year == academic_year)
        today = self.cases.clock.today()
        with self.projections.engine.connect() as conn:
            check_rows = conn.execute(query.order_by(checks.c.drawn_at, checks.c.check_id)).all()
            item_rows = conn.execute(select(items).where(items.c.check_id.in_([c.check_id for c in check_rows]))
                                     .order_by(items.c.school_id, items.c.case_id)).all() if check_rows else []
        result = []
        for c in check_rows:
            mine = [i for i in item_rows if i.check_id == c.check_id]
            overdue = [i.case_id for i in mine if i.finding is None and today > c.due_on]
            result.append({
                "check_id": c.check_id, "region_code": c.region_code, "academic_year": c.academic_year,
                "seed": c.seed, "due_on": c.due_on, "formula": json.loads(c.formula),
                "profile_version": c.profile_version, "drawn_by": c.drawn_by, "drawn_at": c.drawn_at,
                "school_population": c.school_population,
                "schools_drawn": len({i.school_id for i in mine}), "cases_drawn": len(mine),
                "assigned": sum(1 for i in mine if i.inspector), "recorded": sum(1 for i in mine if i.finding),
                "inconsistent": sum(1 for i in mine if i.finding == "inconsistent"),
                "overdue": overdue,
                "items": [{"case_id": i.case_id, "school_id": i.school_id, "school_cases": i.school_cases,
                           "inspector": i.inspector, "finding": i.finding, "checked_on": i.checked_on,
                           "recorded_by": i.recorded_by, "overdue": i.case_id in overdue} for i in mine],
            })
        return {"region_code": region_code, "academic_year": academic_year, "today": today,
                "overdue": sum(len(r["overdue"]) for r in result), "checks": result}


def check_state(check: SpotCheck, today: date) -> dict[str, Any]:
    """A spot check as the API shows it, with everything needed to redo its draw."""
    return {
        "check_id": str(check.id), "region_code": check.region_code, "academic_year": check.academic_year,
        "seed": check.seed, "due_on": check.due_on, "formula": check.formula,
        "profile_version": check.profile_version, "school_population": check.school_population,
        "schools": check.schools, "version": check.version,
        "items": [{**item, "overdue": item["result"] is None and today > check.due_on}
                  for item in check.items.values()],
    }
