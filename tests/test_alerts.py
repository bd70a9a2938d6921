"""Alerts out: stored first, published on their own topic ahead of any backlog of reads,
early from the frames of a pass, once per pass per entry, signed, schema-valid."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from conftest import CAMERA, Mosquitto, make_vehicle_pass

from edge.alerts import Alerter, AlertOutbox, alert_schema
from edge.config import Settings
from edge.events import ReadEvent, build_read_event
from edge.hotlist import HotListKeeper, canonical_json
from edge.publisher import MqttPublisher
from edge.signing import EventSigner, verify_read
from edge.store import ReadStore
from edge.types import (
    CharCandidate,
    CharSlot,
    Detection,
    PlateObservation,
    PlateStatus,
    Recognition,
)

T0 = datetime(2026, 11, 29, 6, 18, 2, tzinfo=UTC)


def settings_for(tmp_path: Path, mosquitto: Mosquitto | None = None, **extra: Any) -> Settings:
    # ``extra`` goes to pydantic as it is, to be validated there (hence Any).
    mqtt = {"host": "127.0.0.1", "port": 1883}
    if mosquitto is not None:
        mqtt = {"host": mosquitto.host, "port": mosquitto.port}
    return Settings(
        device_id="pole-17",
        mqtt=mqtt,
        storage={"dir": tmp_path, "encrypt": False},
        cameras=[CAMERA.model_dump()],
        **extra,
    )


def hotlist(*plates: str) -> bytes:
    entries = [{"plate": p, "reason": "stolen vehicle", "priority": "high"} for p in plates]
    return canonical_json({"version": "v9", "entries": entries})


def observation(text: str, second: float, prob: float = 0.99) -> PlateObservation:
    chars = tuple(CharSlot(c, prob, (CharCandidate("0", 0.005),)) for c in text)
    return PlateObservation(
        frame_index=int(second * 10),
        captured_at=T0 + timedelta(seconds=second),
        monotonic=second,
        detection=Detection((100, 100, 220, 130), 0.9),
        recognition=Recognition(text, prob ** len(text), chars, PlateStatus.FULL),
        crop=np.full((40, 140, 3), 200, np.uint8),
    )


class Rig:
    def __init__(self, settings: Settings, signer: EventSigner, *, start: bool = True) -> None:
        self.settings = settings
        self.store = ReadStore(settings.storage.dir / "reads.db")
        self.keeper = HotListKeeper(settings.hotlist, settings.storage.dir)
        self.outbox = AlertOutbox(self.store)
        self.publisher = MqttPublisher(
            settings.mqtt,
            device_id=settings.device_id,
            store=self.store,
            signer=signer,
            alerts=self.outbox,
            backlog_rate_per_s=20,
        )
        self.alerter = Alerter(
            settings, self.keeper, self.outbox, notify=self.publisher.notify_alert
        )
        if start:
            self.publisher.start()

    def close(self) -> None:
        self.publisher.stop(5)
        self.store.close()


@pytest.fixture
def rig(mosquitto: Mosquitto, tmp_path: Path, signer: EventSigner) -> Iterator[Rig]:
    made = Rig(settings_for(tmp_path, mosquitto), signer)
    made.keeper.apply("fleet", hotlist("AB12CDE", "XY99ZZZ"))
    yield made
    made.close()


def wait_connected(publisher: MqttPublisher) -> None:
    deadline = time.monotonic() + 5
    while not publisher.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert publisher.connected


def test_early_alert_arrives_within_500_ms_ahead_of_a_backlog(
    rig: Rig,
    mosquitto: Mosquitto,
    make_event: Callable[..., ReadEvent],
    signer: EventSigner,
) -> None:
    rig.publisher.stop(5)  # a backlog builds while the device is offline
    for _ in range(2000):
        rig.store.add(make_event("QQ11QQQ"), b"")
    alerts = mosquitto.subscribe("alpr/pole-17/alerts")
    rig.publisher = MqttPublisher(
        rig.settings.mqtt,
        device_id="pole-17",
        store=rig.store,
        signer=signer,
        alerts=rig.outbox,
        backlog_rate_per_s=20,
    )
    rig.alerter = Alerter(rig.settings, rig.keeper, rig.outbox, notify=rig.publisher.notify_alert)
    rig.publisher.start()
    wait_connected(rig.publisher)
    assert rig.alerter.check_frame(CAMERA, [observation("AB12CDE", 0.0)]) == 0  # one frame
    confident_at = time.monotonic()
    assert rig.alerter.check_frame(CAMERA, [observation("AB12CDE", 0.1)]) == 1
    (message,) = alerts.wait_for(1, timeout=2.0)
    latency = time.monotonic() - confident_at
    assert latency < 0.5, f"alert took {latency * 1000:.0f} ms"
    assert rig.store.pending_count() > 1900  # the backlog is still draining behind it
    payload = json.loads(message.payload)
    jsonschema.validate(payload, alert_schema())
    assert verify_read(signer.private_key.public_key(), message.payload)
    assert payload["stage"] == "early"
    assert payload["read"]["event_id"] is None
    assert payload["entry"]["plate"] == "AB12CDE"
    assert payload["match"]["kind"] == "exact"
    assert payload["read"]["plate_crop_jpeg"]


def test_one_alert_per_pass_per_entry(rig: Rig, mosquitto: Mosquitto) -> None:
    alerts = mosquitto.subscribe("alpr/pole-17/alerts")
    for i in range(5):
        rig.alerter.check_frame(CAMERA, [observation("AB12CDE", i * 0.1)])
    vehicle_pass = make_vehicle_pass(
        "AB12CDE", first_seen=T0, last_seen=T0 + timedelta(seconds=0.4), best_seen=T0
    )
    event = build_read_event(vehicle_pass, device_id="pole-17", camera=CAMERA)
    hits = rig.alerter.match_pass(vehicle_pass)
    assert [h.entry.plate for h in hits] == ["AB12CDE"]
    assert rig.alerter.check_pass(CAMERA, vehicle_pass, event, hits) == 0  # covered early
    # A later pass of the same plate is a new pass: it alerts again, from the read.
    later = make_vehicle_pass(
        "AB12CDE",
        first_seen=T0 + timedelta(minutes=5),
        last_seen=T0 + timedelta(minutes=5, seconds=1),
    )
    later_event = build_read_event(later, device_id="pole-17", camera=CAMERA)
    assert rig.alerter.check_pass(CAMERA, later, later_event, rig.alerter.match_pass(later)) == 1
    messages = alerts.wait_for(2, timeout=3.0)
    time.sleep(0.3)
    assert len(alerts.messages) == 2
    stages = [json.loads(m.payload)["stage"] for m in messages]
    assert stages == ["early", "pass"]
    assert json.loads(messages[1].payload)["read"]["event_id"] == later_event.event_id


def test_alerts_say_whether_the_clock_was_synchronised(rig: Rig, mosquitto: Mosquitto) -> None:
    alerts = mosquitto.subscribe("alpr/pole-17/alerts")
    rig.alerter = Alerter(
        rig.settings,
        rig.keeper,
        rig.outbox,
        notify=rig.publisher.notify_alert,
        clock_synchronised=lambda: False,  # booted without network
    )
    for i in range(2):
        rig.alerter.check_frame(CAMERA, [observation("AB12CDE", i * 0.1)])
    later = make_vehicle_pass(
        "AB12CDE",
        first_seen=T0 + timedelta(minutes=5),
        last_seen=T0 + timedelta(minutes=5, seconds=1),
    )
    # NTP synchronised before the later pass ended: its alert says what its read says.
    event = build_read_event(later, device_id="pole-17", camera=CAMERA, clock_synchronised=True)
    assert rig.alerter.check_pass(CAMERA, later, event, rig.alerter.match_pass(later)) == 1
    payloads = [json.loads(m.payload) for m in alerts.wait_for(2, timeout=3.0)]
    assert [(p["stage"], p["clock_synchronised"]) for p in payloads] == [
        ("early", False),
        ("pass", True),
    ]
    validator = jsonschema.Draft202012Validator(alert_schema())
    for payload in payloads:
        assert payload["schema_version"] == "1.1"
        validator.validate(payload)
    del payloads[0]["clock_synchronised"]
    assert not validator.is_valid(payloads[0])  # required from 1.1 on
    payloads[0]["schema_version"] = "1.0"  # an alert stored before the upgrade
    assert validator.is_valid(payloads[0])


def test_fuzzy_pass_alert_says_which_character_differs(rig: Rig, mosquitto: Mosquitto) -> None:
    alerts = mosquitto.subscribe("alpr/pole-17/alerts")
    chars = (
        *(CharSlot(c, 0.99) for c in "XY99Z"),
        CharSlot("2", 0.55, (CharCandidate("Z", 0.4),)),
        CharSlot("Z", 0.99),
    )
    vehicle_pass = make_vehicle_pass("XY99Z2Z", chars=chars, confidence=0.5)
    event = build_read_event(vehicle_pass, device_id="pole-17", camera=CAMERA)
    assert rig.alerter.check_pass(CAMERA, vehicle_pass, event, rig.alerter.match_pass(vehicle_pass))
    (message,) = alerts.wait_for(1, timeout=3.0)
    match = json.loads(message.payload)["match"]
    assert match["kind"] == "fuzzy"
    assert match["differences"] == [
        {"position": 5, "read": "2", "entry": "Z", "prob": 0.4, "source": "alternative"}
    ]
    assert 0 < match["score"] < 1


def test_alert_raised_offline_survives_a_restart_and_is_sent(
    mosquitto: Mosquitto, tmp_path: Path, signer: EventSigner
) -> None:
    settings = settings_for(tmp_path, mosquitto)
    offline = Rig(settings, signer, start=False)
    offline.keeper.apply("fleet", hotlist("AB12CDE"))
    vehicle_pass = make_vehicle_pass("AB12CDE")
    event = build_read_event(vehicle_pass, device_id="pole-17", camera=CAMERA)
    offline.alerter.check_pass(
        CAMERA, vehicle_pass, event, offline.alerter.match_pass(vehicle_pass)
    )
    offline.store.close()  # power cut before the broker was reached

    alerts = mosquitto.subscribe("alpr/pole-17/alerts")
    online = Rig(settings, signer)
    try:
        (message,) = alerts.wait_for(1, timeout=5.0)
        assert json.loads(message.payload)["read"]["event_id"] == event.event_id
        deadline = time.monotonic() + 3
        while online.outbox.has_pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not online.outbox.has_pending()  # PUBACK recorded
    finally:
        online.close()
