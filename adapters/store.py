"""Event store wiring: the eventsourcing Application over `eventsourcing.sqlite` or `eventsourcing.postgres`.

The environment for the library is built here from Settings (never read from os.environ by the library: we pass
every key explicitly), with transcodings for every value type the events carry.
"""

from __future__ import annotations

from datetime import date
from enum import Enum
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, Repository
from eventsourcing.persistence import JSONTranscoder, Transcoding
from sqlalchemy.engine import make_url

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


class ShortHistoryFirst(Repository[UUID]):
    """Loads an aggregate in one round trip when its history is short, which almost every case's is.

    The library asks the snapshot table first on every load, then the events after the snapshot: two round trips,
    the first one wasted for any aggregate with fewer events than the snapshot interval (no snapshot exists yet).
    Here the events are read first, at most one interval's worth: fewer came back → that is the whole history, done;
    a full interval came back → a snapshot may exist, and the library's own path runs (measured by
    bench/command_path.py: one read less for every command). Reads at a given version use the library's path.
    """

    def _reconstruct_aggregate(self, aggregate_id: UUID, version: int | None, projector_func: Any) -> Any:
        if version is None and self.snapshot_store is not None:
            events = list(self.event_store.get(originator_id=aggregate_id, limit=SNAPSHOT_INTERVAL))
            if len(events) < SNAPSHOT_INTERVAL:
                aggregate = projector_func(None, events)
                if aggregate is None:
                    raise AggregateNotFoundError(f"Aggregate {aggregate_id!r} not found.")
                return aggregate
        return super()._reconstruct_aggregate(aggregate_id, version, projector_func)


class CaseStore(Application[UUID]):
    """The event store of student cases. Use cases live in adapters.cases; this only wires persistence."""

    name = "zizhu"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {StudentCase: SNAPSHOT_INTERVAL}

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        super().__init__(env=eventsourcing_env(settings))
        fail_fast(self.recorder)
        if self.snapshots is not None:
            fail_fast(self.snapshots.recorder)

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
