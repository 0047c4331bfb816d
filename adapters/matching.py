"""Verification by data matching (身份核验: 数据比对) and outreach (资助找人), over the imported registry lists.

The rules, in one place (`match_one`): a registry entry confirms its category for a case when it is keyed by the
student's resident ID number, was in force on the application date (valid_from ≤ applied ≤ valid_to; an open end
never expires), and carries the same name (compared as keyed hashes after normalisation). An entry under another
name is not a confirmation: it becomes a note for staff. An entry out of force on that date confirms nothing and is
noted when it concerns a claimed category. A category confirmed by several registries lists every source. A
category the registries confirm but the student did not claim is confirmed too (the case records it as
`unclaimed_confirmed`); a claim nothing confirms is a discrepancy, recorded by the case, never dropped.

The matching engine works on plain tuples over an in-memory index, so a school's (or a province's) cases are
matched in one pass; `bench/matching.py` measures it against a plain hash join of the same keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any, NamedTuple
from uuid import UUID

from sqlalchemy import Table, select
from sqlalchemy.engine import Engine

from adapters.auth import Principal
from adapters.batches import VIEW_WAIT, decide_in_chunks
from adapters.cases import CaseService
from adapters.clock import Clock
from adapters.consumption import ConsumptionData, academic_year_of, year_start
from adapters.evaluation import ClassEvaluation
from adapters.policies import Profiles
from adapters.registries import EntryView, RegistryStore, SubjectKeys, require_school_scope
from adapters.schools import SchoolRegistry
from domain.case import StudentCase, local_date
from domain.errors import Conflict
from domain.values import Role, VerificationMethod, validate_academic_year
from projections.case_keys import split
from projections.runner import Projections

# source, category, valid_from (date ordinal), valid_to (date ordinal; open end = date.max), name key
Entry = tuple[str, str, int, int, str]
OPEN = date.max.toordinal()


class Match(NamedTuple):
    """What the registries say about one case (a named tuple: one is made per matched case, so it is cheap)."""

    confirmed: Mapping[str, tuple[str, ...]]  # category → the sources confirming it
    name_mismatches: tuple[tuple[str, str], ...]  # (category, source) found under another name
    not_in_force: tuple[tuple[str, str, int, int], ...]  # (category, source, from, to) out of force that day


NO_MATCH = Match({}, (), ())


# Shared answers for a case with one registry entry (never mutated by anyone: Match is read-only by contract).
@lru_cache(maxsize=1024)
def _single_confirmed(category: str, source: str) -> Match:
    return Match({category: (source,)}, (), ())


@lru_cache(maxsize=1024)
def _single_name_mismatch(category: str, source: str) -> Match:
    return Match({}, ((category, source),), ())


@lru_cache(maxsize=8192)
def _single_out_of_force(category: str, source: str, start: int, end: int) -> Match:
    return Match({}, (), ((category, source, start, end),))


def entry_tuple(entry: EntryView) -> Entry:
    end = entry.valid_to.toordinal() if entry.valid_to is not None else OPEN
    return (entry.source, entry.category, entry.valid_from.toordinal(), end, entry.name_key)


def build_index(rows: Iterable[tuple[str, Entry]]) -> dict[str, list[Entry]]:
    """Registry entries by subject key."""
    index: dict[str, list[Entry]] = {}
    for key, entry in rows:
        bucket = index.get(key)
        if bucket is None:
            index[key] = [entry]
        else:
            bucket.append(entry)
    return index


def match_one(name_key: str, applied_on: int, entries: Sequence[Entry] | None) -> Match:
    """The matching rules for one case; `applied_on` is the application date's ordinal."""
    if not entries:
        return NO_MATCH
    if len(entries) == 1:
        # Most people are in one list once: the answer depends only on the entry, so it is made once and shared.
        source, category, start, end, entry_name = entries[0]
        if applied_on < start or applied_on > end:
            return _single_out_of_force(category, source, start, end)
        if entry_name != name_key:
            return _single_name_mismatch(category, source)
        return _single_confirmed(category, source)
    confirmed: dict[str, list[str]] = {}
    mismatched: list[tuple[str, str]] = []
    stale: list[tuple[str, str, int, int]] = []
    for source, category, start, end, entry_name in entries:
        if applied_on < start or applied_on > end:
            stale.append((category, source, start, end))
        elif entry_name != name_key:
            mismatched.append((category, source))
        else:
            sources = confirmed.get(category)
            if sources is None:
                confirmed[category] = [source]
            elif source not in sources:
                sources.append(source)
    return Match({c: tuple(sorted(s)) for c, s in confirmed.items()}, tuple(mismatched), tuple(stale))


def match_many(subjects: Iterable[tuple[str, str, int]], index: Mapping[str, Sequence[Entry]]) -> Iterator[Match]:
    """Matches (id key, name key, applied ordinal) subjects against an index, in order."""
    lookup = index.get
    for id_key, name_key, applied_on in subjects:
        entries = lookup(id_key)
        if entries is None:
            yield NO_MATCH
        elif len(entries) == 1:
            # match_one's single-entry rules, inlined: this loop runs once per case of a whole province.
            source, category, start, end, entry_name = entries[0]
            if applied_on < start or applied_on > end:
                yield _single_out_of_force(category, source, start, end)
            elif entry_name != name_key:
                yield _single_name_mismatch(category, source)
            else:
                yield _single_confirmed(category, source)
        else:
            yield match_one(name_key, applied_on, entries)


def verification_of(match: Match, claimed: Sequence[str]) -> tuple[list[dict[str, str]], list[str]]:
    """The `Verified` content a match gives: confirmed categories with sources, and notes for staff on the
    claimed categories that stand unconfirmed for a reason the registries show (sorted: re-runs compare equal)."""
    confirmed = [{"category": c, "source": ",".join(match.confirmed[c])} for c in sorted(match.confirmed)]
    notes: set[str] = set()
    for category, source in match.name_mismatches:
        if category not in match.confirmed:
            notes.add(f"{category}: {source} lists this ID number under another name; not confirmed")
    for category, source, start, end in match.not_in_force:
        if category in claimed and category not in match.confirmed:
            until = "open" if end == OPEN else date.fromordinal(end).isoformat()
            notes.add(f"{category}: {source} entry not in force on the application date "
                      f"(valid {date.fromordinal(start).isoformat()} to {until})")
    return confirmed, sorted(notes)


def _flatten(confirmed: list[dict[str, str]], notes: list[str]) -> list[dict[str, str]]:
    return [*confirmed, *({"note": n} for n in notes)]


class DataMatching:
    """The use cases: verify one case or a school's pending cases by data, and list whom to reach out to."""

    def __init__(self, cases: CaseService, registries: RegistryStore, consumption: ConsumptionData,
                 projections: Projections, schools: SchoolRegistry) -> None:
        self.cases = cases
        self.registries = registries
        self.consumption = consumption
        self.projections = projections
        self.schools = schools
        self.keys = registries.keys

    # ------------------------------------------------------------------------------------------ one case

    def _match_case(self, case: StudentCase, entries: Sequence[EntryView]) -> tuple[list[dict[str, str]], list[str]]:
        match = match_one(self.keys.name_key(case.form["student"]["name"]),
                          local_date(case.created_on).toordinal(), [entry_tuple(e) for e in entries])
        return verification_of(match, case.claimed_categories)

    def matcher(self, case: StudentCase) -> list[dict[str, str]]:
        """The `Services.matcher` hook of `verify {"method": "data_match"}`: confirmed categories, then note-only
        items for what the registries show but could not confirm."""
        entries = self.registries.entries_of(self.keys.id_key(case.applicant_id_number))
        return _flatten(*self._match_case(case, entries))

    # ------------------------------------------------------------------------------------------ a school

    def _tables(self) -> tuple[Table, Table]:
        return (self.projections.active_tables("case_keys")["keys"],
                self.projections.active_tables("case_index")["cases"])

    def _current_views(self) -> None:
        head = self.projections.head()
        for view in ("case_index", "case_keys"):
            if not self.projections.wait_for(view, head, timeout=VIEW_WAIT):
                raise Conflict("the case index is still catching up with the log; try again shortly")

    def verify_school(self, principal: Principal, school_id: str, *, academic_year: str | None = None,
                      class_id: str | None = None) -> dict[str, Any]:
        """Verifies by data every case of the school (or of one class) waiting at verification, or verified
        already (a registry entry may have arrived since); a case whose result is unchanged records nothing."""
        require_school_scope(principal, school_id, self.schools, roles={Role.SCHOOL})
        if academic_year is not None:
            validate_academic_year(academic_year)
        self._current_views()
        keys, index = self._tables()
        query = (select(keys.c.case_id, keys.c.id_key).join(index, index.c.case_id == keys.c.case_id)
                 .where(keys.c.school_id == school_id, index.c.status.in_(("applied", "verified")))
                 .order_by(index.c.applied_at, keys.c.case_id))
        if academic_year is not None:
            query = query.where(keys.c.academic_year == academic_year)
        if class_id is not None:
            query = query.where(index.c.class_id == class_id)
        with self.projections.engine.connect() as conn:
            pending = conn.execute(query).all()
        entries = self.registries.entries_for([row.id_key for row in pending])
        summary: dict[str, Any] = {"school_id": school_id, "academic_year": academic_year, "class_id": class_id,
                                   "considered": len(pending), "verified": 0, "unchanged": 0, "skipped": 0,
                                   "confirmed_categories": 0, "discrepancies": 0, "notes": 0, "cases": []}
        work = []
        for row in pending:
            found = entries.get(row.id_key, [])

            def decide(case: StudentCase, now: Any, found: Sequence[EntryView] = found) -> None:
                confirmed, notes = self._match_case(case, found)
                case.verify(method=VerificationMethod.DATA_MATCH, confirmed=confirmed, notes="; ".join(notes),
                            actor=principal.actor, now=now)

            work.append((UUID(row.case_id), decide))
        # Loaded and saved a chunk at a time; a case that moved on meanwhile (or a concurrent change that won) is
        # reported skipped and the rest go on (adapters/batches.py).
        results, position = decide_in_chunks(self.cases, principal, "verify", work)
        for done in results:
            if done.error is not None or done.case is None:
                summary["skipped"] += 1
                summary["cases"].append({"case_id": str(done.case_id), "outcome": "skipped",
                                         "code": done.error.code if done.error else "not_found"})
                continue
            verification = done.case.verification or {}
            summary["verified" if done.changed else "unchanged"] += 1
            summary["confirmed_categories"] += len(verification.get("confirmed", []))
            summary["discrepancies"] += len(verification.get("discrepancies", []))
            summary["notes"] += len([n for n in (verification.get("notes") or "").split("; ") if n])
            summary["cases"].append({
                "case_id": str(done.case_id), "outcome": "verified" if done.changed else "unchanged",
                "confirmed": verification.get("confirmed", []),
                "discrepancies": verification.get("discrepancies", []),
                "unclaimed_confirmed": verification.get("unclaimed_confirmed", []),
            })
        summary["position"] = position
        return summary

    # ------------------------------------------------------------------------------------------ outreach

    def outreach(self, principal: Principal, school_id: str, *, academic_year: str | None = None) -> dict[str, Any]:
        """资助找人: registry entries in force (any day from the application, or the school year's start, until
        today) for students of the school who did not claim the category, and for students who did not apply.

        Students who did not apply are known only from the school's campus-card imports (its roster here):
        a student absent from those files cannot be found by this list."""
        school = require_school_scope(principal, school_id, self.schools,
                                      roles={Role.SCHOOL, Role.BUREAU, Role.AUDITOR})
        today = self.cases.clock.today()
        year = validate_academic_year(academic_year) if academic_year else academic_year_of(today)
        self._current_views()
        keys, index = self._tables()
        query = (select(keys, index.c.student_name, index.c.class_id, index.c.status)
                 .join(index, index.c.case_id == keys.c.case_id)
                 .where(keys.c.school_id == school_id, keys.c.academic_year == year, keys.c.withdrawn.is_(False)))
        with self.projections.engine.connect() as conn:
            cases = conn.execute(query).all()
        applied = {c.case_id for c in cases}
        roster = [s for s in self.consumption.roster(school_id, year) if s.student_key not in applied]
        entries = self.registries.entries_for([c.id_key for c in cases] + [s.id_key for s in roster])
        until = today.toordinal()
        unclaimed: list[dict[str, Any]] = []
        for case in cases:
            known = set(split(case.claimed)) | set(split(case.confirmed))
            found = self._in_force(entries.get(case.id_key, []), case.applied_on.toordinal(), until, case.name_key)
            new = {c: s for c, s in found.items() if c not in known}
            if new:
                unclaimed.append({
                    "case_id": case.case_id, "name": case.student_name, "class_id": case.class_id,
                    "status": case.status, "verified_before": case.verified_method is not None,
                    "categories": [{"category": c, "sources": sorted(s)} for c, s in sorted(new.items())]})
        not_applied: list[dict[str, Any]] = []
        start = year_start(year).toordinal()
        for student in sorted(roster, key=lambda s: s.id_masked):
            name_key = self.keys.name_key(student.name) if student.name else None
            found = self._in_force(entries.get(student.id_key, []), start, until, name_key)
            if found:
                not_applied.append({"id_masked": student.id_masked, "name": student.name,
                                    "categories": [{"category": c, "sources": sorted(s)}
                                                   for c, s in sorted(found.items())]})
        return {"school_id": school_id, "school_name": school.name, "academic_year": year, "as_of": today,
                "unclaimed_categories": unclaimed, "did_not_apply": not_applied,
                "limits": "students who did not apply are found only among those in the school's campus-card "
                          "imports; registry entries under another name than the case's (or the campus-card "
                          "file's) are not listed"}

    @staticmethod
    def _in_force(entries: Sequence[EntryView], since: int, until: int, name_key: str | None) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for e in entries:
            source, category, start, end, entry_name = entry_tuple(e)
            if start <= until and end >= since and (name_key is None or entry_name == name_key):
                found.setdefault(category, set()).add(source)
        return found


@dataclass
class IdentificationEngine:
    """Everything this module family offers the API and the CLI, built once by `build_services`."""

    keys: SubjectKeys
    registries: RegistryStore
    consumption: ConsumptionData
    matching: DataMatching
    evaluation: ClassEvaluation

    @classmethod
    def build(cls, *, secret: str, engine: Engine, cases: CaseService, projections: Projections,
              schools: SchoolRegistry, profiles: Profiles, clock: Clock) -> IdentificationEngine:
        keys = SubjectKeys(secret)
        registries = RegistryStore(engine, keys)
        consumption = ConsumptionData(engine, keys, schools, profiles, projections, clock)
        matching = DataMatching(cases, registries, consumption, projections, schools)
        return cls(keys, registries, consumption, matching, ClassEvaluation(cases, engine, keys, projections))
