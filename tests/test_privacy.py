"""Privacy on the device: only the plate crop is kept, images can be off altogether, and a
"hits only" device keeps nothing that did not match the hot list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import CAMERA, make_vehicle_pass

from edge.alerts import Alerter, AlertOutbox
from edge.app import Daemon
from edge.config import Settings
from edge.crops import storage_crop
from edge.hotlist import HotListKeeper, canonical_json
from edge.publisher import MqttPublisher
from edge.signing import EventSigner
from edge.store import ReadStore
from edge.types import Detection

MARGIN = 0.15
"""edge.inference.rectify.plate_crop's margin, a share of the plate height."""


@pytest.mark.parametrize(
    "box",
    [(600.0, 500.0, 720.0, 530.0), (10.0, 5.0, 200.0, 60.0), (1100.0, 650.0, 1279.0, 719.0)],
)
def test_stored_crop_is_the_plate_and_a_small_margin_only(
    box: tuple[float, float, float, float],
) -> None:
    image = np.zeros((720, 1280, 3), np.uint8)
    crop = storage_crop(image, Detection(box, 0.9))
    plate_w, plate_h = box[2] - box[0], box[3] - box[1]
    pad = MARGIN * plate_h
    h, w = crop.shape[:2]
    assert h <= plate_h + 2 * pad + 2
    assert w <= plate_w + 2 * pad + 2
    # Never more than a third of a plate height above or below it: no windscreen, no faces.
    assert h <= plate_h * 1.34 + 2


def daemon_for(tmp_path: Path, signer: EventSigner, **privacy: bool) -> Daemon:
    settings = Settings(
        device_id="pole-17",
        storage={"dir": tmp_path, "encrypt": False},
        privacy=privacy,
        cameras=[CAMERA.model_dump()],
    )
    daemon = Daemon(settings)
    daemon.store = ReadStore(tmp_path / "reads.db")
    daemon.publisher = MqttPublisher(
        settings.mqtt, device_id="pole-17", store=daemon.store, signer=signer
    )
    keeper = HotListKeeper(settings.hotlist, tmp_path)
    entries = [{"plate": "AB12CDE", "reason": "stolen vehicle", "priority": "high"}]
    keeper.apply("fleet", canonical_json({"version": "v1", "entries": entries}))
    daemon.alerter = Alerter(settings, keeper, AlertOutbox(daemon.store))
    return daemon


def test_hits_only_keeps_and_sends_only_hot_list_hits(tmp_path: Path, signer: EventSigner) -> None:
    daemon = daemon_for(tmp_path, signer, hits_only=True)
    assert daemon.store is not None
    daemon._emit(make_vehicle_pass("ZZ99ZZZ"), CAMERA)
    daemon._emit(make_vehicle_pass("AB12CDE"), CAMERA)
    (kept,) = daemon.store.pending(10)
    assert (kept.plate_text, kept.hit) == ("AB12CDE", True)
    assert daemon.reads_dropped == 1
    assert b"ZZ99ZZZ" not in (tmp_path / "reads.db-wal").read_bytes()
    daemon.store.close()


def test_no_images_setting_keeps_no_crop(tmp_path: Path, signer: EventSigner) -> None:
    daemon = daemon_for(tmp_path, signer, keep_images=False)
    assert daemon.store is not None
    daemon._emit(make_vehicle_pass("AB12CDE"), CAMERA)
    daemon._emit(make_vehicle_pass("QQ11QQQ"), CAMERA)
    reads = daemon.store.pending(10, with_crops=True)
    assert [r.crop_jpeg for r in reads] == [None, None]
    with daemon.store.session("count crops") as db:
        assert db.execute("SELECT COUNT(*) FROM crops").fetchone()[0] == 0
    alert_payloads = AlertOutbox(daemon.store).pending(10)
    assert b'"plate_crop_jpeg":null' in alert_payloads[0].payload
    daemon.store.close()
