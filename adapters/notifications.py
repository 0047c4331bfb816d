"""Notifications out: the inbox query (`GET /v1/notifications`) and the outbound port to the province's SMS or
messaging gateway.

The fan-out itself lives in projections/notifications.py (a view: rebuilt from the log, exactly once). Sending
must not repeat when that view is rebuilt, so it is a separate step with its own tracking row: the `Dispatcher`
reads messages past its (position, seq) mark from the view's active tables (a message's id orders as that pair),
hands each to the `Notifier` port and moves the mark in the same transaction. A crash between a send and the commit
sends that batch again (at least once); each message carries a stable `message_id` for the gateway to drop repeats.
A rebuilt view has the same positions, so the mark stays valid across rebuilds.

`LoggingNotifier` is the implementation used here: it logs that a message would go out and never to whom or what
(no resident ID, no case ID, no text), because the log is read by more people than the message's recipient. A
real gateway adapter implements the same `Notifier.send` and resolves the recipient (`case:<id>` → the guardian's
registered contact) on the gateway's side.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    DateTime,
    Integer,
    String,
    Table,
    and_,
    false,
    insert,
    select,
    update,
)

from adapters.auth import Principal
from adapters.clock import Clock
from adapters.db import metadata
from adapters.logs import get_logger
from domain.errors import ValidationFailed
from domain.values import Role, case_id_for
from projections.notifications import first_message_id, message_data, message_key, message_title
from projections.queries import FIRST_YEAR, region_range
from projections.runner import Projections, as_utc

VIEW = "notifications"
PAGE_MAX = 100

dispatch_state = Table(
    "notification_dispatch",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class OutboundMessage:
    message_id: str  # "<log position>.<seq>": stable across retries and rebuilds
    recipient_kind: str  # case | school | class | region
    recipient_key: str
    kind: str
    title: str
    data: Mapping[str, Any]


class Notifier(Protocol):
    """The outbound port: one message to one recipient scope. Raising leaves the message to be sent again."""

    def send(self, message: OutboundMessage) -> None: ...


class LoggingNotifier:
    """Stands in for the province's gateway: records that a message went out, with nothing personal."""

    def __init__(self) -> None:
        self.log = get_logger("zizhu.notifications")

    def send(self, message: OutboundMessage) -> None:
        self.log.info("notification_sent", message_id=message.message_id, kind=message.kind,
                      recipient_kind=message.recipient_kind)


class Dispatcher:
    def __init__(self, projections: Projections, notifier: Notifier, name: str = "gateway",
                 batch_size: int = 200) -> None:
        self.projections = projections
        self.notifier = notifier
        self.name = name
        self.batch_size = batch_size

    def dispatch(self) -> int:
        """Sends at most one batch of messages past the mark; returns how many were sent."""
        engine = self.projections.engine
        messages = self.projections.active_tables(VIEW)["messages"]
        with engine.begin() as conn:
            # Touch the mark first: that takes its lock, so two dispatchers never send the same batch.
            touched = conn.execute(update(dispatch_state).where(dispatch_state.c.name == self.name)
                                   .values(updated_at=datetime.now(UTC)))
            if touched.rowcount == 0:
                conn.execute(insert(dispatch_state).values(name=self.name, position=0, seq=-1,
                                                           updated_at=datetime.now(UTC)))
            mark = conn.execute(select(dispatch_state.c.position, dispatch_state.c.seq)
                                .where(dispatch_state.c.name == self.name)).one()
            rows = conn.execute(select(messages)
                                .where(messages.c.id > first_message_id(mark.position) + mark.seq)
                                .order_by(messages.c.id).limit(self.batch_size)).all()
            for row in rows:
                position, seq = message_key(row.id)
                self.notifier.send(OutboundMessage(message_id=f"{position}.{seq}",
                                                   recipient_kind=row.recipient_kind,
                                                   recipient_key=row.recipient_key, kind=row.kind,
                                                   title=message_title(row.recipient_kind, row.kind),
                                                   data=message_data(row.data)))
            if rows:
                position, seq = message_key(rows[-1].id)
                conn.execute(update(dispatch_state).where(dispatch_state.c.name == self.name)
                             .values(position=position, seq=seq))
        return len(rows)

    def drain(self) -> int:
        total = 0
        while sent := self.dispatch():
            total += sent
        return total


class DispatcherThread:
    """Keeps sending in the background of `zizhu serve`, after the views (it reads the notifications view)."""

    def __init__(self, dispatcher: Dispatcher, interval: float) -> None:
        self.dispatcher = dispatcher
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notification-dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        log = get_logger("zizhu.notifications")
        while not self._stop.is_set():
            try:
                sent = self.dispatcher.dispatch()
            except Exception as exc:  # a failing gateway or store must not kill the loop; it retries after a pause
                log.warning("notification_dispatch_error", error_type=type(exc).__name__)
                sent = 0
                self._stop.wait(min(self.interval * 10, 2.0))
            if sent == 0:
                self._stop.wait(self.interval)


@dataclass(frozen=True)
class InboxPage:
    items: list[dict[str, Any]]
    next_cursor: str | None


class Inbox:
    """The caller's own notifications, newest first, from the notifications view."""

    def __init__(self, projections: Projections, clock: Clock) -> None:
        self.projections = projections
        self.clock = clock

    def _mine(self, principal: Principal, table: Table) -> ColumnElement[bool]:
        role = principal.role
        if role is Role.APPLICANT and principal.student:
            # The view keeps no ID numbers: an applicant's messages are addressed to their cases' derived IDs.
            this_year = self.clock.today().year
            ids = [str(case_id_for(principal.student, f"{y}-{y + 1}")) for y in range(FIRST_YEAR, this_year + 2)]
            return and_(table.c.recipient_kind == "case", table.c.recipient_key.in_(ids))
        if role is Role.SCHOOL and principal.school:
            return and_(table.c.recipient_kind == "school", table.c.recipient_key == principal.school)
        if role is Role.EVALUATOR and principal.school and principal.class_id:
            return and_(table.c.recipient_kind == "class",
                        table.c.recipient_key == f"{principal.school}/{principal.class_id}")
        if role is Role.BUREAU and principal.region_prefix:
            low, high = region_range(principal.region_prefix)
            return and_(table.c.recipient_kind == "region", table.c.recipient_key.between(low, high))
        return false()  # auditors and others are told nothing: they have no inbox

    def page(self, principal: Principal, *, before: str | None, limit: int, kind: str | None = None) -> InboxPage:
        if not 1 <= limit <= PAGE_MAX:
            raise ValidationFailed(f"limit must be between 1 and {PAGE_MAX}", field="limit")
        table = self.projections.active_tables(VIEW)["messages"]
        query = select(table).where(self._mine(principal, table))
        if before is not None:
            if not before.isdigit():
                raise ValidationFailed("before is the cursor a previous page returned", field="before")
            query = query.where(table.c.id < first_message_id(int(before)))
        if kind is not None:
            query = query.where(table.c.kind == kind)
        with self.projections.engine.connect() as conn:
            # Newest first. A recipient is sent at most one message per event, so this is log order backwards.
            rows = conn.execute(query.order_by(table.c.id.desc()).limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        items = []
        for r in rows:
            position, seq = message_key(r.id)
            items.append({"id": f"{position}.{seq}", "kind": r.kind, "title": message_title(r.recipient_kind, r.kind),
                          "data": message_data(r.data), "occurred_at": as_utc(r.occurred_at), "position": position})
        return InboxPage(items, str(items[-1]["position"]) if more and items else None)
