"""Feeds real domain events to one view and reads its rows back: events in, rows out.

The view's tables live in an in-memory SQLite database, so a view test needs no server and no files.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import MetaData, create_engine, select
from sqlalchemy.engine import Engine

from projections.runner import Envelope, View, as_utc


class ViewHarness:
    def __init__(self, view: View) -> None:
        self.view = view
        self.engine: Engine = create_engine("sqlite://")
        self.tables = view.define_tables(MetaData(), "_test")
        for table in self.tables.values():
            table.create(self.engine)
        self.position = 0

    def envelopes(self, events: Sequence[Any]) -> list[Envelope]:
        batch = []
        for event in events:
            self.position += 1
            batch.append(Envelope(position=self.position, topic=getattr(event, "TOPIC", ""), event=event))
        return batch

    def feed(self, events: Sequence[Any], batch_size: int | None = None) -> None:
        """Applies the events in batches of `batch_size` (all in one batch by default), one transaction each."""
        envelopes = self.envelopes(events)
        size = batch_size or max(len(envelopes), 1)
        for start in range(0, len(envelopes), size):
            with self.engine.begin() as conn:
                self.view.handle(conn, self.tables, envelopes[start:start + size])

    def rows(self, base: str) -> list[dict[str, Any]]:
        table = self.tables[base]
        with self.engine.connect() as conn:
            result = conn.execute(select(table).order_by(*table.primary_key.columns)).mappings().all()
        return [{k: as_utc(v) if isinstance(v, datetime) else v for k, v in r.items()} for r in result]


@contextmanager
def harness(view: View) -> Iterator[ViewHarness]:
    h = ViewHarness(view)
    try:
        yield h
    finally:
        h.engine.dispose()
