"""Database faults: the event store fails fast, so a request during an outage gets its 503 in seconds, not a minute.

eventsourcing's PostgreSQL recorder retries each call 10 times, 0.2 s apart, and each attempt waits up to the
connection pool's timeout for a connection. While the database refuses connections that made one store call take
about 52 s (measured) before the API could answer 503, longer than most clients and proxies wait. Two attempts still
ride over a single cut connection (the pool's pre-ping drops dead idle connections; the second attempt gets a fresh
one), and an outage answers 503 after at most 2 × the pool timeout. Recovery needs no restart: the pool reconnects
in the background once the database is back (psycopg_pool's backoff; about 9 s after a 1 s outage here).

The library's retry decorator keeps the undecorated method as `__wrapped__`; we re-wrap that with fewer attempts on
the recorder instance, so the library (and the chained recorder subclass in adapters/integrity.py) stay untouched.
Recorders without such retries (SQLite) are left as they are.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.utils import retry

RETRIED = ("insert_events", "select_events", "select_notifications", "max_notification_id")
ATTEMPTS = 2
WAIT = 0.1


def fail_fast(recorder: Any) -> None:
    for name in RETRIED:
        undecorated = getattr(getattr(type(recorder), name, None), "__wrapped__", None)
        if undecorated is None:
            continue
        policy = retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=WAIT)
        setattr(recorder, name, MethodType(policy(undecorated), recorder))
