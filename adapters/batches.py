"""Batch commands over many cases, as a school (or a class evaluation group) runs them: bulk application entry,
assessment of the school's verified cases, the class group's evaluation results, and rating at the class's
recommended level; and `decide_in_chunks`, the load → decide → save engine they share with the other batch steps
(verify by data, the deadline job).

Each batch works through its cases in chunks (`CHUNK`): one query loads a chunk's cases (`CaseStore.get_many`),
each case is decided by the same domain command as the per-case path after the same scope and role check
(`require_command`), and the chunk's events are saved in ONE transaction. If that save is refused (a concurrent
change to one of the chunk's cases won), the chunk is done again case by case through `CaseService.execute`: the
case that changed meanwhile is decided on its current state (or reported `conflict`), and nothing else is lost.

Every case gets its own result: `ok`, or `skipped` with the error's stable `code` (a case already past the step
says `invalid_transition`, a student who already applied `conflict`). Re-running a batch is therefore harmless:
what was done is reported, never done twice.

Evaluation stays the class group's: DOMAIN.md gives democratic evaluation to the class evaluation group, for its
own class only, so there is no school-wide batch evaluation; the group's leader may enter its class's results in
one request, each case with its own tally (votes for and against, recommended level, panel), exactly as the
per-case `evaluate` command records it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from sqlalchemy import select

from adapters.auth import Principal, require_command
from adapters.cases import CaseService
from adapters.registries import require_school_scope
from adapters.schools import School
from domain.case import StudentCase
from domain.errors import CaseNotFound, Conflict, DomainError, Forbidden, ValidationFailed
from domain.form import normalise_form
from domain.policy import assess, facts_from_application
from domain.values import Level, Role, case_id_for, parse_level_or_none, validate_academic_year
from projections.runner import Projections

CHUNK = 500  # cases per load query and per save transaction
MAX_APPLICATIONS = 500  # application forms per bulk-entry request
MAX_EVALUATIONS = 1000  # evaluation results per request (a class is far smaller)
VIEW_WAIT = 60.0  # seconds a school batch waits for the case index to reach the log head

Decide = Callable[[StudentCase, datetime], None]


@dataclass(frozen=True)
class Done:
    """What one case's command came to: the state after it (None if refused), whether events were recorded,
    and the refusal."""

    case_id: UUID
    case: StudentCase | None
    changed: bool
    error: DomainError | None = None


def decide_in_chunks(cases: CaseService, principal: Principal, command: str,
                     work: Sequence[tuple[UUID, Decide]], chunk: int = CHUNK) -> tuple[list[Done], int | None]:
    """Runs `command` on each case of `work` (case, decision) in chunks: one read and one save transaction per
    chunk; a refused save falls back to per-case saves for that chunk. Returns each case's result in order and the
    log position of the last event written (None: nothing was written)."""
    firsts: dict[UUID, Decide] = {}
    for case_id, decide in work:
        firsts.setdefault(case_id, decide)  # a case named twice is decided once
    unique = list(firsts.items())
    results: list[Done] = []
    position: int | None = None
    for start in range(0, len(unique), chunk):
        part = unique[start:start + chunk]
        loaded = cases.store.get_many([case_id for case_id, _ in part], chunk=chunk)
        now = cases.clock.now()
        done: dict[UUID, Done] = {}
        changed: list[tuple[UUID, Decide, StudentCase]] = []
        for case_id, decide in part:
            case = loaded.get(case_id)
            if not isinstance(case, StudentCase):
                done[case_id] = Done(case_id, None, False, CaseNotFound("no such case"))
                continue
            before = case.version
            try:
                require_command(principal, case, command)
                decide(case, now)
            except DomainError as refused:
                done[case_id] = Done(case_id, None, False, refused)
                continue
            if case.version != before:
                changed.append((case_id, decide, case))
            else:
                done[case_id] = Done(case_id, case, False)
        if changed:
            try:
                recordings = cases.store.save(*(case for _, _, case in changed))
            except IntegrityError:
                # One of them changed since it was read: each again on its own, on its state as stored now.
                for case_id, decide, _ in changed:
                    cases.store.case_cache.forget(case_id)
                    try:
                        outcome = cases.execute(principal, case_id, command, None, decide)
                    except DomainError as refused:
                        done[case_id] = Done(case_id, None, False, refused)
                        continue
                    done[case_id] = Done(case_id, outcome.case, outcome.position is not None)
                    if outcome.position is not None:
                        position = max(position or 0, outcome.position)
            else:
                for case_id, _, case in changed:
                    done[case_id] = Done(case_id, case, True)
                written = max((r.notification.id for r in recordings), default=None)
                if written is not None:
                    position = max(position or 0, written)
        results += [done[case_id] for case_id, _ in part]
    return results, position


def report(results: Sequence[Done], position: int | None, **head: Any) -> dict[str, Any]:
    """The answer of a batch: counts, then each case (`ok`, `unchanged` or `skipped` with the refusal's code)."""
    items: list[dict[str, Any]] = []
    for r in results:
        if r.error is not None:
            item: dict[str, Any] = {"case_id": str(r.case_id), "outcome": "skipped", "code": r.error.code}
            field = getattr(r.error, "field", "")
            if field:
                item["field"] = field
        else:
            assert r.case is not None  # a result without a refusal carries the state
            item = {"case_id": str(r.case_id), "outcome": "ok" if r.changed else "unchanged",
                    "status": r.case.status.value, "version": r.case.version}
        items.append(item)
    counts = {k: sum(1 for i in items if i["outcome"] == k) for k in ("ok", "unchanged", "skipped")}
    return {**head, "considered": len(items), **counts, "position": position, "cases": items}


class BatchCommands:
    """The batch use cases of a school's aid office and of a class evaluation group."""

    def __init__(self, cases: CaseService, projections: Projections) -> None:
        self.cases = cases
        self.projections = projections

    # ------------------------------------------------------------------------------------------ scope

    def _school(self, principal: Principal, school_id: str, roles: set[Role]) -> School:
        """Another school's staff (or class group) get 404 as for one of its cases; other roles 403."""
        return require_school_scope(principal, school_id, self.cases.schools, roles=roles)

    def _school_cases(self, school_id: str, statuses: Sequence[str], academic_year: str | None,
                      class_id: str | None) -> list[UUID]:
        """The school's cases at these statuses, oldest application first, from the case index (after it has
        caught up with the log, so every case up to now is seen)."""
        if not self.projections.wait_for("case_index", self.projections.head(), timeout=VIEW_WAIT):
            raise Conflict("the case index is still catching up with the log; try again shortly")
        index = self.projections.active_tables("case_index")["cases"]
        query = (select(index.c.case_id).where(index.c.school_id == school_id, index.c.status.in_(statuses))
                 .order_by(index.c.applied_at, index.c.case_id))
        if academic_year is not None:
            query = query.where(index.c.academic_year == validate_academic_year(academic_year))
        if class_id is not None:
            query = query.where(index.c.class_id == class_id)
        with self.projections.engine.connect() as conn:
            return [UUID(r) for r in conn.execute(query).scalars()]

    # ------------------------------------------------------------------------------------------ apply

    def apply_many(self, principal: Principal, school_id: str, applications: Sequence[Mapping[str, Any]],
                   shape: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """Bulk application entry by a school's aid office (the forms collected on paper): each form is checked
        and recorded as `POST /v1/cases` would (the same form rules and admission checks); a student who already
        applied for that year is reported `conflict`, as is a second form for the same student in the request.
        Over `MAX_APPLICATIONS` forms: refused whole (422), nothing recorded. `shape` checks one form's shape
        (the HTTP schema), raising ValidationFailed: a malformed form is that row's refusal."""
        school = self._school(principal, school_id, {Role.SCHOOL})
        if not applications:
            raise ValidationFailed("give at least one application", field="applications")
        if len(applications) > MAX_APPLICATIONS:
            raise ValidationFailed(f"at most {MAX_APPLICATIONS} applications per request", field="applications")
        profile = self.cases.profiles.for_region(school.region_code)
        today, now = self.cases.clock.today(), self.cases.clock.now()
        results: list[dict[str, Any]] = []
        pending: list[tuple[int, StudentCase, Callable[[], StudentCase]]] = []
        seen: set[UUID] = set()
        memo: dict[Any, Any] = {}  # what the admission checks read once for the whole request (the rounds)
        for row, form in enumerate(applications):
            try:
                normalised = normalise_form(shape(form) if shape else form, today=today)
                student = normalised["student"]
                if student["school_id"] != school_id:
                    raise Forbidden("a school enters applications only for its own students")
                case_id = case_id_for(student["id_number"], normalised["academic_year"])
                if case_id in seen:
                    raise Conflict("this student appears twice in the request", case_id=str(case_id))
                seen.add(case_id)
                for check in self.cases.admission_checks:
                    check(normalised, school, profile, today, memo=memo)

                # A failed save has taken the new case's event: a retry needs the case made again.
                def make(normalised: Mapping[str, Any] = normalised) -> StudentCase:
                    return StudentCase.apply(form=normalised, school_region=school.region_code,
                                             profile_version=profile.tag, actor=principal.actor, now=now)

                case = make()
            except DomainError as refused:
                results.append(_row_refused(row, refused))
                continue
            results.append({"row": row, "case_id": str(case_id)})
            pending.append((row, case, make))
        position: int | None = None
        for start in range(0, len(pending), CHUNK):
            part = pending[start:start + CHUNK]
            existing = self.cases.store.get_many([case.id for _, case, _ in part], chunk=CHUNK)
            for row, case, _ in part:
                if case.id in existing:
                    results[row] = _row_refused(row, Conflict(
                        "this student has already applied for this academic year", case_id=str(case.id)))
            written = self._save_new([p for p in part if p[1].id not in existing], results)
            if written is not None:
                position = max(position or 0, written)
        counts = {k: sum(1 for r in results if r["outcome"] == k) for k in ("ok", "skipped")}
        return {"school_id": school_id, "considered": len(results), **counts, "position": position,
                "applications": results}

    def _save_new(self, fresh: Sequence[tuple[int, StudentCase, Callable[[], StudentCase]]],
                  results: list[dict[str, Any]]) -> int | None:
        if not fresh:
            return None
        try:
            recordings = self.cases.store.save(*(case for _, case, _ in fresh))
        except IntegrityError:
            # A student applied meanwhile (another request, one by one): each again on its own, made afresh.
            position: int | None = None
            for row, _, make in fresh:
                case = make()
                try:
                    written = self.cases.store.save(case)
                except IntegrityError:
                    results[row] = _row_refused(row, Conflict(
                        "this student has already applied for this academic year", case_id=str(case.id)))
                    continue
                results[row] = _row_ok(row, case)
                position = max([position or 0, *(r.notification.id for r in written)])
            return position
        for row, case, _ in fresh:
            results[row] = _row_ok(row, case)
        return max((r.notification.id for r in recordings), default=None)

    # ------------------------------------------------------------------------------------------ assess

    def assess_school(self, principal: Principal, school_id: str, *, academic_year: str | None = None,
                      class_id: str | None = None) -> dict[str, Any]:
        """Runs the profile's scoring model on every verified case of the school (or of one class)."""
        self._school(principal, school_id, {Role.SCHOOL})
        ids = self._school_cases(school_id, ("verified",), academic_year, class_id)
        return self.assess_cases(principal, ids, school_id=school_id)

    def assess_cases(self, principal: Principal, case_ids: Sequence[UUID], **head: Any) -> dict[str, Any]:
        def decide(case: StudentCase, now: datetime) -> None:
            result = assess(facts_from_application(case.form, case.confirmed_categories),
                            self.cases.profile_for(case))
            case.assess(assessment=result, actor=principal.actor, now=now)

        results, position = decide_in_chunks(self.cases, principal, "assess", [(i, decide) for i in case_ids])
        return report(results, position, **head)

    # ------------------------------------------------------------------------------------------ evaluate

    def evaluate_class(self, principal: Principal, school_id: str, class_id: str,
                       evaluations: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The class evaluation group's results for its class, each case with its own tally, recorded as the
        per-case `evaluate` command records them (a case of another class: `not_found`)."""
        self._school(principal, school_id, {Role.EVALUATOR})
        if principal.class_id != class_id:
            raise CaseNotFound("no such class")
        if not evaluations:
            raise ValidationFailed("give at least one evaluation", field="evaluations")
        if len(evaluations) > MAX_EVALUATIONS:
            raise ValidationFailed(f"at most {MAX_EVALUATIONS} evaluations per request", field="evaluations")
        work = [(case_id, self._evaluation(principal, class_id, tally))
                for case_id, tally in (_tally(i, item) for i, item in enumerate(evaluations))]
        results, position = decide_in_chunks(self.cases, principal, "evaluate", work)
        return report(results, position, school_id=school_id, class_id=class_id)

    def _evaluation(self, principal: Principal, class_id: str, tally: Tally) -> Decide:
        def decide(case: StudentCase, now: datetime) -> None:
            if case.class_id != class_id:
                raise CaseNotFound("no such case in this class")
            case.evaluate(votes_for=tally.votes_for, votes_against=tally.votes_against,
                          recommended_level=tally.recommended_level, panel=tally.panel,
                          levels=self.cases.profile_for(case).levels, actor=principal.actor, now=now)

        return decide

    # ------------------------------------------------------------------------------------------ rate

    def rate_school(self, principal: Principal, school_id: str, *, academic_year: str | None = None,
                    class_id: str | None = None) -> dict[str, Any]:
        """Rates every evaluated case of the school (or of one class) at the level its class group recommended.
        No reason is given, so a case where the single `rate` would need one (the recommendation departs from
        the scoring model's suggestion) is skipped with `reason_required`, to be rated on its own."""
        self._school(principal, school_id, {Role.SCHOOL})
        ids = self._school_cases(school_id, ("evaluated",), academic_year, class_id)
        return self.rate_cases(principal, ids, school_id=school_id)

    def rate_cases(self, principal: Principal, case_ids: Sequence[UUID], **head: Any) -> dict[str, Any]:
        def decide(case: StudentCase, now: datetime) -> None:
            recommended = (case.evaluation or {}).get("recommended_level")
            profile = self.cases.profile_for(case)
            case.rate(level=parse_level_or_none(recommended, "level") if recommended else None, reason=None,
                      levels=profile.levels,
                      skip_class_evaluation_for_data_matched=profile.skip_class_evaluation_for_data_matched,
                      profile_version=profile.tag, actor=principal.actor, now=now)

        results, position = decide_in_chunks(self.cases, principal, "rate", [(i, decide) for i in case_ids])
        return report(results, position, **head)


@dataclass(frozen=True)
class Tally:
    votes_for: int
    votes_against: int
    recommended_level: Level | None
    panel: list[dict[str, str]]


def _tally(i: int, item: Mapping[str, Any]) -> tuple[UUID, Tally]:
    """One row of a class's evaluation results, checked before anything is decided (a bad row: 422)."""
    at = f"evaluations[{i}]"
    try:
        case_id = UUID(str(item["case_id"]))
    except (KeyError, ValueError):
        raise ValidationFailed("not a case id", field=f"{at}.case_id") from None
    votes = []
    for name in ("votes_for", "votes_against"):
        value = item.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 1000:
            raise ValidationFailed("a count from 0 to 1000", field=f"{at}.{name}")
        votes.append(value)
    level = item.get("recommended_level")
    panel = item.get("panel") or []
    if not isinstance(panel, list) or not all(isinstance(m, Mapping) for m in panel):
        raise ValidationFailed("a list of {sub, role}", field=f"{at}.panel")
    return case_id, Tally(votes[0], votes[1],
                          parse_level_or_none(str(level), f"{at}.recommended_level") if level else None,
                          [{"sub": str(m.get("sub", "")), "role": str(m.get("role", ""))} for m in panel])


def _row_ok(row: int, case: StudentCase) -> dict[str, Any]:
    return {"row": row, "outcome": "ok", "case_id": str(case.id), "status": case.status.value,
            "version": case.version}


def _row_refused(row: int, refused: DomainError) -> dict[str, Any]:
    item: dict[str, Any] = {"row": row, "outcome": "skipped", "code": refused.code, "detail": refused.detail}
    field = getattr(refused, "field", "")
    if field:
        item["field"] = field
    case_id = refused.context.get("case_id")
    if case_id:
        item["case_id"] = str(case_id)
    return item
