"""The one projection runner every view uses: batches from the notification log, exactly once.

Each view owns physical tables per *generation* (`<base>_g<N>`). A generation's tracking row in
`projection_state` holds its log position; a batch of events is applied and the position moved in ONE transaction,
so a crash anywhere repeats and loses nothing. The batch is read from the position seen before the transaction,
and the transaction applies it only if a compare-and-set on the tracking row (which takes its lock: a row lock on
PostgreSQL, the write lock on SQLite) still finds that position: two runners on one view never both apply a batch.

Rebuilds write a new generation beside the active one and switch over when it has caught up, so queries keep
answering from the old tables meanwhile; the new tables are filled without their secondary indexes, which are built
just before the switch. A view whose `schema_version` changed is rebuilt at start-up (its old tables are never
migrated by hand): online, as a rebuild, when its tables kept their shape; otherwise the new tables take over at
once. Read-your-writes: `wait_for` helps a query's view reach a command's log position.
"""

from __future__ import annotations

import gc
import hashlib
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol, TypeVar, cast

from eventsourcing.persistence import Notification, find_id_convertor
from eventsourcing.utils import resolve_topic
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from adapters.db import metadata
from adapters.logs import get_logger
from adapters.store import CaseStore

projection_state = Table(
    "projection_state",
    metadata,
    Column("view", String(64), primary_key=True),
    Column("generation", Integer, primary_key=True),
    Column("schema_version", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # building | active | retired
    Column("position", BigInteger, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# How every stored event's state begins (the library's JSON transcoder, compact, `timestamp` the first attribute
# after the two it stores in columns): see Projections.lean_event.
_LEAN_PREFIX = b'{"timestamp":{"_type_":"datetime_iso","_data_":"'

RETIRED_GRACE = timedelta(seconds=10)  # queries that resolved the old generation finish before its tables go
# Events per rebuild transaction. Each batch pays fixed costs (the tracking row, every count it moves, rows of
# cases it touches more than once written once): bench/ measured 0.39 of the read+decode rate at 5,000 and 0.72
# at 20,000 (50,000 cases, PostgreSQL); two batches are held decoded at a time.
REBUILD_BATCH = 20_000


class Envelope:
    """One event as a view receives it: its log position, stored topic and decoded domain event, with what every
    view reads (the case id as text, the version, the time in UTC) worked out once when it is made. A plain class
    with slots: one is made per event per view, and a frozen dataclass cost a third of the decoding itself."""

    __slots__ = ("case_key", "event", "occurred_at", "position", "state", "topic", "version")

    def __init__(self, position: int, topic: str, event: Any, state: bytes | None = None) -> None:
        self.position = position
        self.topic = topic
        self.event = event
        self.state = state  # the stored event's state as JSON, when read from the log (see utc_wall_text)
        self.case_key: str = str(event.originator_id)  # the case id as views store it (text)
        self.version: int = event.originator_version
        moment: datetime = event.timestamp
        # UTC: SQLite keeps no offset, so every view stores and compares UTC wall times.
        self.occurred_at: datetime = moment if moment.tzinfo is UTC else moment.astimezone(UTC)

    @property
    def case_id(self) -> Any:
        return self.event.originator_id

    def __repr__(self) -> str:
        return f"Envelope({self.position}, {self.topic!r}, {type(self.event).__name__})"


_STAMP = len(_LEAN_PREFIX)
_UTC = b"+00:00"


def utc_wall_text(envelope: Envelope) -> str | None:
    """The event's time as UTC wall-clock text with microseconds (`2025-09-01 06:00:00.000000`, the form SQLAlchemy
    stores on SQLite), cut from the ISO text its stored state begins with (see `Projections.lean_event`): half the
    cost of formatting the datetime. None when the envelope has no stored state, or one of another shape or offset."""
    state = envelope.state
    if state is None or not state.startswith(_LEAN_PREFIX):
        return None
    end = state.find(b'"', _STAMP)
    if not state.endswith(_UTC, _STAMP, end):
        return None
    if end - _STAMP == 32:  # 2025-09-01T06:00:00.123456+00:00
        return state[_STAMP:_STAMP + 10].decode() + " " + state[_STAMP + 11:_STAMP + 26].decode()
    if end - _STAMP == 25:  # 2025-09-01T06:00:00+00:00 (isoformat leaves out microseconds that are 0)
        return state[_STAMP:_STAMP + 10].decode() + " " + state[_STAMP + 11:_STAMP + 19].decode() + ".000000"
    return None


def as_utc(moment: datetime) -> datetime:
    """A time read back from a view: SQLite returns it without offset (it was stored in UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@contextmanager
def rebuild_gc() -> Iterator[None]:
    """Fewer garbage collections while rebuilding. Decoding allocates millions of small containers while two
    batches of events stay alive, and the default thresholds then run full collections over them again and
    again: measured here, that halved rebuild throughput. Nothing in a batch forms reference cycles that need
    collecting promptly; the thresholds are restored afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], 50_000), max(before[1], 50), max(before[2], 100))
    try:
        yield
    finally:
        gc.set_threshold(*before)


@dataclass
class Batch:
    """What the runner tells a view about the batch its `handle` is applying (`current_batch()`; None when a view
    is driven directly, as unit tests do)."""

    view: str
    generation: int
    position: int  # the generation's position before this batch
    after: int  # and once it commits
    building: bool  # a rebuild's generation: no query reads it until `finish_building` and the switch
    on_commit: list[Callable[[], None]] = field(default_factory=list)  # run after the batch committed, in order


_batch: ContextVar[Batch | None] = ContextVar("zizhu_projection_batch", default=None)


def current_batch() -> Batch | None:
    return _batch.get()


class KeptForBatches(Protocol):
    def settle(self, tables: Iterable[Table]) -> None: ...

    def moved(self, tables: Iterable[Table], position: int, to: int) -> None: ...


# What views keep in memory for their batches (projections.bulk.RowCache), told about a generation (by its tables)
# when its rebuild is over, and when its position moves over events the view does not read.
kept_for_batches: weakref.WeakSet[KeptForBatches] = weakref.WeakSet()


@contextmanager
def applying(batch: Batch) -> Iterator[Batch]:
    """Makes `batch` the current one for the views' `handle` calls inside (the runner's transaction)."""
    reset = _batch.set(batch)
    try:
        yield batch
    finally:
        _batch.reset(reset)


class View:
    """Base of every read model. Subclasses name themselves, declare tables per generation, and apply batches."""

    name: ClassVar[str]
    schema_version: ClassVar[int] = 1
    topics: ClassVar[tuple[str, ...]] = ()  # empty: every event
    # Topics whose events this view reads only by their class and the envelope (case, version, time, position),
    # never an attribute of their own: the runner hands them over without decoding their payload (`lean_event`).
    # A view that reads an attribute of such an event anyway gets AttributeError, not a wrong row.
    lean_topics: ClassVar[frozenset[str]] = frozenset()

    def define_tables(self, md: MetaData, suffix: str) -> dict[str, Table]:
        raise NotImplementedError

    def handle(self, conn: Connection, tables: dict[str, Table], batch: Sequence[Envelope]) -> None:
        raise NotImplementedError

    def finish_building(self, conn: Connection, tables: dict[str, Table]) -> None:
        """Called in the transaction that switches a rebuilt generation in, caught up: a view may leave tables
        that only summarise its rows (counts) empty while building, and fill them here in one statement."""


@dataclass
class Progress:
    view: str
    generation: int
    position: int
    head: int
    done: int
    rate: float

    @property
    def remaining(self) -> int:
        return max(self.head - self.position, 0)

    @property
    def eta_seconds(self) -> float:
        return self.remaining / self.rate if self.rate > 0 else 0.0


class Projections:
    """All views over one store and read-model database; the runner loop and the query-side table lookup."""

    def __init__(self, store: CaseStore, engine: Engine, views: Sequence[View], batch_size: int = 1000) -> None:
        self.store = store
        self.engine = engine
        self.views = {v.name: v for v in views}
        self.batch_size = batch_size
        self._tables: dict[tuple[str, int], dict[str, Table]] = {}
        self._active_cache: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()
        self.log = get_logger("zizhu.projections")

    # ------------------------------------------------------------------------------------------ tables

    def tables_of(self, view: str, generation: int) -> dict[str, Table]:
        key = (view, generation)
        with self._lock:
            if key not in self._tables:
                self._tables[key] = self.views[view].define_tables(MetaData(), f"_g{generation}")
            return self._tables[key]

    def _create_generation(self, conn: Connection, view: str, generation: int, status: str) -> None:
        for table in self.tables_of(view, generation).values():
            table.create(conn, checkfirst=True)  # as declared, with whatever a view hooks on its creation
            if status == "building":
                # Secondary indexes come when the rebuild has caught up (_create_indexes): filling a table and
                # then indexing it costs far less than keeping every index in step with every batch.
                for index in table.indexes:
                    index.drop(conn, checkfirst=True)
        now = datetime.now(UTC)
        conn.execute(insert(projection_state).values(view=view, generation=generation,
                                                     schema_version=self.views[view].schema_version,
                                                     status=status, position=0, created_at=now, updated_at=now))

    def ensure(self) -> None:
        """At start-up: every view has an active generation of its current schema (else one is built)."""
        for attempt in range(3):
            try:
                self._ensure()
                break
            except (IntegrityError, ProgrammingError):
                # Two processes starting on a fresh store race to create the same generation; the loser
                # finds the winner's rows on the next attempt.
                if attempt == 2:
                    raise
                time.sleep(0.2)
        self._drop_retired()

    def _ensure(self) -> None:
        with self.engine.begin() as conn:
            rows = conn.execute(select(projection_state)).all()
            for name, view in self.views.items():
                mine = [r for r in rows if r.view == name and r.status != "retired"]
                current = [r for r in mine if r.schema_version == view.schema_version]
                if not mine:
                    self._create_generation(conn, name, 1, "active")
                elif not current:
                    generation = max(r.generation for r in rows if r.view == name) + 1
                    active = [r for r in mine if r.status == "active"]
                    # New rules over the same tables: the active generation keeps answering (kept up to date by
                    # these rules) while a new one is filled from the log and switched to when it has caught up,
                    # as a rebuild is (`zizhu rebuild` carries on with it, faster). New tables: the old ones cannot
                    # answer this code's queries, so the new generation takes over at once (short lists until it
                    # has caught up).
                    online = bool(active) and all(self._same_shape(conn, name, r.generation) for r in active)
                    retired = [projection_state.c.view == name]
                    if online:
                        retired.append(projection_state.c.status != "active")
                    conn.execute(update(projection_state).where(*retired)
                                 .values(status="retired", updated_at=datetime.now(UTC) - RETIRED_GRACE))
                    self._create_generation(conn, name, generation, "building" if online else "active")
                    self.log.info("projection_schema_changed", view=name, generation=generation, online=online)
                else:
                    for row in current:  # tables may be missing if a process died between steps
                        for table in self.tables_of(name, row.generation).values():
                            table.create(conn, checkfirst=True)
                            if row.status == "active":
                                for index in table.indexes:
                                    index.create(conn, checkfirst=True)

    def _same_shape(self, conn: Connection, view: str, generation: int) -> bool:
        """Whether a generation's tables in the database are the ones this code declares for it: the same tables,
        columns, types, nullability and primary keys (indexes may differ; they serve speed, not answers)."""
        found = inspect(conn)
        for table in self.tables_of(view, generation).values():
            if not found.has_table(table.name):
                return False
            columns = {c["name"]: c for c in found.get_columns(table.name)}
            if set(columns) != set(table.columns.keys()):
                return False
            for column in table.columns:
                had = columns[column.name]
                if (had["type"].compile(dialect=conn.dialect) != column.type.compile(dialect=conn.dialect)
                        or bool(had["nullable"]) != bool(column.nullable)):
                    return False
            key = found.get_pk_constraint(table.name)["constrained_columns"]
            if set(key) != {c.name for c in table.primary_key.columns}:
                return False
        return True

    def active_generation(self, view: str, max_age: float = 1.0) -> int:
        cached = self._active_cache.get(view)
        if cached and time.monotonic() - cached[0] < max_age:
            return cached[1]
        with self.engine.connect() as conn:
            generation = conn.execute(
                select(projection_state.c.generation)
                .where(projection_state.c.view == view, projection_state.c.status == "active")
            ).scalar_one()
        self._active_cache[view] = (time.monotonic(), int(generation))
        return int(generation)

    def active_tables(self, view: str) -> dict[str, Table]:
        """What a query reads: the tables of the view's active generation."""
        return self.tables_of(view, self.active_generation(view))

    # ------------------------------------------------------------------------------------------ running

    def step(self, view: str, generation: int, limit: int | None = None) -> int:
        """Applies at most one batch to one generation; returns how many events it applied."""
        applied, _ = self._step(view, generation, limit or self.batch_size)
        return applied

    def read_batch(self, view: str, after: int, limit: int) -> tuple[int, list[Envelope]]:
        """The next events a view takes after log position `after`, decoded (those of its `lean_topics` without
        their payload): (after, batch)."""
        spec = self.views[view]
        notifications = self.store.recorder.select_notifications(start=after + 1, limit=limit, topics=spec.topics)
        lean = spec.lean_topics
        mapper = self.store.mapper
        plain = mapper.cipher is None and mapper.compressor is None  # states are the transcoder's JSON as it is
        return after, [Envelope(n.id, n.topic, self.lean_event(n) if n.topic in lean else mapper.to_domain_event(n),
                                n.state if plain else None) for n in notifications]

    def lean_event(self, notification: Notification) -> Any:
        """The event of a stored record with its class, case, version and time only. The time is the first item of
        every stored event's state as the library writes it (`{"timestamp":{"_type_":"datetime_iso","_data_":…`),
        so it is read without parsing the rest: a fifth of the cost of decoding a small event, and much less of a
        large one. A state in any other shape is decoded in full."""
        state = notification.state
        mapper = self.store.mapper
        if mapper.cipher is not None:
            state = mapper.cipher.decrypt(state)
        if mapper.compressor is not None:
            state = mapper.compressor.decompress(state)
        if not state.startswith(_LEAN_PREFIX):
            return mapper.to_domain_event(notification)
        end = state.find(b'"', len(_LEAN_PREFIX))
        cls = resolve_topic(notification.topic)
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", {
            "originator_id": find_id_convertor(cls, cast(Hashable, type(notification.originator_id)))(
                notification.originator_id),
            "originator_version": notification.originator_version,
            "timestamp": datetime.fromisoformat(state[len(_LEAN_PREFIX):end].decode()),
        })
        return event

    def _step(self, view: str, generation: int, limit: int,
              prefetched: tuple[int, list[Envelope]] | None = None) -> tuple[int, int | None]:
        """One batch: (events applied, the generation's position afterwards, None once it is retired).
        A `prefetched` batch is used only if it was read from exactly the position the generation is at."""
        spec = self.views[view]
        tables = self.tables_of(view, generation)
        key = and_(projection_state.c.view == view, projection_state.c.generation == generation)
        with self.engine.connect() as conn:
            row = conn.execute(select(projection_state.c.position, projection_state.c.status).where(key)).first()
        if row is None or row.status == "retired":
            return 0, None
        position = int(row.position)
        # The batch is read and decoded BEFORE the write lock is taken. On SQLite, holding the database's write lock
        # while waiting for the event store's connection pool deadlocks (until a 5 s pool timeout) with a command
        # that holds the pool's writer slot and waits for that lock: found by tests/reliability/test_concurrency.
        if prefetched is not None and prefetched[0] == position:
            batch = prefetched[1]
        else:
            batch = self.read_batch(view, position, limit)[1]
        if not batch:
            return 0, self._skip_unread(view, generation, position) if spec.topics else position
        context = Batch(view, generation, position, batch[-1].position, row.status == "building")
        with applying(context), self.engine.begin() as conn:
            # Compare-and-set under the row's lock: if another runner moved this generation since the read above,
            # nothing is applied here (exactly once), and the next step reads from where that runner stopped. The
            # status too: a batch applied as building must not land in a generation that has switched meanwhile.
            touched = conn.execute(update(projection_state)
                                   .where(key, projection_state.c.status == row.status,
                                          projection_state.c.position == position)
                                   .values(updated_at=datetime.now(UTC)))
            if touched.rowcount == 0:
                return 0, position
            spec.handle(conn, tables, batch)
            conn.execute(update(projection_state).where(key).values(position=batch[-1].position))
        for committed in context.on_commit:
            committed()
        statistics = self.store.statistics  # the views' tables live in the store's database and schema
        if statistics is not None:
            statistics.wrote(len(batch))
        self.log.debug("projection_batch", view=view, generation=generation, events=len(batch),
                       position=batch[-1].position)
        return len(batch), batch[-1].position

    def _skip_unread(self, view: str, generation: int, position: int) -> int:
        """A view that reads some topics only, with none of them after `position`: its position moves up to the
        log's head, over the events it does not read. Otherwise it rests at its last event, and every check of
        whether it has caught up (`_caught_up`, for each read-your-writes query) scans the whole, ever longer,
        stretch of log since then for its topics. The head is read first: the store writes in notification order
        (PostgreSQL's recorder holds a table lock until commit; SQLite has one writer), so every event up to it is
        visible to the scan that follows."""
        head = self.head()
        if head <= position or self.store.recorder.select_notifications(
                start=position + 1, limit=1, stop=head, topics=self.views[view].topics):
            return position
        return self._move_over_unread(view, generation, position, head)

    def _move_over_unread(self, view: str, generation: int, position: int, head: int) -> int:
        """Moves a generation from `position` to `head`, known to hold none of its view's events in between (if no
        one moved it meanwhile); returns where it is."""
        key = and_(projection_state.c.view == view, projection_state.c.generation == generation)
        with self.engine.begin() as conn:
            moved = conn.execute(update(projection_state)
                                 .where(key, projection_state.c.status != "retired",
                                        projection_state.c.position == position)
                                 .values(position=head, updated_at=datetime.now(UTC)))
        if not moved.rowcount:
            return position
        tables = self.tables_of(view, generation).values()
        for kept in list(kept_for_batches):  # no row changed: what the view kept as of `position` holds at `head`
            kept.moved(tables, position, head)
        return head

    def head(self) -> int:
        return int(self.store.recorder.max_notification_id() or 0)

    def positions(self) -> dict[str, dict[str, Any]]:
        """Each view's active position and lag behind the log (for /healthz)."""
        head = self.head()
        with self.engine.connect() as conn:
            rows = conn.execute(select(projection_state).where(projection_state.c.status != "retired")).all()
        result: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row.view not in self.views:
                continue
            entry = result.setdefault(row.view, {})
            if row.status == "active":
                # A view that reads only some topics rests below the head when nothing it reads is newer.
                position = int(row.position)
                lag = 0 if self._caught_up(row.view, position, head) else max(head - position, 0)
                entry.update(position=position, lag=lag, generation=row.generation)
            else:
                entry["rebuilding"] = {"generation": row.generation, "position": int(row.position)}
        return result

    def catch_up(self, view: str | None = None, rebuilds: bool = True) -> int:
        """Runs every live generation until none has anything left; switches over caught-up rebuilds. With
        `rebuilds=False` only active generations: what a reader needs before it reads, without doing a rebuild's
        work (a view rebuilt online after a schema change may have millions of events to go)."""
        return self.catch_up_to(view, rebuilds)[0]

    def catch_up_to(self, view: str | None = None, rebuilds: bool = True) -> tuple[int, int]:
        """`catch_up`: (events applied, a log head every live generation has taken all its events up to).

        A pass that applied events ends the catch-up without another pass over every view when no step filled a
        whole batch and the head has not moved since the pass began: each step then read everything its view
        takes up to that head (the store writes in notification order, so every event up to a head read first is
        visible to the reads after it). Not while a generation is building: its switch comes from a pass that
        applies nothing. Views none of the new events is for are moved over them without being asked, when the
        pass could read what kinds of events they are (at most `NEW_TOPICS_READ`)."""
        total = 0
        while True:
            head = self.head()
            applied = 0
            full = building = False
            resting: list[tuple[str, int, int]] = []  # views that applied events and stopped below the head
            live = self._live_positions(view)
            new = self._new_topics(min((p for _, _, status, p in live if status == "active"), default=head), head)
            for name, generation, status, at in live:
                if status == "building":
                    building = True
                    if not rebuilds:
                        continue
                elif new is not None and (at >= head or self._reads_none(name, at, new)):
                    # An active view none of the new events is for: moved over them, not asked (three queries less).
                    if at < head:
                        self._move_over_unread(name, generation, at, head)
                    continue
                done, position = self._step(name, generation, self.batch_size)
                applied += done
                full = full or done >= self.batch_size
                if done and position is not None and position < head:
                    resting.append((name, generation, position))
                if status == "building" and applied == 0:
                    self._switch_if_caught_up(name, generation)
            total += applied
            if applied == 0:
                return total, head
            if not (full or building) and self.head() == head:
                # What a second pass would do for them: the rest of the log up to the head holds none of their
                # events (each read everything it takes up to it), so their position moves over it.
                for name, generation, position in resting:
                    self._move_over_unread(name, generation, position, head)
                return total, head

    # A pass reads the kinds of at most this many new events once, to skip the views none of them is for.
    NEW_TOPICS_READ = 200

    def _new_topics(self, lowest: int, head: int) -> list[tuple[int, str]] | None:
        """(position, topic) of every event after `lowest` up to `head`; None when there are more than
        NEW_TOPICS_READ (then every view is asked)."""
        if head <= lowest:
            return []
        found = self.store.recorder.select_notifications(start=lowest + 1, limit=self.NEW_TOPICS_READ, stop=head)
        if len(found) == self.NEW_TOPICS_READ and found[-1].id < head:
            return None
        return [(n.id, n.topic) for n in found]

    def _reads_none(self, view: str, position: int, new: list[tuple[int, str]]) -> bool:
        """Whether none of the `new` events after `position` is one `view` takes (a view that takes every event
        takes any)."""
        topics = self.views[view].topics
        return bool(topics) and not any(n > position and topic in topics for n, topic in new)

    def _live_positions(self, view: str | None = None) -> list[tuple[str, int, str, int]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(projection_state.c.view, projection_state.c.generation,
                                       projection_state.c.status, projection_state.c.position)
                                .where(projection_state.c.status != "retired")).all()
        return [(r.view, r.generation, r.status, int(r.position)) for r in rows
                if r.view in self.views and (view is None or r.view == view)]

    def _live_generations(self, view: str | None = None) -> list[tuple[str, int, str]]:
        return [(name, generation, status) for name, generation, status, _ in self._live_positions(view)]

    def _create_indexes(self, view: str, generation: int) -> None:
        """The secondary indexes a rebuilt generation was filled without (each once; a crash repeats only the
        ones not yet made)."""
        for table in self.tables_of(view, generation).values():
            for index in table.indexes:
                try:
                    with self.engine.begin() as conn:
                        index.create(conn, checkfirst=True)
                except (IntegrityError, ProgrammingError, OperationalError):
                    # Another runner made it at the same moment (SQLite says so with an OperationalError, "index
                    # … already exists"); if not, this raises again.
                    with self.engine.begin() as conn:
                        index.create(conn, checkfirst=True)

    def _switch_if_caught_up(self, view: str, generation: int) -> bool:
        head = self.head()
        if self._status(view, generation) != "building" or not self._caught_up(
                view, self.position(view, generation), head):
            return False
        self._create_indexes(view, generation)  # before it answers queries, outside the switch's transaction
        with self.engine.begin() as conn:
            conn.execute(update(projection_state).where(projection_state.c.view == view,
                                                        projection_state.c.generation == generation)
                         .values(updated_at=datetime.now(UTC)))
            row = conn.execute(select(projection_state).where(projection_state.c.view == view,
                                                              projection_state.c.generation == generation)).one()
            if row.status != "building" or not self._caught_up(view, int(row.position), head):
                return False
            self.views[view].finish_building(conn, self.tables_of(view, generation))
            now = datetime.now(UTC)
            conn.execute(update(projection_state).where(projection_state.c.view == view,
                                                        projection_state.c.status == "active")
                         .values(status="retired", updated_at=now))
            conn.execute(update(projection_state).where(projection_state.c.view == view,
                                                        projection_state.c.generation == generation)
                         .values(status="active", updated_at=now))
        self._active_cache.pop(view, None)
        self.log.info("projection_switched", view=view, generation=generation)
        return True

    def _caught_up(self, view: str, position: int, target: int) -> bool:
        """True when no event this view cares about lies after `position` up to `target` (topic filters leave
        gaps, so a filtered view's position can rest below the log head and still be current)."""
        if position >= target:
            return True
        topics = self.views[view].topics
        if not topics or self.head() < target:
            return False  # a position the log has not reached yet cannot have been seen
        newer = self.store.recorder.select_notifications(start=position + 1, limit=1, stop=target, topics=topics)
        return not newer

    def _drop_retired(self) -> None:
        cutoff = datetime.now(UTC) - RETIRED_GRACE
        with self.engine.begin() as conn:
            rows = conn.execute(select(projection_state).where(projection_state.c.status == "retired")).all()
            for row in rows:
                updated = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
                if row.view in self.views and updated > cutoff:
                    continue
                if row.view in self.views:
                    for table in self.tables_of(row.view, row.generation).values():
                        table.drop(conn, checkfirst=True)
                conn.execute(projection_state.delete().where(projection_state.c.view == row.view,
                                                             projection_state.c.generation == row.generation))

    def start_rebuild(self, view: str) -> int:
        """Creates a new generation that the runner fills from position 0 and switches to when caught up."""
        with self.engine.begin() as conn:
            rows = conn.execute(select(projection_state).where(projection_state.c.view == view)).all()
            for row in rows:
                if row.status == "building":
                    return int(row.generation)  # one rebuild at a time: carry on with it
            generation = max((r.generation for r in rows), default=0) + 1
            self._create_generation(conn, view, generation, "building")
        return generation

    def rebuild(self, view: str, on_progress: Callable[[Progress], None] | None = None,
                batch_size: int = REBUILD_BATCH) -> Progress:
        """Rebuilds one view into fresh tables, reporting progress, and switches over when caught up.

        On PostgreSQL a reader thread reads and decodes the next batch while this one is written: the driver
        fetches a batch in one call that releases the GIL, and the writing mostly waits on the server. On SQLite
        both sides run in this thread: its driver releases the GIL for every row it reads or writes, and each
        release hands the GIL to the other thread's pure Python for up to the interpreter's switch interval, so
        two threads there ran slower than one (notifications at 20,000 cases: 0.31–0.49 of read+decode with the
        reader thread, 0.58–0.60 without; bench/README (a)). A batch read ahead is applied only if the
        generation is still where it was read from."""
        generation = self.start_rebuild(view)
        started = time.monotonic()
        done = 0
        read_ahead = self.engine.dialect.name != "sqlite"
        with (rebuild_gc(), ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rebuild-{view}") if read_ahead
              else _InlineExecutor() as reader):
            # Read ahead, the first batch is a quarter of the rest: the writer starts while the second one is read
            # and decoded (a view whose events fit in one or two batches otherwise gets no overlap at all).
            first = max(batch_size // 4, 1) if read_ahead else batch_size
            ahead = reader.submit(self.read_batch, view, self.position(view, generation), first)
            while True:
                prefetched = ahead.result()
                after = prefetched[1][-1].position if prefetched[1] else prefetched[0]
                ahead = reader.submit(self.read_batch, view, after, batch_size)  # in line on SQLite
                applied, position = self._step(view, generation, batch_size, prefetched)
                if position is None:
                    raise RuntimeError(f"generation {generation} of {view} was retired by another process")
                done += applied
                elapsed = max(time.monotonic() - started, 1e-6)
                progress = Progress(view, generation, position, self.head(), done, done / elapsed)
                if on_progress:
                    on_progress(progress)
                if applied == 0 and (self._switch_if_caught_up(view, generation)
                                     or self._status(view, generation) == "active"):
                    # Switched here, or by another process rebuilding the same generation. What the view kept
                    # for the rebuild shrinks to what a live generation keeps (`zizhu rebuild` of every view
                    # would otherwise hold each view's rows until it exits).
                    tables = self.tables_of(view, generation).values()
                    for kept in list(kept_for_batches):
                        kept.settle(tables)
                    self._drop_retired()
                    return progress

    def _status(self, view: str, generation: int) -> str | None:
        with self.engine.connect() as conn:
            status: str | None = conn.execute(select(projection_state.c.status).where(
                projection_state.c.view == view, projection_state.c.generation == generation)).scalar()
        return status

    def wait_for(self, view: str, position: int, timeout: float = 5.0) -> bool:
        """Read-your-writes: waits (at most `timeout` seconds) until the view's active generation has reached
        `position`. It helps by stepping the active generation itself, never a rebuild in progress, so a
        request does not end up doing a rebuild's work."""
        deadline = time.monotonic() + timeout
        while True:
            generation = self.active_generation(view, max_age=0)  # a switch-over may happen meanwhile
            if self._caught_up(view, self.position(view, generation), position):
                return True
            if time.monotonic() >= deadline:
                return False
            if self.step(view, generation) == 0:
                time.sleep(0.01)

    def position(self, view: str, generation: int | None = None) -> int:
        """The log position a generation (by default the active one, as cached for queries) has applied up to."""
        if generation is None:
            generation = self.active_generation(view)
        with self.engine.connect() as conn:
            reached = conn.execute(select(projection_state.c.position).where(
                projection_state.c.view == view, projection_state.c.generation == generation)).scalar()
        return int(reached or 0)

    def checksum(self, view: str, generation: int | None = None) -> str:
        """A digest over every row of a generation's tables in primary-key order: two builds of a view from
        the same log agree row for row exactly when their checksums agree."""
        if generation is None:
            generation = self.active_generation(view, max_age=0)
        digest = hashlib.sha256()
        with self.engine.connect() as conn:
            for base, table in sorted(self.tables_of(view, generation).items()):
                digest.update(f"#{base}".encode())
                order = list(table.primary_key.columns) or list(table.columns)
                for row in conn.execute(select(table).order_by(*order)):
                    values = [as_utc(v).isoformat() if isinstance(v, datetime) else repr(v) for v in row]
                    digest.update(("|".join(values) + "\n").encode())
        return digest.hexdigest()


T = TypeVar("T")


class _InlineExecutor(Executor):
    """An executor that runs each call at once in the calling thread (a rebuild on SQLite: no reader thread)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


class RunnerThread:
    """Polls the log and keeps every view caught up, in the background of `zizhu serve` or `zizhu project`.

    An idle poll costs one query: while the log's head has not moved since the head a catch-up reached (every live
    generation has taken all its events up to it, `catch_up_to`), no view can have anything to do, so the views
    are not asked, each with three or four queries. At least every `FULL_POLL_SECONDS` they are asked
    anyway (a generation another process created, a switch that did not happen). An idle `zizhu serve` on SQLite
    went from 6 % to 1.7 % of a core with this (bench/README (e))."""

    FULL_POLL_SECONDS = 5.0

    def __init__(self, projections: Projections, interval: float) -> None:
        self.projections = projections
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="projection-runner", daemon=True)
        self._last_cleanup = time.monotonic()
        # The head as of the latest catch-up that applied nothing, and when that was; None: not idle.
        self._idle: tuple[int, float] | None = None
        self.catch_ups = 0  # how many catch-ups ran (tests/integration/test_projections.py)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # never started when `zizhu serve` leaves the views to `zizhu project`
            self._thread.join(timeout)

    def run_forever(self) -> None:
        self._run()

    def _run(self) -> None:
        log = self.projections.log
        while not self._stop.is_set():
            try:
                head = self.projections.head()
                idle = self._idle
                if idle is not None and idle[0] == head and time.monotonic() - idle[1] < self.FULL_POLL_SECONDS:
                    self._stop.wait(self.interval)
                    continue
                applied, reached = self.projections.catch_up_to()
                self.catch_ups += 1
                self._idle = (reached, time.monotonic())
                if time.monotonic() - self._last_cleanup > RETIRED_GRACE.total_seconds():
                    self.projections._drop_retired()
                    self._last_cleanup = time.monotonic()
            except Exception as exc:  # a failing store must not kill the runner; it retries after a pause
                log.warning("projection_runner_error", error_type=type(exc).__name__, error=str(exc)[:200])
                applied = 0
                self._idle = None
                self._stop.wait(min(self.interval * 10, 2.0))
            if applied == 0:
                self._stop.wait(self.interval)
