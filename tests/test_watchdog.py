"""The daemon's systemd notifications over a real AF_UNIX datagram socket: READY=1 once frames
flow, WATCHDOG=1 only while every stage makes progress."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port
from tiny_detector import write_models

from edge.app import Daemon
from edge.config import CameraSettings, Settings
from edge.types import Frame

WATCHDOG_USEC = 1_000_000  # pings every 0.5 s, a stage counts as stuck after 1 s


class StallingSource:
    """A live camera whose driver can be made to hang inside read(), as a wedged USB or
    CSI camera does."""

    fps = 25.0
    size = (320, 240)
    is_live = True
    description = "cam1 (stalling test camera)"

    def __init__(self) -> None:
        self.flowing = threading.Event()
        self.flowing.set()
        self.released = threading.Event()
        self._index = 0

    def open(self) -> None:
        pass

    def read(self) -> Frame | None:
        if not self.flowing.is_set():
            self.released.wait()
        time.sleep(0.02)
        self._index += 1
        return Frame(
            camera_id="cam1",
            index=self._index,
            captured_at=datetime.now(UTC),
            monotonic=time.monotonic(),
            image=np.full((240, 320, 3), 90, np.uint8),
        )

    def close(self) -> None:
        pass


class NotifySocket:
    """What systemd listens on: messages with their arrival times."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []

    def collect(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def pings(self, after: float = 0.0) -> list[float]:
        return [t for t, m in self.messages if m == "WATCHDOG=1" and t > after]

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(listener.path))
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    yield listener
    listener.close()


def settings(tmp_path: Path) -> Settings:
    detector, recognizer = write_models(tmp_path / "models")
    return Settings.model_validate(
        {
            "device_id": "pole-wd",
            # Nothing listens there: the publisher thread stays alive, retrying.
            "mqtt": {"host": "127.0.0.1", "port": free_port(), "require_at_start": False},
            "storage": {"dir": str(tmp_path / "state")},
            "models": {"detector": str(detector), "recognizer": str(recognizer), "threads": 1},
            "cameras": [{"id": "cam1", "source": "v4l2:///dev/video0"}],
        }
    )


def test_pings_stop_when_a_camera_read_hangs(tmp_path: Path, notify: NotifySocket) -> None:
    source = StallingSource()

    def open_camera(_camera: CameraSettings) -> StallingSource:
        return source

    daemon = Daemon(settings(tmp_path), open_camera=open_camera)
    waiter: threading.Thread | None = None
    try:
        daemon.start()
        waiter = threading.Thread(target=daemon.wait, daemon=True)
        waiter.start()
        notify.collect(2.0)
        assert notify.messages and notify.messages[0][1] == "READY=1", notify.messages
        assert len(notify.pings()) >= 2, "no WATCHDOG=1 while frames flow"

        source.flowing.clear()
        stalled_at = time.monotonic()
        notify.collect(3.0)
        # The ping in flight at the stall may still go out; once the camera's heartbeat is
        # older than WatchdogSec (1 s) no ping may follow, so systemd restarts the service.
        late = notify.pings(after=stalled_at + WATCHDOG_USEC / 1e6 + 0.3)
        assert late == [], f"{len(late)} pings after the camera hung"
        assert daemon.pipelines[0].alive, "the pipeline thread itself is still polling"
    finally:
        source.released.set()
        daemon.stop_event.set()
        if waiter is not None:
            waiter.join(5.0)
        daemon.stop()


def test_pings_continue_while_every_stage_progresses(tmp_path: Path, notify: NotifySocket) -> None:
    source = StallingSource()
    daemon = Daemon(settings(tmp_path), open_camera=lambda _camera: source)
    try:
        daemon.start()
        waiter = threading.Thread(target=daemon.wait, daemon=True)
        waiter.start()
        notify.collect(3.0)
        pings = notify.pings()
        # One every 0.5 s: at least four in three seconds, none missed.
        assert len(pings) >= 4, notify.messages
        assert max(b - a for a, b in itertools.pairwise(pings)) < 0.9
    finally:
        daemon.stop_event.set()
        daemon.stop()
