"""Identification rounds (Guangxi Art. 8): the year's autumn identification and the spring adjustment, per school.

A round is an aggregate of its own. Its ID is derived from (school, academic year, kind), so a school has at most
one round per term: opening a second one for the same term is the overlap the rules forbid, and the event store
refuses it the way it refuses any duplicate. Opening records the announcement (宣传告知) exactly as students were
told it, so what was promised can be shown years later.

Admission rule (documented in the README): a school that has opened no round for the academic year applied for,
nor for the year before, takes applications at any time (the open mode every school had before rounds existed).
Once it runs rounds, an application must fall inside an open round of that academic year, unless it is an
emergency: a sudden event (disaster, accident, serious illness …) at most the profile's `emergency_days` old.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from eventsourcing.domain import Aggregate, event

from domain.errors import CaseNotFound, Conflict, RuleViolated, ValidationFailed
from domain.policy import RoundRules
from domain.terms import month_day, readjustment_window
from domain.values import Actor, validate_academic_year

ROUND_NAMESPACE = uuid.UUID("6c1e8f0a-93d4-5b27-a8e1-4f2d7c9b3a65")
IDENTIFICATION = "identification"
SPRING_ADJUSTMENT = "spring_adjustment"
KINDS = (IDENTIFICATION, SPRING_ADJUSTMENT)
# Statuses at which a case still has a step to go in its round; the others are where a case ends up.
UNFINISHED = ("applied", "verified", "assessed", "evaluated", "rated", "in_publicity")


class RoundOutsidePolicy(ValidationFailed):
    """The dates fall outside what the region's profile allows for this kind of round."""

    code = "round_outside_policy"


class RoundOverlaps(Conflict):
    code = "round_overlaps"


class RoundAlreadyClosed(RuleViolated):
    code = "round_already_closed"


class RoundStepsUnfinished(RuleViolated):
    code = "round_steps_unfinished"


class NoOpenRound(RuleViolated):
    code = "no_open_round"


class RoundNotFound(CaseNotFound):
    """Unknown round, or one outside the caller's scope."""


class RoundsNotConfigured(RuleViolated):
    code = "rounds_not_configured"


@functools.lru_cache(maxsize=4096)  # every application's admission check derives four of them
def round_id_for(school_id: str, academic_year: str, kind: str) -> uuid.UUID:
    return uuid.uuid5(ROUND_NAMESPACE, f"round|{school_id}|{academic_year}|{kind}")


def parse_kind(value: str) -> str:
    if value not in KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(KINDS)}", field="kind")
    return value


@dataclass(frozen=True)
class Window:
    """The earliest day a round of this kind may open and the last day it may run to."""

    earliest_open: date
    latest_close: date


def allowed_window(kind: str, academic_year: str, rules: RoundRules, spring_term_start: str,
                   window_months: int) -> Window:
    """Identification: from `announce_days` before the autumn term to `identification_days` after it starts.
    Spring adjustment: from `announce_days` before the spring term to the end of the readjustment window
    (`window_months` after the spring term starts, the same window readjustments use)."""
    validate_academic_year(academic_year)
    lead = timedelta(days=rules.announce_days)
    if kind == IDENTIFICATION:
        term = month_day(rules.autumn_term_start, int(academic_year[:4]), "rounds.autumn_term_start")
        return Window(term - lead, term + timedelta(days=rules.identification_days))
    opens, closes = readjustment_window(academic_year, spring_term_start, window_months)
    return Window(opens - lead, closes)


def check_dates(opens_on: date, closes_on: date, window: Window, today: date) -> None:
    if closes_on < opens_on:
        raise ValidationFailed("a round cannot close before it opens", field="closes_on")
    if closes_on < today:
        raise ValidationFailed("a round cannot be opened for dates already past", field="closes_on")
    if opens_on < window.earliest_open or closes_on > window.latest_close:
        raise RoundOutsidePolicy(
            f"this round must run within {window.earliest_open} to {window.latest_close}",
            field="opens_on" if opens_on < window.earliest_open else "closes_on",
            earliest_open=str(window.earliest_open), latest_close=str(window.latest_close))


def is_emergency(form: Mapping[str, Any], today: date, emergency_days: int) -> bool:
    """A sudden event (already validated as not in the future) at most `emergency_days` old."""
    since = today - timedelta(days=emergency_days)
    for item in form.get("sudden_events") or []:
        occurred = item.get("occurred_on")
        if occurred and since <= date.fromisoformat(str(occurred)) <= today:
            return True
    return False


class IdentificationRound(Aggregate):
    TOPIC = "zizhu.round"

    class Created(Aggregate.Created):
        TOPIC = "round.created"  # never triggered: a round is created by RoundOpened

    @classmethod
    def open(cls, *, school_id: str, school_region: str, academic_year: str, kind: str, opens_on: date,
             closes_on: date, window: Window, today: date, announcement: Mapping[str, Any], profile_version: str,
             actor: Actor, now: datetime) -> IdentificationRound:
        """Opens (schedules) the round and publishes its announcement to the school's students."""
        parse_kind(kind)
        validate_academic_year(academic_year)
        check_dates(opens_on, closes_on, window, today)
        opened = cls.RoundOpened  # type: ignore[attr-defined]  # defined by the @event decorator on __init__
        return cls._create(opened, id=round_id_for(school_id, academic_year, kind), timestamp=now,
                           school_id=school_id, school_region=school_region, academic_year=academic_year,
                           kind=kind, opens_on=opens_on, closes_on=closes_on, announcement=dict(announcement),
                           profile_version=profile_version, actor=actor.as_dict())

    @event("RoundOpened", topic="round.opened")
    def __init__(self, school_id: str, school_region: str, academic_year: str, kind: str, opens_on: date,
                 closes_on: date, announcement: dict[str, Any], profile_version: str,
                 actor: dict[str, str]) -> None:
        self.school_id = school_id
        self.school_region = school_region
        self.academic_year = academic_year
        self.kind = kind
        self.opens_on = opens_on
        self.closes_on = closes_on
        self.announcement = announcement
        self.profile_version = profile_version
        self.opened_by = actor
        self.closed_on: date | None = None
        self.closing: dict[str, Any] | None = None

    def state_on(self, today: date) -> str:
        if self.closed_on is not None:
            return "closed"
        if today < self.opens_on:
            return "scheduled"
        if today > self.closes_on:
            return "ended"
        return "open"

    def accepts_applications(self, today: date) -> bool:
        return self.state_on(today) == "open"

    def close(self, *, unfinished: Mapping[str, int], cases: int, today: date, actor: Actor,
              now: datetime) -> None:
        """Closes the round; refused while any of its cases still has a step to go."""
        if self.closed_on is not None:
            raise RoundAlreadyClosed(f"this round was closed on {self.closed_on}")
        waiting = {status: n for status, n in unfinished.items() if n > 0}
        if waiting:
            raise RoundStepsUnfinished(f"{sum(waiting.values())} case(s) still have a step to go",
                                       unfinished=waiting)
        self._closed(school_id=self.school_id, closed_on=today, cases=cases, actor=actor.as_dict(), timestamp=now)

    @event("RoundClosed", topic="round.closed")
    def _closed(self, school_id: str, closed_on: date, cases: int, actor: dict[str, str],
                timestamp: datetime) -> None:
        self.closed_on = closed_on
        self.closing = {"closed_on": closed_on, "cases": cases, "by": actor}


def admit(rounds: Sequence[IdentificationRound], *, uses_rounds: bool, academic_year: str, today: date,
          emergency: bool) -> IdentificationRound | None:
    """The open round an application falls in (None in open mode or for an emergency), or NoOpenRound naming the
    next round's dates if one is scheduled."""
    if not uses_rounds or emergency:
        return None
    mine = [r for r in rounds if r.academic_year == academic_year]
    for candidate in mine:
        if candidate.accepts_applications(today):
            return candidate
    upcoming = sorted((r for r in mine if r.state_on(today) == "scheduled"), key=lambda r: r.opens_on)
    if upcoming:
        nxt = upcoming[0]
        raise NoOpenRound(f"applications for {academic_year} are taken from {nxt.opens_on} to {nxt.closes_on}",
                          next_round={"kind": nxt.kind, "opens_on": str(nxt.opens_on),
                                      "closes_on": str(nxt.closes_on)})
    raise NoOpenRound(f"no round for {academic_year} is open at this school; an emergency (a sudden event) can "
                      "be applied for at any time", next_round=None)
