"""Loads and checks the policy profile files (JSON, one per region). A bad file stops start-up, naming the field.

The files are the base. Versions a bureau publishes later (new cut-offs after a model review) come from a
`PublishedVersions` source attached at start-up (adapters/model_review.py, read from the event store): the profile
in force for a region is the newest publication derived from its file's version, else the file itself. Each call
answers one immutable profile, so a command that asks once uses exactly one version throughout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from domain.policy import PolicyProfile, ProfileError, parse_profile


class ProfileFileError(RuntimeError):
    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"policy profile {path}: {message}")
        self.path = path


class UnknownProvince(LookupError):
    pass


class PublishedVersions(Protocol):
    def current(self, base: PolicyProfile) -> PolicyProfile | None:
        """The newest version published on top of this file profile, if any."""

    def version(self, base: PolicyProfile, version: str) -> PolicyProfile | None:
        """A version published on top of this file profile, by its version string."""

    def forget(self, profile_id: str) -> None:
        """Drops what is remembered of the profile's published versions (after publishing one)."""


class Profiles:
    """Every profile in force, found by the province part of a school's region code."""

    def __init__(self, profiles: list[PolicyProfile]) -> None:
        self._by_province: dict[str, PolicyProfile] = {}
        for profile in profiles:
            self._by_province[profile.province_code] = profile
        self._published: PublishedVersions | None = None

    def use_published(self, source: PublishedVersions) -> None:
        self._published = source

    def forget_published(self, profile_id: str) -> None:
        """A version was just published: the next command in this process reads the profile's line again."""
        if self._published is not None:
            self._published.forget(profile_id)

    def file_profile(self, region_code: str) -> PolicyProfile:
        """The profile file's version for a region, ignoring publications."""
        profile = self._by_province.get(region_code[:2])
        if profile is None:
            raise UnknownProvince(f"no policy profile covers region {region_code}")
        return profile

    def by_tag(self, tag: str) -> PolicyProfile | None:
        """A profile by the tag decisions record (`guangxi@2025.1-r1`): the file's or a published one."""
        profile_id, _, version = tag.partition("@")
        for base in self._by_province.values():
            if base.profile_id != profile_id:
                continue
            if base.version == version:
                return base
            return self._published.version(base, version) if self._published is not None else None
        return None

    @classmethod
    def load(cls, directory: Path) -> Profiles:
        profiles: list[PolicyProfile] = []
        files = sorted(directory.glob("*.json"))
        if not files:
            raise ProfileFileError(directory, "no profile files (*.json) found")
        seen: dict[str, Path] = {}
        for path in files:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ProfileFileError(path, f"cannot be read as JSON: {exc}") from None
            try:
                profile = parse_profile(data)
            except ProfileError as exc:
                raise ProfileFileError(path, f"field {exc.field_path}: {exc.message}") from None
            if profile.province_code in seen:
                raise ProfileFileError(path, f"field province_code: {profile.province_code} is already "
                                             f"covered by {seen[profile.province_code].name}")
            seen[profile.province_code] = path
            profiles.append(profile)
        return cls(profiles)

    def for_region(self, region_code: str) -> PolicyProfile:
        profile = self.file_profile(region_code)
        if self._published is not None:
            return self._published.current(profile) or profile
        return profile

    def all(self) -> list[PolicyProfile]:
        return list(self._by_province.values())
