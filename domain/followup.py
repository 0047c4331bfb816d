"""A school's follow-up sample for one semester (Guangxi Art. 9, 附表3/附表4), as an aggregate of its own.

One sample per school per semester: its ID is derived from (school, semester), so drawing again finds the first
sample instead of making a second. The `Drawn` event records everything needed to redo the draw by hand: the seed,
each level's population (the identified cases it was drawn from), the profile's share, the required count and the
cases drawn (see domain.sampling for the rule). The drawn cases themselves get `FollowUpSelected` in the same
transaction as this event.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from eventsourcing.domain import Aggregate, event

from domain.errors import RuleViolated, ValidationFailed
from domain.sampling import stratified
from domain.values import Actor

SAMPLE_NAMESPACE = uuid.UUID("0b6f3c52-6a55-4f7e-9d0e-2f3c1a7b9e40")
MAX_SEED_LENGTH = 64


class NoIdentifiedCases(RuleViolated):
    """A sample drawn from nothing would stand for the whole semester: drawing waits for identified cases."""

    code = "no_identified_cases"


def sample_id_for(school_id: str, semester: str) -> uuid.UUID:
    return uuid.uuid5(SAMPLE_NAMESPACE, f"follow-up|{school_id}|{semester}")


def check_seed(seed: str, field: str = "seed") -> str:
    text = (seed or "").strip()
    if not text or len(text) > MAX_SEED_LENGTH or not text.isprintable():
        raise ValidationFailed(f"a seed is 1 to {MAX_SEED_LENGTH} printable characters", field=field)
    return text


class FollowUpSample(Aggregate):
    TOPIC = "zizhu.follow_up_sample"

    class Created(Aggregate.Created):
        TOPIC = "follow_up_sample.created"  # never triggered: a sample is created by Drawn

    @classmethod
    def draw(cls, *, school_id: str, school_region: str, semester: str, seed: str, deadline: date,
             strata: Mapping[str, Sequence[str]], rates: Mapping[str, Decimal], profile_version: str,
             actor: Actor, now: datetime) -> FollowUpSample:
        """Draws each level's share of the school's identified cases with `seed`."""
        seed = check_seed(seed)
        if not any(strata.values()):
            raise NoIdentifiedCases(f"the school has no identified cases in {semester}'s academic year to draw from",
                                    semester=semester)
        parts = stratified(strata, rates, seed)
        drawn = cls.Drawn  # type: ignore[attr-defined]  # defined by the @event decorator on __init__
        return cls._create(drawn, id=sample_id_for(school_id, semester), timestamp=now, school_id=school_id,
                           school_region=school_region, semester=semester, seed=seed, deadline=deadline,
                           strata=[p.as_dict() for p in parts], profile_version=profile_version,
                           actor=actor.as_dict())

    @event("Drawn", topic="follow_up_sample.drawn")
    def __init__(self, school_id: str, school_region: str, semester: str, seed: str, deadline: date,
                 strata: list[dict[str, Any]], profile_version: str, actor: dict[str, str]) -> None:
        self.school_id = school_id
        self.school_region = school_region
        self.semester = semester
        self.seed = seed
        self.deadline = deadline
        self.strata = strata
        self.profile_version = profile_version
        self.drawn_by = actor

    @property
    def drawn_cases(self) -> dict[str, str]:
        """Each drawn case ID with the level it was drawn for."""
        return {case_id: stratum["name"] for stratum in self.strata for case_id in stratum["drawn"]}
