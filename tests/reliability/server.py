"""`zizhu serve` as child processes on a loopback port (8760-8769), for the tests that kill and restart it.

A fresh interpreter spends seconds importing the service before it listens (more on a loaded two-core machine), so
a *launcher* process imports it once and forks a child per start that runs `zizhu serve`'s own entry point
(`api.cli.main` with `serve --port N`): what runs after the fork is exactly `zizhu serve`, and a restart costs
milliseconds. Only the launcher's own children are ever signalled, by their pid.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
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


class Server:
    """Starts, SIGKILLs and stops `zizhu serve` children through one launcher process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.launcher = subprocess.Popen([sys.executable, "-m", "tests.reliability.server", str(log)],
                                         env={**os.environ, **env}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True, bufsize=1)
        self.pid: int | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ask(self, line: str) -> str:
        assert self.launcher.stdin is not None and self.launcher.stdout is not None
        self.launcher.stdin.write(line + "\n")
        answer = self.launcher.stdout.readline().strip()
        if not answer:
            raise RuntimeError(f"launcher gone (exit {self.launcher.poll()}); see {self.log}")
        return answer

    def start(self) -> None:
        self.pid = int(self._ask(f"start {self.port}"))
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
        """SIGTERM to the service (a graceful stop), then the launcher ends."""
        if self.launcher.poll() is None:
            if self.pid is not None:
                self._ask(f"kill {self.pid} {int(signal.SIGTERM)}")
            assert self.launcher.stdin is not None
            self.launcher.stdin.close()
            self.launcher.wait(timeout=30)


def _launcher(log: str) -> None:
    """The launcher's loop: `start PORT` → forks `zizhu serve`; `kill PID SIG` → signals and reaps; `alive PID`."""
    # Imported once, before any fork: the point of the launcher.
    import api.app
    import api.cli

    children: set[int] = set()
    for line in sys.stdin:
        verb, *args = line.split()
        if verb == "start":
            pid = os.fork()
            if pid == 0:
                out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                os.dup2(out, 1)
                os.dup2(out, 2)
                sys.argv = ["zizhu", "serve", "--port", args[0]]
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
    _launcher(sys.argv[1])
