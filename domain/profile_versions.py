"""Profile versions a bureau publishes after a model review (Jiangsu pilot 二(一)1: a more scientific model).

The profile files are the base; a province-level bureau may publish new cut-offs for its province's profile. Each
publication is an event on one aggregate per profile (ID derived from the profile ID), so publications are in the
tamper-evident log, strictly ordered, and two bureaus publishing at once cannot both win: the second is refused as
a concurrent change. A published version is named after the file version it was derived from (`2025.1-r1`, `-r2`
…) and is in force while that file version is; when an administrator ships a new file version, the file wins,
because the publication was a change to the older base.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from eventsourcing.domain import Aggregate, event

from domain.errors import Conflict, ValidationFailed
from domain.values import Actor

PROFILE_LINE_NAMESPACE = uuid.UUID("2b8e6d4f-7a1c-5e93-9f20-c4d1a6b8e357")


class StaleProfileVersion(Conflict):
    """The bureau reviewed a version that is no longer the one in force."""

    code = "stale_profile_version"


def profile_line_id(profile_id: str) -> uuid.UUID:
    return uuid.uuid5(PROFILE_LINE_NAMESPACE, f"profile|{profile_id}")


class ProfileLine(Aggregate):
    TOPIC = "zizhu.profile_line"

    class Created(Aggregate.Created):
        TOPIC = "profile_line.created"  # never triggered: a line is created by ProfileLineStarted

    @classmethod
    def start(cls, *, profile_id: str, now: datetime) -> ProfileLine:
        started = cls.ProfileLineStarted  # type: ignore[attr-defined]  # defined by the @event decorator
        return cls._create(started, id=profile_line_id(profile_id), timestamp=now, profile_id=profile_id)

    @event("ProfileLineStarted", topic="profile_line.started")
    def __init__(self, profile_id: str) -> None:
        self.profile_id = profile_id
        self.publications: list[dict[str, Any]] = []

    def current_for(self, base_version: str) -> dict[str, Any] | None:
        """The newest publication derived from this file version (None: the file itself is in force)."""
        mine = [p for p in self.publications if p["base_version"] == base_version]
        return mine[-1] if mine else None

    def next_version(self, base_version: str) -> str:
        return f"{base_version}-r{len(self.publications) + 1}"

    def publish(self, *, base_version: str, in_force: str, expected: str | None, cutoffs: Mapping[str, Decimal],
                note: str, review: Mapping[str, Any], actor: Actor, now: datetime) -> str:
        """Records new cut-offs; `expected` (the version the bureau reviewed) must still be the one in force."""
        if expected is not None and expected != in_force:
            raise StaleProfileVersion(f"the profile in force is {in_force}, not {expected}; review again",
                                      in_force=in_force)
        text = (note or "").strip()
        if not text:
            raise ValidationFailed("say why the cut-offs change (the model review's finding)", field="note")
        version = self.next_version(base_version)
        self._published(version=version, base_version=base_version, replaces=in_force,
                        cutoffs={k: str(v) for k, v in cutoffs.items()}, note=text, review=dict(review),
                        actor=actor.as_dict(), timestamp=now)
        return version

    @event("ProfileVersionPublished", topic="profile_line.version_published")
    def _published(self, version: str, base_version: str, replaces: str, cutoffs: dict[str, str], note: str,
                   review: dict[str, Any], actor: dict[str, str], timestamp: datetime) -> None:
        self.publications.append({"version": version, "base_version": base_version, "replaces": replaces,
                                  "cutoffs": cutoffs, "note": note, "review": review,
                                  "published_at": timestamp.isoformat(), "published_by": actor})
