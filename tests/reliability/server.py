"""`zizhu serve` as child processes on a loopback port, for the tests that kill and restart it.

A fresh interpreter spends seconds importing the service before it listens (more on a loaded two-core machine), so
a *launcher* process (one per test session) imports it once and forks a child per start that runs `zizhu serve`'s
own entry point (`api.cli.main` with `serve --fd N`, its settings in the environment): what runs after the fork
is exactly `zizhu serve`, and a restart costs milliseconds. Only the launcher's own children are ever signalled,
by their pid.

The launcher binds each server's listening socket (port chosen by the kernel) and holds it from the first start to
the stop; every child serves on that inherited socket. Picking a "free" port and letting each restart bind it again
left a window after every SIGKILL in which another test (the other xdist worker, another engineer's run on the same
machine) took the port: the client's retries then reached a foreign service with another database, which answered
for cases this test's database never saw and recorded this test's commands there (and the reverse). Held by the
launcher, the address is this server's alone; a connection made while no child runs waits in the backlog for the
next one.
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
        port, fd = self._ask("listen").split()
        self.port = int(port)
        self.fd: int | None = int(fd)
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
        if self.fd is None:
            raise RuntimeError("this server was stopped; its socket is closed")
        settings = base64.b64encode(json.dumps(self.env).encode()).decode()
        self.pid = int(self._ask(f"start {self.fd} {self.log} {settings}"))
        self.starts += 1
        self.wait_ready()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until /healthz answers 200; the socket is this server's alone, so only its own child can answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self._ask(f"alive {self.pid}") != "yes":
                raise RuntimeError(f"zizhu serve exited: {self._log_tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"zizhu serve did not answer /healthz in {timeout:.0f} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return f"(no log at {self.log})"

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut or an OOM kill."""
        self._ask(f"kill {self.pid} {int(signal.SIGKILL)}")

    def stop(self) -> None:
        """SIGTERM to the service: a graceful stop."""
        if self.pid is not None:
            self._ask(f"kill {self.pid} {int(signal.SIGTERM)}")
            self.pid = None
        if self.fd is not None:
            self._ask(f"close {self.fd}")
            self.fd = None


def _launcher() -> None:
    """The launcher's loop: `listen` binds a loopback socket and answers its port and file descriptor; `start FD LOG
    ENV` forks `zizhu serve` on that socket with those settings in its environment; `kill PID SIG` signals and reaps
    it; `alive PID` says whether it still runs; `close FD` releases the socket."""
    # Imported once, before any fork: the point of the launcher.
    import api.app
    import api.cli

    children: set[int] = set()
    sockets: dict[int, socket.socket] = {}
    for line in sys.stdin:
        verb, *args = line.split()
        if verb == "listen":
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            sock.set_inheritable(True)
            sockets[sock.fileno()] = sock
            print(sock.getsockname()[1], sock.fileno(), flush=True)
        elif verb == "close":
            closing = sockets.pop(int(args[0]), None)
            if closing is not None:
                closing.close()
            print("done", flush=True)
        elif verb == "start":
            fd, log, settings = args
            pid = os.fork()
            if pid == 0:
                for other, sock in sockets.items():
                    if other != int(fd):
                        sock.close()  # a child must not keep another server's address alive
                os.environ.update(json.loads(base64.b64decode(settings)))
                out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                os.dup2(out, 1)
                os.dup2(out, 2)
                sys.argv = ["zizhu", "serve", "--fd", fd]
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
