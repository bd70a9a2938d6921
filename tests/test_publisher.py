"""The publisher against a real mosquitto: order, PUBACK-only marking, outages, errors."""

from __future__ import annotations

import base64
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import pytest
from conftest import Mosquitto, free_port

from edge.config import MqttSettings
from edge.errors import EX_UNAVAILABLE, BrokerError
from edge.events import ReadEvent, encode_payload, read_event_schema
from edge.publisher import MqttPublisher, connect_check
from edge.signing import EventSigner
from edge.store import ReadStore

MakeEvent = Callable[..., ReadEvent]
CROP = b"\xff\xd8\xff\xe0crop\xff\xd9"
TOPIC = "alpr/pole-17/reads"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReadStore]:
    opened = ReadStore(tmp_path / "reads.db")
    yield opened
    opened.close()


def settings_for(port: int, **overrides: object) -> MqttSettings:
    return MqttSettings.model_validate({"host": "127.0.0.1", "port": port, **overrides})


@pytest.fixture
def start_publisher(
    store: ReadStore, signer: EventSigner
) -> Iterator[Callable[..., MqttPublisher]]:
    started: list[MqttPublisher] = []

    def start(port: int, **overrides: object) -> MqttPublisher:
        publisher = MqttPublisher(
            settings_for(port, **overrides),
            device_id="pole-17",
            store=store,
            signer=signer,
            reconnect_min_s=0.1,
            reconnect_max_s=0.4,
        )
        publisher.start()
        started.append(publisher)
        return publisher

    yield start
    for publisher in started:
        publisher.stop(timeout=5.0)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_reads_arrive_in_seq_order_with_valid_payloads(
    mosquitto: Mosquitto,
    store: ReadStore,
    make_event: MakeEvent,
    start_publisher: Callable[..., MqttPublisher],
) -> None:
    reads = mosquitto.subscribe("alpr/#")
    events = [make_event(f"AB{i:02d}") for i in range(30)]  # more than the in-flight window
    for event in events:
        store.add(event, CROP)
    publisher = start_publisher(mosquitto.port)

    messages = reads.wait_for(30)
    assert publisher.flush(timeout_s=5.0)
    validator = jsonschema.Draft202012Validator(read_event_schema())
    payloads = [json.loads(m.payload) for m in messages]
    for message, payload in zip(messages, payloads, strict=True):
        assert message.topic == TOPIC
        assert message.qos == 1
        validator.validate(payload)
        assert base64.b64decode(payload["plate_crop_jpeg"]) == CROP
    assert [p["seq"] for p in payloads] == list(range(1, 31))
    assert [p["event_id"] for p in payloads] == [e.event_id for e in events]
    assert store.pending_count() == 0


def test_live_read_goes_out_within_a_second(
    mosquitto: Mosquitto,
    store: ReadStore,
    make_event: MakeEvent,
    start_publisher: Callable[..., MqttPublisher],
) -> None:
    reads = mosquitto.subscribe(TOPIC)
    publisher = start_publisher(mosquitto.port)
    assert wait_until(lambda: publisher.connected)
    store.add(make_event(), CROP)
    began = time.monotonic()
    publisher.notify()
    reads.wait_for(1, timeout=1.0)
    assert time.monotonic() - began < 1.0


def test_crop_left_out_when_include_crop_is_off(
    mosquitto: Mosquitto,
    store: ReadStore,
    make_event: MakeEvent,
    start_publisher: Callable[..., MqttPublisher],
) -> None:
    reads = mosquitto.subscribe(TOPIC)
    store.add(make_event(), CROP)
    start_publisher(mosquitto.port, include_crop=False)
    (message,) = reads.wait_for(1)
    sent = json.loads(message.payload)
    assert sent["plate_crop_jpeg"] is None
    del sent["signature"]
    assert encode_payload(sent) == store_payload_of(store, message)


def store_payload_of(store: ReadStore, message: object) -> bytes:
    # Published reads leave pending(); read the row back directly to compare bytes.
    with sqlite3.connect(store.path) as raw:
        row = raw.execute("SELECT payload FROM reads").fetchone()
    return str(row[0]).encode("utf-8")


def test_nothing_marked_while_broker_is_down_then_all_arrive(
    mosquitto: Mosquitto,
    store: ReadStore,
    make_event: MakeEvent,
    start_publisher: Callable[..., MqttPublisher],
) -> None:
    reads = mosquitto.subscribe(TOPIC)  # persistent session: survives the restart below
    mosquitto.stop()
    events = [make_event(f"OUT{i}") for i in range(25)]
    for event in events[:15]:
        store.add(event, CROP)
    publisher = start_publisher(mosquitto.port)
    time.sleep(0.6)  # several reconnect attempts fail meanwhile
    assert not publisher.connected
    assert store.pending_count() == 15
    assert not publisher.flush(timeout_s=0.2)

    mosquitto.start()
    for event in events[15:]:
        store.add(event, CROP)
        publisher.notify()
    assert publisher.flush(timeout_s=8.0)
    messages = reads.wait_for(25)

    by_id: dict[str, set[bytes]] = {}
    for message in messages:
        by_id.setdefault(json.loads(message.payload)["event_id"], set()).add(message.payload)
    assert set(by_id) == {e.event_id for e in events}
    assert all(len(payloads) == 1 for payloads in by_id.values())


def test_reads_resent_unchanged_after_broker_restart(
    mosquitto: Mosquitto,
    store: ReadStore,
    make_event: MakeEvent,
    start_publisher: Callable[..., MqttPublisher],
) -> None:
    reads = mosquitto.subscribe(TOPIC)
    publisher = start_publisher(mosquitto.port)
    events = [make_event(f"RS{i}") for i in range(10)]
    for event in events[:5]:
        store.add(event, CROP)
    publisher.notify()
    assert publisher.flush(timeout_s=5.0)

    mosquitto.stop()
    assert wait_until(lambda: not publisher.connected)
    for event in events[5:]:
        store.add(event, CROP)
        publisher.notify()
    time.sleep(0.3)
    assert store.pending_count() == 5  # nothing is marked without a PUBACK

    mosquitto.start()
    assert publisher.flush(timeout_s=8.0)
    # The broker may deliver some of the first five to the subscriber twice (its own QoS 1
    # retry after the restart), so count distinct reads, not messages.
    expected = {e.event_id for e in events}
    assert wait_until(
        lambda: {json.loads(m.payload)["event_id"] for m in reads.messages} >= expected
    )
    payloads = [json.loads(m.payload) for m in reads.messages]
    assert {p["event_id"] for p in payloads} == expected
    assert sorted({p["seq"] for p in payloads}) == list(range(1, 11))


def test_stop_with_reads_pending_keeps_them(
    store: ReadStore, make_event: MakeEvent, start_publisher: Callable[..., MqttPublisher]
) -> None:
    store.add(make_event(), CROP)
    publisher = start_publisher(free_port())
    time.sleep(0.2)
    began = time.monotonic()
    publisher.stop(timeout=5.0)
    assert time.monotonic() - began < 2.0
    assert not publisher.alive
    assert store.pending_count() == 1


def test_connect_check_reports_host_and_port_of_closed_port() -> None:
    port = free_port()
    with pytest.raises(BrokerError, match=rf"127\.0\.0\.1:{port}: connection refused") as err:
        connect_check(settings_for(port), device_id="pole-17", timeout_s=2.0)
    assert "\n" not in err.value.message
    assert err.value.exit_code == EX_UNAVAILABLE


def test_connect_check_names_a_silent_server() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:  # listens, never speaks MQTT
        port = server.getsockname()[1]
        with pytest.raises(BrokerError, match=rf":{port}: no CONNACK within 0.5 s"):
            connect_check(settings_for(port), timeout_s=0.5)


def test_connect_check_passes_against_running_broker(mosquitto: Mosquitto) -> None:
    connect_check(settings_for(mosquitto.port), device_id="pole-17", timeout_s=2.0)


def test_connect_check_refused_credentials_named(tmp_path: Path, mosquitto: Mosquitto) -> None:
    mosquitto.stop()
    config = mosquitto.config_path.read_text(encoding="utf-8")
    mosquitto.config_path.write_text(
        config.replace("allow_anonymous true", "allow_anonymous false"), encoding="utf-8"
    )
    mosquitto.start()
    with pytest.raises(BrokerError, match=rf":{mosquitto.port}: connection refused: Not author"):
        connect_check(
            settings_for(mosquitto.port, username="u", password="hunter2-secret"),  # noqa: S106 - a test credential
            timeout_s=2.0,
        )


class SilentBroker:
    """Accepts one MQTT connection, says CONNACK, then never acknowledges a PUBLISH."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self.received = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._server.accept()
        with conn:
            conn.settimeout(5.0)
            connack_sent = False
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                if not connack_sent:
                    conn.sendall(bytes([0x20, 0x03, 0x00, 0x00, 0x00]))  # v5 CONNACK, success
                    connack_sent = True
                else:
                    self.received += len(data)

    def close(self) -> None:
        self._server.close()


def test_read_not_marked_until_puback(
    store: ReadStore, make_event: MakeEvent, start_publisher: Callable[..., MqttPublisher]
) -> None:
    broker = SilentBroker()
    try:
        for _ in range(3):
            store.add(make_event(), CROP)
        publisher = start_publisher(broker.port)
        assert wait_until(lambda: publisher.connected and broker.received > 3 * len(CROP))
        time.sleep(0.3)
        assert store.pending_count() == 3
        assert not publisher.flush(timeout_s=0.1)
    finally:
        broker.close()
