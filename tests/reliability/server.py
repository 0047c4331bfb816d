"""`zizhu serve` as child processes on a loopback port (8760-8769), for the tests that kill and restart it.

A fresh interpreter spends seconds importing the service before it listens (more on a loaded two-core machine), so
a *launcher* process (one per test session) imports it once and forks a child per start that runs `zizhu serve`'s
own entry point (`api.cli.main` with `serve --port N`, its settings in the environment): what runs after the fork
is exactly `zizhu serve`, and a restart costs milliseconds. Only the launcher's own children are ever signalled,
by their pid.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

PORTS = range(8760, 8770)


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 8760-8769")


class Launcher:
    """The process that imports the service once and forks `zizhu serve` children on request."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.reliability.server"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self._lock = threading.Lock()

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self._lock:
            self.proc.stdin.write(line + "\n")
            answer = self.proc.stdout.readline().strip()
        if not answer:
            raise RuntimeError(f"launcher gone (exit {self.proc.poll()})")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


class Server:
    """Starts, SIGKILLs and stops one service's `zizhu serve` children through the launcher."""

    def __init__(self, launcher: Launcher, env: dict[str, str], log: Path) -> None:
        self.launcher = launcher
        self.port = free_port()
        self.env = env
        self.log = log
        self.pid: int | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ask(self, line: str) -> str:
        return self.launcher.ask(line)

    def start(self) -> None:
        settings = base64.b64encode(json.dumps(self.env).encode()).decode()
        self.pid = int(self._ask(f"start {self.port} {self.log} {settings}"))
        self.starts += 1
        self.wait_ready()

    def wait_ready(self, attempts: int = 1200) -> None:
        for _ in range(attempts):
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self._ask(f"alive {self.pid}") != "yes":
                raise RuntimeError(f"zizhu serve exited; see {self.log}")
            time.sleep(0.05)
        raise RuntimeError(f"zizhu serve did not answer; see {self.log}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut or an OOM kill."""
        self._ask(f"kill {self.pid} {int(signal.SIGKILL)}")

    def stop(self) -> None:
        """SIGTERM to the service: a graceful stop."""
        if self.pid is not None:
            self._ask(f"kill {self.pid} {int(signal.SIGTERM)}")
            self.pid = None


def _launcher() -> None:
    """The launcher's loop: `start PORT LOG ENV` forks `zizhu serve` with those settings in its environment;
    `kill PID SIG` signals and reaps it; `alive PID` says whether it still runs."""
    # Imported once, before any fork: the point of the launcher.
    import api.app
    import api.cli

    children: set[int] = set()
    for line in sys.stdin:
        verb, *args = line.split()
        if verb == "start":
            port, log, settings = args
            pid = os.fork()
            if pid == 0:
                os.environ.update(json.loads(base64.b64decode(settings)))
                out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                os.dup2(out, 1)
                os.dup2(out, 2)
                sys.argv = ["zizhu", "serve", "--port", port]
                try:
                    api.cli.main()
                finally:
                    os._exit(0)
            children.add(pid)
            print(pid, flush=True)
        elif verb == "kill":
            pid, sig = int(args[0]), int(args[1])
            if pid in children:
                os.kill(pid, sig)
                os.waitpid(pid, 0)
                children.discard(pid)
            print("done", flush=True)
        elif verb == "alive":
            pid = int(args[0])
            alive = pid in children and os.waitpid(pid, os.WNOHANG) == (0, 0)
            print("yes" if alive else "no", flush=True)
    for pid in children:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    _launcher()
