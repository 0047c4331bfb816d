"""Browser fixtures: a real `zizhu serve` child on a loopback port over a fresh SQLite file with ZIZHU_NOW set, and
Debian's Chromium (/usr/bin/chromium) driven headless by Playwright's Python client.

The fixture binds the listening socket itself (the kernel picks the port) and hands it to `zizhu serve --fd`, holding
it until the server is stopped. Choosing a "free" port and letting the child bind it seconds later (a fresh
interpreter imports the service first) let another run on the same machine take the port in between: the child then
failed to bind while /healthz was answered by the other run's server, so the pages showed another database (a
selector that never appears) and went away when that server stopped (connection refused).

No browser is ever downloaded (`playwright install` is never run): the system Chromium is launched by path.
Under CI=true a missing Chromium fails the run; elsewhere the browser tests skip only when it is absent.
The server is one per test module and is stopped by its own pid.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from adapters.auth import issue_token
from tests.conftest import SECRET

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOW = "2025-09-15T09:00:00+08:00"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
A11Y_CHECK = (Path(__file__).parent / "a11y.js").read_text(encoding="utf-8")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
STEP_TIMEOUT_MS = 15_000
START_TIMEOUT_S = 120  # a fresh interpreter importing the service on a loaded two-core machine


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def token(self, role: str, sub: str | None = None, *, school: str | None = None, class_id: str | None = None,
              region: str | None = None, student: str | None = None) -> str:
        return issue_token(SECRET, sub=sub or f"{role}-1", role=role, school=school, class_id=class_id,
                           region=region, student=student)

    def api(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30,
                             **kwargs)

    def views_current(self, attempts: int = 300) -> None:
        """Waits until every read model has applied the whole log, so one person's change is on another's page."""
        for _ in range(attempts):
            health = httpx.get(self.url + "/healthz", timeout=10).json()
            if all(v["lag"] == 0 for v in health["views"].values()):
                return
            time.sleep(0.05)
        raise AssertionError(f"views did not catch up: {health}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("web")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    log = home / "serve.log"
    env = {**os.environ, "ZIZHU_DATABASE_URL": f"sqlite:///{home / 'zizhu.db'}", "ZIZHU_SECRET": SECRET,
           "ZIZHU_NOW": NOW, "ZIZHU_LOG_LEVEL": "WARNING", "ZIZHU_DEADLINE_INTERVAL": "3600",
           "ZIZHU_PROJECTION_POLL_INTERVAL": "0.05"}
    zizhu = Path(sys.executable).with_name("zizhu")
    command = [str(zizhu)] if zizhu.exists() else [sys.executable, "-c", "from api.cli import main; main()"]
    with log.open("wb") as out:
        process = subprocess.Popen([*command, "serve", "--fd", str(listener.fileno())], cwd=ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, pass_fds=[listener.fileno()])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"zizhu serve exited ({process.returncode}): {log.read_text()[-2000:]}")
            try:
                if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"zizhu serve did not answer /healthz in {START_TIMEOUT_S} s: "
                                   f"{log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield Server(url, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        listener.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium must be installed under CI (.ci/run installs the chromium package)")
        pytest.skip("no /usr/bin/chromium on this machine (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    # A loaded two-core machine (CI runs two test workers) can take seconds over a command that waits for a view.
    expect.set_options(timeout=STEP_TIMEOUT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


Page = Any


@pytest.fixture
def open_page(browser: Any, server: Server) -> Iterator[Callable[..., Page]]:
    """open_page(token, viewport=PHONE): a fresh browser context, signed in through the sign-in page."""
    contexts: list[Any] = []

    def make(token: str, viewport: dict[str, int] | None = None) -> Page:
        context = browser.new_context(viewport=viewport or DESKTOP, locale="zh-CN", accept_downloads=True)
        context.set_default_timeout(STEP_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.script_errors = errors
        page.goto(server.url + "/")
        page.get_by_role("textbox", name="访问令牌").fill(token)
        page.get_by_role("button", name="登录").click()
        page.wait_for_url(lambda url: urlparse(url).path != "/")
        return page

    yield make
    for context in contexts:
        context.close()


def ready(page: Page) -> None:
    """Waits for the page's script to finish its first load (it marks <body data-ready>)."""
    page.wait_for_selector("body[data-ready=true]")


def accessible(page: Page) -> None:
    problems = page.evaluate(A11Y_CHECK)
    assert problems == [], f"{page.url}: {problems}"
    errors = getattr(page, "script_errors", [])
    assert errors == [], errors


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
