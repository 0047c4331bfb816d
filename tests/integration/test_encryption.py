"""Encryption at rest: with ZIZHU_CIPHER_KEY set, stored events and snapshots are AES-GCM ciphertext, so after an
end-to-end run no resident ID number is found in plain text in the database (SQLite file with its WAL; the
PostgreSQL event, snapshot and read-model tables) or in the captured logs. Keys rotate without rewriting history."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from fastapi.testclient import TestClient

from adapters.integrity import LogIntegrity
from adapters.settings import Settings
from adapters.store import CaseStore
from api.app import create_app
from tests.conftest import TokenFactory
from tests.support import GX_SCHOOL, form, id_number

KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(100, 132))).decode()
GUARDIAN = id_number(55, born="19800101")
STUDENTS = [id_number(seq) for seq in (41, 42)]


def run_the_service(settings: Settings, auth: TokenFactory) -> list[str]:
    """Two students through apply → verify → assess → evaluate → rate, each request with an Idempotency-Key, a
    snapshot taken, every view caught up."""
    case_ids = []
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        school = auth("school", school=GX_SCHOOL)
        for seq, student in zip((41, 42), STUDENTS, strict=True):
            body = form(seq)
            body["household"]["guardian_id_number"] = GUARDIAN
            body["household"]["members"][0]["id_number"] = GUARDIAN
            # With Idempotency-Key: the kept answers (they show the applicant the ID number) are stored too.
            created = client.post("/v1/cases", json=body,
                                  headers={**auth("applicant", student=student), "Idempotency-Key": f"apply-{seq}"})
            assert created.status_code == 201, created.text
            case = created.json()["id"]
            for command, payload, headers in [
                ("verify", {"method": "document", "confirmed_categories": ["minimum_living_allowance"]}, school),
                ("assess", {}, school),
                ("evaluate", {"votes_for": 4, "votes_against": 1, "recommended_level": "especially_difficult"},
                 auth("evaluator", school=GX_SCHOOL, class_id="G10-3")),
                ("rate", {"level": "especially_difficult"}, school),
            ]:
                answer = client.post(f"/v1/cases/{case}/{command}", json=payload,
                                     headers={**headers, "Idempotency-Key": f"{command}-{seq}"})
                assert answer.status_code == 200, answer.text
            assert client.get(f"/v1/cases/{case}", headers=auth("applicant", student=student)).json()[
                "application"]["student"]["id_number"] == student
            case_ids.append(case)
        services = client.app.state.services  # type: ignore[attr-defined]
        services.store.take_snapshot(UUID(case_ids[0]))
        services.projections.catch_up()
    return case_ids


def stored_bytes(settings: Settings) -> bytes:
    """Everything the database keeps, as bytes an intruder could read."""
    if settings.is_sqlite:
        folder = settings.sqlite_path.parent
        return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())
    url = settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    # Every row of every table, bytea as its raw bytes (a text dump would show it as hex and hide a match).
    chunks = []
    with psycopg.connect(url) as pg:
        tables = [r[0] for r in pg.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")]
        assert "zizhu_events" in tables and "zizhu_snapshots" in tables
        for table in tables:
            for row in pg.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    chunks.append(bytes(value) if isinstance(value, (bytes, memoryview)) else str(value).encode())
    return b"\n".join(chunks)


def plain_ids(blob: bytes) -> set[str]:
    return {number for number in [*STUDENTS, GUARDIAN] if number.encode() in blob}


@pytest.fixture
def encrypted(settings: Settings) -> Settings:
    return settings.model_copy(update={"cipher_key": KEY_A})


def test_no_id_number_in_plain_text_in_the_database_or_the_logs(encrypted: Settings, auth: TokenFactory,
                                                                 capfd: pytest.CaptureFixture[str]) -> None:
    logged = encrypted.model_copy(update={"log_level": "DEBUG"})
    run_the_service(logged, auth)
    assert plain_ids(stored_bytes(encrypted)) == set()
    out, err = capfd.readouterr()
    assert "request_handled" in err  # the logs were captured, and they are clean
    assert plain_ids((out + err).encode()) == set()


def test_without_a_key_the_same_scan_finds_the_numbers(settings: Settings, auth: TokenFactory) -> None:
    """The control: the scan does find plain text when nothing is encrypted."""
    run_the_service(settings, auth)
    assert plain_ids(stored_bytes(settings)) >= set(STUDENTS)


def test_events_and_snapshots_are_ciphertext_that_only_the_key_opens(encrypted: Settings,
                                                                     auth: TokenFactory) -> None:
    case_ids = run_the_service(encrypted, auth)
    store = CaseStore(encrypted)
    try:
        assert store.snapshots is not None
        snapshot = store.snapshots.recorder.select_events(UUID(case_ids[0]))
        assert snapshot and b"id_number" not in snapshot[0].state and not snapshot[0].state.startswith(b"{")
        events = store.recorder.select_events(UUID(case_ids[0]))
        assert len(events) == 5 and all(b"id_number" not in e.state for e in events)
        case = store.repository.get(UUID(case_ids[0]))
        assert case.applicant_id_number == STUDENTS[0] and case.version == 5
    finally:
        store.close()
    wrong_key = CaseStore(encrypted.model_copy(update={"cipher_key": KEY_B}))
    try:
        with pytest.raises(ValueError, match="damaged"):
            wrong_key.repository.get(UUID(case_ids[0]))
    finally:
        wrong_key.close()


def test_a_rotated_key_reads_the_old_events_and_leaves_the_chain_intact(encrypted: Settings,
                                                                         auth: TokenFactory) -> None:
    case_ids = run_the_service(encrypted, auth)
    rotated = encrypted.model_copy(update={"cipher_key": KEY_B, "cipher_previous_keys": [KEY_A]})
    with TestClient(create_app(rotated), raise_server_exceptions=False) as client:
        school = auth("school", school=GX_SCHOOL)
        old = client.get(f"/v1/cases/{case_ids[1]}", headers=school)
        assert old.status_code == 200 and old.json()["application"]["student"]["id_number"] == STUDENTS[1]
        newer = client.post(f"/v1/cases/{case_ids[1]}/rate", headers=school,
                            json={"level": "difficult", "reason": "re-rated after the guardian found work"})
        assert newer.status_code == 200, newer.text
    store = CaseStore(rotated)
    try:
        assert LogIntegrity(store.recorder).verify().clean  # rotation rewrote nothing
        assert store.repository.get(UUID(case_ids[1])).version == 6
    finally:
        store.close()
    only_old_key = CaseStore(encrypted)
    try:
        with pytest.raises(ValueError, match="damaged"):
            only_old_key.repository.get(UUID(case_ids[1]))  # version 6 was written under the new key
    finally:
        only_old_key.close()


def test_a_malformed_key_is_refused_at_start() -> None:
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError, match="ZIZHU_CIPHER_KEY"):
            Settings(cipher_key=bad)
    assert Settings(cipher_key=KEY_A).cipher_key == KEY_A


@pytest.fixture(autouse=True)
def _no_ambient_key() -> Iterator[None]:
    saved = os.environ.pop("ZIZHU_CIPHER_KEY", None)
    yield
    if saved is not None:
        os.environ["ZIZHU_CIPHER_KEY"] = saved


def test_the_readme_says_how_to_make_and_rotate_a_key() -> None:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    text = readme.read_text(encoding="utf-8")
    assert "ZIZHU_CIPHER_KEY" in text and "ZIZHU_CIPHER_PREVIOUS_KEYS" in text
