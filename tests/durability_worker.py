"""A stand-in for the daemon's storage and delivery half, run as its own process by
``tests/test_durability.py`` so that it can be killed with SIGKILL.

It wires ``ReadStore`` and ``MqttPublisher`` exactly as ``edge.app`` does (same config file,
storage key, signing key and client id) but makes reads itself at a steady rate instead of
running cameras and models, so a start takes about a second, not the models' warm-up::

    python3 tests/durability_worker.py CONFIG [--interval S] [--adds N] [--no-publish]
        [--flush-timeout S]

Prints ``ready`` once the store is open (and the publisher started), then adds a read every
``--interval`` seconds (0: a tight loop of SQLite writes). With ``--adds N`` it stops after
N reads, waits until the outbox is empty and exits 0 (1 if it is not empty within
``--flush-timeout`` seconds, 30 by default).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.atrest import load_cipher
from edge.config import load_settings
from edge.events import build_read_event
from edge.publisher import MqttPublisher
from edge.signing import load_signer
from edge.store import ReadStore
from edge.types import CharSlot, Direction, PlateStatus, TextCandidate, VehiclePass

CROP = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\xff\xd9"


def vehicle_pass(camera_id: str, number: int) -> VehiclePass:
    text = f"DU{number % 100000:05d}"
    now = datetime.now(UTC)
    return VehiclePass(
        camera_id=camera_id,
        text=text,
        confidence=0.95,
        candidates=(TextCandidate(text, 0.95),),
        status=PlateStatus.FULL,
        first_seen=now - timedelta(seconds=1),
        last_seen=now,
        best_seen=now - timedelta(milliseconds=500),
        frames_seen=8,
        direction=Direction.APPROACHING,
        crop_jpeg=CROP,
        chars=tuple(CharSlot(ch, 0.97, ()) for ch in text),
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--adds", type=int)
    parser.add_argument("--no-publish", action="store_true")
    parser.add_argument("--flush-timeout", type=float, default=30.0)
    args = parser.parse_args()
    settings = load_settings(args.config)
    camera = settings.cameras[0]
    store = ReadStore(settings.storage.dir / "reads.db", load_cipher(settings))
    publisher = None
    if not args.no_publish:
        publisher = MqttPublisher(
            settings.mqtt,
            device_id=settings.device_id,
            store=store,
            signer=load_signer(settings),
            reconnect_min_s=0.1,
            reconnect_max_s=0.5,
        )
        publisher.start()
    print("ready", flush=True)
    added = 0
    while args.adds is None or added < args.adds:
        event = build_read_event(
            vehicle_pass(camera.id, added), device_id=settings.device_id, camera=camera
        )
        store.add(event, CROP)
        added += 1
        if publisher is not None:
            publisher.notify()
        if args.interval > 0:
            time.sleep(args.interval)
    empty = publisher.flush(timeout_s=args.flush_timeout) if publisher is not None else True
    if publisher is not None:
        publisher.stop(timeout=5.0)
    store.close()
    return 0 if empty else 1


if __name__ == "__main__":
    sys.exit(main())
