"""The `zizhu` command line: tokens, the school registry import (UTF-8 with BOM and GBK), start-up refusals, and
`zizhu serve` answering /healthz as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from typer.testing import CliRunner, Result

from adapters.auth import InvalidToken, verify_token
from adapters.db import create_db_engine
from adapters.schools import SchoolRegistry
from adapters.settings import REPO_ROOT, Settings
from api.cli import cli
from domain.values import Role
from tests.conftest import SECRET
from tests.support import id_number

PORT = 8731  # this suite's own port for a real server
HEADER = "school_id,name,region_code,stage\n"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the settings each test gives: ambient ZIZHU_* variables must not steer the command."""
    for key in list(os.environ):
        if key.startswith("ZIZHU_"):
            monkeypatch.delenv(key)


def run(*args: str, database_url: str | None = None, **env: str) -> Result:
    environment = {"ZIZHU_SECRET": SECRET, "ZIZHU_LOG_LEVEL": "WARNING", **env}
    if database_url:
        environment["ZIZHU_DATABASE_URL"] = database_url
    return CliRunner().invoke(cli, list(args), env=environment)


# ---------------------------------------------------------------------------------------------- zizhu token


@pytest.mark.parametrize(("args", "claims"), [
    (["--role", "school", "--school", "S4501030001"], {"school": "S4501030001"}),
    (["--role", "evaluator", "--school", "S4501030001", "--class", "G10-3"],
     {"school": "S4501030001", "class_id": "G10-3"}),
    (["--role", "applicant", "--student", id_number(1)], {"student": id_number(1)}),
    (["--role", "bureau", "--region", "450000"], {"region": "450000"}),
    (["--role", "auditor"], {}),
])
def test_token_prints_a_signed_token_carrying_the_role_and_scope(args: list[str], claims: dict[str, str]) -> None:
    result = run("token", "--sub", "alice", "--ttl", "600", *args)
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    principal = verify_token(SECRET, token)
    assert principal.sub == "alice" and principal.role is Role(args[1])
    for key in ("school", "class_id", "region", "student"):
        assert getattr(principal, key) == claims.get(key)
    raw = jwt.decode(token, SECRET, algorithms=["HS256"], issuer="zizhu")
    assert raw["exp"] - raw["iat"] == 600
    with pytest.raises(InvalidToken):
        verify_token("another-secret-of-at-least-thirty-two-chars", token)


@pytest.mark.parametrize(("args", "words"), [
    (["--role", "wizard"], "role must be"),
    (["--role", "system"], "role must be"),
    (["--role", "school"], "needs --school"),
    (["--role", "evaluator", "--school", "S4501030001"], "needs --school and --class"),
    (["--role", "applicant"], "needs --student"),
    (["--role", "bureau"], "needs --region"),
])
def test_token_refuses_an_unknown_role_or_a_missing_scope(args: list[str], words: str) -> None:
    result = run("token", "--sub", "alice", *args)
    assert result.exit_code == 2 and words in result.output
    assert "ey" not in result.stdout  # no token printed


# ---------------------------------------------------------------------------------------------- schools import


def registry(database_url: str) -> Iterator[SchoolRegistry]:
    engine = create_db_engine(Settings(database_url=database_url, secret=SECRET))
    try:
        yield SchoolRegistry(engine)
    finally:
        engine.dispose()


def test_schools_import_reads_utf8_with_bom_and_reports_rejected_rows_by_line(tmp_path: Path,
                                                                              database_url: str) -> None:
    csv = tmp_path / "schools.csv"
    csv.write_bytes(("\ufeff" + HEADER
                     + "S4501030009,南宁市第九中学,450103,senior_secondary\n"
                     + "S4501030010,,450103,primary\n"
                     + "S9901010001,某校,990101,primary\n"
                     + "S4501030011,某校,45010,primary\n"
                     + "S4501030012,某校,450103,kindergarten\n"
                     + "S4501030009,重复,450103,primary\n").encode("utf-8"))
    result = run("schools", "import", str(csv), database_url=database_url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "inserted 1, updated 0, rejected 5"
    assert lines[1:] == ["  line 3: name is empty",
                         "  line 4: no policy profile covers province 99",
                         "  line 5: region_code '45010' is not a six-digit code",
                         "  line 6: unknown stage 'kindergarten'",
                         "  line 7: duplicate school_id S4501030009"]
    for schools in registry(database_url):
        school = schools.get("S4501030009")
        assert school is not None and school.name == "南宁市第九中学" and school.region_code == "450103"
        assert schools.get("S4501030010") is None and schools.get("S9901010001") is None
    again = run("schools", "import", str(csv), database_url=database_url)
    assert again.stdout.splitlines()[0] == "inserted 0, updated 1, rejected 5"


def test_rejected_rows_are_reported_at_their_physical_line_past_blank_lines_and_quoted_breaks(
        tmp_path: Path, database_url: str) -> None:
    csv = tmp_path / "schools.csv"
    csv.write_text(HEADER + "S4501030009,某校,450103,primary\n\n"
                   + 'S4501030010,"南宁市\n分校",450103,primary\n'
                   + "S4501030011,某校,4501,primary\n", encoding="utf-8")
    result = run("schools", "import", str(csv), database_url=database_url)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["inserted 2, updated 0, rejected 1",
                                          "  line 6: region_code '4501' is not a six-digit code"]


def test_schools_import_reads_gbk_and_updates_existing_schools(tmp_path: Path, database_url: str) -> None:
    csv = tmp_path / "schools-gbk.csv"
    csv.write_bytes((HEADER + "S4501030001,南宁市青秀区示范高级中学（新校区）,450103,senior_secondary\n"
                     + "S3201020009,南京市玄武区第九中学,320102,junior_secondary\n").encode("gbk"))
    result = run("schools", "import", str(csv), database_url=database_url)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["inserted 1, updated 1, rejected 0"]
    for schools in registry(database_url):
        updated, added = schools.get("S4501030001"), schools.get("S3201020009")
        assert updated is not None and updated.name == "南宁市青秀区示范高级中学（新校区）"
        assert added is not None and added.name == "南京市玄武区第九中学" and added.stage == "junior_secondary"


def test_schools_import_refuses_a_file_missing_a_column_and_one_with_no_good_row(tmp_path: Path,
                                                                                 database_url: str) -> None:
    missing = tmp_path / "missing.csv"
    missing.write_text("school_id,name,stage\nS4501030009,某校,primary\n", encoding="utf-8")
    result = run("schools", "import", str(missing), database_url=database_url)
    assert result.exit_code == 1 and "refused: missing column(s): region_code" in result.output
    none_good = tmp_path / "bad.csv"
    none_good.write_text(HEADER + "S4501030009,,450103,primary\n", encoding="utf-8")
    result = run("schools", "import", str(none_good), database_url=database_url)
    assert result.exit_code == 1 and "line 2: name is empty" in result.stdout
    for schools in registry(database_url):
        assert schools.get("S4501030009") is None
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81\x00")
    result = run("schools", "import", str(binary), database_url=database_url)
    assert result.exit_code == 1 and "neither UTF-8 nor GBK" in result.output


# ---------------------------------------------------------------------------------------------- zizhu serve


def test_serve_refuses_to_start_on_a_broken_profile_or_a_clock_setting_in_production(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    data = json.loads((REPO_ROOT / "policies" / "guangxi.json").read_text(encoding="utf-8"))
    data["scoring"]["items"][0]["kind"] = "horoscope"
    (policies / "guangxi.json").write_text(json.dumps(data), encoding="utf-8")
    database = f"sqlite:///{tmp_path / 'z.db'}"
    result = run("serve", "--port", str(PORT), database_url=database, ZIZHU_POLICY_DIR=str(policies))
    assert result.exit_code == 2
    assert "refusing to start" in result.output and "guangxi.json" in result.output
    assert "scoring.items[0].kind" in result.output
    result = run("serve", "--port", str(PORT), database_url=database, ZIZHU_ENV="production",
                 ZIZHU_SECRET="s" * 40, ZIZHU_NOW="2025-09-15T09:00:00+08:00")
    assert result.exit_code == 2 and "ZIZHU_NOW is refused" in result.output
    result = run("serve", "--port", str(PORT), database_url=database, ZIZHU_NOW="next monday")
    assert result.exit_code == 2 and "ZIZHU_NOW must be an ISO 8601 time" in result.output


def test_serve_runs_the_service_as_a_process_that_answers_healthz(tmp_path: Path) -> None:
    executable = Path(sys.executable).with_name("zizhu")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZIZHU_")}
    env.update(ZIZHU_DATABASE_URL=f"sqlite:///{tmp_path / 'var' / 'zizhu.db'}", ZIZHU_SECRET=SECRET,
               ZIZHU_LOG_LEVEL="WARNING")
    process = subprocess.Popen([str(executable), "serve", "--port", str(PORT)], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        health = None
        for _ in range(300):  # bounded: at most about a minute for start-up on a busy shared machine
            if process.poll() is not None:
                break
            try:
                health = httpx.get(f"http://127.0.0.1:{PORT}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        if process.poll() is not None:
            pytest.fail(f"zizhu serve exited with {process.returncode}: {process.communicate()[0]}")
        assert health is not None, "zizhu serve did not answer /healthz within the bounded wait"
        assert health.status_code == 200, health.text
        assert health.json()["status"] == "ok" and health.json()["store"] == "sqlite"
        assert (tmp_path / "var" / "zizhu.db").exists()
        process.terminate()
        output, _ = process.communicate(timeout=20)
        assert f"zizhu listening on http://127.0.0.1:{PORT}" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
