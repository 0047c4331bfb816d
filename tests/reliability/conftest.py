"""Fixtures of the reliability tests: `figures`, where each test states the figures it reached.

Figures go to `test-output/reliability/<test>.json` and to the terminal (through the terminal reporter, so they show
with or without `-s`; under xdist only the files are written), so a run leaves evidence beyond pass/fail.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.server import Launcher

OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "reliability"


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    reached: dict[str, Any] = {}
    yield reached
    if not reached:
        return
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / f"{name}.json").write_text(json.dumps(reached, indent=2, sort_keys=True, default=str) + "\n")
    request.node.user_properties.extend(reached.items())
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        line = ", ".join(f"{k}={v}" for k, v in reached.items())
        reporter.write_line(f"\n[figures] {request.node.name}: {line}")


@pytest.fixture(scope="session")
def launcher() -> Iterator[Launcher]:
    """Forks `zizhu serve` children for the tests that kill and restart the service (see server.py)."""
    started = Launcher()
    try:
        yield started
    finally:
        started.close()
