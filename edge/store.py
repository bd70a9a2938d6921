"""The outbox: every read is committed to SQLite before anything else happens to it.

A read leaves the outbox (``published_at`` is set) only when the broker has acknowledged
it; until then ``pending()`` keeps offering it, across restarts and power cuts.

Choices, and why:

* **WAL with ``synchronous=FULL``.** WAL lets a reader (``pending()``, a CLI looking at
  the DB) run beside the writer. ``NORMAL`` would survive a crashed process but can lose
  the last commits on power loss, and a pole-mounted box loses power; at a few reads a
  second at most, one extra fsync per read is cheap. "Store first" has to mean on disk.
* **One connection behind a lock** rather than one per thread. The pipeline thread(s) and
  the publisher thread share it. SQLite serialises writers anyway, ``seq`` must be handed
  out by exactly one writer, and a single connection can be closed deterministically from
  ``close()`` (per-thread connections can only be closed by their own thread).
* **Crops as a BLOB in their own table**, not files. A crop is a few kB, which SQLite
  stores as fast as a file system; the row and its crop commit or roll back together, so
  there are no orphan files after a crash and no dangling references; purge is a single
  ``DELETE`` (the crop follows by ``ON DELETE CASCADE``). The separate table keeps the
  blobs out of the pages that ``pending()`` scans. Freed pages are reused by new reads,
  so the file levels off at about ``retention_days`` worth of reads.
* **``seq`` from a counter row**, bumped in the insert's transaction: ``MAX(seq) + 1``
  would start again at 1 after a purge emptied the table.
* **Deleted means gone from the file.** ``secure_delete`` overwrites deleted content,
  ``auto_vacuum=INCREMENTAL`` (set before the first table; an older database is converted
  once with ``VACUUM``) lets ``edge.retention`` hand freed pages back, and a checkpoint
  empties the WAL. With a ``StorageCipher`` the plate text, payload and crop of each read are
  sealed (``edge.atrest``); ``plate_index`` lets an exact search find a plate without them.
* **``hit``** marks reads that matched the hot list: they have their own retention.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils
import sqlite_utils.db

from edge.atrest import SealError, StorageCipher
from edge.errors import EX_IOERR, EdgeError
from edge.events import ReadEvent, encode_payload, format_time, to_payload

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of the database layout this code writes. 2 added ``reads.hit``,
``reads.plate_index`` and the ``alerts`` table."""
BUSY_TIMEOUT_MS = 5000
AUTO_VACUUM_INCREMENTAL = 2


_PENDING = (
    "SELECT seq, event_id, camera_id, captured_at, plate_text, payload, created_at, hit, "
    "NULL AS crop FROM reads WHERE published_at IS NULL AND seq BETWEEN ? AND ? "
    "ORDER BY seq LIMIT ?"
)
_PENDING_WITH_CROPS = (
    "SELECT reads.seq, reads.event_id, reads.camera_id, reads.captured_at, reads.plate_text, "
    "reads.payload, reads.created_at, reads.hit, crops.jpeg AS crop "
    "FROM reads LEFT JOIN crops ON crops.event_id = reads.event_id "
    "WHERE reads.published_at IS NULL AND reads.seq BETWEEN ? AND ? ORDER BY reads.seq LIMIT ?"
)
_MAX_SEQ = 2**63 - 1


class StorageError(EdgeError):
    """The read database cannot be opened, read or written."""

    exit_code = EX_IOERR


@dataclass(frozen=True, slots=True)
class StoredRead:
    seq: int
    event_id: str
    camera_id: str
    captured_at: str
    plate_text: str
    payload: bytes = field(repr=False)
    """Exactly the bytes stored at ``add()``; publishing them again gives the same message."""
    created_at: str
    crop_jpeg: bytes | None = field(default=None, repr=False)
    """Only filled by ``pending(with_crops=True)``."""
    hit: bool = False


class ReadStore:
    def __init__(self, path: Path, cipher: StorageCipher | None = None) -> None:
        self.path = path
        self.cipher = cipher
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread=False: the lock below, not the thread, guards the connection.
            conn = sqlite3.connect(
                str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"read database {path}: cannot open: {exc}") from None
        try:
            self._db = sqlite_utils.Database(conn)
            self._setup()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StorageError(
                f"read database {path}: not a usable SQLite database ({exc}); "
                "move it aside and restart to begin a new one"
            ) from None
        except StorageError:
            conn.close()
            raise

    def _setup(self) -> None:
        db = self._db
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"read database {self.path}: layout version {version} was written by a newer "
                f"alpr-edge (this one knows {SCHEMA_VERSION})"
            )
        fresh = not db.table_names()
        if fresh:
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes before the first table
        db.enable_wal()
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA secure_delete=ON")
        if not fresh and db.execute("PRAGMA auto_vacuum").fetchone()[0] != AUTO_VACUUM_INCREMENTAL:
            log.info("read database %s: converting to incremental vacuum (once)", self.path)
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("VACUUM")
        with db.atomic():
            db.table("counters").create(
                {"name": str, "value": int},
                pk="name",
                not_null={"name", "value"},
                if_not_exists=True,
            )
            db.table("reads").create(
                {
                    "event_id": str,
                    "seq": int,
                    "camera_id": str,
                    "captured_at": str,
                    "plate_text": str,
                    "payload": str,
                    "published_at": str,
                    "created_at": str,
                    "hit": int,
                    "plate_index": str,
                },
                pk="event_id",
                defaults={"hit": 0},
                not_null={
                    "event_id",
                    "seq",
                    "camera_id",
                    "captured_at",
                    "plate_text",
                    "payload",
                    "created_at",
                    "hit",
                },
                if_not_exists=True,
            )
            db.table("crops").create(
                {"event_id": str, "jpeg": bytes},
                pk="event_id",
                not_null={"event_id", "jpeg"},
                foreign_keys=[
                    sqlite_utils.db.ForeignKey(
                        "crops", "event_id", "reads", "event_id", on_delete="CASCADE"
                    )
                ],
                if_not_exists=True,
            )
            columns = db.table("reads").columns_dict
            if "hit" not in columns:  # layout 1
                db.execute("ALTER TABLE reads ADD COLUMN hit INTEGER NOT NULL DEFAULT 0")
                db.execute("ALTER TABLE reads ADD COLUMN plate_index TEXT")
            db.table("alerts").create(
                {
                    "alert_id": str,
                    "seq": int,
                    "camera_id": str,
                    "raised_at": str,
                    "read_event_id": str,
                    "payload": str,
                    "published_at": str,
                },
                pk="alert_id",
                not_null={"alert_id", "seq", "camera_id", "raised_at", "payload"},
                if_not_exists=True,
            )
            db.table("reads").create_index(["seq"], unique=True, if_not_exists=True)
            db.table("reads").create_index(["captured_at"], if_not_exists=True)
            # The outbox query reads only unpublished rows in seq order; a partial index
            # keeps it small however many published reads the retention window holds.
            db.execute(
                "CREATE INDEX IF NOT EXISTS reads_pending ON reads(seq) WHERE published_at IS NULL"
            )
            db.execute(
                "CREATE INDEX IF NOT EXISTS alerts_pending ON alerts(seq) "
                "WHERE published_at IS NULL"
            )
            db.table("alerts").create_index(["raised_at"], if_not_exists=True)
            db.table("reads").create_index(["plate_index"], if_not_exists=True)
            db.execute("INSERT OR IGNORE INTO counters (name, value) VALUES ('seq', 0)")
            db.execute("INSERT OR IGNORE INTO counters (name, value) VALUES ('alert_seq', 0)")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def session(self, action: str) -> Iterator[sqlite_utils.Database]:
        """The connection, under the store's lock, for the modules that keep their own tables
        in this database (``edge.alerts``, ``edge.retention``); errors become StorageError."""
        with self._locked(action) as db:
            yield db

    @contextmanager
    def _locked(self, action: str) -> Iterator[sqlite_utils.Database]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StorageError(f"read database {self.path}: cannot {action}: {exc}") from exc

    def add(self, event: ReadEvent, crop_jpeg: bytes, *, hit: bool = False) -> int:
        """Store a read and its crop; returns its ``seq``. Committed (and synced) on return.
        ``hit``: it matched the hot list (kept for ``storage.hit_retention_days``)."""
        created = format_time(datetime.now(UTC))
        seal = self._sealer(event.event_id)
        with self._locked("store a read") as db, db.atomic():
            db.execute("UPDATE counters SET value = value + 1 WHERE name = 'seq'")
            seq = int(db.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()[0])
            payload = encode_payload(to_payload(event, seq=seq)).decode("utf-8")
            db.table("reads").insert(
                {
                    "event_id": event.event_id,
                    "seq": seq,
                    "camera_id": event.camera_id,
                    "captured_at": format_time(event.captured_at),
                    "plate_text": seal("plate_text", event.plate.text),
                    "payload": seal("payload", payload),
                    "published_at": None,
                    "created_at": created,
                    "hit": int(hit),
                    "plate_index": self.plate_index(event.plate.text),
                }
            )
            if crop_jpeg:
                jpeg = crop_jpeg
                if self.cipher is not None:
                    jpeg = self.cipher.seal_bytes(crop_jpeg, f"crops/{event.event_id}")
                db.table("crops").insert({"event_id": event.event_id, "jpeg": jpeg})
        return seq

    def plate_index(self, plate: str) -> str | None:
        """What ``plate_index`` holds for this text: the blind index, or None unencrypted."""
        return None if self.cipher is None else self.cipher.blind_index(plate)

    def _sealer(self, row_id: str) -> Callable[[str, str], str]:
        cipher = self.cipher

        def seal(column: str, value: str) -> str:
            return value if cipher is None else cipher.seal_text(value, f"reads/{row_id}/{column}")

        return seal

    def open_row(self, row: dict[str, Any]) -> StoredRead | None:
        """A ``reads`` row (optionally with ``crop``) decrypted; None when it does not open
        with this key (sealed under a destroyed key: erased)."""
        cipher = self.cipher
        if cipher is None:
            return _stored(row)
        eid = str(row["event_id"])
        try:
            opened = dict(row)
            opened["plate_text"] = cipher.open_text(row["plate_text"], f"reads/{eid}/plate_text")
            opened["payload"] = cipher.open_text(row["payload"], f"reads/{eid}/payload")
            if row.get("crop") is not None:
                opened["crop"] = cipher.open_bytes(bytes(row["crop"]), f"crops/{eid}")
        except SealError as exc:
            log.error("read %s cannot be decrypted (%s); it is treated as erased", eid, exc)  # noqa: TRY400
            return None
        return _stored(opened)

    def pending(
        self,
        limit: int,
        *,
        with_crops: bool = False,
        seq_from: int = 1,
        seq_to: int | None = None,
    ) -> list[StoredRead]:
        """Unacknowledged reads with ``seq_from <= seq <= seq_to``, lowest ``seq`` first."""
        sql = _PENDING_WITH_CROPS if with_crops else _PENDING
        upper = _MAX_SEQ if seq_to is None else seq_to
        with self._locked("read the outbox") as db:
            rows = list(db.query(sql, [seq_from, upper, limit]))
        opened = [self.open_row(row) for row in rows]
        unreadable = [str(r["event_id"]) for r, o in zip(rows, opened, strict=True) if o is None]
        if unreadable:
            # Sealed under a key that is gone: they can never be sent; drop them from the outbox.
            self.mark_published_many(unreadable)
        return [o for o in opened if o is not None]

    def last_seq(self) -> int:
        """The ``seq`` of the newest read stored so far (0 before the first)."""
        with self._locked("read the seq counter") as db:
            row = db.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()
        return int(row[0])

    def mark_published(self, event_id: str) -> bool:
        """Record the broker's acknowledgement; False if unknown or already marked."""
        return self.mark_published_many([event_id]) > 0

    def mark_published_many(self, event_ids: Sequence[str]) -> int:
        """Record several acknowledgements in one transaction (one fsync, not one per read:
        a backlog of 600k reads would otherwise cost 600k fsyncs). Returns how many were
        newly marked."""
        if not event_ids:
            return 0
        now = format_time(datetime.now(UTC))
        marked = 0
        with self._locked("mark reads published") as db, db.atomic():
            for event_id in event_ids:
                cursor = db.execute(
                    "UPDATE reads SET published_at = ? WHERE event_id = ? AND published_at IS NULL",
                    [now, event_id],
                )
                marked += cursor.rowcount
        return marked

    def has_pending(self) -> bool:
        """Whether any read awaits its PUBACK: one index probe, unlike ``pending_count()``,
        which walks the whole outbox (600k entries after a week offline)."""
        with self._locked("read the outbox") as db:
            row = db.execute("SELECT 1 FROM reads WHERE published_at IS NULL LIMIT 1").fetchone()
        return row is not None

    def pending_count(self) -> int:
        with self._locked("count the outbox") as db:
            row = db.execute("SELECT COUNT(*) FROM reads WHERE published_at IS NULL").fetchone()
        return int(row[0])

    def oldest_pending_age_s(self) -> float | None:
        """Seconds since the oldest unacknowledged read was stored; None when none wait."""
        with self._locked("read the outbox") as db:
            row = db.execute(
                "SELECT created_at FROM reads WHERE published_at IS NULL ORDER BY seq LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        created = datetime.strptime(row[0], "%Y-%m-%dT%H:%M:%S.%f%z")
        return max(0.0, (datetime.now(UTC) - created).total_seconds())

    def crop(self, event_id: str) -> bytes | None:
        with self._locked("read a crop") as db:
            row = db.execute("SELECT jpeg FROM crops WHERE event_id = ?", [event_id]).fetchone()
        if row is None:
            return None
        if self.cipher is None:
            return bytes(row[0])
        return self.cipher.open_bytes(bytes(row[0]), f"crops/{event_id}")

    def purge_older_than(self, cutoff: datetime) -> int:
        """Delete reads captured before ``cutoff`` with their crops; returns how many.

        Retention wins over delivery: a read past its retention is deleted even when it was
        never sent (its ``seq`` gap tells the receiver). Such deletions are logged.
        """
        limit = format_time(cutoff)
        with self._locked("purge old reads") as db, db.atomic():
            unsent = db.execute(
                "SELECT COUNT(*) FROM reads WHERE captured_at < ? AND published_at IS NULL",
                [limit],
            ).fetchone()[0]
            deleted = db.execute("DELETE FROM reads WHERE captured_at < ?", [limit]).rowcount
        if unsent:
            log.warning("retention deleted %d read(s) that were never published", unsent)
        return int(deleted)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _stored(row: dict[str, Any]) -> StoredRead:
    return StoredRead(
        seq=int(row["seq"]),
        event_id=row["event_id"],
        camera_id=row["camera_id"],
        captured_at=row["captured_at"],
        plate_text=row["plate_text"],
        payload=str(row["payload"]).encode("utf-8"),
        created_at=row["created_at"],
        crop_jpeg=None if row.get("crop") is None else bytes(row["crop"]),
        hit=bool(row.get("hit") or 0),
    )
