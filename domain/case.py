"""The student case: one per student per academic year, event-sourced; its events are the audit trail.

Each public method is a command: it checks the rules and then calls one private `@event` method whose body only
assigns state (it runs again on every replay). Every event records who acted (`actor`), when (`timestamp`, passed
in: the domain never reads a clock) and, where a policy applied, the profile version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    AlreadyVoted,
    AmountExceedsOwed,
    ConflictOfInterest,
    ExemptionNotAllowed,
    InvalidTransition,
    NoticeWindowClosed,
    NoticeWindowNotOver,
    NotSelectedForFollowUp,
    ObjectionAlreadyResolved,
    ObjectionStillOpen,
    OutsideReadjustmentWindow,
    OverAid,
    ReasonRequired,
    RuleViolated,
    UnknownObjection,
    ValidationFailed,
)
from domain.policy import Assessment
from domain.values import (
    Actor,
    Category,
    Level,
    Status,
    VerificationMethod,
    case_id_for,
    parse_enum,
    validate_resident_id,
)

S = Status
PRE_RATING = frozenset({S.APPLIED, S.VERIFIED, S.ASSESSED, S.EVALUATED})
IDENTIFIED = frozenset({S.CONFIRMED, S.ARCHIVED})
RATED_OR_LATER = frozenset({S.RATED, S.IN_PUBLICITY, S.CONFIRMED, S.ARCHIVED})
NOT_CLOSED = frozenset(Status) - {S.WITHDRAWN, S.REVOKED}

# The status machine in one table: which statuses each command accepts. Rules beyond status live in the commands.
ALLOWED: Mapping[str, frozenset[Status]] = {
    "amend": PRE_RATING,
    "withdraw": PRE_RATING,
    "verify": frozenset({S.APPLIED, S.VERIFIED}),
    "assess": frozenset({S.VERIFIED, S.ASSESSED}),
    "evaluate": frozenset({S.ASSESSED}),
    "cast_vote": frozenset({S.ASSESSED}),
    "rate": frozenset({S.ASSESSED, S.EVALUATED, S.RATED}),
    "publicize": frozenset({S.RATED}),
    "exempt_publicity": frozenset({S.RATED}),
    "object": frozenset({S.IN_PUBLICITY}),
    "resolve_objection": frozenset({S.IN_PUBLICITY}),
    "confirm": frozenset({S.IN_PUBLICITY}),
    "archive": frozenset({S.CONFIRMED}),
    "select_follow_up": IDENTIFIED,
    "record_follow_up": IDENTIFIED,
    "home_visit": IDENTIFIED,
    "readjust": IDENTIFIED,
    "grant_aid": IDENTIFIED,
    # Emergency aid does not wait for the annual cycle, so money can be granted and paid on any open case.
    "grant_emergency_aid": NOT_CLOSED,
    "disburse": NOT_CLOSED,
    "revoke": RATED_OR_LATER,
    "order_recovery": frozenset({S.REVOKED}),
    "record_recovery": frozenset({S.REVOKED}),
    "record_integrity_violation": frozenset(Status),
}
EMERGENCY_PROGRAMME = "emergency_aid"
ZERO = Decimal("0.00")
# Dates (deadlines, "not in the future", recorded days) are Chinese calendar dates, not UTC ones: China has had
# one offset all year since 1991, so a fixed one is exact and needs no time-zone database.
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")


def local_date(moment: datetime) -> date:
    return moment.astimezone(CHINA).date()


def _money(value: Any, field: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except Exception:
        raise ValidationFailed("must be a decimal amount in CNY", field=field) from None
    if not amount.is_finite() or amount <= 0 or amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValidationFailed("must be a positive amount with at most two decimals", field=field)
    return amount.quantize(Decimal("0.01"))


def _reason(reason: str | None, field: str = "reason") -> str:
    text = (reason or "").strip()
    if not text:
        raise ValidationFailed("a reason is required", field=field)
    return text


class StudentCase(Aggregate):
    TOPIC = "zizhu.case"

    class Created(Aggregate.Created):
        TOPIC = "case.created"  # never triggered: the case is created by Applied; kept for the library's checks

    # ------------------------------------------------------------------------------------------ creation

    @classmethod
    def apply(cls, *, form: Mapping[str, Any], school_region: str, profile_version: str, actor: Actor,
              now: datetime) -> StudentCase:
        """A student or guardian applies (个人申请); the form is validated by domain.form beforehand."""
        student = form["student"]
        case_id = case_id_for(student["id_number"], form["academic_year"])
        applied = cls.Applied  # type: ignore[attr-defined]  # defined by the @event decorator on __init__
        return cls._create(applied, id=case_id, timestamp=now, form=dict(form), school_region=school_region,
                           profile_version=profile_version, actor=actor.as_dict())

    @event("Applied", topic="case.applied")
    def __init__(self, form: dict[str, Any], school_region: str, profile_version: str,
                 actor: dict[str, str]) -> None:
        self.form = form
        self.academic_year: str = form["academic_year"]
        self.school_id: str = form["student"]["school_id"]
        self.class_id: str = form["student"]["class_id"]
        self.school_region = school_region
        self.applicant_id_number: str = form["student"]["id_number"]
        self.applicant_sub = actor["sub"]
        self.profile_version = profile_version
        self.status = Status.APPLIED
        self.level: Level | None = None
        self.verification: dict[str, Any] | None = None
        self.assessment: dict[str, Any] | None = None
        self.evaluation: dict[str, Any] | None = None
        self.rating: dict[str, Any] | None = None
        self.publicity: dict[str, Any] | None = None
        self.exemption: dict[str, Any] | None = None
        self.objections: dict[str, dict[str, Any]] = {}
        self.confirmed_on: date | None = None
        self.export_id: str | None = None
        self.follow_up: dict[str, Any] | None = None
        self.home_visits: list[dict[str, Any]] = []
        self.readjustments: list[dict[str, Any]] = []
        self.grants: list[dict[str, Any]] = []
        self.granted = ZERO
        self.disbursed = ZERO
        self.recovery_ordered = ZERO
        self.recovered = ZERO
        self.revocation: dict[str, Any] | None = None
        self.integrity_records: list[dict[str, Any]] = []
        self.withdrawal: dict[str, Any] | None = None
        self.amendments = 0
        # The class evaluation group's ballots on this case, by member sub (民主评议, one each).
        self.ballots: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------------------------------ helpers

    def _require(self, command: str) -> None:
        if self.status not in ALLOWED[command]:
            raise InvalidTransition(
                f"cannot {command.replace('_', ' ')} a case that is {self.status.value}",
                case_status=self.status.value, command=command,
            )

    @property
    def claimed_categories(self) -> list[str]:
        return list(self.form.get("claimed_categories", []))

    @property
    def confirmed_categories(self) -> list[str]:
        if not self.verification:
            return []
        return [c["category"] for c in self.verification["confirmed"]]

    @property
    def data_matched_special_group(self) -> bool:
        """Guangxi Art. 8(4): identity confirmed by registry data matching (may skip class evaluation)."""
        return bool(self.verification and self.verification["method"] == VerificationMethod.DATA_MATCH.value
                    and self.verification["confirmed"])

    @property
    def open_objections(self) -> list[str]:
        return [oid for oid, o in self.objections.items() if o["status"] == "open"]

    @property
    def outstanding(self) -> Decimal:
        """Money still owed after a recovery order."""
        return self.recovery_ordered - self.recovered

    # ------------------------------------------------------------------------------------------ application

    def amend(self, *, form: Mapping[str, Any], actor: Actor, now: datetime) -> None:
        self._require("amend")
        if form["student"]["id_number"] != self.applicant_id_number:
            raise ValidationFailed("the resident ID number of a case cannot change", field="student.id_number")
        if form["academic_year"] != self.academic_year:
            raise ValidationFailed("the academic year of a case cannot change", field="academic_year")
        if form["student"]["school_id"] != self.school_id:
            raise ValidationFailed("the school of a case cannot change; withdraw and apply at the new school",
                                   field="student.school_id")
        self._amended(form=dict(form), actor=actor.as_dict(), timestamp=now)

    @event("Amended", topic="case.amended")
    def _amended(self, form: dict[str, Any], actor: dict[str, str], timestamp: datetime) -> None:
        # Changed facts void the checks made on the old ones: the case goes back to verification.
        self.form = form
        self.class_id = form["student"]["class_id"]
        self.status = Status.APPLIED
        self.verification = None
        self.assessment = None
        self.evaluation = None
        self.amendments += 1
        self.ballots = {}

    def withdraw(self, *, reason: str, actor: Actor, now: datetime) -> None:
        self._require("withdraw")
        self._withdrawn(reason=(reason or "").strip(), actor=actor.as_dict(), timestamp=now)

    @event("Withdrawn", topic="case.withdrawn")
    def _withdrawn(self, reason: str, actor: dict[str, str], timestamp: datetime) -> None:
        self.status = Status.WITHDRAWN
        self.withdrawal = {"reason": reason, "on": timestamp.isoformat()}

    # ------------------------------------------------------------------------------------------ identification

    def verify(self, *, method: VerificationMethod, confirmed: Sequence[Mapping[str, str]], notes: str,
               actor: Actor, now: datetime) -> None:
        """身份核验: records each confirmed category with its source; a claim not confirmed is a discrepancy."""
        self._require("verify")
        seen: dict[str, dict[str, str]] = {}
        for i, item in enumerate(confirmed):
            category = parse_enum(Category, item.get("category"), f"confirmed_categories[{i}]").value
            if category in seen:
                raise ValidationFailed("a category is confirmed once", field=f"confirmed_categories[{i}]")
            seen[category] = {"category": category, "source": str(item.get("source") or method.value)}
        discrepancies = [c for c in self.claimed_categories if c not in seen]
        unclaimed = [c for c in seen if c not in self.claimed_categories]
        if self.status is S.VERIFIED and self.verification == {
                "method": method.value, "confirmed": list(seen.values()), "discrepancies": discrepancies,
                "unclaimed_confirmed": unclaimed, "notes": notes or ""}:
            return  # the same verification again (a re-run of data matching) records nothing new
        self._verified(method=method.value, confirmed=list(seen.values()), discrepancies=discrepancies,
                       unclaimed=unclaimed, notes=notes or "", actor=actor.as_dict(), timestamp=now)

    @event("Verified", topic="case.verified")
    def _verified(self, method: str, confirmed: list[dict[str, str]], discrepancies: list[str],
                  unclaimed: list[str], notes: str, actor: dict[str, str], timestamp: datetime) -> None:
        self.status = Status.VERIFIED
        self.verification = {"method": method, "confirmed": confirmed, "discrepancies": discrepancies,
                             "unclaimed_confirmed": unclaimed, "notes": notes}
        self.assessment = None

    def assess(self, *, assessment: Assessment, actor: Actor, now: datetime) -> None:
        """定量评价: the profile's scoring model has been applied to this case's facts."""
        self._require("assess")
        self._assessed(assessment=assessment.as_dict(), actor=actor.as_dict(), timestamp=now)

    @event("Assessed", topic="case.assessed")
    def _assessed(self, assessment: dict[str, Any], actor: dict[str, str], timestamp: datetime) -> None:
        self.status = Status.ASSESSED
        self.assessment = assessment
        self.evaluation = None

    @property
    def suggested_level(self) -> Level | None:
        if not self.assessment or self.assessment["suggested_level"] is None:
            return None
        return Level(self.assessment["suggested_level"])

    def evaluate(self, *, votes_for: int, votes_against: int, recommended_level: Level | None,
                 panel: Sequence[Mapping[str, str]], levels: Sequence[Level], actor: Actor,
                 now: datetime) -> None:
        """民主评议 by the class evaluation group."""
        self._require("evaluate")
        if votes_for < 0 or votes_against < 0:
            raise ValidationFailed("votes cannot be negative", field="votes_for")
        if votes_for + votes_against == 0:
            raise ValidationFailed("an evaluation needs at least one vote", field="votes_for")
        if recommended_level is not None and recommended_level not in levels:
            raise ValidationFailed("level not used by this region's profile", field="recommended_level")
        self._class_evaluated(votes_for=votes_for, votes_against=votes_against,
                              recommended_level=recommended_level, panel=[dict(p) for p in panel],
                              actor=actor.as_dict(), timestamp=now)

    @event("ClassEvaluated", topic="case.class_evaluated")
    def _class_evaluated(self, votes_for: int, votes_against: int, recommended_level: Level | None,
                         panel: list[dict[str, str]], actor: dict[str, str], timestamp: datetime) -> None:
        self.status = Status.EVALUATED
        self.evaluation = {"votes_for": votes_for, "votes_against": votes_against,
                           "recommended_level": recommended_level.value if recommended_level else None,
                           "panel": panel}

    def cast_vote(self, *, member: Mapping[str, str], vote: str, recommended_level: Level | None,
                  member_is_subject: bool, levels: Sequence[Level], actor: Actor, now: datetime) -> None:
        """One member of the class evaluation group votes, with the level they recommend (民主评议)."""
        self._require("cast_vote")
        if member_is_subject:
            raise ConflictOfInterest("a member of the evaluation group cannot vote on their own case")
        if member["sub"] in self.ballots:
            raise AlreadyVoted("this member has already voted on this case")
        if vote not in {"for", "against"}:
            raise ValidationFailed("vote must be for or against", field="vote")
        if vote == "for" and recommended_level is None:
            raise ValidationFailed("a vote for identification recommends a level", field="recommended_level")
        if vote == "against" and recommended_level is not None:
            raise ValidationFailed("a vote against identification recommends no level", field="recommended_level")
        if recommended_level is not None and recommended_level not in levels:
            raise ValidationFailed("level not used by this region's profile", field="recommended_level")
        self._evaluation_vote_cast(member={"sub": member["sub"], "role": member["role"]}, vote=vote,
                                   recommended_level=recommended_level, actor=actor.as_dict(), timestamp=now)

    @event("EvaluationVoteCast", topic="case.evaluation_vote_cast")
    def _evaluation_vote_cast(self, member: dict[str, str], vote: str, recommended_level: Level | None,
                              actor: dict[str, str], timestamp: datetime) -> None:
        self.ballots = {**self.ballots, member["sub"]: {
            "role": member["role"], "vote": vote,
            "recommended_level": recommended_level.value if recommended_level else None}}

    def close_evaluation(self, *, panel: Sequence[Mapping[str, str]], levels: Sequence[Level], actor: Actor,
                         now: datetime) -> None:
        """Closes the evaluation with the tally of the ballots cast by the panel's members. The class recommends
        the level most 'for' ballots named (a tie goes to the less difficult level: the school may still rate
        higher, with its reason), or no level when the 'for' ballots are not a majority."""
        self._require("evaluate")
        members = {m["sub"] for m in panel}
        ballots = [b for sub, b in self.ballots.items() if sub in members]
        if not ballots:
            raise RuleViolated("no member of the evaluation group has voted on this case yet")
        votes_for = sum(1 for b in ballots if b["vote"] == "for")
        counts: dict[Level, int] = {}
        for ballot in ballots:
            if ballot["vote"] == "for":
                level = Level(ballot["recommended_level"])
                counts[level] = counts.get(level, 0) + 1
        recommended = None
        if votes_for > len(ballots) - votes_for:
            recommended = max(counts, key=lambda lv: (counts[lv], lv.rank))
        self.evaluate(votes_for=votes_for, votes_against=len(ballots) - votes_for, recommended_level=recommended,
                      panel=[{"sub": m["sub"], "role": m["role"]} for m in panel], levels=levels, actor=actor,
                      now=now)

    def rate(self, *, level: Level | None, reason: str | None, levels: Sequence[Level],
             skip_class_evaluation_for_data_matched: bool, profile_version: str, actor: Actor,
             now: datetime) -> None:
        """学校认定: one of the profile's levels, or not identified (None)."""
        self._require("rate")
        if self.status is Status.ASSESSED and not (
            skip_class_evaluation_for_data_matched and self.data_matched_special_group
        ):
            raise InvalidTransition("the class group must evaluate this case before the school rates it",
                                    case_status=self.status.value, command="rate")
        if level is not None and level not in levels:
            raise ValidationFailed("level not used by this region's profile", field="level")
        text = (reason or "").strip()
        departs = level != self.suggested_level
        if departs and not text:
            suggested = self.suggested_level.value if self.suggested_level else "not_identified"
            raise ReasonRequired(f"the rating departs from the suggested level ({suggested}); give a reason",
                                 field="reason")
        self._rated(level=level, reason=text, departs_from_suggestion=departs,
                    suggested_level=self.suggested_level, profile_version=profile_version,
                    actor=actor.as_dict(), timestamp=now)

    @event("Rated", topic="case.rated")
    def _rated(self, level: Level | None, reason: str, departs_from_suggestion: bool,
               suggested_level: Level | None, profile_version: str, actor: dict[str, str],
               timestamp: datetime) -> None:
        self.level = level
        self.status = Status.RATED if level is not None else Status.NOT_IDENTIFIED
        self.rating = {"level": level.value if level else "not_identified", "reason": reason,
                       "departs_from_suggestion": departs_from_suggestion,
                       "suggested_level": suggested_level.value if suggested_level else None,
                       "profile_version": profile_version, "rated_at": timestamp.isoformat()}

    # ------------------------------------------------------------------------------------------ public notice

    def publicize(self, *, notice_id: str, starts_on: date, ends_on: date, working_days: int,
                  profile_version: str, actor: Actor, now: datetime) -> None:
        self._require("publicize")
        if ends_on < starts_on:
            raise ValidationFailed("a notice window cannot end before it starts", field="starts_on")
        self._publicized(notice_id=notice_id, starts_on=starts_on, ends_on=ends_on, working_days=working_days,
                         profile_version=profile_version, actor=actor.as_dict(), timestamp=now)

    @event("Publicized", topic="case.publicized")
    def _publicized(self, notice_id: str, starts_on: date, ends_on: date, working_days: int,
                    profile_version: str, actor: dict[str, str], timestamp: datetime) -> None:
        self.status = Status.IN_PUBLICITY
        self.publicity = {"notice_id": notice_id, "starts_on": starts_on, "ends_on": ends_on,
                          "working_days": working_days, "profile_version": profile_version}

    def exempt_publicity(self, *, ground: str, allowed: bool, allowed_grounds: frozenset[str],
                         profile_version: str, actor: Actor, now: datetime) -> None:
        """Jiangsu pilot 二(三)2: a special channel that skips the notice, only where the profile allows it."""
        self._require("exempt_publicity")
        if not allowed:
            raise ExemptionNotAllowed("this region's profile does not allow exemption from public notice")
        if ground not in allowed_grounds:
            raise ValidationFailed(f"ground must be one of {sorted(allowed_grounds)}", field="ground")
        self._publicity_exempted(ground=ground, profile_version=profile_version, actor=actor.as_dict(),
                                 timestamp=now)
        self._confirmed(basis="exempted", actor=actor.as_dict(), timestamp=now)

    @event("PublicityExempted", topic="case.publicity_exempted")
    def _publicity_exempted(self, ground: str, profile_version: str, actor: dict[str, str],
                            timestamp: datetime) -> None:
        self.exemption = {"ground": ground, "profile_version": profile_version}

    def raise_objection(self, *, objection_id: str, grounds: str, objector: str, today: date, actor: Actor,
               now: datetime) -> None:
        """An objection during the window; `objector` is a keyed hash, so the identity stays protected."""
        self._require("object")
        assert self.publicity is not None
        if not self.publicity["starts_on"] <= today <= self.publicity["ends_on"]:
            raise NoticeWindowClosed(
                f"objections are taken from {self.publicity['starts_on']} to {self.publicity['ends_on']}")
        # The event's actor carries the keyed hash, not the sub: the applicant reads this case's history.
        self._objected(objection_id=objection_id, grounds=_reason(grounds, "grounds"), objector=objector,
                       actor={"sub": objector, "role": actor.role.value}, timestamp=now)

    @event("Objected", topic="case.objected")
    def _objected(self, objection_id: str, grounds: str, objector: str, actor: dict[str, str],
                  timestamp: datetime) -> None:
        self.objections[objection_id] = {"objection_id": objection_id, "grounds": grounds, "objector": objector,
                                         "raised_at": timestamp.isoformat(), "status": "open",
                                         "resolution": None}

    def resolve_objection(self, *, objection_id: str, outcome: str, reason: str, new_level: Level | None,
                          levels: Sequence[Level], actor: Actor, now: datetime) -> None:
        self._require("resolve_objection")
        objection = self.objections.get(objection_id)
        if objection is None:
            raise UnknownObjection("no such objection on this case", field="objection_id")
        if objection["status"] != "open":
            raise ObjectionAlreadyResolved("this objection has been resolved already")
        if outcome not in {"upheld", "dismissed"}:
            raise ValidationFailed("outcome must be upheld or dismissed", field="outcome")
        if outcome == "upheld" and new_level is not None and new_level not in levels:
            raise ValidationFailed("level not used by this region's profile", field="new_level")
        superseded = [o for o in self.open_objections if o != objection_id] if outcome == "upheld" else []
        self._objection_resolved(objection_id=objection_id, outcome=outcome, reason=_reason(reason),
                                 new_level=new_level if outcome == "upheld" else self.level,
                                 superseded=superseded, actor=actor.as_dict(), timestamp=now)

    @event("ObjectionResolved", topic="case.objection_resolved")
    def _objection_resolved(self, objection_id: str, outcome: str, reason: str, new_level: Level | None,
                            superseded: list[str], actor: dict[str, str], timestamp: datetime) -> None:
        self.objections[objection_id]["status"] = outcome
        self.objections[objection_id]["resolution"] = {"outcome": outcome, "reason": reason,
                                                       "resolved_at": timestamp.isoformat()}
        for other in superseded:
            self.objections[other]["status"] = "superseded"
        if outcome == "upheld":
            # The rating is corrected; the case needs a new notice window for the new level.
            self.level = new_level
            self.status = Status.RATED if new_level is not None else Status.NOT_IDENTIFIED
            if self.rating is not None:
                self.rating = {**self.rating, "level": new_level.value if new_level else "not_identified",
                               "reason": reason, "rated_at": timestamp.isoformat()}

    def confirm(self, *, today: date, actor: Actor, now: datetime) -> None:
        """The window has ended with no open objection."""
        self._require("confirm")
        assert self.publicity is not None
        if today <= self.publicity["ends_on"]:
            raise NoticeWindowNotOver(f"the notice window runs until {self.publicity['ends_on']}")
        if self.open_objections:
            raise ObjectionStillOpen("a notice window never closes with an objection open",
                                     objections=self.open_objections)
        self._confirmed(basis="notice", actor=actor.as_dict(), timestamp=now)

    @event("Confirmed", topic="case.confirmed")
    def _confirmed(self, basis: str, actor: dict[str, str], timestamp: datetime) -> None:
        self.status = Status.CONFIRMED
        self.confirmed_on = local_date(timestamp)

    def archive(self, *, export_id: str, actor: Actor, now: datetime) -> None:
        self._require("archive")
        self._archived(export_id=export_id, actor=actor.as_dict(), timestamp=now)

    @event("Archived", topic="case.archived")
    def _archived(self, export_id: str, actor: dict[str, str], timestamp: datetime) -> None:
        self.status = Status.ARCHIVED
        self.export_id = export_id

    # ------------------------------------------------------------------------------------------ after identification

    def select_for_follow_up(self, *, sample_id: str, deadline: date, actor: Actor, now: datetime) -> None:
        self._require("select_follow_up")
        if self.follow_up is not None and self.follow_up["sample_id"] == sample_id:
            return
        self._follow_up_selected(sample_id=sample_id, deadline=deadline, actor=actor.as_dict(), timestamp=now)

    @event("FollowUpSelected", topic="case.follow_up_selected")
    def _follow_up_selected(self, sample_id: str, deadline: date, actor: dict[str, str],
                            timestamp: datetime) -> None:
        self.follow_up = {"sample_id": sample_id, "deadline": deadline, "records": []}

    def record_follow_up(self, *, method: str, checked_on: date, finding: str, notes: str,
                         attachments: Sequence[str], actor: Actor, now: datetime) -> None:
        self._require("record_follow_up")
        if self.follow_up is None:
            raise NotSelectedForFollowUp("this case was not drawn for a follow-up check")
        if method not in {"letter", "phone", "interview", "home_visit"}:
            raise ValidationFailed("method must be letter, phone, interview or home_visit", field="method")
        if finding not in {"consistent", "inconsistent"}:
            raise ValidationFailed("finding must be consistent or inconsistent", field="finding")
        if checked_on > local_date(now):
            raise ValidationFailed("a check cannot be recorded for a future date", field="checked_on")
        self._follow_up_recorded(method=method, checked_on=checked_on, finding=finding, notes=notes or "",
                                 attachments=list(attachments), actor=actor.as_dict(), timestamp=now)

    @event("FollowUpRecorded", topic="case.follow_up_recorded")
    def _follow_up_recorded(self, method: str, checked_on: date, finding: str, notes: str,
                            attachments: list[str], actor: dict[str, str], timestamp: datetime) -> None:
        assert self.follow_up is not None
        self.follow_up["records"].append({"method": method, "checked_on": checked_on, "finding": finding,
                                          "notes": notes, "attachments": attachments})

    def record_home_visit(self, *, visited_on: date, notes: str, actor: Actor, now: datetime) -> None:
        self._require("home_visit")
        if visited_on > local_date(now):
            raise ValidationFailed("a visit cannot be recorded for a future date", field="visited_on")
        self._home_visited(visited_on=visited_on, notes=notes or "", actor=actor.as_dict(), timestamp=now)

    @event("HomeVisited", topic="case.home_visited")
    def _home_visited(self, visited_on: date, notes: str, actor: dict[str, str], timestamp: datetime) -> None:
        self.home_visits.append({"visited_on": visited_on, "notes": notes})

    def readjust(self, *, level: Level | None, reason: str, window: tuple[date, date], levels: Sequence[Level],
                 profile_version: str, actor: Actor, now: datetime) -> None:
        """Spring dynamic adjustment (动态调整), only inside the profile's window."""
        self._require("readjust")
        opens, closes = window
        if not opens <= local_date(now) <= closes:
            raise OutsideReadjustmentWindow(f"spring readjustment runs from {opens} to {closes}",
                                            opens_on=str(opens), closes_on=str(closes))
        if level is not None and level not in levels:
            raise ValidationFailed("level not used by this region's profile", field="level")
        self._readjusted(level=level, reason=_reason(reason), previous=self.level,
                         profile_version=profile_version, actor=actor.as_dict(), timestamp=now)

    @event("Readjusted", topic="case.readjusted")
    def _readjusted(self, level: Level | None, reason: str, previous: Level | None, profile_version: str,
                    actor: dict[str, str], timestamp: datetime) -> None:
        self.level = level
        if level is None:
            self.status = Status.NOT_IDENTIFIED
        self.readjustments.append({"from": previous.value if previous else None,
                                   "to": level.value if level else "not_identified", "reason": reason,
                                   "on": local_date(timestamp)})

    def grant_aid(self, *, programme: str, amount: Any, programmes: Sequence[str], target: Decimal | None,
                  override_reason: str | None, profile_version: str, actor: Actor, now: datetime) -> None:
        self._require("grant_emergency_aid" if programme == EMERGENCY_PROGRAMME else "grant_aid")
        if programme not in programmes:
            raise ValidationFailed(f"programme must be one of {sorted(programmes)}", field="programme")
        value = _money(amount, "amount")
        override = (override_reason or "").strip()
        regular = self.granted_regular + (value if programme != EMERGENCY_PROGRAMME else ZERO)
        if target is not None and programme != EMERGENCY_PROGRAMME and regular > target and not override:
            raise OverAid(f"grants would reach {regular}, above this level's annual target of {target} "
                          "(过度资助); give an override reason", target=str(target))
        self._aid_granted(programme=programme, amount=value, override_reason=override,
                          profile_version=profile_version, actor=actor.as_dict(), timestamp=now)

    @property
    def granted_regular(self) -> Decimal:
        return sum((g["amount"] for g in self.grants if g["programme"] != EMERGENCY_PROGRAMME), ZERO)

    @event("AidGranted", topic="case.aid_granted")
    def _aid_granted(self, programme: str, amount: Decimal, override_reason: str, profile_version: str,
                     actor: dict[str, str], timestamp: datetime) -> None:
        self.grants.append({"programme": programme, "amount": amount, "override_reason": override_reason,
                            "granted_on": local_date(timestamp)})
        self.granted += amount

    def disburse(self, *, amount: Any, actor: Actor, now: datetime) -> None:
        self._require("disburse")
        value = _money(amount, "amount")
        if value > self.granted - self.disbursed:
            raise RuleViolated(f"only {self.granted - self.disbursed} granted and not yet disbursed",
                               field="amount")
        self._funds_disbursed(amount=value, actor=actor.as_dict(), timestamp=now)

    @event("FundsDisbursed", topic="case.funds_disbursed")
    def _funds_disbursed(self, amount: Decimal, actor: dict[str, str], timestamp: datetime) -> None:
        self.disbursed += amount

    def revoke(self, *, reason: str, dishonest: bool, actor: Actor, now: datetime) -> None:
        """弄虚作假 confirmed: the qualification is cancelled; money paid out becomes recoverable."""
        self._require("revoke")
        text = _reason(reason)
        # Objections still open (a revocation during the notice window) end with it: no window will conclude
        # them any more, and the revocation decides more than any of them asked.
        self._revoked(reason=text, dishonest=dishonest, disbursed=self.disbursed, actor=actor.as_dict(),
                      timestamp=now, superseded_objections=self.open_objections)
        if dishonest:
            self._integrity_violation_recorded(person="student", id_number=self.applicant_id_number,
                                               description=text, actor=actor.as_dict(), timestamp=now)

    @event("Revoked", topic="case.revoked")
    def _revoked(self, reason: str, dishonest: bool, disbursed: Decimal, actor: dict[str, str],
                 timestamp: datetime, superseded_objections: list[str] | None = None) -> None:
        # superseded_objections: absent from revocations recorded before it was added (they kept theirs open).
        self.status = Status.REVOKED
        self.revocation = {"reason": reason, "dishonest": dishonest, "disbursed_at_revocation": disbursed,
                           "revoked_on": local_date(timestamp)}
        for objection_id in superseded_objections or ():
            self.objections[objection_id]["status"] = "superseded"
            self.objections[objection_id]["resolution"] = {
                "outcome": "revoked", "reason": "认定资格已取消，异议随之终结", "resolved_at": timestamp.isoformat()}

    def order_recovery(self, *, amount: Any, actor: Actor, now: datetime) -> None:
        self._require("order_recovery")
        value = _money(amount, "amount")
        if self.recovery_ordered + value > self.disbursed:
            raise AmountExceedsOwed(f"only {self.disbursed - self.recovery_ordered} disbursed and not yet ordered back",
                                    field="amount")
        self._funds_recovery_ordered(amount=value, actor=actor.as_dict(), timestamp=now)

    @event("FundsRecoveryOrdered", topic="case.funds_recovery_ordered")
    def _funds_recovery_ordered(self, amount: Decimal, actor: dict[str, str], timestamp: datetime) -> None:
        self.recovery_ordered += amount

    def record_recovery(self, *, amount: Any, actor: Actor, now: datetime) -> None:
        self._require("record_recovery")
        value = _money(amount, "amount")
        if value > self.outstanding:
            raise AmountExceedsOwed(f"only {self.outstanding} is owed", field="amount")
        self._funds_recovered(amount=value, actor=actor.as_dict(), timestamp=now)

    @event("FundsRecovered", topic="case.funds_recovered")
    def _funds_recovered(self, amount: Decimal, actor: dict[str, str], timestamp: datetime) -> None:
        self.recovered += amount

    def record_integrity_violation(self, *, person: str, id_number: str, description: str, actor: Actor,
                                   now: datetime) -> None:
        """诚信记录: dishonesty of the student or guardian, kept across years."""
        self._require("record_integrity_violation")
        if person not in {"student", "guardian"}:
            raise ValidationFailed("person must be student or guardian", field="person")
        # The record follows the person across years and is queried by number: a mistyped one would be lost.
        id_number = validate_resident_id(id_number, "id_number")
        self._integrity_violation_recorded(person=person, id_number=id_number,
                                           description=_reason(description, "description"),
                                           actor=actor.as_dict(), timestamp=now)

    @event("IntegrityViolationRecorded", topic="case.integrity_violation_recorded")
    def _integrity_violation_recorded(self, person: str, id_number: str, description: str,
                                      actor: dict[str, str], timestamp: datetime) -> None:
        self.integrity_records.append({"person": person, "id_number": id_number, "description": description,
                                       "recorded_on": local_date(timestamp)})


def case_uuid(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise ValidationFailed("not a case id", field="id") from None


# Every topic a StudentCase event is stored under: views of cases read these and no other aggregate's events.
CASE_EVENT_TOPICS: tuple[str, ...] = tuple(sorted(
    topic for value in vars(StudentCase).values()
    if isinstance(value, type) and (topic := getattr(value, "TOPIC", "")).startswith("case.")
    and topic != "case.created"
))
