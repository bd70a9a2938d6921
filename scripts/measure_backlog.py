"""Measure draining a week-long outbox backlog: memory stays flat, and how fast it goes.

Fills a fresh read database with N small reads (600k = a week at one read a second, each
with a tiny crop), starts a private mosquitto on a free loopback port, drains the outbox
through the daemon's own ``MqttPublisher`` and prints resident memory before, during and
after the drain, and the drain rate::

    python3 scripts/measure_backlog.py                  # 600000 reads, rate limit off
    python3 scripts/measure_backlog.py --reads 50000 --rate 0

The rate limit is off by default here (``--rate 0``) to measure the worst case for memory
and the ceiling for speed; the daemon's default is ``mqtt.backlog_rate_per_s = 50``.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.config import CameraSettings, MqttSettings  # noqa: E402
from edge.events import build_read_event, encode_payload, format_time, to_payload  # noqa: E402
from edge.publisher import MqttPublisher  # noqa: E402
from edge.signing import EventSigner  # noqa: E402
from edge.store import ReadStore  # noqa: E402
from edge.types import Direction, PlateStatus, TextCandidate, VehiclePass  # noqa: E402
from scripts.demo import start_broker  # noqa: E402

BATCH = 10_000


def rss_kib(field: str = "VmRSS") -> int:
    """A memory field of this process from /proc/self/status, KiB: ``VmRSS`` (resident),
    ``VmHWM`` (its peak so far), ``RssAnon`` (anonymous resident memory), ..."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


CAMERA = CameraSettings(id="cam1", source="v4l2:///dev/video0")


def sample_pass(text: str, now: datetime) -> VehiclePass:
    """A confident full read of ``text`` on camera cam1, seen at ``now``."""
    return VehiclePass(
        camera_id="cam1",
        text=text,
        confidence=0.97,
        candidates=(TextCandidate(text, 0.97),),
        status=PlateStatus.FULL,
        first_seen=now,
        last_seen=now,
        best_seen=now,
        frames_seen=8,
        direction=Direction.APPROACHING,
    )


def fill(db_path: Path, reads: int, crop_bytes: int) -> None:
    """Bulk insert through SQLite directly (one transaction per batch, no fsync per row):
    the daemon stores one read at a time, but 600k fsyncs would only measure the disk."""
    ReadStore(db_path).close()  # creates the layout the daemon uses
    now = datetime.now(UTC)
    event = build_read_event(sample_pass("AB12CDE", now), device_id="bench", camera=CAMERA)
    template = to_payload(event, seq=1)
    crop = b"\xff\xd8" + bytes(max(0, crop_bytes - 4)) + b"\xff\xd9"
    created = format_time(now)
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA synchronous=OFF")
    for start in range(1, reads + 1, BATCH):
        rows, crops = [], []
        for seq in range(start, min(reads, start + BATCH - 1) + 1):
            event_id = str(uuid.uuid4())
            template["seq"], template["event_id"] = seq, event_id
            payload = encode_payload(template).decode("utf-8")
            # event_id, seq, camera_id, captured_at, plate_text, payload, published_at,
            # created_at, hit, plate_index (None: the store is not encrypted here)
            rows.append(
                (event_id, seq, "cam1", created, "AB12CDE", payload, None, created, 0, None)
            )
            crops.append((event_id, crop))
        with conn:
            conn.executemany("INSERT INTO reads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.executemany("INSERT INTO crops VALUES (?, ?)", crops)
    with conn:
        conn.execute("UPDATE counters SET value = ? WHERE name = 'seq'", [reads])
    conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=600_000, help="reads in the backlog")
    parser.add_argument("--rate", type=float, default=0.0, help="backlog_rate_per_s; 0 = off")
    parser.add_argument("--crop-bytes", type=int, default=64, help="size of each tiny crop")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="measure-backlog-") as tmp:
        workdir = Path(tmp)
        db_path = workdir / "reads.db"
        began = time.monotonic()
        fill(db_path, args.reads, args.crop_bytes)
        size = db_path.stat().st_size
        print(
            f"filled {args.reads} reads in {time.monotonic() - began:.0f} s "
            f"({size / 1e6:.0f} MB database)",
            flush=True,
        )
        broker, port = start_broker(workdir)
        store = ReadStore(db_path)
        try:
            rss_start = rss_kib()
            print(f"RSS at start (store open, before the drain): {mib(rss_start)}", flush=True)
            publisher = MqttPublisher(
                MqttSettings(host="127.0.0.1", port=port, backlog_rate_per_s=args.rate),
                device_id="bench",
                store=store,
                signer=EventSigner(Ed25519PrivateKey.generate()),
                device_status=False,
            )
            began = time.monotonic()
            publisher.start()
            rss_max, last_report = rss_start, began
            while not publisher.flush(timeout_s=1.0):
                rss_max = max(rss_max, rss_kib())
                if time.monotonic() - last_report >= 15.0:
                    last_report = time.monotonic()
                    left = store.pending_count()
                    elapsed = last_report - began
                    print(
                        f"  {elapsed:5.0f} s: {args.reads - left} sent, {left} left, "
                        f"{(args.reads - left) / elapsed:.0f} reads/s, RSS {mib(rss_kib())}",
                        flush=True,
                    )
            took = time.monotonic() - began
            rss_max = max(rss_max, rss_kib())
            publisher.stop(timeout=5.0)
            rss_after = rss_kib()
        finally:
            store.close()
            broker.terminate()
            broker.wait(5.0)
        print(f"drained {args.reads} reads in {took:.0f} s: {args.reads / took:.0f} reads/s")
        print(f"RSS during the drain (max of 1 s samples): {mib(rss_max)}")
        print(f"RSS after the drain: {mib(rss_after)}")
        print(f"RSS growth over the drain: {mib(rss_max - rss_start)}")
        print(f"peak RSS of the whole run (VmHWM, includes the fill): {mib(rss_kib('VmHWM'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
