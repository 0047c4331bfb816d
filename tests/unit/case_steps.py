"""Builders for unit tests of the case aggregate: a case brought to any status by the domain's own commands.

No I/O: forms are normalised in memory, assessments are built by hand, and time is a counter of minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from domain.case import StudentCase
from domain.form import normalise_form
from domain.policy import Assessment
from domain.values import Level, VerificationMethod
from tests.support import EVALUATOR, GUARDIAN, STAFF, T0, form

LEVELS = tuple(Level)
PROFILE = "guangxi@2025.1"
TODAY = date(2025, 9, 15)
PROGRAMMES = ("national_grant", "tuition_waiver", "emergency_aid")


def assessment(level: Level | None = Level.ESPECIALLY_DIFFICULT, score: str = "80") -> Assessment:
    return Assessment(score=Decimal(score), breakdown=({"item": "income", "kind": "income_ratio_bands",
                                                        "label": "", "points": score, "detail": "ratio=0.50"},),
                      suggested_level=level, model_version="gx-2025-1", profile_version=PROFILE)


@dataclass
class Steps:
    """Drives one case through its procedure; every command gets a later `now` than the one before."""

    case: StudentCase
    minute: int = 0
    events: list[Any] = field(default_factory=list)

    @classmethod
    def apply(cls, seq: int = 1, claimed: list[str] | None = None, **overrides: Any) -> Steps:
        normalised = normalise_form(form(seq, claimed=claimed, **overrides), today=TODAY)
        case = StudentCase.apply(form=normalised, school_region="450103", profile_version=PROFILE,
                                 actor=GUARDIAN, now=T0)
        steps = cls(case)
        steps.collect()
        return steps

    def now(self) -> datetime:
        self.minute += 1
        return T0 + timedelta(minutes=self.minute)

    def collect(self) -> list[Any]:
        new = list(self.case.collect_events())
        self.events.extend(new)
        return new

    def verify(self, *categories: str, method: VerificationMethod = VerificationMethod.DOCUMENT) -> Steps:
        confirmed = [{"category": c, "source": method.value} for c in categories]
        self.case.verify(method=method, confirmed=confirmed, notes="", actor=STAFF, now=self.now())
        self.collect()
        return self

    def assess(self, level: Level | None = Level.ESPECIALLY_DIFFICULT) -> Steps:
        self.case.assess(assessment=assessment(level), actor=STAFF, now=self.now())
        self.collect()
        return self

    def evaluate(self, level: Level | None = Level.ESPECIALLY_DIFFICULT) -> Steps:
        self.case.evaluate(votes_for=5, votes_against=1, recommended_level=level, panel=[], levels=LEVELS,
                           actor=EVALUATOR, now=self.now())
        self.collect()
        return self

    def rate(self, level: Level | None = Level.ESPECIALLY_DIFFICULT, reason: str | None = None,
             skip: bool = True) -> Steps:
        self.case.rate(level=level, reason=reason, levels=LEVELS, skip_class_evaluation_for_data_matched=skip,
                       profile_version=PROFILE, actor=STAFF, now=self.now())
        self.collect()
        return self

    def publicize(self, starts_on: date = date(2025, 9, 26), ends_on: date = date(2025, 10, 10)) -> Steps:
        self.case.publicize(notice_id="N1", starts_on=starts_on, ends_on=ends_on, working_days=5,
                            profile_version=PROFILE, actor=STAFF, now=self.now())
        self.collect()
        return self

    def confirm(self, today: date = date(2025, 10, 11)) -> Steps:
        self.case.confirm(today=today, actor=STAFF, now=self.now())
        self.collect()
        return self

    def rated(self) -> Steps:
        return self.verify("minimum_living_allowance").assess().evaluate().rate()

    def confirmed(self) -> Steps:
        return self.rated().publicize().confirm()

    def grant(self, amount: str = "2000.00", programme: str = "national_grant",
              target: Decimal | None = None, override: str | None = None) -> Steps:
        self.case.grant_aid(programme=programme, amount=amount, programmes=PROGRAMMES, target=target,
                            override_reason=override, profile_version=PROFILE, actor=STAFF, now=self.now())
        self.collect()
        return self

    def disburse(self, amount: str) -> Steps:
        self.case.disburse(amount=amount, actor=STAFF, now=self.now())
        self.collect()
        return self

    def revoke(self, dishonest: bool = False, reason: str = "forged income statement") -> Steps:
        self.case.revoke(reason=reason, dishonest=dishonest, actor=STAFF, now=self.now())
        self.collect()
        return self


def replay(events: list[Any]) -> StudentCase:
    """The state the stored events rebuild, as the repository would."""
    case: StudentCase | None = None
    for domain_event in events:
        case = domain_event.mutate(case)
    assert case is not None
    return case


def state_of(case: StudentCase) -> dict[str, Any]:
    return {k: v for k, v in vars(case).items() if k != "_pending_events"}
