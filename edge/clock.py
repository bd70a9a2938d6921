"""Is the system clock synchronised: the probe, and a cached watch shared by reads and status.

A Raspberry Pi has no clock battery. After a boot without network it runs on fake-hwclock's
last saved time until NTP synchronises, so reads made then carry times that may be hours or
days off. Each read and each status message says whether the clock was synchronised when it
was made, so the backend can flag such reads as evidence directly.

The answer comes from ``timedatectl`` (systemd-timesyncd, or whatever NTP client systemd
knows of), else ``chronyc tracking``; ``None`` when neither is there to tell.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable

_SYSTEMD_CHANNELS = ("NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC", "LISTEN_FDS", "LISTEN_PID")
"""What systemd gives the service itself. timedatectl is a systemd tool: it inherits them and,
when it fails, sends ``ERRNO=...`` to the service's notify socket as if the daemon had."""

REFRESH_S = 60.0
"""Seconds a clock answer is reused. A check runs two short commands; NTP state changes
rarely, and after a sync reads say ``false`` for at most this long (the safe direction)."""


def clock_synchronised() -> bool | None:
    """True or False from timedatectl or chrony; None when neither can tell."""
    env = {k: v for k, v in os.environ.items() if k not in _SYSTEMD_CHANNELS}
    timedatectl = shutil.which("timedatectl")
    if timedatectl:
        try:
            out = subprocess.run(  # noqa: S603 - fixed argv, binary found on PATH
                [timedatectl, "show", "-p", "NTPSynchronized", "--value"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
                env=env,
            )
            if out.returncode == 0 and out.stdout.strip() in ("yes", "no"):
                return out.stdout.strip() == "yes"
        except (OSError, subprocess.TimeoutExpired):
            pass
    chronyc = shutil.which("chronyc")
    if chronyc:
        try:
            out = subprocess.run(  # noqa: S603 - fixed argv, binary found on PATH
                [chronyc, "tracking"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
                env=env,
            )
            if out.returncode == 0:
                return "Leap status     : Normal" in out.stdout
        except (OSError, subprocess.TimeoutExpired):
            pass
    return None


class ClockWatch:
    """The clock state, asked at most once per ``refresh_s``; safe to call from any thread."""

    def __init__(
        self,
        probe: Callable[[], bool | None] = clock_synchronised,
        *,
        refresh_s: float = REFRESH_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._refresh_s = refresh_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._state: bool | None = None

    def state(self) -> bool | None:
        """Synchronised (True), not (False), or nobody can tell (None)."""
        with self._lock:
            now = self._monotonic()
            if self._checked_at is None or now - self._checked_at >= self._refresh_s:
                self._state = self._probe()
                self._checked_at = now
            return self._state
