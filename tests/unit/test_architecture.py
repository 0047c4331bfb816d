"""The domain stays pure: no infrastructure imports and no clock reads anywhere under domain/ (parsed with ast)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[2] / "domain"
INFRASTRUCTURE = frozenset({"sqlalchemy", "fastapi", "starlette", "pydantic", "pydantic_settings", "apscheduler",
                            "structlog", "psycopg", "psycopg2", "uvicorn", "jwt", "httpx", "typer", "adapters",
                            "api", "projections"})
# Clock reads: `now` is passed in, so none of these may appear in the domain.
CLOCK_READS = frozenset({("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
                         ("time", "time"), ("time", "time_ns"), ("time", "monotonic"), ("time", "localtime"),
                         ("time", "gmtime")})


def violations(source: str, filename: str = "<module>") -> list[str]:
    """Every forbidden import and clock read in one module's source, as 'file:line: what'."""
    found: list[str] = []
    tree = ast.parse(source, filename)
    imported_names: dict[str, str] = {}  # local name → module.attr it stands for, e.g. now → datetime.now
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""] if node.level == 0 else []
            for alias in node.names:
                imported_names[alias.asname or alias.name] = f"{(node.module or '').split('.')[-1]}.{alias.name}"
        else:
            modules = []
        for module in modules:
            top = module.split(".")[0]
            allowed = (top in sys.stdlib_module_names or top == "domain"
                       or module in {"eventsourcing", "eventsourcing.domain"})
            if top in INFRASTRUCTURE or not allowed:
                found.append(f"{filename}:{node.lineno}: imports {module}")
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                pair = (imported_names.get(func.value.id, func.value.id).split(".")[-1], func.attr)
            elif isinstance(func, ast.Name) and func.id in imported_names:
                pair = tuple(imported_names[func.id].split(".")[-2:])  # type: ignore[assignment]
            else:
                continue
            if pair in CLOCK_READS:
                found.append(f"{filename}:{node.lineno}: reads the clock ({'.'.join(pair)})")
    return found


def test_no_module_under_domain_imports_infrastructure_or_reads_the_clock() -> None:
    modules = sorted(DOMAIN.rglob("*.py"))
    assert len(modules) >= 5, "the domain package was not found"
    found = [v for path in modules for v in violations(path.read_text(encoding="utf-8"), path.name)]
    assert found == []


def test_the_check_catches_what_it_is_meant_to_catch() -> None:
    """The check above would pass vacuously if `violations` never found anything: prove it does."""
    bad = """
import sqlalchemy
from fastapi import APIRouter
import structlog.contextvars
from pydantic import BaseModel
from apscheduler.schedulers import background
import psycopg, uvicorn
from starlette.requests import Request
from eventsourcing.application import Application
from datetime import datetime, date
import time
from time import time as wall
from datetime import datetime as dt

a = datetime.now()
b = datetime.utcnow()
c = date.today()
d = time.time()
e = wall()
f = dt.today()
"""
    found = violations(bad)
    for module in ("sqlalchemy", "fastapi", "structlog.contextvars", "pydantic", "apscheduler.schedulers",
                   "psycopg", "uvicorn", "starlette.requests", "eventsourcing.application"):
        assert any(v.endswith(f"imports {module}") for v in found), module
    clock = [v for v in found if "reads the clock" in v]
    assert [v.split(":")[1] for v in clock] == ["15", "16", "17", "18", "19", "20"]
    good = "from eventsourcing.domain import Aggregate\nfrom datetime import datetime\nx = datetime.fromisoformat('')\n"
    assert violations(good) == []
