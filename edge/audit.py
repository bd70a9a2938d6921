"""The audit log of local look-ups: append-only, hash-chained, in its own database.

Every search of stored reads on the device (``alpr-edge reads search``) appends one entry
(who, when, why, what was asked, how many results) *before* any result is shown. Each entry
stores the SHA-256 of the previous entry's hash and its own content, so changing, inserting
or removing an entry breaks the chain at that point (``alpr-edge audit verify``). Removing
the newest entries leaves a shorter valid chain; that is why the daemon also publishes every
entry to ``{prefix}/{device_id}/audit``, where the backend keeps its own copy.

The log lives in ``storage.dir/audit.db``, away from the reads, so no read purge can touch
it; ``audit.retention_days`` (365 by default) governs it. When old entries are deleted, the
hash of the last deleted one is kept as the chain's *anchor*, so what remains still verifies.
With a storage cipher the ``query`` column (it holds the plate asked for) is sealed; the hash
covers the stored form, so verifying needs no key.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.atrest import StorageCipher
from edge.events import encode_payload, format_time
from edge.store import BUSY_TIMEOUT_MS, StorageError

GENESIS = "0" * 64
AUDIT_SCHEMA_VERSION = "1.0"
_FIELDS = ("id", "at", "user", "os_user", "action", "reason", "query", "results", "prev_hash")
_SELECT = "SELECT audit.id, at, user, os_user, action, reason, query, results, prev_hash, hash"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, at TEXT NOT NULL, user TEXT NOT NULL,
    os_user TEXT NOT NULL, action TEXT NOT NULL, reason TEXT NOT NULL, query TEXT NOT NULL,
    results INTEGER NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_published (id INTEGER PRIMARY KEY);
INSERT OR IGNORE INTO audit_meta VALUES ('anchor', printf('%.64d', 0));
INSERT OR IGNORE INTO audit_meta VALUES ('anchor_id', '0');
"""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: str
    user: str
    """The person, as given with ``--user``."""
    os_user: str
    """The login that ran the command."""
    action: str
    reason: str
    query: str
    """JSON of the question asked; sealed when the database is encrypted."""
    results: int
    prev_hash: str
    hash: str

    def content(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}


def entry_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(encode_payload(content)).hexdigest()


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    entries: int
    broken_at: int | None
    reason: str


class AuditLog:
    def __init__(self, path: Path, cipher: StorageCipher | None = None) -> None:
        self.path = path
        self.cipher = cipher
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(path),
                timeout=BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
                isolation_level=None,
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA secure_delete=ON")
            self._conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"audit log {path}: cannot open: {exc}") from None

    @contextmanager
    def _tx(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                # IMMEDIATE: two processes appending at once take turns, never fork the chain.
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StorageError(f"audit log {self.path}: cannot {action}: {exc}") from exc

    def append(
        self,
        *,
        user: str,
        reason: str,
        action: str,
        query: dict[str, Any],
        results: int,
        at: datetime | None = None,
    ) -> AuditEntry:
        """Append one entry; committed (synced) on return."""
        moment = format_time(at or datetime.now(UTC))
        text = encode_payload(query).decode("utf-8")
        with self._tx("append an entry") as conn:
            row = conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
            if row is None:
                meta = dict(conn.execute("SELECT name, value FROM audit_meta").fetchall())
                next_id, prev_hash = int(meta["anchor_id"]) + 1, str(meta["anchor"])
            else:
                next_id, prev_hash = int(row[0]) + 1, str(row[1])
            stored_query = text
            if self.cipher is not None:
                stored_query = self.cipher.seal_text(text, f"audit/{next_id}/query")
            entry = AuditEntry(
                next_id,
                moment,
                user,
                _os_user(),
                action,
                reason,
                stored_query,
                results,
                prev_hash,
                "",
            )
            entry = replace(entry, hash=entry_hash(entry.content()))
            conn.execute(
                "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [*entry.content().values(), entry.hash],
            )
        return entry

    def entries(self, limit: int | None = None) -> list[AuditEntry]:
        with self._lock:
            rows = self._conn.execute(_SELECT + " FROM audit ORDER BY id").fetchall()
        out = [AuditEntry(*row) for row in rows]
        return out if limit is None else out[-limit:]

    def open_query(self, entry: AuditEntry) -> dict[str, Any]:
        text = entry.query
        if self.cipher is not None:
            text = self.cipher.open_text(text, f"audit/{entry.id}/query")
        value: dict[str, Any] = json.loads(text)
        return value

    def verify(self) -> Verification:
        with self._lock:
            anchor = str(
                self._conn.execute("SELECT value FROM audit_meta WHERE name='anchor'").fetchone()[0]
            )
        entries = self.entries()
        prev = anchor
        for entry in entries:
            if entry.prev_hash != prev:
                return Verification(
                    False, len(entries), entry.id, "does not follow the entry before it"
                )
            if entry_hash(entry.content()) != entry.hash:
                return Verification(False, len(entries), entry.id, "content changed after writing")
            prev = entry.hash
        return Verification(True, len(entries), None, "chain intact")

    def purge_older_than(self, cutoff: datetime) -> tuple[int, str | None, str | None]:
        """Delete entries before ``cutoff``; the last one's hash becomes the anchor."""
        limit = format_time(cutoff)
        with self._tx("purge old entries") as conn:
            row = conn.execute(
                "SELECT COUNT(*), MIN(at), MAX(at), MAX(id) FROM audit WHERE at < ?", [limit]
            ).fetchone()
            if not row[0]:
                return 0, None, None
            last = conn.execute("SELECT hash FROM audit WHERE id = ?", [row[3]]).fetchone()[0]
            conn.execute("UPDATE audit_meta SET value = ? WHERE name = 'anchor'", [last])
            conn.execute("UPDATE audit_meta SET value = ? WHERE name = 'anchor_id'", [row[3]])
            conn.execute("DELETE FROM audit WHERE id <= ?", [row[3]])
            conn.execute("DELETE FROM audit_published WHERE id <= ?", [row[3]])
        return int(row[0]), row[1], row[2]

    def pending(self, limit: int) -> list[AuditEntry]:
        """Entries not yet acknowledged by the broker, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                _SELECT + " FROM audit LEFT JOIN audit_published p ON p.id = audit.id "
                "WHERE p.id IS NULL ORDER BY audit.id LIMIT ?",
                [limit],
            ).fetchall()
        return [AuditEntry(*row) for row in rows]

    def mark_published_many(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self._tx("mark entries published") as conn:
            conn.executemany("INSERT OR IGNORE INTO audit_published VALUES (?)", [[i] for i in ids])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def audit_payload(entry: AuditEntry, device_id: str) -> dict[str, Any]:
    """The entry as published on ``{prefix}/{device_id}/audit`` (then signed)."""
    return {
        "schema_version": AUDIT_SCHEMA_VERSION,
        "device_id": device_id,
        **entry.content(),
        "hash": entry.hash,
    }


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
