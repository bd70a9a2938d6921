"""The hot list in: checked whole, signed when a key is configured, persisted, and the previous
list kept (with one log line and the status saying why) when an update is bad."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import paho.mqtt.publish as mqtt_publish
import pytest
from conftest import Mosquitto
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.config import HotlistSettings, MqttSettings
from edge.hotlist import HotListKeeper, Source, canonical_json, sign_hotlist
from edge.matching import Evidence
from edge.publisher import MqttPublisher
from edge.signing import EventSigner, public_key_pem
from edge.store import ReadStore
from edge.types import CharSlot


def body(version: str = "v1", *plates: str) -> dict[str, object]:
    return {
        "version": version,
        "entries": [
            {"plate": p, "reason": "stolen vehicle", "priority": "high", "expires_at": None}
            for p in (plates or ("ABC1234",))
        ],
    }


def message(version: str = "v1", *plates: str) -> bytes:
    return canonical_json(body(version, *plates))


def keeper(tmp_path: Path, **overrides: object) -> HotListKeeper:
    return HotListKeeper(HotlistSettings(**overrides), tmp_path)


def rejection_reason(kept: HotListKeeper) -> str:
    """Why the keeper last turned an update down; fails the test if it never did."""
    rejection = kept.status().last_rejection
    assert rejection is not None
    return rejection.reason


def read(text: str) -> Evidence:
    return Evidence(text, 0.95, tuple(CharSlot(c, 0.993) for c in text))


def test_list_is_applied_persisted_and_loaded_again_offline(tmp_path: Path) -> None:
    first = keeper(tmp_path)
    assert first.apply("fleet", message("2026-11-29.1", "ABC1234", "XYZ 987"))
    assert [h.entry.plate for h in first.match(read("XYZ987"))] == ["XYZ 987"]
    status = first.status()
    assert status.entries == 2
    assert [(s.source, s.version, s.entries) for s in status.sources] == [
        ("fleet", "2026-11-29.1", 2)
    ]
    again = keeper(tmp_path)  # a restart with no broker
    again.load_persisted()
    assert again.status().sources[0].version == "2026-11-29.1"
    assert again.match(read("ABC1234"))


BAD = [
    (b"", "empty message"),
    (b'{"version": "v2", "entries": [', "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"version": 2, "entries": []}).encode(), "'version' must be a string"),
    (json.dumps({"version": "v2", "entries": {}}).encode(), "'entries' must be a list"),
    (json.dumps({"version": "v2", "entries": [{"plate": 1234}]}).encode(), "entries[0].plate"),
    (message("v2", "*"), "at least 4 letters or digits"),
    (message("v2", "ABC+123"), "only letters, digits"),
    (message("v2", "AB#1234"), "only letters, digits"),
    (
        json.dumps({"version": "v2", "entries": [{"plate": "ABC1234", "priority": 9}]}).encode(),
        "priority",
    ),
    (
        json.dumps(
            {"version": "v2", "entries": [{"plate": "ABC1234", "expires_at": "tomorrow"}]}
        ).encode(),
        "expires_at",
    ),
]


@pytest.mark.parametrize(("payload", "reason"), BAD)
def test_bad_update_keeps_previous_list_and_says_why_once(
    tmp_path: Path, payload: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    kept = keeper(tmp_path)
    assert kept.apply("device", message("v1", "ABC1234"))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edge.hotlist"):
        assert not kept.apply("device", payload)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert reason in lines[0]
    assert "keeping version v1 (1 entries)" in lines[0]
    status = kept.status()
    assert status.sources[0].version == "v1"
    assert status.last_rejection is not None
    assert reason in status.last_rejection.reason
    assert kept.match(read("ABC1234"))
    reloaded = keeper(tmp_path)
    reloaded.load_persisted()
    assert reloaded.status().sources[0].version == "v1"


def test_oversized_list_is_rejected_by_entries_and_by_bytes(tmp_path: Path) -> None:
    kept = keeper(tmp_path, max_entries=3, max_bytes=2048)
    assert not kept.apply("fleet", message("v1", "AAA1111", "BBB2222", "CCC3333", "DDD4444"))
    assert "max_entries" in rejection_reason(kept)
    huge = message("v1", *[f"ZZ{i:05d}" for i in range(100)])
    assert not kept.apply("fleet", huge)
    assert "max_bytes" in rejection_reason(kept)


def test_with_a_public_key_only_lists_signed_by_it_are_taken(tmp_path: Path) -> None:
    backend = Ed25519PrivateKey.generate()
    key_file = tmp_path / "backend.pub"
    key_file.write_text(public_key_pem(backend.public_key()), encoding="utf-8")
    kept = keeper(tmp_path, public_key_file=key_file)
    signer = EventSigner(backend)
    assert kept.apply("fleet", sign_hotlist(body("v1", "ABC1234"), signer.sign))
    assert kept.status().sources[0].signed
    assert not kept.apply("fleet", message("v2", "XYZ9876"))  # unsigned
    assert "not signed" in rejection_reason(kept)
    forged = EventSigner(Ed25519PrivateKey.generate())
    assert not kept.apply("fleet", sign_hotlist(body("v3", "XYZ9876"), forged.sign))
    assert "does not verify" in rejection_reason(kept)
    envelope = json.loads(sign_hotlist(body("v4", "XYZ9876"), signer.sign))
    envelope["list"]["entries"][0]["plate"] = "QQQ1111"  # changed after signing
    assert not kept.apply("fleet", json.dumps(envelope).encode())
    assert kept.status().sources[0].version == "v1"


def test_local_file_is_read_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "hotlist.json"
    path.write_bytes(message("f1", "ABC1234"))
    kept = keeper(tmp_path, file=path)
    kept.poll_file()
    assert kept.match(read("ABC1234"))
    path.write_bytes(message("f2-longer", "XYZ9876"))
    kept.poll_file()
    assert [s.version for s in kept.status().sources] == ["f2-longer"]
    path.write_bytes(b"{broken")
    kept.poll_file()
    assert [s.version for s in kept.status().sources] == ["f2-longer"]


def test_sources_add_up(tmp_path: Path) -> None:
    kept = keeper(tmp_path)
    kept.apply("fleet", message("f", "ABC1234"))
    kept.apply("device", message("d", "XYZ9876", "ABC1234"))
    assert kept.status().entries == 2
    (hit,) = kept.match(read("ABC1234"))
    assert hit.source == "device"  # the device's own list takes precedence


def test_retained_lists_arrive_over_mqtt(
    mosquitto: Mosquitto, tmp_path: Path, signer: EventSigner
) -> None:
    prefix = "alpr"
    mqtt_publish.single(
        f"{prefix}/hotlist",
        message("fleet-7"),
        qos=1,
        retain=True,
        hostname=mosquitto.host,
        port=mosquitto.port,
    )
    received: list[tuple[Source, bytes]] = []
    store = ReadStore(tmp_path / "reads.db")
    publisher = MqttPublisher(
        MqttSettings(host=mosquitto.host, port=mosquitto.port, topic_prefix=prefix),
        device_id="pole-17",
        store=store,
        signer=signer,
        on_hotlist=lambda source, payload: received.append((source, payload)),
    )
    publisher.start()
    try:
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.02)
        mqtt_publish.single(
            f"{prefix}/pole-17/hotlist",
            message("dev-1", "XYZ9876"),
            qos=1,
            retain=True,
            hostname=mosquitto.host,
            port=mosquitto.port,
        )
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        publisher.stop(5)
        store.close()
    assert [(s, json.loads(p)["version"]) for s, p in received] == [
        ("fleet", "fleet-7"),
        ("device", "dev-1"),
    ]
