"""Loads and checks the policy profile files (JSON, one per region). A bad file stops start-up, naming the field."""

from __future__ import annotations

import json
from pathlib import Path

from domain.policy import PolicyProfile, ProfileError, parse_profile


class ProfileFileError(RuntimeError):
    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"policy profile {path}: {message}")
        self.path = path


class UnknownProvince(LookupError):
    pass


class Profiles:
    """Every profile in force, found by the province part of a school's region code."""

    def __init__(self, profiles: list[PolicyProfile]) -> None:
        self._by_province: dict[str, PolicyProfile] = {}
        for profile in profiles:
            self._by_province[profile.province_code] = profile

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
        profile = self._by_province.get(region_code[:2])
        if profile is None:
            raise UnknownProvince(f"no policy profile covers region {region_code}")
        return profile

    def all(self) -> list[PolicyProfile]:
        return list(self._by_province.values())
