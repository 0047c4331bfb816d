"""What every benchmark scenario needs: a fresh store on SQLite or PostgreSQL, timers, percentiles, and output."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from sqlalchemy.engine import make_url

from adapters.settings import Settings
from api.app import build_services
from api.deps import Services

PG_ADMIN_URL = os.environ.get("ZIZHU_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def say(text: str = "") -> None:
    print(text, flush=True)


@contextmanager
def fresh_services(backend: str, keep: bool = False) -> Iterator[Services]:
    """Services over a new, empty store: a SQLite file in a temporary directory, or a new PostgreSQL database."""
    if backend == "sqlite":
        directory = tempfile.mkdtemp(prefix="zizhu-bench-")
        try:
            with _opened(f"sqlite:///{directory}/bench.db") as services:
                yield services
        finally:
            if not keep:
                shutil.rmtree(directory, ignore_errors=True)
        return
    admin = make_url(PG_ADMIN_URL)
    name = f"zizhu_bench_{uuid.uuid4().hex[:10]}"
    connect = {"host": admin.host or "127.0.0.1", "port": admin.port or 5432, "user": admin.username or "postgres",
               "password": admin.password or None, "dbname": admin.database or "postgres", "autocommit": True}
    with psycopg.connect(**connect) as conn:  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        with _opened(admin.set(database=name).render_as_string(hide_password=False)) as services:
            yield services
    finally:
        if keep:
            say(f"kept database {name}")
        else:
            with psycopg.connect(**connect) as conn:  # type: ignore[arg-type]
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _opened(url: str) -> Iterator[Services]:
    services = build_services(Settings(database_url=url, log_level="WARNING", demo_schools=None))
    try:
        yield services
    finally:
        services.store.close()
        services.engine.dispose()


@dataclass(frozen=True)
class Latency:
    """Milliseconds per call over a sample."""

    samples: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    def line(self) -> str:
        return f"p50 {self.p50:7.3f} ms   p99 {self.p99:7.3f} ms   (n={len(self.samples)})"


def measure(calls: list[Callable[[], object]], warmup: int = 20) -> Latency:
    for call in calls[:warmup]:
        call()
    samples = []
    for call in calls:
        started = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return Latency(samples)


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:6.2f}×" if baseline > 0 else "   n/a"
