"""Scenario: HTTP load. Commands and queries per second through `zizhu serve` (uvicorn, one process) on loopback
with several concurrent clients, p50/p99 latency, against the in-process rate of the same operations (CaseService
called directly, one thread, on a fresh store of the same kind) measured in the same run.

Commands: each client takes its own students through apply → verify → assess → evaluate → rate. Queries: a case
read (`GET /v1/cases/{id}`) and a review-queue page (`GET /v1/schools/{id}/queue`), alternately. While it runs, the
CPU time of the server process, of the PostgreSQL server processes and of the whole machine is sampled from /proc,
so the output says which resource saturated; the server's peak RSS is read from /proc as well.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

from adapters.auth import Principal, issue_token
from bench import command_path
from bench.harness import PG_ADMIN_URL, Latency, fresh_services, ratio, say
from domain.values import Role
from projections.queries import ReadModels

PORT = 8765
SECRET = "bench-secret-of-at-least-thirty-two-characters"
SCHOOL = command_path.SCHOOL
CLASS = command_path.CLASS
TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def postgres_cpu(database: str | None) -> dict[int, float]:
    """CPU seconds per PostgreSQL backend serving `database` (their process titles name it; a read-only look at
    /proc), or of every PostgreSQL process when no database is given."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() not in {"postgres", "postmaster"}:
                continue
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
        except OSError:
            continue
        if database is None or database in title:
            found[int(entry.name)] = cpu_seconds(int(entry.name))
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def idle_rss_mib(pid: int) -> float:
    """Resident memory right after start-up, once the projection runner's first pass and the pools settled."""
    time.sleep(1.0)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Usage:
    """Where the CPU went during one phase, as a share of one core."""

    server: float
    postgres: float
    machine: float  # busy share of all cores

    def line(self) -> str:
        return (f"CPU: server process {self.server:4.0%} of a core, PostgreSQL backends {self.postgres:4.0%} of a "
                f"core, machine {self.machine:4.0%} busy ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")


@contextmanager
def sampled(pid: int, database: str | None) -> Iterator[list[Usage]]:
    result: list[Usage] = []
    wall, server, pg, (busy, total) = time.perf_counter(), cpu_seconds(pid), postgres_cpu(database), machine_busy()
    yield result
    elapsed = time.perf_counter() - wall
    busy2, total2 = machine_busy()
    # Backends that ended during the phase are missed: the PostgreSQL share is a lower bound.
    pg_spent = sum(seconds - pg.get(p, 0.0) for p, seconds in postgres_cpu(database).items())
    result.append(Usage(server=(cpu_seconds(pid) - server) / elapsed, postgres=pg_spent / elapsed,
                        machine=(busy2 - busy) / max(total2 - total, 1)))


@contextmanager
def database(backend: str) -> Iterator[str]:
    """A URL naming a new empty database (a SQLite file in a temporary directory, or a new PostgreSQL database)."""
    if backend == "sqlite":
        directory = tempfile.mkdtemp(prefix="zizhu-bench-http-")
        try:
            yield f"sqlite:///{directory}/bench.db"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    admin = make_url(PG_ADMIN_URL)
    name = f"zizhu_bench_{uuid.uuid4().hex[:10]}"
    connect = {"host": admin.host or "127.0.0.1", "port": admin.port or 5432, "user": admin.username or "postgres",
               "password": admin.password or None, "dbname": admin.database or "postgres", "autocommit": True}
    with psycopg.connect(**connect) as conn:  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(**connect) as conn:  # type: ignore[arg-type]
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Serve:
    """`zizhu serve` as a child process of the benchmark (only this process is ever signalled, by its pid)."""

    def __init__(self, url: str, port: int = PORT, log: Path | None = None) -> None:
        self.url = url
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log = log or Path(tempfile.gettempdir()) / f"zizhu-bench-serve-{port}.log"
        env = {**os.environ, "ZIZHU_DATABASE_URL": url, "ZIZHU_SECRET": SECRET, "ZIZHU_LOG_LEVEL": "WARNING"}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([str(Path(sys.executable).with_name("zizhu")), "serve", "--port", str(port)],
                                         env=env, stdout=out, stderr=subprocess.STDOUT)
        for _ in range(1200):
            if self.proc.poll() is not None:
                raise RuntimeError(f"zizhu serve exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"zizhu serve did not answer; see {self.log}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> int:
        """SIGTERM, wait, and return the process's peak RSS in KiB as the kernel accounted it (wait4)."""
        if self.proc.poll() is not None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            _pid, _status, usage = os.wait4(self.proc.pid, 0)
        except ChildProcessError:
            return 0
        self.proc.returncode = 0
        return int(usage.ru_maxrss)


# ---------------------------------------------------------------------------------------------- load


def headers(principal: Principal) -> dict[str, str]:
    token = issue_token(SECRET, sub=principal.sub, role=principal.role.value, school=principal.school,
                        class_id=principal.class_id, student=principal.student)
    return {"Authorization": f"Bearer {token}"}


# Several staff members and evaluation groups, as in a school: writes are rate-limited per token (api/hardening.py),
# and one token for the whole load would measure that limit instead of the service.
TOKENS = 16
STAFF = [headers(Principal(sub=f"bench-staff-{n}", role=Role.SCHOOL, school=SCHOOL)) for n in range(TOKENS)]
PANEL = [headers(Principal(sub=f"bench-teacher-{n}", role=Role.EVALUATOR, school=SCHOOL, class_id=CLASS))
         for n in range(TOKENS)]
READER = headers(Principal(sub="bench-reader", role=Role.SCHOOL, school=SCHOOL))


def student_commands(client: httpx.Client, i: int, timings: list[float], keyed: bool = False) -> str:
    """Student `i` through the five commands over HTTP; returns the case id. `keyed`: each command is sent with an
    `Idempotency-Key`, as a client that retries would send it."""
    applicant = headers(Principal(sub=f"bench-guardian-{i}", role=Role.APPLICANT,
                                  student=command_path.id_number(i)))

    def post(path: str, body: dict[str, Any], auth: dict[str, str]) -> httpx.Response:
        if keyed:
            auth = {**auth, "Idempotency-Key": f"bench-{i}-{path.rsplit('/', 1)[-1]}"}
        started = time.perf_counter()
        response = client.post(path, json=body, headers=auth)
        timings.append((time.perf_counter() - started) * 1000)
        if not response.is_success:
            raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
        return response

    staff, panel = STAFF[i % TOKENS], PANEL[i % TOKENS]
    case_id: str = post("/v1/cases", command_path.application(i), applicant).json()["id"]
    post(f"/v1/cases/{case_id}/verify", {"method": "document", "confirmed_categories": ["minimum_living_allowance"]},
         staff)
    post(f"/v1/cases/{case_id}/assess", {}, staff)
    post(f"/v1/cases/{case_id}/evaluate", {"votes_for": 5, "votes_against": 1,
                                           "recommended_level": "especially_difficult"}, panel)
    post(f"/v1/cases/{case_id}/rate", {"level": "especially_difficult", "reason": "school decision"}, staff)
    return case_id


def queries(client: httpx.Client, case_ids: list[str], count: int, seed: int, timings: list[float]) -> None:
    rng = random.Random(seed)
    for n in range(count):
        started = time.perf_counter()
        if n % 2:
            response = client.get(f"/v1/cases/{rng.choice(case_ids)}", headers=READER)
        else:
            response = client.get(f"/v1/schools/{SCHOOL}/queue", params={"stage": "rated"}, headers=READER)
        timings.append((time.perf_counter() - started) * 1000)
        if not response.is_success:
            raise RuntimeError(f"query: {response.status_code} {response.text[:300]}")


def in_parallel(clients: int, work: Callable[[int, httpx.Client, list[float]], None], base: str) -> tuple[float,
                                                                                                          Latency]:
    timings: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []

    def runner(c: int) -> None:
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                work(c, client, timings[c])
        except BaseException as exc:  # reported below, after every client has finished
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed, Latency([t for per in timings for t in per])


def in_process(backend: str, students: int, reads: int) -> tuple[float, float]:
    """(commands/s, queries/s) of the same operations called in-process, one thread, on a fresh store."""
    with fresh_services(backend) as services:
        command_path.import_demo_schools(services)
        command_path.through_service(services, 5, offset=1_500_000)
        run = command_path.through_service(services, students)
        services.projections.catch_up()
        reader = Principal(sub="bench-reader", role=Role.SCHOOL, school=SCHOOL)
        case_ids = [c for c, _v, _l in run.saved[::5]]
        rng = random.Random(1)
        views = ReadModels(services.projections, services.schools, services.clock)  # what the queue route uses
        started = time.perf_counter()
        for n in range(reads):
            if n % 2:
                services.cases.get(reader, rng.choice(case_ids))
            else:
                views.queue(reader, SCHOOL, stage="rated")
        return run.rate, reads / (time.perf_counter() - started)


def run_backend(backend: str, clients: int, students_per_client: int, queries_per_client: int) -> dict[str, Any]:
    students = clients * students_per_client
    commands_local, queries_local = in_process(backend, students, clients * queries_per_client)
    with database(backend) as url:
        server = Serve(url)
        idle = idle_rss_mib(server.pid)
        dbname = None if backend == "sqlite" else make_url(url).database
        try:
            with httpx.Client(base_url=server.base) as warm:
                student_commands(warm, 1_500_000, [])
            case_ids: list[list[str]] = [[] for _ in range(clients)]

            def commands(c: int, client: httpx.Client, timings: list[float]) -> None:
                for k in range(students_per_client):
                    case_ids[c].append(student_commands(client, c * students_per_client + k, timings))

            with sampled(server.pid, dbname) as command_usage:
                command_seconds, command_latency = in_parallel(clients, commands, server.base)
            every = [c for per in case_ids for c in per]

            def reads(c: int, client: httpx.Client, timings: list[float]) -> None:
                queries(client, every, queries_per_client, c, timings)

            with sampled(server.pid, dbname) as query_usage:
                query_seconds, query_latency = in_parallel(clients, reads, server.base)

            def keyed_commands(c: int, client: httpx.Client, timings: list[float]) -> None:
                for k in range(students_per_client):
                    student_commands(client, 2_000_000 + c * students_per_client + k, timings, keyed=True)

            keyed_seconds, keyed_latency = in_parallel(clients, keyed_commands, server.base)
            rss = peak_rss_mib(server.pid)
        finally:
            server.stop()
    command_rate = len(command_latency.samples) / command_seconds
    query_rate = len(query_latency.samples) / query_seconds
    say(f"  {backend:8} {clients} clients, {len(command_latency.samples):,} commands then "
        f"{len(query_latency.samples):,} queries")
    say(f"    commands {command_rate:8,.0f}/s   {command_latency.line()}   "
        f"HTTP/in-process {ratio(command_rate, commands_local)} (in-process {commands_local:,.0f}/s)")
    say(f"      {command_usage[0].line()}")
    say(f"    queries  {query_rate:8,.0f}/s   {query_latency.line()}   "
        f"HTTP/in-process {ratio(query_rate, queries_local)} (in-process {queries_local:,.0f}/s)")
    say(f"      {query_usage[0].line()}")
    keyed_rate = len(keyed_latency.samples) / keyed_seconds
    say(f"    commands with Idempotency-Key {keyed_rate:8,.0f}/s   {keyed_latency.line()}   "
        f"keyed/unkeyed {ratio(keyed_rate, command_rate)} (each claims its key and keeps its answer)")
    say(f"    peak RSS of zizhu serve: {rss:,.0f} MiB (idle after start-up {idle:,.0f} MiB)")
    if backend == "postgres":
        MEASURED_RSS[backend] = (idle, rss, len(command_latency.samples) + len(query_latency.samples)
                                 + len(keyed_latency.samples))
    return {"commands": command_rate, "queries": query_rate, "keyed_commands": keyed_rate, "rss_mib": rss}


# The serve process's memory on PostgreSQL under this load, for the memory scenario when both run together:
# (idle RSS after start-up MiB, peak RSS MiB, requests served).
MEASURED_RSS: dict[str, tuple[float, float, int]] = {}


def run(quick: bool, backends: tuple[str, ...] | None = None, clients: int = 8) -> None:
    per_client = 3 if quick else 60
    reads = 15 if quick else 400
    # Quick: PostgreSQL only (each backend costs a server start-up); the full run covers both.
    backends = backends or (("postgres",) if quick else ("sqlite", "postgres"))
    say(f"\n(e) HTTP through uvicorn on loopback (port {PORT}): {clients} concurrent clients, "
        f"{per_client} students each, then {reads} queries each")
    for backend in backends:
        run_backend(backend, clients, per_client, reads)
