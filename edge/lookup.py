"""Audited look-ups of stored reads (``alpr-edge reads search``).

The only way the device offers to find reads: a plate (exact or a wildcard pattern, with at
least four letters or digits, so no dragnet ``*``), an optional time window, and a reason and
a user, both required. The audit entry (``edge.audit``) is committed *before* any result is
returned; if it cannot be written, nothing is returned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edge.atrest import load_cipher
from edge.audit import AuditEntry, AuditLog
from edge.config import Settings
from edge.errors import UsageError
from edge.events import format_time
from edge.matching import is_wildcard, normalise_pattern, pattern_regex
from edge.store import ReadStore

ACTION = "reads.search"
_SELECT = (
    "SELECT event_id, seq, camera_id, captured_at, plate_text, payload, created_at, hit, "
    "NULL AS crop FROM reads WHERE captured_at >= ? AND captured_at <= ?"
)


@dataclass(frozen=True, slots=True)
class FoundRead:
    seq: int
    event_id: str
    camera_id: str
    captured_at: str
    plate: str
    confidence: float
    hit: bool


@dataclass(frozen=True, slots=True)
class SearchResult:
    reads: tuple[FoundRead, ...]
    audit: AuditEntry


def parse_time(text: str, option: str) -> datetime:
    """RFC 3339 / ISO 8601 (a date alone is its midnight); a time without zone is UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option}: {text!r} is not a date or time (e.g. 2026-11-29T06:00Z)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def search_reads(
    settings: Settings,
    *,
    plate: str,
    reason: str,
    user: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> SearchResult:
    if not reason.strip():
        raise UsageError("--reason is required: say why (e.g. a case number)")
    if not user.strip():
        raise UsageError("--user is required: who is asking")
    try:
        pattern = normalise_pattern(plate)
    except ValueError as exc:
        raise UsageError(f"--plate: {exc}") from None
    start = format_time(since) if since else "0000"
    end = format_time(until) if until else "9999"
    cipher = load_cipher(settings)
    store = ReadStore(settings.storage.dir / "reads.db", cipher)
    audit = AuditLog(Path(settings.storage.dir) / "audit.db", cipher)
    try:
        found = _find(store, pattern, start, end)
        query = {"plate": pattern, "since": since and start, "until": until and end}
        entry = audit.append(
            user=user.strip(),
            reason=reason.strip(),
            action=ACTION,
            query=query,
            results=len(found),
        )
    finally:
        store.close()
        audit.close()
    return SearchResult(tuple(found), entry)


def _find(store: ReadStore, pattern: str, start: str, end: str) -> list[FoundRead]:
    sql, args = _SELECT, [start, end]
    if not is_wildcard(pattern):
        index = store.plate_index(pattern)
        if index is None:
            sql, args = sql + " AND plate_text = ?", [*args, pattern]
        else:
            sql, args = sql + " AND plate_index = ?", [*args, index]
    with store.session("search reads") as db:
        rows = list(db.query(sql + " ORDER BY captured_at, seq", args))
    regex = pattern_regex(pattern)
    out = []
    for row in rows:
        read = store.open_row(row)
        if read is None or not regex.match(read.plate_text):
            continue
        confidence = float(json.loads(read.payload)["plate"]["confidence"])
        out.append(
            FoundRead(
                read.seq,
                read.event_id,
                read.camera_id,
                read.captured_at,
                read.plate_text,
                confidence,
                read.hit,
            )
        )
    return out
