"""The service clock: every command takes `now` from here, never from datetime.now() in the domain.

With ZIZHU_NOW the clock starts at that instant and runs forward (rehearsals, training, acceptance runs). It never
runs behind the newest event already in the log, so replayed history stays in order.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

CHINA = ZoneInfo("Asia/Shanghai")


def parse_instant(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CHINA)
    return moment.astimezone(UTC)


class Clock:
    def __init__(self, start: datetime | None = None, not_before: datetime | None = None) -> None:
        self._origin_monotonic = time.monotonic()
        origin = start if start is not None else datetime.now(UTC)
        if not_before is not None and origin <= not_before:
            origin = not_before + timedelta(microseconds=1)
        self._origin = origin.astimezone(UTC)
        self._fixed = start is not None or not_before is not None
        self._last = self._origin
        # Requests run in a thread pool: without the lock two of them could be handed the same instant.
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            if self._fixed:
                current = self._origin + timedelta(seconds=time.monotonic() - self._origin_monotonic)
            else:
                current = datetime.now(UTC)
            # Never hand out the same or an earlier instant twice: event times stay strictly ordered.
            if current <= self._last:
                current = self._last + timedelta(microseconds=1)
            self._last = current
            return current

    def today(self) -> date:
        """Today's date in China, where the working-day calendar and deadlines apply."""
        return self.now().astimezone(CHINA).date()
