"""Device status on a real mosquitto: retained ``online`` heartbeats, ``offline`` as the last
will when the process dies (SIGKILL) and as a retained message on a clean stop."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from conftest import Message, Mosquitto

from edge.camera.capture import CaptureStats
from edge.config import MqttSettings
from edge.publisher import MqttPublisher
from edge.signing import EventSigner
from edge.status import (
    CameraProbe,
    ModelVersions,
    StatusCollector,
    cpu_temperature_c,
    online_payload,
    status_schema,
)
from edge.store import ReadStore

REPO = Path(__file__).resolve().parents[1]
STATUS = "alpr/pole-17/status"

# A daemon stand-in: a publisher with a status, in its own process so it can be SIGKILLed.
CHILD = """
import sys, time
from pathlib import Path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from edge.config import MqttSettings
from edge.publisher import MqttPublisher
from edge.signing import EventSigner
from edge.status import ModelVersions, StatusCollector, online_payload
from edge.store import ReadStore

store = ReadStore(Path(sys.argv[2]))
publisher = MqttPublisher(
    MqttSettings(host="127.0.0.1", port=int(sys.argv[1])),
    device_id="pole-17",
    store=store,
    signer=EventSigner(Ed25519PrivateKey.generate()),
)
collector = StatusCollector(
    device_id="pole-17", interval_s=30, store=store, storage_dir=Path(sys.argv[2]).parent,
    cameras=[], models=ModelVersions("det-1", "rec-1"), clock=lambda: None,
)
publisher.offer_status(online_payload(collector.collect()))
publisher.start()
time.sleep(60)
"""


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = status_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReadStore]:
    opened = ReadStore(tmp_path / "reads.db")
    yield opened
    opened.close()


def retained_status(mosquitto: Mosquitto, timeout: float = 5.0) -> Message:
    """What a subscriber arriving now is given: the retained status."""
    (message,) = mosquitto.subscribe(STATUS).wait_for(1, timeout)
    return message


def wait_for_state(mosquitto: Mosquitto, state: str, timeout: float = 5.0) -> dict[str, object]:
    """Subscribe afresh until the retained status has this state; its payload."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = retained_status(mosquitto, timeout=1.0)
        except AssertionError:  # nothing retained yet
            continue
        payload: dict[str, object] = json.loads(message.payload)
        if message.retain and payload["state"] == state:
            return payload
        time.sleep(0.1)
    raise AssertionError(f"retained status never became {state!r}")


def test_collector_reports_rates_outbox_temperature_and_models(
    tmp_path: Path, store: ReadStore, make_event: object
) -> None:
    zone0, zone1 = tmp_path / "thermal" / "thermal_zone0", tmp_path / "thermal" / "thermal_zone1"
    for zone, kind, temp in ((zone0, "PMIC-Die", "100000"), (zone1, "CPU-therm", "47250")):
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n", encoding="ascii")
        (zone / "temp").write_text(temp + "\n", encoding="ascii")
    counts = {"in": 0, "processed": 0}

    def capture_stats() -> CaptureStats:
        return CaptureStats(counts["in"], 3, 0, None, None)

    collector = StatusCollector(
        device_id="pole-17",
        interval_s=30,
        store=store,
        storage_dir=tmp_path,
        cameras=[CameraProbe("cam-north", capture_stats, lambda: counts["processed"])],
        models=ModelVersions("det-1", "rec-1"),
        thermal_dir=tmp_path / "thermal",
        clock=lambda: True,
    )
    collector.collect()
    counts["in"], counts["processed"] = 50, 10
    time.sleep(0.5)
    status = collector.collect()
    (camera,) = status.cameras
    assert 50 < camera.fps_in <= 100  # 50 frames in a bit over half a second
    assert 10 < camera.fps_processed <= 20
    assert (camera.frames_in, camera.frames_processed, camera.frames_dropped) == (50, 10, 3)
    assert status.cpu_temperature_c == 47.2 or status.cpu_temperature_c == 47.3
    assert status.clock_synchronised is True
    assert status.outbox.depth == 0
    assert status.outbox.oldest_unsent_age_s is None
    assert status.disk_free_bytes is not None and status.disk_free_bytes > 0
    payload = json.loads(online_payload(status))
    jsonschema.validate(payload, status_schema())
    assert payload["models"] == {"detector": "det-1", "recognizer": "rec-1"}


def test_cpu_temperature_is_none_where_not_readable(tmp_path: Path) -> None:
    assert cpu_temperature_c(tmp_path / "no-thermal-here") is None


def test_online_is_retained_and_clean_stop_leaves_retained_offline(
    mosquitto: Mosquitto,
    store: ReadStore,
    signer: EventSigner,
    validator: jsonschema.Draft202012Validator,
    tmp_path: Path,
) -> None:
    publisher = MqttPublisher(
        MqttSettings(host="127.0.0.1", port=mosquitto.port),
        device_id="pole-17",
        store=store,
        signer=signer,
    )
    collector = StatusCollector(
        device_id="pole-17",
        interval_s=30,
        store=store,
        storage_dir=tmp_path,
        cameras=[],
        models=ModelVersions(None, None),
        clock=lambda: None,
    )
    publisher.offer_status(online_payload(collector.collect()))
    publisher.start()
    try:
        online = wait_for_state(mosquitto, "online")
        validator.validate(online)
        assert online["device_id"] == "pole-17"
    finally:
        publisher.stop(timeout=5.0)
    offline = wait_for_state(mosquitto, "offline", timeout=1.0)
    validator.validate(offline)
    assert offline["state"] == "offline"
    assert offline["reason"] == "shutdown"


def test_killed_process_leaves_retained_offline_will(
    mosquitto: Mosquitto, tmp_path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(mosquitto.port), str(tmp_path / "reads.db")],
        cwd=REPO,
        stderr=subprocess.PIPE,
    )
    try:
        online = wait_for_state(mosquitto, "online", timeout=20.0)
        validator.validate(online)
        child.kill()  # SIGKILL: no DISCONNECT, no goodbye; the broker sends the will
        child.wait(5.0)
        offline = wait_for_state(mosquitto, "offline")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5.0)
        if child.stderr is not None:
            child.stderr.close()
    validator.validate(offline)
    assert offline["reason"] == "connection_lost"
    assert offline["sent_at"] is None


def test_documented_example_matches_the_schema(validator: jsonschema.Draft202012Validator) -> None:
    docs = (REPO / "docs" / "events.md").read_text(encoding="utf-8")
    section = docs[docs.index("## Device status") :]
    example = section[
        section.index("```json") + len("```json") : section.index(
            "```\n", section.index("```json") + 7
        )
    ]
    validator.validate(json.loads(example))
