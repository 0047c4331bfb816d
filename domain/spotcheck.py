"""A bureau's random spot check of the schools and cases in its region (Guangxi Art. 9: 随机抽查), an aggregate.

The bureau draws schools at random among those in its region with identified cases in the academic year, then cases
at random within each drawn school, both with one recorded seed and the profile's `spot_check` parameters
(domain.sampling documents the size formula and the draw). It assigns the drawn cases to inspectors, who record a
finding per case; an item without a finding after the due date is overdue. Drawing again with the same seed finds
the same check (its ID is derived from region, year and seed).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from eventsourcing.domain import Aggregate, event

from domain.errors import Forbidden, RuleViolated, ValidationFailed
from domain.followup import check_seed
from domain.sampling import bounded_size, draw
from domain.values import Actor

SPOT_CHECK_NAMESPACE = uuid.UUID("6c0d7f0e-3b8a-4f0c-8e52-9b1d2a4c6e77")
FINDINGS = frozenset({"consistent", "inconsistent"})
MAX_ATTACHMENTS = 20


class NotInSpotCheck(ValidationFailed):
    code = "not_in_spot_check"


class NotAssigned(RuleViolated):
    code = "not_assigned"


class ResultAlreadyRecorded(RuleViolated):
    code = "result_already_recorded"


class NotTheInspector(Forbidden):
    code = "not_the_inspector"


@dataclass(frozen=True)
class SpotCheckParams:
    """The profile's `spot_check` section: shares, bounds and how many days inspectors get."""

    school_rate: Decimal
    min_schools: int
    max_schools: int
    case_rate: Decimal
    min_cases: int
    max_cases: int
    due_days: int

    def as_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in vars(self).items()}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Decimal]) -> SpotCheckParams:
        return cls(school_rate=data["school_rate"], min_schools=int(data["min_schools"]),
                   max_schools=int(data["max_schools"]), case_rate=data["case_rate"],
                   min_cases=int(data["min_cases"]), max_cases=int(data["max_cases"]),
                   due_days=int(data["due_days"]))


def spot_check_id_for(region_code: str, academic_year: str, seed: str) -> uuid.UUID:
    return uuid.uuid5(SPOT_CHECK_NAMESPACE, f"spot-check|{region_code}|{academic_year}|{seed}")


def _attachments(values: Sequence[str]) -> list[str]:
    refs = [str(v).strip() for v in values]
    if len(refs) > MAX_ATTACHMENTS or any(not r or len(r) > 500 for r in refs):
        raise ValidationFailed(f"up to {MAX_ATTACHMENTS} non-empty references of at most 500 characters",
                               field="attachments")
    return refs


class SpotCheck(Aggregate):
    TOPIC = "zizhu.spot_check"

    class Created(Aggregate.Created):
        TOPIC = "spot_check.created"  # never triggered: a spot check is created by Drawn

    @classmethod
    def draw(cls, *, region_code: str, academic_year: str, seed: str, due_on: date,
             population: Mapping[str, Sequence[str]], params: SpotCheckParams, profile_version: str,
             actor: Actor, today: date, now: datetime) -> SpotCheck:
        """`population`: each school of the region with the IDs of its identified cases in the year."""
        seed = check_seed(seed)
        if due_on < today:
            raise ValidationFailed("a spot check cannot be due in the past", field="due_on")
        schools = {school: sorted(set(cases)) for school, cases in population.items() if cases}
        if not schools:
            raise RuleViolated("no school in this region has identified cases in this academic year",
                               region_code=region_code, academic_year=academic_year)
        n_schools = bounded_size(params.school_rate, len(schools), params.min_schools, params.max_schools)
        drawn = []
        for school_id in draw(schools, n_schools, seed):
            cases = schools[school_id]
            required = bounded_size(params.case_rate, len(cases), params.min_cases, params.max_cases)
            drawn.append({"school_id": school_id, "population": cases, "required": required,
                          "drawn": draw(cases, required, seed)})
        created = cls.Drawn  # type: ignore[attr-defined]  # defined by the @event decorator on __init__
        return cls._create(created, id=spot_check_id_for(region_code, academic_year, seed), timestamp=now,
                           region_code=region_code, academic_year=academic_year, seed=seed, due_on=due_on,
                           formula=params.as_dict(), school_population=sorted(schools), schools=drawn,
                           profile_version=profile_version, actor=actor.as_dict())

    @event("Drawn", topic="spot_check.drawn")
    def __init__(self, region_code: str, academic_year: str, seed: str, due_on: date, formula: dict[str, str],
                 school_population: list[str], schools: list[dict[str, Any]], profile_version: str,
                 actor: dict[str, str]) -> None:
        self.region_code = region_code
        self.academic_year = academic_year
        self.seed = seed
        self.due_on = due_on
        self.formula = formula
        self.school_population = school_population
        self.schools = schools
        self.profile_version = profile_version
        self.drawn_by = actor
        self.items: dict[str, dict[str, Any]] = {
            case_id: {"case_id": case_id, "school_id": s["school_id"], "inspector": None, "result": None}
            for s in schools for case_id in s["drawn"]
        }

    def _item(self, case_id: str, field: str = "case_id") -> dict[str, Any]:
        item = self.items.get(case_id)
        if item is None:
            raise NotInSpotCheck("this case was not drawn in this spot check", field=field)
        return item

    def assign(self, *, case_ids: Sequence[str] | None, inspector: str, actor: Actor, now: datetime) -> None:
        """Assigns drawn cases (all those without a finding when `case_ids` is None) to an inspector."""
        name = (inspector or "").strip()
        if not name or len(name) > 100:
            raise ValidationFailed("an inspector is the token subject of a bureau official", field="inspector")
        if case_ids is None:
            chosen = [c for c, item in self.items.items() if item["result"] is None]
        else:
            chosen = list(dict.fromkeys(case_ids))
            if not chosen:
                raise ValidationFailed("name at least one case, or omit case_ids to assign all", field="case_ids")
            for case_id in chosen:
                if self._item(case_id, "case_ids")["result"] is not None:
                    raise ResultAlreadyRecorded("a case with a recorded finding cannot be reassigned",
                                                case_id=case_id)
        if not chosen:
            raise RuleViolated("every drawn case already has a finding")
        self._assigned(case_ids=chosen, inspector=name, actor=actor.as_dict(), timestamp=now)

    @event("Assigned", topic="spot_check.assigned")
    def _assigned(self, case_ids: list[str], inspector: str, actor: dict[str, str], timestamp: datetime) -> None:
        for case_id in case_ids:
            self.items[case_id]["inspector"] = inspector

    def record_result(self, *, case_id: str, finding: str, checked_on: date, notes: str,
                      attachments: Sequence[str], today: date, actor: Actor, now: datetime) -> None:
        """The assigned inspector's finding on one drawn case."""
        item = self._item(case_id)
        if item["inspector"] is None:
            raise NotAssigned("assign this case to an inspector before recording a finding")
        if item["inspector"] != actor.sub:
            raise NotTheInspector("only the assigned inspector records this case's finding")
        if item["result"] is not None:
            raise ResultAlreadyRecorded("this case's finding is recorded already")
        if finding not in FINDINGS:
            raise ValidationFailed("finding must be consistent or inconsistent", field="finding")
        if checked_on > today:
            raise ValidationFailed("a check cannot be recorded for a future date", field="checked_on")
        self._result_recorded(case_id=case_id, finding=finding, checked_on=checked_on, notes=(notes or "").strip(),
                              attachments=_attachments(attachments), actor=actor.as_dict(), timestamp=now)

    @event("ResultRecorded", topic="spot_check.result_recorded")
    def _result_recorded(self, case_id: str, finding: str, checked_on: date, notes: str, attachments: list[str],
                         actor: dict[str, str], timestamp: datetime) -> None:
        self.items[case_id]["result"] = {"finding": finding, "checked_on": checked_on, "notes": notes,
                                         "attachments": attachments, "recorded_by": actor["sub"]}

    def overdue(self, today: date) -> list[str]:
        return [c for c, item in self.items.items() if item["result"] is None and today > self.due_on]
