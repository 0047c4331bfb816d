"""The use cases on student cases: one method per command or query, each load → check → decide → save.

This is the thin application layer over the event store. Authorisation (scope and role) is checked here on the
loaded case, so a case outside the caller's scope answers as if it did not exist.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from adapters import idempotency
from adapters.auth import Principal, require_command, require_read
from adapters.clock import Clock
from adapters.policies import Profiles
from adapters.schools import School, SchoolRegistry
from adapters.store import CaseStore
from domain.case import StudentCase
from domain.errors import CaseNotFound, Conflict, DomainError, Forbidden, ValidationFailed, VersionMismatch
from domain.form import normalise_form
from domain.policy import PolicyProfile, assess, facts_from_application
from domain.values import Category, Role, VerificationMethod, case_id_for, parse_enum, parse_level_or_none

INTERNAL_FIELDS = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic", "actor",
                             idempotency.KEY_ATTRIBUTE, idempotency.FINGERPRINT_ATTRIBUTE})


class ConcurrentChange(Conflict):
    """The event store refused the command's events: another change to the case was saved first."""


@dataclass(frozen=True)
class Outcome:
    """A command's result: the new state and the log position of its last event (for read-your-writes)."""

    case: StudentCase
    position: int | None


SECRET_FROM_APPLICANT = frozenset({"EvaluationVoteCast"})


@dataclass(frozen=True)
class EventView:
    version: int
    type: str
    occurred_at: datetime
    actor: Mapping[str, str]
    data: Mapping[str, Any]


class AdmissionCheck(Protocol):
    """A check an application must pass before it is recorded: given the normalised form, the school, its profile
    and today, it raises a DomainError to refuse. `memo`: one dict per request in which a check may keep what it
    read, under its own keys (bulk entry checks a school's forms in one request); None: nothing is kept."""

    def __call__(self, form: Mapping[str, Any], school: School, profile: PolicyProfile, today: date,
                 memo: dict[Any, Any] | None = None) -> None: ...


class VersionIndex(Protocol):
    """A (case, version, time) index (projections.case_versions.AsOfIndex). Raises LookupError when it has not
    yet seen `current_version` of the case."""

    def version_as_of(self, case_id: UUID, as_of: datetime, current_version: int) -> int | None: ...


class CaseService:
    # As-of reads use this index when it has caught up with the case; None: they replay the case's events.
    as_of_index: VersionIndex | None = None

    def __init__(self, store: CaseStore, clock: Clock, profiles: Profiles, schools: SchoolRegistry,
                 requests: idempotency.RequestLog | None = None) -> None:
        self.store = store
        self.clock = clock
        self.profiles = profiles
        self.schools = schools
        # Idempotency-Key support (adapters/idempotency.py); None: every command is executed as sent.
        self.requests = requests
        # Checks an application must pass before it is recorded (e.g. adapters/rounds.py: inside an open round).
        self.admission_checks: list[AdmissionCheck] = []

    # ------------------------------------------------------------------------------------------ plumbing

    def _load(self, case_id: UUID, version: int | None = None) -> StudentCase:
        try:
            case: object = self.store.repository.get(case_id, version=version)
        except AggregateNotFoundError:
            raise CaseNotFound("no such case") from None
        if not isinstance(case, StudentCase):
            raise CaseNotFound("no such case")
        return case

    def _save(self, case: StudentCase) -> int | None:
        try:
            recordings = self.store.save(case)
        except IntegrityError:
            raise ConcurrentChange("a concurrent change to this case won; reload it and try again") from None
        return max((r.notification.id for r in recordings), default=None)

    def profile_for(self, case: StudentCase) -> PolicyProfile:
        return self.profiles.for_region(case.school_region)

    def execute(self, principal: Principal, case_id: UUID, command: str, expected_version: int | None,
                 decide: Callable[[StudentCase, datetime], None]) -> Outcome:
        """Load → check scope, role and If-Match → decide (the domain command) → save. Every case command
        of every capability goes through here, so scope and concurrency rules hold everywhere.

        The case comes from the store's case cache when this process saved it recently (no read; the cache
        forgets cases that other processes changed, adapters/store.py CaseCache). A command that succeeds on a
        cached copy was decided on the current state, since the store accepted its next version. When the store
        refuses the write, a change saved since the copy was current won: 409, as when two commands race on a
        case read from the store. Any other refusal of a cached copy is not trusted (the copy may be a moment
        old): the command runs again on the case as stored, whose answer stands."""
        cached = self.store.case_cache.take(case_id)  # the copy is ours; the cache has it again once saved
        if cached is not None:
            try:
                return self._execute(principal, cached, command, expected_version, decide)
            except ConcurrentChange:
                raise  # the store refused the write: a change made since the copy was current won (409)
            except DomainError:
                pass  # perhaps refused for being stale: decide on the stored case
        return self._execute(principal, self._load(case_id), command, expected_version, decide)

    def _execute(self, principal: Principal, case: StudentCase, command: str, expected_version: int | None,
                 decide: Callable[[StudentCase, datetime], None]) -> Outcome:
        case_id = case.id
        require_command(principal, case, command)
        earlier = self._earlier(case_id, upto=case.version)
        if earlier is not None:
            return earlier  # a retry of a command already applied: its first result, nothing written
        if expected_version is not None and expected_version != case.version:
            raise VersionMismatch(f"the case is at version {case.version}, not {expected_version}",
                                  current_version=case.version)
        loaded = case.version
        decide(case, self.clock.now())
        return self._commit(case, loaded)

    def _earlier(self, case_id: UUID, *, after: int | None = None, upto: int | None = None) -> Outcome | None:
        request = idempotency.current()
        if request is None or self.requests is None:
            return None
        if request.new and after is None:
            return None  # the key's first claim: no request with it ran before (adapters/idempotency.py)
        earlier = self.requests.earlier(request, case_id, after=after, upto=upto)
        if earlier is None:
            return None
        return Outcome(self._load(earlier.case_id, version=earlier.version), earlier.position)

    def _commit(self, case: StudentCase, loaded_version: int) -> Outcome:
        """Saves the command's events, carrying the request's Idempotency-Key (if any) in the last one."""
        request = idempotency.current()
        if request is None or self.requests is None:
            return Outcome(case, self._save(case))
        self.requests.stamp(case, request)
        try:
            position = self._save(case)
        except Conflict:
            # A concurrent duplicate of this very request may be what won: then its result is ours.
            earlier = self._earlier(case.id, after=loaded_version)
            if earlier is None:
                raise
            return earlier
        if position is not None and not request.new:
            # Indexed only when the key may have been searched for already; a new one is found by its claim.
            self.requests.remember(request, case.id, case.version, position)
        return Outcome(case, position)

    # ------------------------------------------------------------------------------------------ queries

    def get(self, principal: Principal, case_id: UUID, *, version: int | None = None,
            as_of: datetime | None = None) -> StudentCase:
        current = self._load(case_id)
        require_read(principal, current)
        if as_of is not None:
            version = self.version_as_of(case_id, as_of, current_version=current.version)
            if version is None:
                raise CaseNotFound("the case did not exist yet at that time")
        if version is not None and version > current.version:
            # A version that never existed is not "the latest one": answering with another state would mislead.
            raise CaseNotFound(f"the case has no version {version}; its latest is {current.version}",
                               current_version=current.version)
        if version is None or version == current.version:
            return current
        if version < 1:
            raise ValidationFailed("version starts at 1", field="version")
        return self._load(case_id, version=version)

    def version_as_of(self, case_id: UUID, as_of: datetime, current_version: int | None = None) -> int | None:
        if self.as_of_index is not None and current_version is not None:
            try:
                return self.as_of_index.version_as_of(case_id, as_of, current_version)
            except LookupError:
                pass  # the index lags this case: its own events answer, correctness first
        version = None
        for domain_event in self.store.events.get(case_id):
            if domain_event.timestamp > as_of:  # type: ignore[attr-defined]
                break
            version = domain_event.originator_version
        return version

    def events(self, principal: Principal, case_id: UUID) -> list[EventView]:
        require_read(principal, self._load(case_id))
        views = []
        for domain_event in self.store.events.get(case_id):
            state = dict(vars(domain_event))
            # Class evaluation ballots are secret from the family (民主评议): the applicant sees that a ballot was
            # cast, not by whom nor how (the case state never shows ballots to anyone).
            secret = principal.role is Role.APPLICANT and type(domain_event).__name__ in SECRET_FROM_APPLICANT
            views.append(EventView(
                version=state["originator_version"],
                type=type(domain_event).__name__,
                occurred_at=state["timestamp"],
                actor={} if secret else state.get("actor", {}),
                data={} if secret else {k: v for k, v in state.items() if k not in INTERNAL_FIELDS},
            ))
        return views

    # ------------------------------------------------------------------------------------------ commands

    def apply(self, principal: Principal, form: Mapping[str, Any]) -> Outcome:
        if principal.role not in {Role.APPLICANT, Role.SCHOOL}:
            raise Forbidden(f"the {principal.role.value} role cannot apply")
        normalised = normalise_form(form, today=self.clock.today())
        student = normalised["student"]
        if principal.role is Role.APPLICANT and principal.student != student["id_number"]:
            raise Forbidden("an applicant applies only for the student named in their token")
        if principal.role is Role.SCHOOL and principal.school != student["school_id"]:
            raise Forbidden("a school enters applications only for its own students")
        school = self.schools.get(student["school_id"])
        if school is None:
            raise ValidationFailed(f"unknown school {student['school_id']}", field="student.school_id")
        profile = self.profiles.for_region(school.region_code)
        case_id = case_id_for(student["id_number"], normalised["academic_year"])
        earlier = self._earlier(case_id)
        if earlier is not None:
            return earlier
        duplicate = Conflict("this student has already applied for this academic year", case_id=str(case_id))
        try:
            for check in self.admission_checks:
                check(normalised, school, profile, self.clock.today())
            case = StudentCase.apply(form=normalised, school_region=school.region_code,
                                     profile_version=profile.tag, actor=principal.actor, now=self.clock.now())
            # No read first to see whether the student applied already: the case ID is derived from the student
            # and the year, so the store refuses a second first event, and that refusal is the answer.
            return self._commit(case, 0)
        except DomainError as refused:
            # A second application is told so before any other refusal (rounds, a racing duplicate).
            if isinstance(refused, Conflict) or self.store.repository.__contains__(case_id):
                raise duplicate from None
            raise

    def amend(self, principal: Principal, case_id: UUID, form: Mapping[str, Any],
              expected_version: int | None = None) -> Outcome:
        normalised = normalise_form(form, today=self.clock.today())
        return self.execute(principal, case_id, "amend", expected_version,
                             lambda case, now: case.amend(form=normalised, actor=principal.actor, now=now))

    def withdraw(self, principal: Principal, case_id: UUID, reason: str,
                 expected_version: int | None = None) -> Outcome:
        return self.execute(principal, case_id, "withdraw", expected_version,
                             lambda case, now: case.withdraw(reason=reason, actor=principal.actor, now=now))

    def verify(self, principal: Principal, case_id: UUID, *, method: str,
               confirmed_categories: Sequence[Any] | None, notes: str,
               expected_version: int | None = None,
               matcher: Callable[[StudentCase], list[dict[str, str]]] | None = None) -> Outcome:
        verification_method = parse_enum(VerificationMethod, method, "method")

        def decide(case: StudentCase, now: datetime) -> None:
            if confirmed_categories is None:
                if verification_method is not VerificationMethod.DATA_MATCH or matcher is None:
                    raise ValidationFailed("confirmed_categories is required unless matching against registries",
                                           field="confirmed_categories")
                matched = matcher(case)
                # The matcher also reports what the registries show but could not confirm (a name mismatch, an
                # entry out of force) as note-only items: they join the notes so staff see why a claim stands.
                confirmed = [m for m in matched if m.get("category")]
                found = [m["note"] for m in matched if not m.get("category") and m.get("note")]
            else:
                confirmed = [_confirmed_item(item, i, verification_method.value)
                             for i, item in enumerate(confirmed_categories)]
                found = []
            text = "; ".join(n for n in [(notes or "").strip(), *found] if n)
            case.verify(method=verification_method, confirmed=confirmed, notes=text, actor=principal.actor,
                        now=now)

        return self.execute(principal, case_id, "verify", expected_version, decide)

    def assess(self, principal: Principal, case_id: UUID, expected_version: int | None = None) -> Outcome:
        def decide(case: StudentCase, now: datetime) -> None:
            profile = self.profile_for(case)
            result = assess(facts_from_application(case.form, case.confirmed_categories), profile)
            case.assess(assessment=result, actor=principal.actor, now=now)

        return self.execute(principal, case_id, "assess", expected_version, decide)

    def evaluate(self, principal: Principal, case_id: UUID, *, votes_for: int, votes_against: int,
                 recommended_level: str | None, panel: Sequence[Mapping[str, str]],
                 expected_version: int | None = None) -> Outcome:
        level = parse_level_or_none(recommended_level, "recommended_level") if recommended_level else None

        def decide(case: StudentCase, now: datetime) -> None:
            case.evaluate(votes_for=votes_for, votes_against=votes_against, recommended_level=level,
                          panel=panel, levels=self.profile_for(case).levels, actor=principal.actor, now=now)

        return self.execute(principal, case_id, "evaluate", expected_version, decide)

    def rate(self, principal: Principal, case_id: UUID, *, level: str, reason: str | None,
             expected_version: int | None = None) -> Outcome:
        parsed = parse_level_or_none(level, "level")

        def decide(case: StudentCase, now: datetime) -> None:
            profile = self.profile_for(case)
            case.rate(level=parsed, reason=reason, levels=profile.levels,
                      skip_class_evaluation_for_data_matched=profile.skip_class_evaluation_for_data_matched,
                      profile_version=profile.tag, actor=principal.actor, now=now)

        return self.execute(principal, case_id, "rate", expected_version, decide)


def _confirmed_item(item: Any, index: int, default_source: str) -> dict[str, str]:
    if isinstance(item, str):
        category, source = item, default_source
    elif isinstance(item, Mapping):
        category, source = item.get("category", ""), str(item.get("source") or default_source)
    else:
        raise ValidationFailed("a category name or {category, source}", field=f"confirmed_categories[{index}]")
    return {"category": parse_enum(Category, category, f"confirmed_categories[{index}]").value, "source": source}
