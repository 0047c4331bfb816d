"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from adapters.settings import Settings
from api.app import build_services
from api.deps import Services
from tests.conftest import SECRET


def with_now(settings: Settings, now: str | None) -> Settings:
    return Settings(database_url=settings.database_url, secret=SECRET, now=now, log_level="WARNING")


@pytest.fixture
def reopen(settings: Settings) -> Iterator[Callable[..., Services]]:
    """Builds further services on the same database (a restart, or a second process); closes them all after."""
    opened: list[Services] = []

    def build(now: str | None = "2025-09-15T09:00:00+08:00") -> Services:
        built = build_services(with_now(settings, now))
        opened.append(built)
        return built

    yield build
    for built in opened:
        built.store.close()
        built.engine.dispose()
