"""The tamper-evident log: one byte changed, an event deleted, two swapped, a forged one inserted — each detected
and located by case and version, on SQLite and PostgreSQL, by editing the tables directly with SQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.application import Repository

from adapters.auth import Principal
from adapters.integrity import LogIntegrity, check_snapshots, content_digest, link_hash, verify_store
from adapters.settings import Settings
from api.deps import Services
from domain.values import Role
from tests.support import GX_SCHOOL, form, id_number

SCHOOL = Principal(sub="staff-1", role=Role.SCHOOL, school=GX_SCHOOL)


def make_cases(services: Services, count: int = 3) -> list[UUID]:
    """`count` cases, each at version 3 (applied, verified, assessed)."""
    ids = []
    for seq in range(1, count + 1):
        applicant = Principal(sub=f"guardian-{seq}", role=Role.APPLICANT, student=id_number(seq))
        case_id = services.cases.apply(applicant, form(seq)).case.id
        services.cases.verify(SCHOOL, case_id, method="document", confirmed_categories=["minimum_living_allowance"],
                              notes="")
        services.cases.assess(SCHOOL, case_id)
        ids.append(case_id)
    return ids


class Tables:
    """Direct SQL on the store's tables, as an intruder with database access would do it."""

    def __init__(self, settings: Settings) -> None:
        self.sqlite = settings.is_sqlite
        self.settings = settings
        self.events = "stored_events" if self.sqlite else "zizhu_events"
        self.chain = f"{self.events}_chain"
        self.seals = f"{self.events}_seals"
        self.heads = f"{self.events}_seal_heads"

    @contextmanager
    def connect(self) -> Iterator[Any]:
        if self.sqlite:
            conn = sqlite3.connect(self.settings.sqlite_path)
            try:
                yield conn
                conn.commit()
            finally:
                conn.close()
        else:
            url = self.settings.database_url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(url) as pg:
                yield pg

    def key(self, case_id: UUID) -> Any:
        return case_id.hex if self.sqlite else case_id

    def sql(self, statement: str) -> str:
        return statement if self.sqlite else statement.replace("?", "%s")

    def execute(self, statement: str, *params: Any) -> list[Any]:
        with self.connect() as conn:
            cursor = conn.execute(self.sql(statement), params)
            return list(cursor.fetchall()) if cursor.description else []

    def state(self, case_id: UUID, version: int) -> bytes:
        rows = self.execute(f"SELECT state FROM {self.events} WHERE originator_id=? AND originator_version=?",
                            self.key(case_id), version)
        return bytes(rows[0][0])

    def set_state(self, case_id: UUID, version: int, state: bytes) -> None:
        self.execute(f"UPDATE {self.events} SET state=? WHERE originator_id=? AND originator_version=?",
                     state, self.key(case_id), version)


@pytest.fixture
def tables(settings: Settings) -> Tables:
    return Tables(settings)


def integrity(services: Services, batch: int = 2) -> LogIntegrity:
    # A tiny batch makes every test cross page boundaries of the streaming verifier.
    return LogIntegrity(services.store.recorder, batch=batch)


def located(report_damages: Sequence[Any]) -> set[tuple[UUID, int, str]]:
    return {(d.case_id, d.version, d.kind) for d in report_damages}


def test_a_clean_log_verifies_clean_and_counts_every_event(services: Services) -> None:
    make_cases(services)
    report = integrity(services).verify()
    assert report.clean, report.lines()
    assert (report.cases, report.events) == (3, 9)
    assert report.lines() == []


def test_one_changed_byte_is_found_at_its_case_and_version(services: Services, tables: Tables) -> None:
    cases = make_cases(services)
    b = cases[1]
    state = bytearray(tables.state(b, 2))
    state[len(state) // 2] ^= 0x01
    tables.set_state(b, 2, bytes(state))

    report = integrity(services).verify()
    assert located(report.damages) == {(b, 2, "altered")}
    assert report.lines() == [f"case {b} version 2: version 2 altered: the stored bytes differ from what was chained"]


def test_a_deleted_event_is_found(services: Services, tables: Tables) -> None:
    cases = make_cases(services)
    a = cases[0]
    tables.execute(f"DELETE FROM {tables.events} WHERE originator_id=? AND originator_version=?", tables.key(a), 2)

    report = integrity(services).verify()
    assert located(report.damages) == {(a, 2, "deleted")}


def test_an_event_deleted_with_its_chain_record_is_found_as_a_gap(services: Services, tables: Tables) -> None:
    cases = make_cases(services)
    c = cases[2]
    for table in (tables.events, tables.chain):
        tables.execute(f"DELETE FROM {table} WHERE originator_id=? AND originator_version=?", tables.key(c), 2)

    report = integrity(services).verify()
    assert {(d.case_id, d.version, d.kind) for d in report.damages} >= {(c, 2, "deleted")}
    assert {d.case_id for d in report.damages} == {c}


def test_two_swapped_events_are_found_as_reordered(services: Services, tables: Tables) -> None:
    cases = make_cases(services)
    a = cases[0]
    second, third = tables.state(a, 2), tables.state(a, 3)
    tables.set_state(a, 2, third)
    tables.set_state(a, 3, second)
    # The topics travel with the states, as a swap of two whole events would move them.
    topics = tables.execute(f"SELECT originator_version, topic FROM {tables.events} WHERE originator_id=? "
                            "ORDER BY originator_version", tables.key(a))
    tables.execute(f"UPDATE {tables.events} SET topic=? WHERE originator_id=? AND originator_version=?",
                   topics[2][1], tables.key(a), 2)
    tables.execute(f"UPDATE {tables.events} SET topic=? WHERE originator_id=? AND originator_version=?",
                   topics[1][1], tables.key(a), 3)

    report = integrity(services).verify()
    assert located(report.damages) == {(a, 2, "reordered"), (a, 3, "reordered")}
    assert "holds the event chained at version 3" in report.lines()[0]


def test_a_forged_event_is_found_as_inserted(services: Services, tables: Tables) -> None:
    cases = make_cases(services)
    b = cases[1]
    forged = tables.state(b, 3)
    tables.execute(f"INSERT INTO {tables.events} (originator_id, originator_version, topic, state) "
                   "VALUES (?,?,?,?)", tables.key(b), 4, "case.rated", forged)

    report = integrity(services).verify()
    assert located(report.damages) == {(b, 4, "inserted")}


def test_a_rewritten_history_is_caught_by_the_seal_kept_outside(services: Services, tables: Tables) -> None:
    """An intruder who alters an event and recomputes its chain records passes the chain check, but not the seal."""
    cases = make_cases(services)
    c = cases[2]
    log = integrity(services)
    seal = log.seal(sealed_at="2025-09-15T10:00:00+08:00")
    assert seal is not None and seal.cases == 3 and seal.events == 9
    kept_outside = [s.as_dict() for s in log.seals()]

    state = bytearray(tables.state(c, 1))
    state[-3] ^= 0x20
    tables.set_state(c, 1, bytes(state))
    rows = tables.execute(f"SELECT e.originator_version, c.position, e.topic, e.state FROM {tables.events} e "
                          f"JOIN {tables.chain} c USING (originator_id, originator_version) "
                          "WHERE e.originator_id=? ORDER BY e.originator_version", tables.key(c))
    prev = bytes(32)
    for version, position, topic, stored in rows:
        content = content_digest(topic, bytes(stored))
        new_hash = link_hash(prev, c, version, position, content)
        tables.execute(f"UPDATE {tables.chain} SET content=?, prev=?, hash=? WHERE originator_id=? "
                       "AND originator_version=?", content, prev, new_hash, tables.key(c), version)
        prev = new_hash

    report = log.verify()
    assert located(report.damages) == {(c, 3, "seal_mismatch")}

    # Rewriting the seals too is caught by the copy kept outside the system.
    tables.execute(f"DELETE FROM {tables.seals}")
    tables.execute(f"DELETE FROM {tables.heads}")
    log.seal(sealed_at="2025-09-15T10:00:00+08:00")
    report = log.verify(external_seals=kept_outside)
    assert report.damages == []
    assert report.seal_problems == [f"seal {seal.seal_id} differs from the copy kept outside"]


def test_seals_cover_only_the_heads_that_moved_and_chain_to_each_other(services: Services) -> None:
    cases = make_cases(services)
    a = cases[0]
    log = integrity(services)
    first = log.seal(sealed_at="2025-09-15T10:00:00+08:00")
    assert log.seal(sealed_at="2025-09-15T10:05:00+08:00") is None  # nothing new to seal
    services.cases.withdraw(SCHOOL, a, "moved away")
    second = log.seal(sealed_at="2025-09-15T11:00:00+08:00")
    assert first is not None and second is not None
    assert (second.cases, second.events, second.prev_digest) == (1, 1, first.digest)
    assert log.verify().clean


def test_altering_a_stored_seal_is_reported(services: Services, tables: Tables) -> None:
    make_cases(services, 2)
    log = integrity(services)
    log.seal(sealed_at="2025-09-15T10:00:00+08:00")
    tables.execute(f"UPDATE {tables.seals} SET events=events+1")
    assert log.verify().seal_problems == ["seal 1: its digest does not match its contents"]


def test_verification_streams_in_batches(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """No page is larger than the batch: memory stays bounded by one case, whatever the log's size."""
    make_cases(services, 4)
    log = integrity(services, batch=3)
    sizes: list[int] = []
    original: Callable[..., Any] = log.recorder.event_digests

    def spy(after: Any, upto: int, limit: int) -> Any:
        page = original(after, upto, limit)
        sizes.append(len(page))
        return page

    monkeypatch.setattr(log.recorder, "event_digests", spy)
    assert log.verify().events == 12
    assert max(sizes) == 3 and sum(sizes) == 12


def test_an_altered_snapshot_is_found_against_the_events(services: Services, tables: Tables) -> None:
    """Snapshots are derived and not chained: a changed one would show a state the log never had."""
    cases = make_cases(services, 2)
    for case_id in cases:
        services.store.take_snapshot(case_id)
    assert check_snapshots(services.store) == []
    assert verify_store(services.store).clean

    snapshots = tables.events.replace("events", "snapshots")
    state = tables.execute(f"SELECT state FROM {snapshots} WHERE originator_id=?", tables.key(cases[1]))[0][0]
    forged = bytes(state).replace(b'"assessed"', b'"rated"') if b'"assessed"' in bytes(state) else bytes(state)
    assert forged != bytes(state)
    tables.execute(f"UPDATE {snapshots} SET state=? WHERE originator_id=?", forged, tables.key(cases[1]))

    report = verify_store(services.store)
    assert located(report.damages) == {(cases[1], 3, "snapshot_altered")}
    # What a read through the snapshot would have shown (the store reads a short history from its events alone,
    # so only cases long enough to be loaded from a snapshot are exposed).
    through_snapshot = Repository(event_store=services.store.events, snapshot_store=services.store.snapshots)
    assert through_snapshot.get(cases[1]).status.value == "rated"


def test_a_truncated_case_is_caught_by_the_seal(services: Services, tables: Tables) -> None:
    """Deleting a case's newest event together with its chain record leaves a consistent chain; the seal that
    covered it does not agree."""
    cases = make_cases(services)
    log = integrity(services)
    assert log.seal(sealed_at="2025-09-15T10:00:00+08:00") is not None
    for table in (tables.events, tables.chain):
        tables.execute(f"DELETE FROM {table} WHERE originator_id=? AND originator_version=?", tables.key(cases[0]), 3)

    report = log.verify()
    assert located(report.damages) == {(cases[0], 3, "seal_mismatch")}
