"""Two delivery lanes, so that a backlog never delays a live read.

At each (re)connect the publisher notes the newest ``seq`` in the store (the *boundary*):

* the **live lane** holds reads stored after that moment (``seq > boundary``). They go out
  at once, in ``seq`` order, and always have in-flight slots reserved for them;
* the **backlog lane** holds what was waiting at the connect (``seq <= boundary``). It
  drains oldest first, at most ``mqtt.backlog_rate_per_s`` reads a second, in the slots
  the live lane leaves free.

Each lane is in ``seq`` order; between them arrival order is not ``seq`` order, which is
why every read carries its ``seq`` and receivers detect gaps by number, not by arrival.

Alerts have a lane of their own ahead of both: an alert is published as soon as it is stored
and a slot is free, before any read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Lane(Enum):
    LIVE = "live"
    BACKLOG = "backlog"
    ALERT = "alert"
    """Hot-list alerts: sent before any read, live or backlog, whenever a slot is free."""
    AUDIT = "audit"
    """Audit log entries: after the reads, a few at a time."""


LIVE_RESERVE = 5
"""In-flight slots the backlog lane leaves to live reads."""


@dataclass(frozen=True, slots=True)
class LaneWindow:
    """How many reads each lane may publish now."""

    live: int
    backlog: int


def lane_window(
    *, window: int, live_in_flight: int, backlog_in_flight: int, backlog_tokens: int
) -> LaneWindow:
    room = max(0, window - live_in_flight - backlog_in_flight)
    backlog_cap = max(0, window - LIVE_RESERVE - backlog_in_flight)
    return LaneWindow(live=room, backlog=max(0, min(room, backlog_cap, backlog_tokens)))


class RateLimiter:
    """A token bucket: ``rate_per_s`` tokens a second, holding at most half a second's worth
    (at least one), so a drain never bursts far above its rate. Rate 0 means unlimited."""

    UNLIMITED = 1 << 30

    def __init__(self, rate_per_s: float, now: float) -> None:
        self.rate_per_s = rate_per_s
        self._capacity = max(1.0, rate_per_s * 0.5)
        self._tokens = self._capacity
        self._updated = now

    def available(self, now: float) -> int:
        if self.rate_per_s <= 0:
            return self.UNLIMITED
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now
        return int(self._tokens)

    def take(self, count: int) -> None:
        if self.rate_per_s > 0:
            self._tokens = max(0.0, self._tokens - count)
