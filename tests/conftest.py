"""Fixtures: one test body runs against a SQLite file and a fresh PostgreSQL database (CI=true: never skipped)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from adapters.auth import issue_token
from adapters.settings import Settings
from api.app import build_services, create_app
from api.deps import Services

PG_HOST = os.environ.get("ZIZHU_TEST_PG_HOST", "127.0.0.1")
PG_USER = os.environ.get("ZIZHU_TEST_PG_USER", "postgres")
SECRET = "test-secret-of-at-least-thirty-two-characters"


def _pg_admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(host=PG_HOST, port=5432, user=PG_USER, dbname="postgres", autocommit=True,
                           connect_timeout=3)


def _postgres_available() -> str | None:
    try:
        with _pg_admin():
            return None
    except psycopg.Error as exc:
        return str(exc)


@pytest.fixture(scope="session")
def postgres_ready() -> None:
    problem = _postgres_available()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL must be reachable under CI: {problem}")
        pytest.skip(f"PostgreSQL not reachable here: {problem}")


@pytest.fixture
def postgres_url(postgres_ready: None) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards."""
    name = f"zizhu_test_{uuid.uuid4().hex[:16]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:5432/{name}"
    finally:
        with _pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'var' / 'zizhu.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, secret=SECRET, now="2025-09-15T09:00:00+08:00",
                    log_level="WARNING")


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = build_services(settings)
    try:
        yield built
    finally:
        built.store.close()
        built.engine.dispose()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


TokenFactory = Callable[..., dict[str, str]]


@pytest.fixture
def auth() -> TokenFactory:
    """auth(role, sub=…, school=…, class_id=…, region=…, student=…) → request headers with a bearer token."""

    def make(role: str, sub: str | None = None, **scope: str) -> dict[str, str]:
        token = issue_token(SECRET, sub=sub or f"{role}-1", role=role, **scope)
        return {"Authorization": f"Bearer {token}"}

    return make
