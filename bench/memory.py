"""Scenario: memory. Peak RSS of `zizhu serve` under the HTTP load, and of `zizhu rebuild` (every view) over a log
of synthetic case histories, both on PostgreSQL, each as a child process whose peak the kernel reports (wait4).

Baselines from the same run: the same server idle right after start-up (its fixed cost: interpreter, imports,
pools), and `zizhu rebuild` over an empty log. A ratio near 1 means memory does not grow with traffic or with the
log's length (views are rebuilt batch by batch, never from the whole log in memory).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from adapters.settings import Settings
from api.app import build_services
from bench import data
from bench.harness import ratio, say
from bench.http_load import (
    MEASURED_RSS,
    PORT,
    SECRET,
    Serve,
    database,
    idle_rss_mib,
    in_parallel,
    peak_rss_mib,
    queries,
    student_commands,
)

MEMORY_PORT = PORT + 1


def serve_under_load(clients: int, students_per_client: int, reads_per_client: int) -> tuple[float, float, int]:
    """(idle RSS MiB after start-up, peak RSS MiB over the load, requests served)."""
    with database("postgres") as url:
        server = Serve(url, port=MEMORY_PORT)
        try:
            idle = idle_rss_mib(server.pid)
            case_ids: list[list[str]] = [[] for _ in range(clients)]

            def commands(c: int, client: httpx.Client, timings: list[float]) -> None:
                for k in range(students_per_client):
                    case_ids[c].append(student_commands(client, 2_000_000 + c * students_per_client + k, timings))

            _seconds, command_latency = in_parallel(clients, commands, server.base)
            every = [c for per in case_ids for c in per]

            def reads(c: int, client: httpx.Client, timings: list[float]) -> None:
                queries(client, every, reads_per_client, c, timings)

            _seconds, query_latency = in_parallel(clients, reads, server.base)
            peak = peak_rss_mib(server.pid)
        finally:
            server.stop()
    return idle, peak, len(command_latency.samples) + len(query_latency.samples)


def rebuild_peak(url: str) -> tuple[float, float]:
    """(peak RSS MiB, seconds) of `zizhu rebuild` of every view, as a child process."""
    env = {**os.environ, "ZIZHU_DATABASE_URL": url, "ZIZHU_SECRET": SECRET, "ZIZHU_LOG_LEVEL": "WARNING"}
    started = time.perf_counter()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("zizhu")), "rebuild"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"zizhu rebuild exited with {proc.returncode}")
    return usage.ru_maxrss / 1024, time.perf_counter() - started


def rebuild_over(cases: int) -> tuple[float, float, int]:
    """(peak RSS MiB, seconds, events) of a full rebuild over `cases` synthetic histories."""
    with database("postgres") as url:
        services = build_services(Settings(database_url=url, secret=SECRET, log_level="WARNING", demo_schools=None))
        try:
            if cases:
                data.load(services.store, services.schools, cases)
            events = services.projections.head()
        finally:
            services.store.close()
            services.engine.dispose()
        peak, seconds = rebuild_peak(url)
    return peak, seconds, events


def run(quick: bool, clients: int = 8) -> None:
    per_client, reads = (3, 15) if quick else (60, 400)
    cases = 300 if quick else 20_000
    say(f"\n(g) memory on PostgreSQL: zizhu serve under {clients} clients × ({per_client} students, {reads} queries); "
        f"zizhu rebuild of every view over {cases:,} case histories")
    # Measured already when the HTTP scenario ran in this invocation (same server, same load).
    idle, peak, served = MEASURED_RSS.get("postgres") or serve_under_load(clients, per_client, reads)
    say(f"    zizhu serve   peak {peak:7,.0f} MiB over {served:,} requests; idle after start-up {idle:,.0f} MiB; "
        f"peak/idle {ratio(peak, idle)}")
    empty_peak, _s, _e = rebuild_over(0)
    full_peak, seconds, events = rebuild_over(cases)
    say(f"    zizhu rebuild peak {full_peak:7,.0f} MiB over {events:,} events ({seconds:,.0f} s); over an empty log "
        f"{empty_peak:,.0f} MiB; full/empty {ratio(full_peak, empty_peak)}")
