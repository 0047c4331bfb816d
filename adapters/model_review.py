"""Model review for a region and year, and publishing new cut-offs as a new profile version.

- `PublishedProfiles` serves the versions bureaus published (domain/profile_versions.py) to `Profiles`: it reads
  the newest version number of the profile's line (one indexed query) at most once per `RECHECK_SECONDS` and reuses
  the parsed profile while that number has not moved, so a publication takes effect for the very next command in
  the process that published it and within two seconds in every other process (commands record the profile
  version they used, so which cut-offs decided a case is never in doubt).
- `ModelReviewService.report` reads the assessment outcomes view (no personal data) and computes the review with
  domain/model_review.py against the cut-offs in force.
- `ModelReviewService.publish` records new cut-offs for a province's profile (province-level bureaus only).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from eventsourcing.persistence import IntegrityError
from sqlalchemy import and_, select

from adapters.auth import Principal
from adapters.clock import Clock
from adapters.policies import Profiles
from adapters.rounds import region_in_scope
from adapters.store import CaseStore
from domain.errors import Forbidden, ValidationFailed
from domain.model_review import Observation, agreement, review
from domain.policy import PolicyProfile, ProfileError, parse_cutoffs, with_cutoffs
from domain.profile_versions import ProfileLine, StaleProfileVersion, profile_line_id
from domain.values import Role, validate_academic_year
from projections.queries import region_range
from projections.runner import Projections

RECHECK_SECONDS = 2.0


class PublishedProfiles:
    """The `PublishedVersions` source of adapters/policies.py, read from the event store."""

    def __init__(self, store: CaseStore) -> None:
        self.store = store
        # profile_id → (newest version seen, the line at it or None, monotonic time it was checked)
        self._lines: dict[str, tuple[int, ProfileLine | None, float]] = {}
        self._built: dict[tuple[str, str], PolicyProfile] = {}
        self._lock = threading.Lock()

    def line(self, profile_id: str, *, fresh: bool = False) -> ProfileLine | None:
        """The profile's line of published versions (None: nothing published). Shared and read-only unless
        `fresh`: a fresh line is read from the store and is the caller's own to change."""
        now = time.monotonic()
        cached = self._lines.get(profile_id)
        if not fresh and cached is not None and now - cached[2] < RECHECK_SECONDS:
            return cached[1]
        line_id = profile_line_id(profile_id)
        newest = self.store.recorder.select_events(line_id, desc=True, limit=1)
        version = newest[0].originator_version if newest else 0
        if not fresh and cached is not None and cached[0] == version:
            with self._lock:
                self._lines[profile_id] = (version, cached[1], now)
            return cached[1]
        loaded: object = self.store.repository.get(line_id, version=version) if version else None
        assert loaded is None or isinstance(loaded, ProfileLine)
        if not fresh:
            with self._lock:
                self._lines[profile_id] = (version, loaded, now)
        return loaded

    def forget(self, profile_id: str) -> None:
        """Drops what is known of the line, so the next command reads it (after a publication here)."""
        with self._lock:
            self._lines.pop(profile_id, None)

    def _build(self, base: PolicyProfile, publication: Mapping[str, Any]) -> PolicyProfile:
        key = (base.profile_id, str(publication["version"]))
        built = self._built.get(key)
        if built is None:
            built = with_cutoffs(base, publication["cutoffs"], str(publication["version"]))
            with self._lock:
                self._built[key] = built
        return built

    def current(self, base: PolicyProfile) -> PolicyProfile | None:
        line = self.line(base.profile_id)
        publication = line.current_for(base.version) if line is not None else None
        return self._build(base, publication) if publication is not None else None

    def version(self, base: PolicyProfile, version: str) -> PolicyProfile | None:
        line = self.line(base.profile_id)
        for publication in line.publications if line is not None else []:
            if publication["version"] == version and publication["base_version"] == base.version:
                return self._build(base, publication)
        return None


class ModelReviewService:
    def __init__(self, store: CaseStore, clock: Clock, profiles: Profiles, projections: Projections,
                 published: PublishedProfiles) -> None:
        self.store = store
        self.clock = clock
        self.profiles = profiles
        self.projections = projections
        self.published = published

    def observations(self, prefix: str, academic_year: str) -> list[Observation]:
        """Every rated, assessed, not withdrawn case of the region and year."""
        table = self.projections.active_tables("assessment_outcomes")["outcomes"]
        low, high = region_range(prefix)
        query = select(table).where(and_(
            table.c.academic_year == academic_year, table.c.school_region.between(low, high),
            table.c.withdrawn.is_(False), table.c.final_level.is_not(None), table.c.score.is_not(None),
        )).order_by(table.c.case_id)
        with self.projections.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [Observation(case_id=r.case_id, school_id=r.school_id, score=Decimal(r.score),
                            breakdown=tuple(r.breakdown or ()), suggested=r.suggested_level, final=r.final_level,
                            reason=r.reason, profile_version=r.assessed_profile or "", follow_up=r.follow_up,
                            revoked=bool(r.revoked), dishonest=bool(r.dishonest)) for r in rows]

    def _province_profile(self, prefix: str, region_code: str) -> PolicyProfile:
        if len(prefix) < 2:
            raise ValidationFailed("a model review covers one province or part of one", field="region_code")
        return self.profiles.for_region(region_code)

    def report(self, principal: Principal, region_code: str, academic_year: str) -> dict[str, Any]:
        prefix = region_in_scope(principal, region_code)
        validate_academic_year(academic_year)
        profile = self._province_profile(prefix, region_code)
        result = review(self.observations(prefix, academic_year), profile.scoring.cutoffs)
        return {"region_code": region_code, "academic_year": academic_year, "profile_version": profile.tag,
                "model_version": profile.scoring.model_version, **result}

    def versions(self, principal: Principal, region_code: str) -> dict[str, Any]:
        prefix = region_in_scope(principal, region_code)
        self._province_profile(prefix, region_code)
        base = self.profiles.file_profile(region_code)
        line = self.published.line(base.profile_id)
        return {"profile_id": base.profile_id, "file_version": base.tag,
                "in_force": self.profiles.for_region(region_code).tag,
                "file_cutoffs": {lv.value: str(v) for lv, v in base.scoring.cutoffs.items()},
                "published": [{**p, "tag": f"{base.profile_id}@{p['version']}"}
                              for p in (line.publications if line is not None else [])]}

    def publish(self, principal: Principal, region_code: str, *, cutoffs: Mapping[str, Any], based_on: str | None,
                note: str, academic_year: str | None) -> tuple[PolicyProfile, int | None]:
        """A new profile version with these cut-offs, in force for every later assessment in the province."""
        if principal.role is not Role.BUREAU:
            raise Forbidden("only an education bureau publishes profile versions")
        prefix = region_in_scope(principal, region_code)
        if len(prefix) != 2 or len(principal.region_prefix) != 2:
            raise Forbidden("a province's profile is published by its provincial bureau (region xx0000)")
        in_force = self.profiles.for_region(region_code)
        base = self.profiles.file_profile(region_code)
        try:
            parsed = parse_cutoffs(cutoffs, base.levels, "cutoffs")
            with_cutoffs(base, cutoffs, "check")  # every scored level present, in order
        except ProfileError as exc:
            raise ValidationFailed(exc.message, field=exc.field_path) from None
        evidence: dict[str, Any] = {}
        if academic_year is not None:
            cohort = self.observations(prefix, validate_academic_year(academic_year))
            evidence = {"academic_year": academic_year, "cases": len(cohort),
                        "agreement_before": agreement(in_force.scoring.cutoffs, cohort),
                        "agreement_after": agreement(parsed, cohort)}
        line = self.published.line(base.profile_id, fresh=True)
        now = self.clock.now()
        pending = [line] if line is not None else [ProfileLine.start(profile_id=base.profile_id, now=now)]
        version = pending[0].publish(base_version=base.version, in_force=in_force.tag, expected=based_on,
                                     cutoffs={lv.value: v for lv, v in parsed.items()}, note=note,
                                     review=evidence, actor=principal.actor, now=now)
        try:
            recordings = self.store.save(*pending)
        except IntegrityError:
            raise StaleProfileVersion("another version was published at the same moment; review again",
                                      in_force=in_force.tag) from None
        self.published.forget(base.profile_id)
        self.profiles.forget_published(base.profile_id)
        position = max((r.notification.id for r in recordings), default=None)
        published = self.profiles.by_tag(f"{base.profile_id}@{version}")
        assert published is not None
        return published, position


def cutoffs_of(profile: PolicyProfile) -> dict[str, str]:
    return {lv.value: str(v) for lv, v in sorted(profile.scoring.cutoffs.items(), key=lambda kv: kv[0].rank)}
