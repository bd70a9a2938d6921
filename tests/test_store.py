"""The outbox on real SQLite files: seq, durability across reopen, purge, bad files."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.errors import EX_IOERR
from edge.events import ReadEvent
from edge.store import ReadStore, StorageError

MakeEvent = Callable[..., ReadEvent]
CROP = b"\xff\xd8\xff\xe0crop\xff\xd9"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "reads.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[ReadStore]:
    opened = ReadStore(db_path)
    yield opened
    opened.close()


def test_seq_starts_at_one_and_increments_by_one(store: ReadStore, make_event: MakeEvent) -> None:
    assert [store.add(make_event(), CROP) for _ in range(5)] == [1, 2, 3, 4, 5]


def test_pending_is_oldest_first_with_seq_in_payload(
    store: ReadStore, make_event: MakeEvent
) -> None:
    events = [make_event(f"AB{i}") for i in range(4)]
    for event in events:
        store.add(event, CROP)
    pending = store.pending(limit=3)
    assert [r.seq for r in pending] == [1, 2, 3]
    assert [r.event_id for r in pending] == [e.event_id for e in events[:3]]
    for read in pending:
        payload = json.loads(read.payload)
        assert payload["seq"] == read.seq
        assert payload["event_id"] == read.event_id
        assert payload["plate"]["text"] == read.plate_text
        assert payload["plate_crop_jpeg"] is None
        assert read.crop_jpeg is None
    with_crops = store.pending(limit=1, with_crops=True)
    assert with_crops[0].crop_jpeg == CROP
    assert with_crops[0].payload == pending[0].payload


def test_seq_and_pending_survive_close_and_reopen(db_path: Path, make_event: MakeEvent) -> None:
    first = ReadStore(db_path)
    first.add(make_event(), CROP)
    first.add(make_event(), CROP)
    before = first.pending(limit=10)
    first.close()

    again = ReadStore(db_path)
    assert again.pending(limit=10) == before
    assert again.add(make_event(), CROP) == 3
    again.close()


def test_read_survives_process_killed_after_add(db_path: Path) -> None:
    # A separate interpreter stores one read and dies without closing anything (os._exit
    # skips every cleanup): "store first" means the read is on disk when add() returns.
    script = (
        "import os, sys\n"
        "sys.path[:0] = [sys.argv[2], sys.argv[3]]\n"
        "from pathlib import Path\n"
        "from conftest import make_vehicle_pass, CAMERA\n"
        "from edge.events import build_read_event\n"
        "from edge.store import ReadStore\n"
        "store = ReadStore(Path(sys.argv[1]))\n"
        "event = build_read_event(make_vehicle_pass('KILL1'), device_id='pole-17', camera=CAMERA)\n"
        "print(event.event_id, store.add(event, b'jpeg'), flush=True)\n"
        "os._exit(9)\n"
    )
    tests_dir = Path(__file__).resolve().parent
    result = subprocess.run(
        [sys.executable, "-c", script, str(db_path), str(tests_dir), str(tests_dir.parent)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 9, result.stderr
    event_id, seq = result.stdout.split()
    store = ReadStore(db_path)
    pending = store.pending(limit=10)
    assert [(r.event_id, r.seq, r.plate_text) for r in pending] == [(event_id, int(seq), "KILL1")]
    assert store.crop(event_id) == b"jpeg"
    store.close()


def test_mark_published_removes_from_pending(store: ReadStore, make_event: MakeEvent) -> None:
    events = [make_event() for _ in range(3)]
    for event in events:
        store.add(event, CROP)
    assert store.mark_published(events[1].event_id)
    assert not store.mark_published(events[1].event_id)
    assert not store.mark_published("no-such-read")
    assert [r.event_id for r in store.pending(10)] == [events[0].event_id, events[2].event_id]
    assert store.pending_count() == 2


def test_lanes_by_seq_range_and_acks_marked_in_one_batch(
    store: ReadStore, make_event: MakeEvent
) -> None:
    events = [make_event() for _ in range(6)]
    for event in events:
        store.add(event, CROP)
    assert store.last_seq() == 6
    assert [r.seq for r in store.pending(10, seq_to=3)] == [1, 2, 3]  # backlog lane
    assert [r.seq for r in store.pending(2, seq_from=4)] == [4, 5]  # live lane
    assert store.mark_published_many([events[0].event_id, events[4].event_id, "unknown"]) == 2
    assert [r.seq for r in store.pending(10)] == [2, 3, 4, 6]
    assert store.has_pending()
    store.mark_published_many([e.event_id for e in events])
    assert not store.has_pending()
    assert store.last_seq() == 6


def test_published_state_survives_reopen(db_path: Path, make_event: MakeEvent) -> None:
    store = ReadStore(db_path)
    event = make_event()
    store.add(event, CROP)
    store.mark_published(event.event_id)
    store.close()
    store = ReadStore(db_path)
    assert store.pending_count() == 0
    assert store.oldest_pending_age_s() is None
    store.close()


def test_oldest_pending_age(store: ReadStore, make_event: MakeEvent) -> None:
    assert store.oldest_pending_age_s() is None
    store.add(make_event(), CROP)
    age = store.oldest_pending_age_s()
    assert age is not None and 0.0 <= age < 5.0


def test_purge_deletes_old_reads_and_their_crops(
    db_path: Path, store: ReadStore, make_event: MakeEvent
) -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    old = make_event("OLD1", best_seen=now - timedelta(days=40))
    published_old = make_event("OLD2", best_seen=now - timedelta(days=31))
    recent = make_event("NEW1", best_seen=now - timedelta(days=1))
    for event in (old, published_old, recent):
        store.add(event, CROP)
    store.mark_published(published_old.event_id)

    assert store.purge_older_than(now - timedelta(days=30)) == 2
    assert [r.event_id for r in store.pending(10)] == [recent.event_id]
    assert store.crop(old.event_id) is None
    assert store.crop(recent.event_id) == CROP
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM crops").fetchone()[0] == 1
        assert raw.execute("SELECT COUNT(*) FROM reads").fetchone()[0] == 1


def test_seq_keeps_counting_after_purge_empties_the_table(
    store: ReadStore, make_event: MakeEvent
) -> None:
    store.add(make_event(), CROP)
    store.add(make_event(), CROP)
    assert store.purge_older_than(datetime(2100, 1, 1, tzinfo=UTC)) == 2
    assert store.add(make_event(), CROP) == 3


def test_read_without_crop_is_stored(store: ReadStore, make_event: MakeEvent) -> None:
    event = make_event()
    store.add(event, b"")
    assert store.crop(event.event_id) is None
    assert store.pending(1, with_crops=True)[0].crop_jpeg is None


def test_concurrent_adds_get_distinct_consecutive_seqs(
    store: ReadStore, make_event: MakeEvent
) -> None:
    seqs: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            seq = store.add(make_event(), CROP)
            with lock:
                seqs.append(seq)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seqs) == list(range(1, 41))


def test_garbage_file_is_a_clear_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "reads.db"
    path.write_bytes(b"this is not a database, just some bytes " * 100)
    with pytest.raises(StorageError, match=r"reads\.db: not a usable SQLite database") as err:
        ReadStore(path)
    assert err.value.exit_code == EX_IOERR


def test_directory_as_db_path_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open"):
        ReadStore(tmp_path)


def test_database_from_newer_version_is_refused(db_path: Path) -> None:
    ReadStore(db_path).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute("PRAGMA user_version = 99")
    with pytest.raises(StorageError, match="newer alpr-edge"):
        ReadStore(db_path)


def test_database_is_in_wal_mode(store: ReadStore, db_path: Path) -> None:
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
