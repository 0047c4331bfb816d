"""Exactly-once case commands under client retries: the `Idempotency-Key` request header.

A client whose response was lost (timeout, dropped connection, crashed proxy) sends the same command again with the
same `Idempotency-Key`; it gets the first result back and the case gets no second event.

How it is exactly-once without a second transaction
---------------------------------------------------
The key travels *inside the event*. The HTTP layer (api/idempotency.py) derives a `RequestKey` from the header and
the caller: `key` is a hash of the principal's `sub` and the header (two callers never share a key space; the raw
header is never stored) and `fingerprint` a hash of the method, path and body. It binds the key for the request in a
context variable, so no use case signature changes. `CaseService` then, for every command:

1. loads the case at version *v* and looks for the key among the case's events up to *v* (and first in the
   `idempotency_keys` table, the fast path). Found → the command was applied before: the answer is the case as it
   stood right after that event, with the same status code, and nothing is written.
2. otherwise decides, and stamps the key and fingerprint on the last new event as two extra attributes
   (`request_key`, `request_fingerprint`) before `save()`. They are stored with the event in the same insert,
   so the key is recorded if and only if the event is. The domain is untouched: eventsourcing hands an event's
   `@event` method only the attributes its signature names, so replaying ignores them.
3. saves at *v*+1. A concurrent duplicate decided on the same *v* loses the optimistic-concurrency race
   (IntegrityError); the loser looks for the key among the events after *v*, finds the winner's, and answers
   with the winner's result instead of 409.

Because the check (events ≤ *v*) and the write (at *v*+1) are about the same version, no interleaving yields two
events for one key. After a successful save a row is written to `idempotency_keys` (key → case, version, log
position). That row is an index, not the record: if the process dies between the save and the row, the retry still
finds the key in the case's events (and writes the row then). The row also catches a key reused for a *different*
case (only the events of the case named by the request are searched), and gives the replay its exact log position
for `X-Min-Position`; without the row the replay answers the current log head, which is at or after the event and
so still correct for read-your-writes.

The same key with a different request (another body, command or case) → 422 `idempotency_key_reused`. A refused
command records nothing, so its retry is judged afresh (it may succeed now). Keys are kept as long as the events.

Every POST, case commands included, also goes through `ResponseLog` (the kept first answers, `idempotent_responses`):
the HTTP layer claims the key before the request runs, so a copy waits for the first and replays its answer, and
a retry of any operation, not only a case command, gets the first answer again. The events stay the record for
case commands: a claim left by a process that died is taken over and the retry finds the key in the event.

What a keyed case command costs
-------------------------------
A claim tells whether its key is *new*: no row for it existed, so no request with this key can have stored anything
(a row is deleted only when its request was refused, which stores nothing; a request that failed otherwise, or whose
process died, leaves its row to be taken over; a kept answer older than `ResponseLog.KEEP` is emptied, not deleted).
A case command under a new claim skips step 1 and writes no `idempotency_keys` row: there is nothing to find, and a
retry of it meets its claim. Only a claim *taken over*, or a request run unguarded because the response log could
not be reached, searches as above. The search after a lost optimistic-concurrency race (step 3) runs always.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from eventsourcing.persistence import Cipher
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from adapters.db import metadata
from adapters.logs import get_logger
from adapters.store import CaseStore
from domain.case import StudentCase
from domain.errors import ValidationFailed

KEY_ATTRIBUTE = "request_key"
FINGERPRINT_ATTRIBUTE = "request_fingerprint"
MAX_KEY_LENGTH = 255

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("case_id", String(36), nullable=False),
    Column("version", Integer, nullable=False),
    Column("position", BigInteger),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


# Every keyed POST (case commands, batch commands, rounds, notices, plans, spot checks, imports…): its first
# successful answer, kept.
idempotent_responses = Table(
    "idempotent_responses",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("state", String(8), nullable=False),  # running | done | expired (answer emptied after KEEP)
    Column("status", Integer),
    Column("headers", Text),  # JSON: [[name, value], …] as latin-1 text, as ASGI sends them
    Column("body", LargeBinary),
    Column("started_at", DateTime(timezone=True), nullable=False),
)


class IdempotencyKeyReused(ValidationFailed):
    """The key was used before for a different request; the client must pick a new key for a new request."""

    code = "idempotency_key_reused"


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def _canonical_body(body: bytes) -> bytes:
    """Equal JSON with other spacing or key order is the same request; anything else is compared as bytes."""
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except ValueError:
        return body


@dataclass(frozen=True)
class RequestKey:
    key: str  # hash of (sub, Idempotency-Key)
    fingerprint: str  # hash of (method, path, query, body)
    # The response log's claim of this key was new (see "What a keyed case command costs"): nothing to search for.
    new: bool = False

    @classmethod
    def derive(cls, *, sub: str, header: str, method: str, path: str, query: bytes, body: bytes) -> RequestKey:
        return cls(key=_digest(b"zizhu-idempotency", sub.encode(), header.encode()),
                   fingerprint=_digest(method.upper().encode(), path.encode(), query, _canonical_body(body)))


def valid_header(value: str) -> bool:
    return 0 < len(value) <= MAX_KEY_LENGTH and value.isascii() and value.isprintable()


_current: ContextVar[RequestKey | None] = ContextVar("zizhu_request_key", default=None)


def current() -> RequestKey | None:
    """The key bound for the request being served, if the client sent one."""
    return _current.get()


@contextmanager
def bound(request: RequestKey) -> Iterator[None]:
    token = _current.set(request)
    try:
        yield
    finally:
        _current.reset(token)


@dataclass(frozen=True)
class Earlier:
    """Where an earlier application of the same request left the case."""

    case_id: UUID
    version: int
    position: int | None


class RequestLog:
    """Finds, stamps and indexes request keys; used by CaseService around load and save."""

    def __init__(self, store: CaseStore, engine: Engine) -> None:
        self.store = store
        self.engine = engine

    def earlier(self, request: RequestKey, case_id: UUID, *, after: int | None = None,
                upto: int | None = None) -> Earlier | None:
        """The earlier result of `request`, searching the index and then the case's events in (after, upto]."""
        with self.engine.connect() as conn:
            row = conn.execute(select(idempotency_keys).where(idempotency_keys.c.key == request.key)).first()
        if row is not None:
            self._same_request(request, row.fingerprint)
            return Earlier(UUID(row.case_id), int(row.version), row.position)
        found: int | None = None
        for domain_event in self.store.events.get(case_id, gt=after, lte=upto):
            if getattr(domain_event, KEY_ATTRIBUTE, None) == request.key:
                self._same_request(request, getattr(domain_event, FINGERPRINT_ATTRIBUTE, ""))
                found = int(domain_event.originator_version)
        if found is None:
            return None
        # The process died between saving the event and indexing it: index it now.
        position = int(self.store.recorder.max_notification_id() or 0)
        self.remember(request, case_id, found, position)
        return Earlier(case_id, found, position)

    @staticmethod
    def _same_request(request: RequestKey, fingerprint: str) -> None:
        if fingerprint != request.fingerprint:
            raise IdempotencyKeyReused("this Idempotency-Key was used for a different request; use a new key",
                                       field="Idempotency-Key")

    @staticmethod
    def stamp(case: StudentCase, request: RequestKey) -> None:
        """Carries the key on the command's last new event, so it is stored in the same insert."""
        pending: list[Any] = case.pending_events
        if pending:
            # Events are frozen dataclasses; these two attributes are outside every @event signature on purpose.
            object.__setattr__(pending[-1], KEY_ATTRIBUTE, request.key)
            object.__setattr__(pending[-1], FINGERPRINT_ATTRIBUTE, request.fingerprint)

    def remember(self, request: RequestKey, case_id: UUID, version: int, position: int | None) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(idempotency_keys).values(
                    key=request.key, fingerprint=request.fingerprint, case_id=str(case_id), version=version,
                    position=position, created_at=datetime.now(UTC)))
        except IntegrityError:
            pass  # a concurrent duplicate indexed the same result first
        except SQLAlchemyError as exc:
            # The event (and the key in it) is saved: the command succeeded, and a retry finds the key there.
            get_logger("zizhu.idempotency").warning("idempotency_index_failed", error_type=type(exc).__name__)


# ------------------------------------------------------------------------------------------ kept responses


@dataclass(frozen=True)
class KeptResponse:
    """The first successful answer to a request, as it was sent."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


# The start time a failed request's claim is given (`ResponseLog.abandon`): its lease is long over.
LAPSED = datetime(2000, 1, 1, tzinfo=UTC)

# "new": the key's first claim (no request with it ran before); "taken": a claim its process left (it died, or its
# request failed without being refused) is now this request's; "running": a copy of the request is running now.
Claim = KeptResponse | Literal["new", "taken", "running"]


class ResponseLog:
    """The first answers of keyed POST requests (every kind, case commands included), keyed like case commands.

    `claim` before running the request: "new" (a row `running` is now this request's, and there was none before),
    "taken" (a row left by a request that may have done its work is now this request's), a `KeptResponse` (it ran
    before: send that again), or "running" (a copy of it is running now: wait and claim again). After it ran:
    `keep` a 2xx answer, `release` a refused one (4xx: it changed nothing, and its retry is judged afresh as new),
    `abandon` anything else (a 5xx or an answer cut short may follow a saved event: the retry takes the row over at
    once and a case command then searches its events). The process running a request `touch`es its row every
    `HEARTBEAT` seconds; a row left `running` by a process that died is taken over once untouched for `LEASE`. A
    request that had done its work before its process died then runs again, which each such operation tolerates: a
    case command finds its key in its event and answers as the first time, batch commands skip what is done, the
    others refuse a duplicate. A kept answer older than `KEEP` is emptied (`expired`) but its row stays, like the
    key in a case command's event: a retry after that is taken over, never new, and a reused key is still told.
    """

    LEASE = timedelta(seconds=5)  # a `running` row not touched for this long is its dead process's
    HEARTBEAT = 1.0  # seconds between touches of a running request's row (api/idempotency.py)
    KEEP = timedelta(days=7)  # kept answers older than this are dropped (case commands keep their keys forever)
    MAX_BODY = 8 * 1024 * 1024  # larger answers are not kept (their request runs again on a retry)

    def __init__(self, engine: Engine, cipher: Cipher | None = None) -> None:
        self.engine = engine
        # Answers carry what the case holds (names, ID numbers): kept encrypted like the events, when they are.
        self.cipher = cipher
        self._pruned = datetime.min.replace(tzinfo=UTC)

    def claim(self, request: RequestKey) -> Claim:
        for _ in range(3):  # the row may vanish between the insert and the read (its request was refused)
            now = datetime.now(UTC)
            dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
            with self.engine.begin() as conn:
                # RETURNING, not rowcount: through psycopg an INSERT … ON CONFLICT DO NOTHING reports rowcount -1.
                inserted = conn.execute(dialect.insert(idempotent_responses).values(
                    key=request.key, fingerprint=request.fingerprint, state="running", started_at=now)
                    .on_conflict_do_nothing().returning(idempotent_responses.c.key)).first()
            if inserted is not None:
                return "new"
            with self.engine.begin() as conn:
                row = conn.execute(select(idempotent_responses)
                                   .where(idempotent_responses.c.key == request.key)).first()
                if row is None:
                    continue
                RequestLog._same_request(request, row.fingerprint)
                if row.state == "done":
                    headers = [(bytes(name, "latin-1"), bytes(value, "latin-1"))
                               for name, value in json.loads(row.headers)]
                    body = bytes(row.body)
                    return KeptResponse(int(row.status), headers, self.cipher.decrypt(body) if self.cipher else body)
                started = row.started_at if row.started_at.tzinfo else row.started_at.replace(tzinfo=UTC)
                if row.state == "expired" or now - started > self.LEASE:
                    taken = conn.execute(update(idempotent_responses).where(
                        idempotent_responses.c.key == request.key, idempotent_responses.c.state == row.state,
                        idempotent_responses.c.started_at == row.started_at).values(state="running", started_at=now))
                    if taken.rowcount == 1:
                        return "taken"
                return "running"
        return "running"

    def touch(self, request: RequestKey) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(idempotent_responses).where(
                idempotent_responses.c.key == request.key, idempotent_responses.c.state == "running")
                .values(started_at=datetime.now(UTC)))

    def keep(self, request: RequestKey, response: KeptResponse) -> None:
        if len(response.body) > self.MAX_BODY:
            self.release(request)
            return
        headers = json.dumps([[n.decode("latin-1"), v.decode("latin-1")] for n, v in response.headers])
        body = self.cipher.encrypt(response.body) if self.cipher else response.body
        with self.engine.begin() as conn:
            conn.execute(update(idempotent_responses).where(
                idempotent_responses.c.key == request.key, idempotent_responses.c.state == "running")
                .values(state="done", status=response.status, headers=headers, body=body))
        self._prune()

    def release(self, request: RequestKey) -> None:
        """The request was refused and changed nothing: its key is free again (a retry's claim is new)."""
        with self.engine.begin() as conn:
            conn.execute(delete(idempotent_responses).where(
                idempotent_responses.c.key == request.key, idempotent_responses.c.state == "running"))

    def abandon(self, request: RequestKey) -> None:
        """The request failed, or its answer was cut short, perhaps after it stored something: its claim lapses now,
        so a retry takes it over at once (and a case command searches its events for the key)."""
        with self.engine.begin() as conn:
            conn.execute(update(idempotent_responses).where(
                idempotent_responses.c.key == request.key, idempotent_responses.c.state == "running")
                .values(started_at=LAPSED))

    def _prune(self) -> None:
        now = datetime.now(UTC)
        if now - self._pruned < timedelta(hours=1):
            return
        self._pruned = now
        with self.engine.begin() as conn:
            # Emptied, not deleted: the row still says the key was used (a retry is taken over, never new).
            conn.execute(update(idempotent_responses).where(
                idempotent_responses.c.state == "done", idempotent_responses.c.started_at < now - self.KEEP)
                .values(state="expired", status=None, headers=None, body=None))
