"""Class democratic evaluation (民主评议) and the qualitative-correction report (定性评价修正定量结果).

The class evaluation group (认定评议小组) is formed per class and academic year by the school: members by token
subject, each with a role; student representatives must make up at least the profile's
`class_evaluation.min_student_share` of it, and someone must lead it (a head teacher or counsellor). A student
representative is named with their resident ID number, kept only as a keyed hash, so the group never votes on a
member's own case. The panel is reference data (re-forming replaces it); what it decided is on the case: every
ballot is an `EvaluationVoteCast` event and the closing tally, with the panel, is `ClassEvaluated`.

The departures report shows a bureau, per school in its region, how many ratings there were and how many departed
from the scoring model's suggested level, and in which direction, from the case index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, Column, DateTime, Integer, String, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from adapters.auth import Principal
from adapters.cases import CaseService, Outcome
from adapters.consumption import academic_year_of
from adapters.db import metadata
from adapters.registries import NotInScope, SubjectKeys, require_school_scope
from domain.case import ALLOWED, StudentCase
from domain.errors import Forbidden, InvalidTransition, RuleViolated, ValidationFailed
from domain.values import Level, Role, parse_level_or_none, validate_academic_year, validate_resident_id
from projections.queries import REGION_CODE, region_prefix, region_range
from projections.runner import Projections

PANEL_ROLES = frozenset({"head_teacher", "counsellor", "student_representative", "teacher_representative",
                         "parent_representative", "other"})
STUDENT_ROLE = "student_representative"
LEADING_ROLES = frozenset({"head_teacher", "counsellor"})  # who leads the group and closes its evaluations
# Statuses a case can only reach through a school's rating (Rated): the base of the departures share.
RATED_STATUSES = ("rated", "in_publicity", "confirmed", "archived", "not_identified", "revoked")


class NotOnPanel(RuleViolated):
    """The class's evaluation group, as formed, gives the caller no place (or not the leading one) for this.
    A rule of the procedure on the panel's current make-up, so 409 like the case rules (not the role gate's 403)."""

    code = "not_on_evaluation_panel"


class_panels = Table(
    "class_panels",
    metadata,
    Column("school_id", String(32), primary_key=True),
    Column("class_id", String(64), primary_key=True),
    Column("academic_year", String(9), primary_key=True),
    Column("members", JSON, nullable=False),  # [{sub, role, student_key}] — student_key: HMAC of the ID number
    Column("revision", Integer, nullable=False),
    Column("profile_version", String(64), nullable=False),
    Column("formed_by", String(100), nullable=False),
    Column("formed_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Panel:
    school_id: str
    class_id: str
    academic_year: str
    members: tuple[Mapping[str, Any], ...]
    revision: int
    profile_version: str
    formed_by: str
    formed_at: datetime

    def member(self, sub: str) -> Mapping[str, Any] | None:
        return next((m for m in self.members if m["sub"] == sub), None)

    @property
    def public_members(self) -> list[dict[str, str]]:
        """What the panel shows and what ClassEvaluated records: who and in which role, no ID number."""
        return [{"sub": m["sub"], "role": m["role"]} for m in self.members]

    def as_dict(self) -> dict[str, Any]:
        students = sum(1 for m in self.members if m["role"] == STUDENT_ROLE)
        return {"school_id": self.school_id, "class_id": self.class_id, "academic_year": self.academic_year,
                "members": self.public_members, "student_share": _share(students, len(self.members)),
                "revision": self.revision, "profile_version": self.profile_version, "formed_by": self.formed_by,
                "formed_at": self.formed_at.isoformat()}


def _share(part: int, whole: int) -> str:
    return str((Decimal(part) / Decimal(whole)).quantize(Decimal("0.01"))) if whole else "0.00"


def check_panel(members: Sequence[Mapping[str, Any]], min_student_share: Decimal,
                keys: SubjectKeys) -> list[dict[str, Any]]:
    """The members as stored, once the group satisfies the rules (else ValidationFailed naming the member)."""
    if not members:
        raise ValidationFailed("an evaluation group has members", field="members")
    stored: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, member in enumerate(members):
        sub = str(member.get("sub") or "").strip()
        role = str(member.get("role") or "")
        if not sub:
            raise ValidationFailed("each member is named by their token subject", field=f"members[{i}].sub")
        if sub in seen:
            raise ValidationFailed("a member sits on the group once", field=f"members[{i}].sub")
        if role not in PANEL_ROLES:
            raise ValidationFailed(f"role must be one of {', '.join(sorted(PANEL_ROLES))}", field=f"members[{i}].role")
        student_key = None
        number = member.get("student_id_number")
        if role == STUDENT_ROLE and not number:
            raise ValidationFailed("a student representative is named with their resident ID number, so they "
                                   "never vote on their own case", field=f"members[{i}].student_id_number")
        if number:
            student_key = keys.id_key(validate_resident_id(str(number), f"members[{i}].student_id_number"))
        seen.add(sub)
        stored.append({"sub": sub, "role": role, "student_key": student_key})
    if not any(m["role"] in LEADING_ROLES for m in stored):
        raise ValidationFailed("the group needs a head teacher or counsellor to lead it", field="members")
    students = sum(1 for m in stored if m["role"] == STUDENT_ROLE)
    if Decimal(students) < min_student_share * len(stored):
        raise ValidationFailed(f"student representatives are {_share(students, len(stored))} of the group; the "
                               f"profile requires at least {min_student_share}", field="members",
                               min_student_share=str(min_student_share))
    return stored


class ClassEvaluation:
    def __init__(self, cases: CaseService, engine: Engine, keys: SubjectKeys, projections: Projections) -> None:
        self.cases = cases
        self._engine = engine
        self.keys = keys
        self.projections = projections

    # ------------------------------------------------------------------------------------------ the panel

    def form_panel(self, principal: Principal, school_id: str, class_id: str,
                   members: Sequence[Mapping[str, Any]], academic_year: str | None = None) -> Panel:
        school = require_school_scope(principal, school_id, self.cases.schools, roles={Role.SCHOOL})
        year = validate_academic_year(academic_year) if academic_year else _current_year(self.cases)
        if not class_id.strip() or len(class_id) > 64:
            raise ValidationFailed("class_id is 1 to 64 characters", field="class_id")
        profile = self.cases.profiles.for_region(school.region_code)
        stored = check_panel(members, profile.class_evaluation_min_student_share, self.keys)
        now = self.cases.clock.now()
        with self._engine.begin() as conn:
            previous = self._revision(conn, school_id, class_id, year)
            values = {"school_id": school_id, "class_id": class_id, "academic_year": year, "members": stored,
                      "revision": previous + 1, "profile_version": profile.tag, "formed_by": principal.sub[:100],
                      "formed_at": now}
            module: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
            statement = module.insert(class_panels).values(**values)
            conn.execute(statement.on_conflict_do_update(
                index_elements=["school_id", "class_id", "academic_year"],
                set_={k: statement.excluded[k] for k in ("members", "revision", "profile_version", "formed_by",
                                                         "formed_at")}))
        return Panel(school_id, class_id, year, tuple(stored), previous + 1, profile.tag, principal.sub, now)

    @staticmethod
    def _revision(conn: Any, school_id: str, class_id: str, year: str) -> int:
        t = class_panels.c
        found = conn.execute(select(t.revision).where(t.school_id == school_id, t.class_id == class_id,
                                                      t.academic_year == year)).scalar()
        return int(found or 0)

    def panel(self, school_id: str, class_id: str, academic_year: str) -> Panel | None:
        t = class_panels.c
        with self._engine.connect() as conn:
            row = conn.execute(select(class_panels).where(t.school_id == school_id, t.class_id == class_id,
                                                          t.academic_year == academic_year)).first()
        if row is None:
            return None
        return Panel(row.school_id, row.class_id, row.academic_year, tuple(row.members), row.revision,
                     row.profile_version, row.formed_by, row.formed_at)

    def read_panel(self, principal: Principal, school_id: str, class_id: str,
                   academic_year: str | None = None) -> Panel:
        require_school_scope(principal, school_id, self.cases.schools,
                             roles={Role.SCHOOL, Role.EVALUATOR, Role.BUREAU, Role.AUDITOR})
        if principal.role is Role.EVALUATOR and principal.class_id != class_id:
            raise NotInScope("no such class")
        year = validate_academic_year(academic_year) if academic_year else _current_year(self.cases)
        panel = self.panel(school_id, class_id, year)
        if panel is None:
            raise NotInScope("this class has no evaluation group for that academic year")
        return panel

    def _member_panel(self, principal: Principal, case: StudentCase,
                      command: str) -> tuple[Panel, Mapping[str, Any]]:
        if case.status not in ALLOWED[command]:
            # A case not at evaluation says so first, whoever asks (the domain refuses it the same way).
            raise InvalidTransition(f"cannot {command.replace('_', ' ')} a case that is {case.status.value}",
                                    case_status=case.status.value, command=command)
        panel = self.panel(case.school_id, case.class_id, case.academic_year)
        member = panel.member(principal.sub) if panel is not None else None
        if panel is None or member is None:
            raise NotOnPanel("only a member of this class's evaluation group may do this")
        return panel, member

    # ------------------------------------------------------------------------------------------ ballots

    def cast_vote(self, principal: Principal, case_id: UUID, *, vote: str, recommended_level: str | None,
                  expected_version: int | None = None) -> Outcome:
        level = parse_level_or_none(recommended_level, "recommended_level") if recommended_level else None

        def decide(case: StudentCase, now: datetime) -> None:
            _, member = self._member_panel(principal, case, "cast_vote")
            own = member.get("student_key") is not None and \
                member["student_key"] == self.keys.id_key(case.applicant_id_number)
            case.cast_vote(member=member, vote=vote, recommended_level=level, member_is_subject=own,
                           levels=self.cases.profile_for(case).levels, actor=principal.actor, now=now)

        return self.cases.execute(principal, case_id, "cast_vote", expected_version, decide)

    def close(self, principal: Principal, case_id: UUID, expected_version: int | None = None) -> Outcome:
        """The group's leader closes the evaluation of a case with the tally of the ballots."""

        def decide(case: StudentCase, now: datetime) -> None:
            panel, member = self._member_panel(principal, case, "evaluate")
            if member["role"] not in LEADING_ROLES:
                raise NotOnPanel("the head teacher or counsellor leading the group closes an evaluation")
            levels: Sequence[Level] = self.cases.profile_for(case).levels
            case.close_evaluation(panel=panel.public_members, levels=levels, actor=principal.actor, now=now)

        return self.cases.execute(principal, case_id, "evaluate", expected_version, decide)

    # ------------------------------------------------------------------------------------------ departures

    def departures(self, principal: Principal, region_code: str, *,
                   academic_year: str | None = None) -> dict[str, Any]:
        """Per school under the region: ratings, how many departed from the suggested level, and which way."""
        if not REGION_CODE.match(region_code):
            raise ValidationFailed("region_code is a 6-digit administrative division code", field="region_code")
        if academic_year is not None:
            validate_academic_year(academic_year)
        prefix = region_prefix(region_code)
        if principal.role is Role.BUREAU:
            if not (principal.region_prefix and prefix.startswith(principal.region_prefix)):
                raise NotInScope("no such region")
        elif principal.role is not Role.AUDITOR:
            raise Forbidden(f"the {principal.role.value} role cannot read the departures report")
        self.projections.wait_for("case_index", self.projections.head())
        cases = self.projections.active_tables("case_index")["cases"]
        low, high = region_range(prefix)
        query = (select(cases.c.school_id, cases.c.level, cases.c.suggested_level, cases.c.departs_from_suggestion,
                        func.count().label("n"))
                 .where(cases.c.school_region.between(low, high), cases.c.status.in_(RATED_STATUSES))
                 .group_by(cases.c.school_id, cases.c.level, cases.c.suggested_level,
                           cases.c.departs_from_suggestion))
        if academic_year is not None:
            query = query.where(cases.c.academic_year == academic_year)
        schools: dict[str, dict[str, Any]] = {}
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        for row in rows:
            entry = schools.setdefault(row.school_id, {"school_id": row.school_id, "rated": 0, "departed": 0,
                                                       "rated_more_difficult": 0, "rated_less_difficult": 0})
            entry["rated"] += row.n
            if row.departs_from_suggestion:
                entry["departed"] += row.n
                direction = _direction(row.level, row.suggested_level)
                entry[f"rated_{direction}"] += row.n
        result = []
        for school_id in sorted(schools):
            entry = schools[school_id]
            school = self.cases.schools.get(school_id)
            entry["school_name"] = school.name if school else None
            entry["share"] = _share(entry["departed"], entry["rated"])
            result.append(entry)
        rated = sum(e["rated"] for e in result)
        departed = sum(e["departed"] for e in result)
        return {"region_code": region_code, "academic_year": academic_year, "schools": result,
                "total": {"rated": rated, "departed": departed, "share": _share(departed, rated)}}


def _rank(level: str | None) -> int:
    """Need as an order: each level by its rank, not identified after all of them."""
    return Level(level).rank if level else len(Level)


def _direction(level: str | None, suggested: str | None) -> str:
    return "more_difficult" if _rank(level) < _rank(suggested) else "less_difficult"


def _current_year(cases: CaseService) -> str:
    return academic_year_of(cases.clock.today())
