"""Retention, per kind of data, and the disk cap.

* reads that matched no hot-list entry, with their crops: ``storage.retention_days``;
* hot-list hits (reads with ``hit = 1``) and alerts: ``storage.hit_retention_days``;
* the audit log: ``audit.retention_days``, in its own database, untouched by the read purge;
* ``storage.max_db_mb``: past the cap, the oldest reads go first (non-hits before hits).

Deleted means gone from the files: the read database runs with ``secure_delete`` (deleted
content is overwritten with zeros), each purge ends with ``PRAGMA incremental_vacuum`` (free
pages are cut off the end of the file) and a ``wal_checkpoint(TRUNCATE)`` (the WAL, which
still holds the old page images, is copied back and emptied). On flash, an overwrite may
leave old copies in blocks the wear levelling retired; encryption with key destruction is the
real erase (``edge.atrest``). Every purge leaves a receipt per kind: how many rows and the
time range they covered, reported in the device status.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from edge.audit import AuditLog
from edge.config import Settings
from edge.events import format_time
from edge.store import ReadStore

log = logging.getLogger(__name__)

Kind = Literal["reads", "hits", "alerts", "disk_cap", "audit"]
CAP_BATCH = 500
"""Reads deleted per round while over the disk cap."""


@dataclass(frozen=True, slots=True)
class PurgeReceipt:
    kind: Kind
    deleted: int
    oldest: str | None
    """Capture (or raise) time of the oldest row deleted; None when none were."""
    newest: str | None


@dataclass(frozen=True, slots=True)
class PurgeReport:
    at: datetime
    receipts: tuple[PurgeReceipt, ...]
    db_bytes: int
    """Size of the read database after the purge."""
    wal_truncated: bool
    """False when a reader kept the WAL from being emptied (it is at the next purge)."""

    @property
    def deleted(self) -> int:
        return sum(r.deleted for r in self.receipts)


class Purger:
    """Deletes what is past its retention; ``run_if_due`` from the daemon's main loop."""

    def __init__(
        self,
        settings: Settings,
        store: ReadStore,
        audit: AuditLog | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._storage = settings.storage
        self._audit_days = settings.audit.retention_days
        self._store = store
        self._audit = audit
        self._clock = clock
        self._due = 0.0
        self.last: PurgeReport | None = None

    def run_if_due(self, monotonic: float | None = None) -> PurgeReport | None:
        now = time.monotonic() if monotonic is None else monotonic
        if now < self._due:
            return None
        self._due = now + self._storage.purge_interval_s
        return self.purge()

    def purge(self) -> PurgeReport:
        now = self._clock()
        read_cutoff = format_time(now - timedelta(days=self._storage.retention_days))
        hit_cutoff = format_time(now - timedelta(days=self._storage.hit_retention_days))
        receipts = [
            self._delete(
                "reads", "reads", "captured_at", "hit = 0 AND captured_at < ?", read_cutoff
            ),
            self._delete("hits", "reads", "captured_at", "hit = 1 AND captured_at < ?", hit_cutoff),
            self._delete("alerts", "alerts", "raised_at", "raised_at < ?", hit_cutoff),
        ]
        if self._storage.max_db_mb is not None:
            receipts.append(self._enforce_cap(int(self._storage.max_db_mb * 1024 * 1024)))
        truncated = self._reclaim()
        if self._audit is not None:
            deleted, oldest, newest = self._audit.purge_older_than(
                now - timedelta(days=self._audit_days)
            )
            receipts.append(PurgeReceipt("audit", deleted, oldest, newest))
        report = PurgeReport(now, tuple(receipts), self.db_bytes(), truncated)
        self.last = report
        if report.deleted:
            log.info(
                "purge: %s",
                ", ".join(
                    f"{r.kind} {r.deleted} ({r.oldest} .. {r.newest})"
                    for r in report.receipts
                    if r.deleted
                ),
            )
        return report

    def _delete(
        self, kind: Kind, table: str, time_col: str, where: str, *args: str
    ) -> PurgeReceipt:
        # The names come from this module, never from input.
        with self._store.session(f"purge {kind}") as db, db.atomic():
            row = db.execute(
                f"SELECT COUNT(*), MIN({time_col}), MAX({time_col}) FROM {table} WHERE {where}",  # noqa: S608
                list(args),
            ).fetchone()
            if table == "reads" and row[0]:
                unsent = db.execute(
                    f"SELECT COUNT(*) FROM reads WHERE {where} AND published_at IS NULL",  # noqa: S608
                    list(args),
                ).fetchone()[0]
                if unsent:
                    log.warning("retention deleted %d read(s) that were never published", unsent)
            if row[0]:
                db.execute(f"DELETE FROM {table} WHERE {where}", list(args))  # noqa: S608
        return PurgeReceipt(kind, int(row[0]), row[1], row[2])

    def _enforce_cap(self, cap_bytes: int) -> PurgeReceipt:
        deleted, oldest, newest = 0, None, None
        for hit in (0, 1):
            while (used := self._used_bytes()) > cap_bytes:
                with self._store.session("enforce the disk cap") as db, db.atomic():
                    total = db.execute("SELECT COUNT(*) FROM reads").fetchone()[0]
                    # In proportion to the excess, so the cap is not overshot by a whole batch.
                    batch = max(1, min(CAP_BATCH, math.ceil(total * (used - cap_bytes) / used)))
                    rows = db.execute(
                        "SELECT event_id, captured_at FROM reads WHERE hit = ? "
                        "ORDER BY captured_at, seq LIMIT ?",
                        [hit, batch],
                    ).fetchall()
                    if not rows:
                        break
                    db.conn.executemany(
                        "DELETE FROM reads WHERE event_id = ?", [[r[0]] for r in rows]
                    )
                deleted += len(rows)
                oldest = rows[0][1] if oldest is None else min(oldest, rows[0][1])
                newest = rows[-1][1] if newest is None else max(newest, rows[-1][1])
        if deleted:
            log.warning("disk cap (storage.max_db_mb) deleted the %d oldest read(s)", deleted)
        return PurgeReceipt("disk_cap", deleted, oldest, newest)

    def _used_bytes(self) -> int:
        with self._store.session("measure the database") as db:
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            free = db.execute("PRAGMA freelist_count").fetchone()[0]
            size = db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def _reclaim(self) -> bool:
        with self._store.session("reclaim free pages") as db:
            # executescript steps the pragma to the end; execute() would free one page.
            db.conn.executescript("PRAGMA incremental_vacuum;")
            busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        return not busy

    def db_bytes(self) -> int:
        try:
            return self._store.path.stat().st_size
        except OSError:
            return 0
