"""Retention per kind of data on real SQLite files: what is purged is gone from the database
and WAL bytes, hits and the audit log keep their own clocks, the disk cap takes the oldest."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
from conftest import CAMERA

from edge.alerts import Alert, AlertOutbox, AlertRead
from edge.atrest import StorageCipher
from edge.audit import AuditLog
from edge.config import Settings
from edge.events import ReadEvent
from edge.hotlist import Hit, HotListEntry
from edge.matching import Match
from edge.retention import Purger
from edge.status import (
    DeviceStatus,
    ModelVersions,
    OutboxStatus,
    online_payload,
    status_schema,
)
from edge.store import ReadStore

T0 = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
MakeEvent = Callable[..., ReadEvent]


def settings_for(tmp_path: Path, **storage: object) -> Settings:
    return Settings(
        device_id="pole-17",
        storage={"dir": tmp_path, "encrypt": False, **storage},
        cameras=[CAMERA.model_dump()],
    )


def seed(
    store: ReadStore, make_event: MakeEvent, prefix: str, at: datetime, n: int, **kw: bool
) -> None:
    for i in range(n):
        event = make_event(f"{prefix}{i:03d}", best_seen=at + timedelta(seconds=i))
        store.add(event, f"jpeg of {prefix}{i:03d}".encode() * 20, **kw)


def file_bytes(db: Path) -> bytes:
    wal = db.with_name(db.name + "-wal")
    return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_purged_plates_are_gone_from_database_and_wal_bytes(
    tmp_path: Path, make_event: MakeEvent
) -> None:
    settings = settings_for(tmp_path, retention_days=30)
    store = ReadStore(tmp_path / "reads.db")
    seed(store, make_event, "QZX", T0, 300)
    seed(store, make_event, "KPT", T0 + timedelta(days=29), 5)
    store.mark_published_many([r.event_id for r in store.pending(1000)])
    before = file_bytes(store.path)
    assert b"QZX123" in before
    purger = Purger(settings, store, clock=lambda: T0 + timedelta(days=31))
    report = purger.purge()
    (reads,) = [r for r in report.receipts if r.kind == "reads"]
    assert reads.deleted == 300
    assert reads.oldest == "2026-11-29T06:00:00.000Z"
    assert reads.newest == "2026-11-29T06:04:59.000Z"
    assert report.wal_truncated
    after = file_bytes(store.path)
    assert b"QZX" not in after
    assert b"KPT004" in after or b"KPT" in after  # what is kept is still there
    assert len(store.pending(1000, seq_from=1)) == 0
    store.close()
    assert b"QZX" not in file_bytes(tmp_path / "reads.db")


def test_retention_of_minutes(tmp_path: Path, make_event: MakeEvent) -> None:
    settings = settings_for(tmp_path, retention_days=3 / (24 * 60))  # three minutes
    store = ReadStore(tmp_path / "reads.db")
    seed(store, make_event, "OLD", T0, 3)
    seed(store, make_event, "NEW", T0 + timedelta(minutes=4), 3)
    Purger(settings, store, clock=lambda: T0 + timedelta(minutes=6)).purge()
    texts = {r.plate_text for r in store.pending(100)}
    assert texts == {"NEW000", "NEW001", "NEW002"}
    store.close()


def test_hits_and_alerts_keep_their_own_retention(tmp_path: Path, make_event: MakeEvent) -> None:
    settings = settings_for(tmp_path, retention_days=30, hit_retention_days=365)
    store = ReadStore(tmp_path / "reads.db")
    seed(store, make_event, "HIT", T0, 2, hit=True)
    seed(store, make_event, "MIS", T0, 2)
    outbox = AlertOutbox(store)
    entry = HotListEntry("HIT000", "HIT000", "stolen", "high", None)
    hit = Hit(entry, Match("exact", 0.9, "HIT000", (), "text"), "v1", "fleet")
    read = AlertRead(None, T0, "HIT000", 0.9, (), ())
    outbox.add(Alert("pole-17", CAMERA, "pass", read, hit, raised_at=T0))
    purger = Purger(settings, store, clock=lambda: T0 + timedelta(days=40))
    kinds = {r.kind: r.deleted for r in purger.purge().receipts}
    assert kinds == {"reads": 2, "hits": 0, "alerts": 0}
    assert {r.plate_text for r in store.pending(10)} == {"HIT000", "HIT001"}
    assert outbox.pending_count() == 1
    later = Purger(settings, store, clock=lambda: T0 + timedelta(days=366))
    kinds = {r.kind: r.deleted for r in later.purge().receipts}
    assert kinds == {"reads": 0, "hits": 2, "alerts": 1}
    assert b"HIT000" not in file_bytes(store.path)
    store.close()


def test_audit_log_is_untouched_by_the_read_purge_and_has_its_own(
    tmp_path: Path, make_event: MakeEvent
) -> None:
    settings = settings_for(tmp_path, retention_days=1)
    store = ReadStore(tmp_path / "reads.db")
    audit = AuditLog(tmp_path / "audit.db")
    audit.append(
        user="a", reason="case 1", action="reads.search", query={"plate": "X"}, results=0, at=T0
    )
    audit.append(
        user="b",
        reason="case 2",
        action="reads.search",
        query={"plate": "Y"},
        results=1,
        at=T0 + timedelta(days=300),
    )
    seed(store, make_event, "OLD", T0, 2)
    Purger(settings, store, audit, clock=lambda: T0 + timedelta(days=30)).purge()
    assert len(audit.entries()) == 2  # default audit retention: 365 days
    report = Purger(settings, store, audit, clock=lambda: T0 + timedelta(days=400)).purge()
    (receipt,) = [r for r in report.receipts if r.kind == "audit"]
    assert receipt.deleted == 1
    assert [e.user for e in audit.entries()] == ["b"]
    assert audit.verify().ok  # the chain is anchored on the deleted entry's hash
    audit.close()
    store.close()


def test_disk_cap_deletes_the_oldest_reads_first(tmp_path: Path, make_event: MakeEvent) -> None:
    settings = settings_for(tmp_path, max_db_mb=0.25)
    store = ReadStore(tmp_path / "reads.db")
    for i in range(150):
        event = make_event(f"CAP{i:03d}", best_seen=T0 + timedelta(seconds=i))
        store.add(event, os.urandom(4000))
    report = Purger(settings, store, clock=lambda: T0 + timedelta(seconds=200)).purge()
    (cap,) = [r for r in report.receipts if r.kind == "disk_cap"]
    assert cap.deleted > 0
    kept = sorted(r.plate_text for r in store.pending(1000))
    assert kept == [f"CAP{i:03d}" for i in range(150 - len(kept), 150)]  # newest kept
    assert cap.oldest == "2026-11-29T06:00:00.000Z"
    assert report.db_bytes <= 0.25 * 1024 * 1024 * 1.3
    store.close()


def test_an_older_database_is_converted_to_incremental_vacuum(tmp_path: Path) -> None:
    path = tmp_path / "reads.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE counters (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);"
        "CREATE TABLE reads (event_id TEXT PRIMARY KEY NOT NULL, seq INTEGER NOT NULL, "
        "camera_id TEXT NOT NULL, captured_at TEXT NOT NULL, plate_text TEXT NOT NULL, "
        "payload TEXT NOT NULL, published_at TEXT, created_at TEXT NOT NULL);"
        "INSERT INTO reads VALUES ('e1', 1, 'c', '2026-01-01T00:00:00.000Z', 'OLD1', '{}', "
        "NULL, '2026-01-01T00:00:00.000Z');"
        "INSERT INTO counters VALUES ('seq', 1); PRAGMA user_version = 1;"
    )
    conn.close()
    store = ReadStore(path)
    with store.session("inspect") as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        assert db.execute("SELECT hit FROM reads").fetchone()[0] == 0
    assert store.pending(10)[0].plate_text == "OLD1"
    store.close()


def test_purge_receipt_is_reported_in_the_status(tmp_path: Path, make_event: MakeEvent) -> None:
    store = ReadStore(tmp_path / "reads.db")
    seed(store, make_event, "OLD", T0, 2)
    report = Purger(settings_for(tmp_path), store, clock=lambda: T0 + timedelta(days=31)).purge()
    status = DeviceStatus(
        device_id="pole-17",
        sent_at=T0,
        uptime_s=1.0,
        interval_s=30.0,
        cameras=(),
        outbox=OutboxStatus(0, None),
        disk_free_bytes=None,
        cpu_temperature_c=None,
        clock_synchronised=None,
        models=ModelVersions(None, None),
        retention=report,
        alerts_depth=0,
    )
    payload = json.loads(online_payload(status))
    jsonschema.validate(payload, status_schema())
    receipts = {r["kind"]: r for r in payload["retention"]["receipts"]}
    assert receipts["reads"]["deleted"] == 2
    assert receipts["reads"]["oldest"] == "2026-11-29T06:00:00.000Z"
    store.close()


def test_encrypted_database_holds_no_plate_text_and_key_loss_erases(
    tmp_path: Path, make_event: MakeEvent
) -> None:
    cipher = StorageCipher(os.urandom(32))
    store = ReadStore(tmp_path / "reads.db", cipher)
    event = make_event("SEC7777")
    store.add(event, b"\xff\xd8 crop of SEC7777 \xff\xd9")
    with store.session("checkpoint") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = file_bytes(store.path)
    assert b"SEC7777" not in raw
    (read,) = store.pending(10, with_crops=True)
    assert read.plate_text == "SEC7777"
    assert json.loads(read.payload)["plate"]["text"] == "SEC7777"
    assert read.crop_jpeg == b"\xff\xd8 crop of SEC7777 \xff\xd9"
    store.close()
    other_key = ReadStore(tmp_path / "reads.db", StorageCipher(os.urandom(32)))
    assert other_key.pending(10) == []  # unreadable without the key: erased
    other_key.close()
