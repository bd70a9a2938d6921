"""A broker that says no: refused credentials are reported and retried without ever counting
as connected, and a read too large for the broker stays in the outbox, is reported (log and
status) once, and neither blocks the reads behind it nor loops (real mosquitto)."""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import pytest
from conftest import Mosquitto

from edge.config import MqttSettings
from edge.events import ReadEvent
from edge.publisher import MqttPublisher
from edge.signing import EventSigner
from edge.status import Extras, ModelVersions, StatusCollector, online_payload, status_schema
from edge.store import ReadStore

MakeEvent = Callable[..., ReadEvent]
TOPIC = "alpr/pole-17/reads"
LIMIT = 4000
SMALL = b"\xff\xd8small\xff\xd9"
BIG = b"\xff\xd8" + b"\x55" * (2 * LIMIT) + b"\xff\xd9"  # base64 makes it ~11 kB on the wire


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReadStore]:
    opened = ReadStore(tmp_path / "reads.db")
    yield opened
    opened.close()


def reconfigure(
    mosquitto: Mosquitto, replace: tuple[str, str] | None = None, add: str = ""
) -> None:
    mosquitto.stop()
    config = mosquitto.config_path.read_text(encoding="utf-8")
    if replace is not None:
        config = config.replace(*replace)
    mosquitto.config_path.write_text(config + add, encoding="utf-8")
    mosquitto.start()


def publisher_for(
    mosquitto: Mosquitto, store: ReadStore, signer: EventSigner, **settings: object
) -> MqttPublisher:
    return MqttPublisher(
        MqttSettings.model_validate({"host": "127.0.0.1", "port": mosquitto.port, **settings}),
        device_id="pole-17",
        store=store,
        signer=signer,
        reconnect_min_s=0.1,
        reconnect_max_s=0.3,
    )


class ConnectedWatch:
    """Samples ``publisher.connected`` every few milliseconds; remembers any True."""

    def __init__(self, publisher: MqttPublisher) -> None:
        self.ever = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(publisher,), daemon=True)
        self._thread.start()

    def _run(self, publisher: MqttPublisher) -> None:
        while not self._stop.wait(0.002):
            self.ever = self.ever or publisher.connected

    def stop(self) -> bool:
        self._stop.set()
        self._thread.join()
        return self.ever


def test_refused_credentials_are_reported_retried_and_never_count_as_connected(
    tmp_path: Path,
    mosquitto: Mosquitto,
    store: ReadStore,
    make_event: MakeEvent,
    signer: EventSigner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="edge.publisher")
    passwords = tmp_path / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "pole-17", "right-password"],
        check=True,
        capture_output=True,
    )
    reconfigure(
        mosquitto,
        ("allow_anonymous true", "allow_anonymous false"),
        f"password_file {passwords}\n",
    )
    store.add(make_event(), SMALL)
    publisher = publisher_for(
        mosquitto,
        store,
        signer,
        username="pole-17",
        password_file=str(_secret(tmp_path, "wrong-password")),
    )
    publisher.start()
    watch = ConnectedWatch(publisher)
    try:
        time.sleep(1.5)
        assert not watch.stop()  # not for one sample in 1.5 s of refused connects
        assert publisher.connections == 0
        assert store.pending_count() == 1  # nothing marked published
        refusals = [r for r in caplog.records if "connection refused" in r.getMessage()]
        assert len(refusals) >= 3, [r.getMessage() for r in caplog.records]  # retried
        first = refusals[0]
        assert first.levelno == logging.WARNING  # reported clearly, once; repeats are DEBUG
        assert f"127.0.0.1:{mosquitto.port}" in first.getMessage()
        assert "Bad user name or password" in first.getMessage() or (
            "Not authorized" in first.getMessage()
        )
        assert "wrong-password" not in caplog.text
        assert all(r.levelno == logging.DEBUG for r in refusals[1:])

        # The broker learns the device's password: the retry that follows gets in.
        subprocess.run(
            ["mosquitto_passwd", "-b", str(passwords), "pole-17", "wrong-password"],
            check=True,
            capture_output=True,
        )
        mosquitto.restart()
        assert publisher.flush(timeout_s=10.0)
        assert publisher.connections >= 1
    finally:
        publisher.stop(timeout=5.0)


def _secret(tmp_path: Path, value: str) -> Path:
    path = tmp_path / "mqtt-password"
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    "limit_option",
    [
        pytest.param("max_packet_size", id="advertised-in-connack"),
        pytest.param("message_size_limit", id="refused-in-puback"),
    ],
)
def test_read_too_large_for_the_broker_is_kept_reported_once_and_does_not_block_others(
    limit_option: str,
    tmp_path: Path,
    mosquitto: Mosquitto,
    store: ReadStore,
    make_event: MakeEvent,
    signer: EventSigner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edge.publisher")
    reconfigure(mosquitto, add=f"{limit_option} {LIMIT}\n")
    reads = mosquitto.subscribe(TOPIC)
    events = [make_event("SMALL1"), make_event("BIG2"), make_event("SMALL3")]
    for event, crop in zip(events, (SMALL, BIG, SMALL), strict=True):
        store.add(event, crop)
    publisher = publisher_for(mosquitto, store, signer)
    publisher.start()
    try:
        messages = reads.wait_for(2)
        time.sleep(1.5)  # room for a reconnect loop, if there were one
        assert publisher.connections == 1
        assert publisher.connected
        assert store.pending_count() == 1  # the big read is kept, not dropped
        assert store.pending(10)[0].event_id == events[1].event_id
        assert publisher.refused_count == 1
        messages = reads.messages
        assert [json.loads(m.payload)["event_id"] for m in messages] == [
            events[0].event_id,
            events[2].event_id,
        ]  # the reads behind it went out, each once
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert events[1].event_id in errors[0].getMessage()
        assert "kept in the outbox" in errors[0].getMessage()

        collector = StatusCollector(
            device_id="pole-17",
            interval_s=30,
            store=store,
            storage_dir=tmp_path,
            cameras=[],
            models=ModelVersions("det-1", "rec-1"),
            clock=lambda: True,
            extras=Extras(outbox_refused=lambda: publisher.refused_count),
        )
        status = json.loads(online_payload(collector.collect()))
        jsonschema.validate(status, status_schema())
        assert status["outbox"]["depth"] == 1
        assert status["outbox"]["refused"] == 1
    finally:
        publisher.stop(timeout=5.0)
