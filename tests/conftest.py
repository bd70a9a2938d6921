"""Shared fixtures: a real mosquitto broker on loopback, and read events to feed it.

``mosquitto`` (function scope) starts ``mosquitto`` on a free 127.0.0.1 port with a config
written to ``tmp_path`` and yields a ``Mosquitto``::

    def test_something(mosquitto: Mosquitto) -> None:
        reads = mosquitto.subscribe("alpr/+/reads")      # returns once SUBACK is in
        ...publish to mosquitto.host, mosquitto.port...
        messages = reads.wait_for(3, timeout=5.0)         # list[Message], in arrival order
        mosquitto.stop()                                   # broker outage
        mosquitto.start()                                  # same port, sessions restored

Subscribers use a persistent MQTT v5 session and the broker persists to ``tmp_path``, so a
collector made before ``stop()`` also receives what is published after ``start()`` but
before it has reconnected, as it would against a production broker. Tests are skipped when
mosquitto is not installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import CameraSettings
from edge.events import ReadEvent, build_read_event
from edge.signing import EventSigner
from edge.types import CharCandidate, CharSlot, Direction, PlateStatus, TextCandidate, VehiclePass

START_TIMEOUT_S = 5.0


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found is None and Path("/usr/sbin/mosquitto").exists():
        found = "/usr/sbin/mosquitto"
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Collector:
    """A subscriber on its own paho thread that keeps every message it receives."""

    def __init__(self, host: str, port: int, topic: str, qos: int = 1) -> None:
        self.topic = topic
        self._messages: list[Message] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"test-collector-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        # Come back quickly after Mosquitto.start(); paho annotates int but takes seconds.
        self._client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self._qos = qos
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        # paho's Properties.__init__ has no annotations.
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 300  # keep the subscription across a broker restart
        self._client.connect(host, port, keepalive=10, clean_start=False, properties=props)
        self._client.loop_start()
        if not self._subscribed.wait(START_TIMEOUT_S):
            self.close()
            raise AssertionError(f"collector: no SUBACK for {topic!r} from {host}:{port}")

    def _on_connect(
        self, client: mqtt.Client, _u: Any, flags: mqtt.ConnectFlags, rc: ReasonCode, _p: Any
    ) -> None:
        if not rc.is_failure and not flags.session_present:
            client.subscribe(self.topic, qos=self._qos)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, _rcs: list[ReasonCode], _p: Any
    ) -> None:
        self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self._messages.append(Message(msg.topic, bytes(msg.payload), msg.qos, msg.retain))
            self._cond.notify_all()

    @property
    def messages(self) -> list[Message]:
        with self._cond:
            return list(self._messages)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Message]:
        """Wait until at least ``count`` messages have arrived; return all of them."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= count, timeout):
                raise AssertionError(
                    f"collector on {self.topic!r}: {len(self._messages)} of {count} messages "
                    f"after {timeout:g} s"
                )
            return list(self._messages)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class Mosquitto:
    """A mosquitto process on 127.0.0.1:``port`` that can be stopped and started again."""

    host = "127.0.0.1"

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / "mosquitto.log"
        self.config_path = workdir / "mosquitto.conf"
        self.config_path.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            f"log_dest file {self.log_path}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            # Started as root (CI containers), mosquitto would switch to user "mosquitto"
            # and could not write its log and sessions into tmp_path.
            + ("user root\n" if os.geteuid() == 0 else ""),
            encoding="utf-8",
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._collectors: list[Collector] = []

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"mosquitto exited at start: {err}{self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log()}")

    def stop(self) -> None:
        """Stop the broker cleanly (SIGTERM: it saves sessions, clients see the socket close)."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def add_listener(self, options: str) -> int:
        """Restart with one more 127.0.0.1 listener (e.g. TLS: ``certfile ...``); its port."""
        port = free_port()
        with self.config_path.open("a", encoding="utf-8") as fh:
            fh.write(f"listener {port} {self.host}\n{options}\n")
        self.restart()
        return port

    def subscribe(self, topic: str, qos: int = 1) -> Collector:
        collector = Collector(self.host, self.port, topic, qos)
        self._collectors.append(collector)
        return collector

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        for collector in self._collectors:
            collector.close()
        self.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    binary = mosquitto_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed: CI must install it (scripts/setup.sh)")
        pytest.skip("mosquitto is not installed")
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    broker = Mosquitto(binary, workdir)
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


CAMERA = CameraSettings.model_validate(
    {
        "id": "cam-north",
        "source": "file:///clip.mp4",
        "latitude": 51.5,
        "longitude": -0.12,
        "heading_deg": 90.0,
    }
)


def make_vehicle_pass(text: str = "AB12CDE", **overrides: Any) -> VehiclePass:
    """A plausible finished pass; keyword arguments replace any field."""
    start = datetime(2026, 11, 29, 6, 18, 2, 987654, tzinfo=UTC)
    fields: dict[str, Any] = {
        "camera_id": CAMERA.id,
        "text": text,
        "confidence": 0.9731,
        "candidates": (TextCandidate(text, 0.9731), TextCandidate(text[:-1] + "F", 0.0123)),
        "status": PlateStatus.FULL,
        "first_seen": start,
        "last_seen": start + timedelta(seconds=1.5),
        "best_seen": start + timedelta(microseconds=135_678),
        "frames_seen": 12,
        "direction": Direction.APPROACHING,
        "crop_jpeg": b"\xff\xd8\xff\xe0 fake jpeg \xff\xd9",
        "chars": tuple(
            CharSlot(ch, 0.99, (CharCandidate("8" if ch == "B" else "0", 0.005),)) for ch in text
        ),
        "region": "GB",
        "region_confidence": 0.88,
    }
    fields.update(overrides)
    return VehiclePass(**fields)


@pytest.fixture
def make_event() -> Callable[..., ReadEvent]:
    """Factory: ``make_event(text="X1", **VehiclePass overrides) -> ReadEvent``."""

    def factory(text: str = "AB12CDE", **overrides: Any) -> ReadEvent:
        return build_read_event(
            make_vehicle_pass(text, **overrides), device_id="pole-17", camera=CAMERA
        )

    return factory


@pytest.fixture(scope="session")
def signer() -> EventSigner:
    """A device signing key made for the test session."""
    return EventSigner(Ed25519PrivateKey.generate())
