"""Event store wiring: the eventsourcing Application over `eventsourcing.sqlite` or `eventsourcing.postgres`.

The environment for the library is built here from Settings (never read from os.environ by the library: we pass
every key explicitly), with transcodings for every value type the events carry.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from itertools import groupby
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    Repository,
    project_aggregate,
)
from eventsourcing.domain import BaseAggregate
from eventsourcing.persistence import JSONTranscoder, Recording, Transcoding
from sqlalchemy.engine import make_url

from adapters.db import PlannerStatistics
from adapters.faults import fail_fast
from adapters.settings import Settings
from domain.case import StudentCase
from domain.followup import FollowUpSample  # noqa: F401  (registers its event topics for decoding)
from domain.plan import SupportPlan  # noqa: F401  (registers its event topics for decoding)
from domain.profile_versions import ProfileLine  # noqa: F401  (registers its event topics for decoding)
from domain.round import IdentificationRound  # noqa: F401  (registers its event topics for decoding)
from domain.spotcheck import SpotCheck  # noqa: F401  (registers its event topics for decoding)
from domain.values import Level, Status


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class EnumAsValue(Transcoding):
    """A plain (non-str) Enum stored by value; str-mixin enums would bypass transcoding and come back as str."""

    def __init__(self, enum_cls: type[Enum], name: str) -> None:
        self.type = enum_cls
        self.name = name

    def encode(self, obj: Enum) -> Any:
        return obj.value

    def decode(self, data: Any) -> Enum:
        member: Enum = self.type(data)
        return member


def eventsourcing_env(settings: Settings) -> dict[str, str]:
    env: dict[str, str] = {}
    if settings.is_sqlite:
        path = settings.sqlite_path
        path.parent.mkdir(parents=True, exist_ok=True)
        env.update(PERSISTENCE_MODULE="eventsourcing.sqlite", SQLITE_DBNAME=str(path), SQLITE_LOCK_TIMEOUT="30",
                   # Each event is hash-chained in its own transaction (adapters/integrity.py).
                   APPLICATION_RECORDER_TOPIC="adapters.integrity:ChainedSQLiteRecorder")
    else:
        url = make_url(settings.database_url)
        env.update(
            PERSISTENCE_MODULE="eventsourcing.postgres",
            POSTGRES_DBNAME=url.database or "postgres",
            POSTGRES_HOST=url.host or "127.0.0.1",
            POSTGRES_PORT=str(url.port or 5432),
            POSTGRES_USER=url.username or "postgres",
            POSTGRES_PASSWORD=url.password or "",
            POSTGRES_POOL_SIZE="5",
            POSTGRES_MAX_OVERFLOW="10",
            # How long a call waits for a pooled connection; with two attempts (adapters/faults.py) an outage
            # answers 503 within about 6 s.
            POSTGRES_CONNECT_TIMEOUT="3",
            POSTGRES_PRE_PING="y",
            # Tracking records vanish with DB functions on (measured here): keep them off.
            POSTGRES_ENABLE_DB_FUNCTIONS="n",
            APPLICATION_RECORDER_TOPIC="adapters.integrity:ChainedPostgresRecorder",
        )
        schema = url.query.get("options")
        if isinstance(schema, str) and schema.startswith("-csearch_path="):
            env["POSTGRES_SCHEMA"] = schema.removeprefix("-csearch_path=")
    if settings.cipher_key:
        # AES-256-GCM for events and snapshots alike; earlier keys still decrypt (adapters/crypto.py).
        env.update(CIPHER_TOPIC="adapters.crypto:KeyRingCipher", CIPHER_KEY=settings.cipher_key,
                   CIPHER_PREVIOUS_KEYS=",".join(settings.cipher_previous_keys))
    return env


SNAPSHOT_INTERVAL = 100


def project(aggregate: Any, domain_events: Iterable[Any]) -> Any:
    """The library's `project_aggregate` without its per-event `assert isinstance(event, CanMutateProtocol)`: a
    runtime-checkable Protocol check costs more than applying the event itself on Python 3.11 (measured: 72 % of
    replaying a five-event case). Every event we store is an aggregate event, which can mutate."""
    for domain_event in domain_events:
        aggregate = domain_event.mutate(aggregate)
    return aggregate


class ShortHistoryFirst(Repository[UUID]):
    """Loads an aggregate in one round trip when its history is short, which almost every case's is.

    The library asks the snapshot table first on every load, then the events after the snapshot: two round trips,
    the first one wasted for any aggregate with fewer events than the snapshot interval (no snapshot exists yet).
    Here the events are read first, at most one interval's worth: fewer came back → that is the whole history, done;
    a full interval came back → a snapshot may exist, and the library's own path runs (measured by
    bench/command_path.py: one read less for every command). Reads at a given version use the library's path.
    """

    def _reconstruct_aggregate(self, aggregate_id: UUID, version: int | None, projector_func: Any) -> Any:
        if projector_func is project_aggregate:
            projector_func = project
        if version is None and self.snapshot_store is not None:
            events = list(self.event_store.get(originator_id=aggregate_id, limit=SNAPSHOT_INTERVAL))
            if len(events) < SNAPSHOT_INTERVAL:
                aggregate = projector_func(None, events)
                if aggregate is None:
                    raise AggregateNotFoundError(f"Aggregate {aggregate_id!r} not found.")
                return aggregate
        return super()._reconstruct_aggregate(aggregate_id, version, projector_func)


# Values a copy of a case may share with the original: nothing can change them in place.
IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes, Decimal, date, datetime, UUID, Status, Level})


def copied(value: Any) -> Any:
    """A copy of a case's state value that shares nothing mutable with it: dicts, lists and tuples are copied all
    the way down, immutable values are shared (enum members keep their identity), anything else is deep-copied.
    About a quarter of the time of a pickle round trip of a case (measured on a rated case: 17 µs against 70-80
    µs): a dict is copied whole and only its values that are not immutable are copied again."""
    kind = type(value)
    if kind is dict:
        new = value.copy()
        for key, item in value.items():
            if type(item) not in IMMUTABLE:
                new[key] = copied(item)
        return new
    if kind is list:
        return [item if type(item) in IMMUTABLE else copied(item) for item in value]
    if kind in IMMUTABLE or isinstance(value, Enum):
        return value
    if kind is tuple:
        return tuple(copied(item) for item in value)
    return copy.deepcopy(value)


A = TypeVar("A")


def copy_case(case: A) -> A:
    """A copy of the case, or of any other aggregate (its whole state, the library's own attributes too), sharing
    nothing mutable with it."""
    clone: A = object.__new__(type(case))
    clone.__dict__ = copied(case.__dict__)
    return clone


class CaseCache:
    """The state of recently saved cases in this process, so that a command need not read its case back from the
    database before deciding.

    Entries are copies (`copy_case`): `put` keeps a copy of its own of the saved case, so the caller's object (a
    response being written from it) and the cache share nothing. `take` hands the entry itself to a command and
    forgets it: the command may change it freely, and only its save puts the new state back; `get` hands out a
    copy and keeps the entry. Bounded: least recently used entries go first.

    Other processes write too (several servers, `zizhu deadlines run`, imports). Before handing out a copy the cache
    catches up with the log when it last did so more than `REFRESH_SECONDS` ago: one query for the (position, case,
    version) of the events written since, without their bodies, and every entry that another writer moved past is
    forgotten. So a copy is at most that old; a change made by someone else within that time is a concurrent change,
    and the event store's unique (case, version) key refuses the write that raced it (409, as without a cache).
    A refusal by the domain on a copy is not trusted: `CaseService` decides again on the case as stored.
    """

    REFRESH_SECONDS = 0.2
    REFRESH_LIMIT = 5_000

    def __init__(self, maxsize: int, changes: Callable[[int, int], list[tuple[int, UUID, int]]] | None = None,
                 head: Callable[[], int | None] | None = None) -> None:
        self.maxsize = maxsize
        # The recorder's changes_after(position, limit) and max_notification_id(); None: no other writers.
        self._changes = changes
        self._head = head
        # (version, state); read_through also keeps (0, None): no such aggregate.
        self._items: OrderedDict[UUID, tuple[int, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._position: int | None = None
        self._refreshed = float("-inf")
        # Counts refreshes and forgetting: an entry read from the store while either happened may be stale already.
        self._generation = 0

    def get(self, case_id: UUID) -> StudentCase | None:
        """A copy of the cached case, which stays cached."""
        if self.maxsize <= 0:
            return None
        if time.monotonic() - self._refreshed > self.REFRESH_SECONDS:
            self.refresh()
        with self._lock:
            entry = self._items.get(case_id)
            if entry is None or entry[1] is None:
                return None
            self._items.move_to_end(case_id)
        case: StudentCase = copy_case(entry[1])
        return case

    def take(self, case_id: UUID) -> StudentCase | None:
        """The cached case itself, forgotten by the cache: a command decides on it, and its save puts the new state
        back (a command that saves nothing leaves the case to be read from the store next time). A command on the
        same case in another thread meanwhile reads it from the store; the store's unique (case, version) key
        decides which of the two writes wins, as without a cache."""
        if self.maxsize <= 0:
            return None
        if time.monotonic() - self._refreshed > self.REFRESH_SECONDS:
            self.refresh()
        with self._lock:
            entry = self._items.pop(case_id, None)
        case: StudentCase | None = None if entry is None else entry[1]
        return case

    def read_through(self, ids: Sequence[UUID], load: Callable[[list[UUID]], dict[UUID, Any]]) -> dict[UUID, Any]:
        """Copies of the aggregates with these IDs (an ID with no aggregate is left out), from the cache when it
        knows every one of them, a missing one included; else `load` reads them all and the cache keeps what it
        found, and which IDs it did not find. A copy is as old as a case's (at most `REFRESH_SECONDS` when another
        process wrote the aggregate; an aggregate saved by this process is forgotten at once, `CaseStore.save`)."""
        if self.maxsize <= 0:
            return load(list(ids))
        if self._position is None or time.monotonic() - self._refreshed > self.REFRESH_SECONDS:
            self.refresh()
        with self._lock:
            entries = [self._items.get(i) for i in ids]
            if all(entry is not None for entry in entries):
                for i in ids:
                    self._items.move_to_end(i)
                return {i: copy_case(entry[1]) for i, entry in zip(ids, entries, strict=True)
                        if entry is not None and entry[1] is not None}
            generation = self._generation
        found = load(list(ids))
        kept = {i: copy_case(aggregate) for i, aggregate in found.items()}
        with self._lock:
            if generation != self._generation:
                return found  # the log moved or something was saved while reading: keep nothing that may be stale
            for i in ids:
                aggregate = kept.get(i)
                self._items[i] = (0, None) if aggregate is None else (aggregate.version, aggregate)
                self._items.move_to_end(i)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return found

    def refresh(self) -> None:
        """Forgets the entries that events written since the last refresh moved past."""
        if self._changes is None:
            self._refreshed = time.monotonic()
            return
        with self._refreshing:
            started = time.monotonic()
            if started - self._refreshed <= self.REFRESH_SECONDS:
                return  # another thread just did it
            try:
                position = self._position
                if position is None:
                    # First refresh: nothing is known of what happened before; start from the log's end.
                    position = self._log_head()
                    self.clear()
                else:
                    rows = self._changes(position, self.REFRESH_LIMIT + 1)
                    if len(rows) > self.REFRESH_LIMIT:  # a bulk write elsewhere: start afresh
                        self.clear()
                        position = self._log_head()
                    else:
                        with self._lock:
                            self._generation += bool(rows)
                            for _position, case_id, version in rows:
                                entry = self._items.get(case_id)
                                if entry is not None and entry[0] < version:
                                    del self._items[case_id]
                        position = rows[-1][0] if rows else position
            except Exception:
                # The log could not be read (the database is away): trust nothing cached, start afresh next time;
                # the caller gets the store's error as any read would give it (503).
                self.clear()
                self._position = None
                raise
            self._position = position
            self._refreshed = started

    def _log_head(self) -> int:
        return int((self._head() if self._head is not None else None) or 0)

    def put(self, case: StudentCase) -> None:
        if self.maxsize <= 0:
            return
        if self._position is None:
            # Nothing is known yet of where the log stands: learn it now (after the save, so this case's copy is
            # current at that point), or cache nothing.
            try:
                self.refresh()
            except Exception:
                return
        kept = copy_case(case)
        with self._lock:
            entry = self._items.get(case.id)
            if entry is not None and entry[0] > case.version:
                return  # a later save of this case won the race to the cache
            self._items[case.id] = (case.version, kept)
            self._items.move_to_end(case.id)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def forget(self, case_id: UUID) -> None:
        with self._lock:
            self._generation += 1
            self._items.pop(case_id, None)

    def forget_all(self, ids: Iterable[UUID]) -> None:
        with self._lock:
            self._generation += 1
            for i in ids:
                self._items.pop(i, None)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._items.clear()


class CaseStore(Application[UUID]):
    """The event store of student cases. Use cases live in adapters.cases; this only wires persistence."""

    name = "zizhu"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {StudentCase: SNAPSHOT_INTERVAL}
    snapshotting_projectors: ClassVar[dict[type[Any], Any]] = {StudentCase: project}

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # Told how many events each save wrote, to keep the planner's statistics fresh (adapters/db.py).
        self.statistics: PlannerStatistics | None = None
        super().__init__(env=eventsourcing_env(settings))
        recorder: Any = self.recorder
        self.case_cache = CaseCache(settings.case_cache_size, changes=recorder.changes_after,
                                    head=recorder.max_notification_id)
        # Aggregates read by every command of a kind but seldom written (a school's rounds: every application's
        # admission check), read through `get_many_cached`; any aggregate this process saves is forgotten there.
        self.lookup_cache = CaseCache(settings.case_cache_size, changes=recorder.changes_after,
                                      head=recorder.max_notification_id)
        fail_fast(self.recorder)
        if self.snapshots is not None:
            fail_fast(self.snapshots.recorder)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """The library's `save`, without its two runtime Protocol checks per aggregate (slower on Python 3.11 than
        the rest of collecting the events); a case saved on its own is kept in the case cache."""
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        for obj in objs:
            if isinstance(obj, BaseAggregate):
                processing_event.events.extend(obj.collect_events())
                processing_event.aggregates[obj.id] = obj
            else:
                processing_event.collect_events(obj)
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        # After the write: a read of the lookup cache racing this save then keeps nothing (CaseCache.read_through).
        self.lookup_cache.forget_all({e.originator_id for e in processing_event.events})
        # One case saved: a command, whose case is likely to get the next command too; it is cached. Many saved
        # at once: a batch step, whose cases' next step is another batch (which reads them in bulk); copying each
        # would cost more than it saves, so any older copies of them are only forgotten.
        single = len(processing_event.aggregates) == 1
        for aggregate in processing_event.aggregates.values():
            if isinstance(aggregate, StudentCase):
                if single:
                    self.case_cache.put(aggregate)
                else:
                    self.case_cache.forget(aggregate.id)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        if self.statistics is not None:
            self.statistics.wrote(len(processing_event.events))
        return recordings

    def get_many(self, ids: Iterable[UUID], chunk: int = 500) -> dict[UUID, Any]:
        """The current state of many aggregates, read with one query per `chunk` of them (the library reads one
        aggregate per query). Absent IDs are absent from the result."""
        wanted = list(dict.fromkeys(ids))
        found: dict[UUID, Any] = {}
        for start in range(0, len(wanted), chunk):
            stored: Sequence[Any] = self.recorder.select_events_of(wanted[start:start + chunk])  # type: ignore[attr-defined]
            for originator_id, group in groupby(stored, key=lambda e: e.originator_id):
                aggregate = project(None, (self.mapper.to_domain_event(e) for e in group))
                if aggregate is not None:
                    found[UUID(str(originator_id))] = aggregate
        return found

    def get_many_cached(self, ids: Iterable[UUID]) -> dict[UUID, Any]:
        """`get_many` through the lookup cache: copies, no read when every ID is known to it (one that does not
        exist included), at most `CaseCache.REFRESH_SECONDS` old when another process wrote the aggregate."""
        return self.lookup_cache.read_through(list(dict.fromkeys(ids)), self.get_many)

    def construct_repository(self) -> Repository[UUID]:
        # The library's defaults (no aggregate cache), with the one-round-trip load of short histories.
        return ShortHistoryFirst(event_store=self.events, snapshot_store=self.snapshots)

    def construct_env(self, name: str, env: Any = None) -> Any:
        # Only the keys we pass: ambient PERSISTENCE_MODULE etc. in os.environ must not redirect the store.
        from eventsourcing.utils import Environment

        merged = {"IS_SNAPSHOTTING_ENABLED": "y"}
        merged.update(env or {})
        return Environment(name, merged)

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())
        transcoder.register(EnumAsValue(Level, "level"))
        transcoder.register(EnumAsValue(Status, "status"))
