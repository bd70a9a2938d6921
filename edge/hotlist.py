"""The hot list: plates the agency wants to hear about, received over MQTT or from a file.

The backend publishes the list retained on ``{prefix}/hotlist`` (every device) and/or
``{prefix}/{device_id}/hotlist`` (this device); ``hotlist.file`` names a local one. Each
source holds one list; the list in force is their union. A list is parsed and checked whole
(size, types, patterns, and the backend's Ed25519 signature when ``hotlist.public_key_file``
is set) before it replaces the previous one from the same source, in one reference swap, so
matching never sees half a list. An accepted list is written atomically to
``storage.dir/hotlist/{source}.json`` and loaded again at the next start, also offline. A
rejected one leaves the previous list in force and says why: one log line and the status.

Format and signature envelope: ``docs/events.md`` (*Hot list*).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.config import HotlistSettings, credential_path
from edge.errors import ConfigError
from edge.matching import (
    Evidence,
    Match,
    is_wildcard,
    match_pattern,
    normalise_pattern,
    variants,
)
from edge.signing import load_public_key, verify_signature

log = logging.getLogger(__name__)

Source = Literal["device", "fleet", "file"]
SOURCES: tuple[Source, ...] = ("device", "fleet", "file")
"""Order of precedence when two sources list the same plate."""
MAX_VERSION_CHARS = 128
MAX_TEXT_CHARS = 256
PRIORITIES = ("high", "medium", "low")


class HotListRejected(ValueError):
    """A hot list that is not taken; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class HotListEntry:
    pattern: str
    """Normalised plate or pattern (``edge.matching``)."""
    plate: str
    """As the backend wrote it."""
    reason: str
    priority: str
    expires_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True, slots=True)
class HotList:
    source: Source
    version: str
    entries: tuple[HotListEntry, ...]
    sha256: str
    """Of the message as received: tells two copies of one version apart."""
    signed: bool


@dataclass(frozen=True, slots=True)
class Limits:
    max_entries: int
    max_bytes: int


def canonical_json(value: Any) -> bytes:
    """Sorted keys, separators ``(",", ":")``, UTF-8, non-ASCII as is: what a signature covers."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def parse_hotlist(
    payload: bytes,
    source: Source,
    limits: Limits,
    public_key: Ed25519PublicKey | None = None,
) -> HotList:
    """Check a whole message; raise HotListRejected with the first reason it is not taken."""
    if not payload:
        raise HotListRejected("empty message (publish a list with no entries to clear it)")
    if len(payload) > limits.max_bytes:
        raise HotListRejected(
            f"{len(payload)} bytes, more than hotlist.max_bytes ({limits.max_bytes})"
        )
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HotListRejected(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise HotListRejected("not a JSON object")
    signed = "signature" in data or "list" in data
    if signed:
        body = _verified_body(data, public_key)
    elif public_key is not None:
        raise HotListRejected("not signed, and hotlist.public_key_file requires a signature")
    else:
        body = data
    version = body.get("version")
    if not isinstance(version, str) or not 0 < len(version) <= MAX_VERSION_CHARS:
        raise HotListRejected(f"'version' must be a string of 1 to {MAX_VERSION_CHARS} characters")
    entries = body.get("entries")
    if not isinstance(entries, list):
        raise HotListRejected("'entries' must be a list")
    if len(entries) > limits.max_entries:
        raise HotListRejected(
            f"{len(entries)} entries, more than hotlist.max_entries ({limits.max_entries})"
        )
    parsed: list[HotListEntry] = []
    seen: set[str] = set()
    for index, raw in enumerate(entries):
        entry = _entry(index, raw)
        if entry.pattern not in seen:  # a repeated plate alerts once, as its first entry
            seen.add(entry.pattern)
            parsed.append(entry)
    return HotList(source, version, tuple(parsed), hashlib.sha256(payload).hexdigest(), signed)


def _verified_body(data: dict[str, Any], public_key: Ed25519PublicKey | None) -> dict[str, Any]:
    body, signature = data.get("list"), data.get("signature")
    if not isinstance(body, dict) or not isinstance(signature, str) or len(data) != 2:
        raise HotListRejected('a signed list is exactly {"list": {...}, "signature": "..."}')
    if public_key is not None and not verify_signature(public_key, canonical_json(body), signature):
        raise HotListRejected("signature does not verify with hotlist.public_key_file")
    return body


def _entry(index: int, raw: object) -> HotListEntry:
    where = f"entries[{index}]"
    if not isinstance(raw, dict):
        raise HotListRejected(f"{where}: not an object")
    plate = raw.get("plate")
    if not isinstance(plate, str) or len(plate) > 32:
        raise HotListRejected(f"{where}.plate: must be a string of at most 32 characters")
    try:
        pattern = normalise_pattern(plate)
    except ValueError as exc:
        # The reason without the plate: a rejection is logged and sent in the status.
        reason = str(exc).removeprefix(f"plate {plate!r}: ")
        raise HotListRejected(f"{where}.plate: {reason}") from None
    reason = raw.get("reason", "")
    priority = raw.get("priority", "high")
    if not isinstance(reason, str) or len(reason) > MAX_TEXT_CHARS:
        raise HotListRejected(f"{where}.reason: must be a string of at most {MAX_TEXT_CHARS}")
    if priority not in PRIORITIES:
        raise HotListRejected(f"{where}.priority: must be one of {', '.join(PRIORITIES)}")
    expires = raw.get("expires_at")
    expires_at = None
    if expires is not None:
        if not isinstance(expires, str):
            raise HotListRejected(f"{where}.expires_at: must be an RFC 3339 time or null")
        try:
            expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00"))
        except ValueError:
            raise HotListRejected(f"{where}.expires_at: not an RFC 3339 time") from None
        if expires_at.tzinfo is None:
            raise HotListRejected(f"{where}.expires_at: needs a time zone (e.g. Z)")
    return HotListEntry(pattern, plate, reason, str(priority), expires_at)


@dataclass(frozen=True, slots=True)
class Hit:
    entry: HotListEntry
    match: Match
    version: str
    source: Source


class HotListIndex:
    """Every entry in force, arranged so a read is matched without scanning the whole list:
    literal plates are looked up by the texts the read's evidence supports; only wildcard
    patterns (few) are compared one by one."""

    def __init__(self, lists: Sequence[HotList]) -> None:
        self._literal: dict[str, tuple[HotListEntry, HotList]] = {}
        self._wildcard: list[tuple[HotListEntry, HotList]] = []
        for hot in lists:
            for entry in hot.entries:
                if is_wildcard(entry.pattern):
                    if all(e.pattern != entry.pattern for e, _ in self._wildcard):
                        self._wildcard.append((entry, hot))
                else:
                    self._literal.setdefault(entry.pattern, (entry, hot))

    def __len__(self) -> int:
        return len(self._literal) + len(self._wildcard)

    def match(
        self, evidence: Evidence, now: datetime, *, max_diffs: int, min_score: float
    ) -> list[Hit]:
        """Every entry this read alerts on, best match each, highest score first."""
        if not evidence.text:
            return []
        best: dict[str, Hit] = {}

        def offer(entry: HotListEntry, hot: HotList, found: Match) -> None:
            if not entry.active(now):
                return
            old = best.get(entry.pattern)
            key = (found.kind == "exact", found.score)
            if old is None or key > (old.match.kind == "exact", old.match.score):
                best[entry.pattern] = Hit(entry, found, hot.version, hot.source)

        if self._literal:
            for text, found in variants(evidence, max_diffs):
                item = self._literal.get(text)
                if item is not None and (found.kind == "exact" or found.score >= min_score):
                    offer(*item, found)
            for cand in evidence.candidates:
                item = self._literal.get(cand.text)
                if item is None or cand.text == evidence.text:
                    continue
                found = Match("fuzzy", round(cand.confidence, 4), cand.text, (), "candidate")
                if found.score >= min_score:
                    offer(*item, found)
        for entry, hot in self._wildcard:
            matched = match_pattern(
                entry.pattern, evidence, max_diffs=max_diffs, min_score=min_score
            )
            if matched is not None:
                offer(entry, hot, matched)
        return sorted(best.values(), key=lambda h: (h.match.kind != "exact", -h.match.score))


@dataclass(frozen=True, slots=True)
class Rejection:
    source: Source
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class SourceStatus:
    source: Source
    version: str
    entries: int
    sha256: str
    signed: bool


@dataclass(frozen=True, slots=True)
class HotListStatus:
    entries: int
    sources: tuple[SourceStatus, ...]
    last_rejection: Rejection | None


class HotListKeeper:
    """The lists in force, one per source; thread-safe (the MQTT thread hands messages in,
    the pipeline threads match)."""

    def __init__(
        self,
        settings: HotlistSettings,
        state_dir: Path,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._dir = state_dir / "hotlist"
        self._clock = clock
        self._limits = Limits(settings.max_entries, settings.max_bytes)
        self._public_key = _load_key(settings.public_key_file)
        self._lock = threading.Lock()
        self._lists: dict[Source, HotList] = {}
        self._index = HotListIndex(())
        self._rejection: Rejection | None = None
        self._file_stamp: tuple[float, int] | None = None

    def load_persisted(self) -> None:
        """The lists accepted before the last stop; checked again (the key may have changed)."""
        for source in SOURCES:
            path = self._dir / f"{source}.json"
            if not path.exists():
                continue
            try:
                payload = path.read_bytes()
            except OSError as exc:
                log.warning("hot list %s: cannot read the saved copy %s: %s", source, path, exc)
                continue
            self.apply(source, payload, persist=False)

    def apply(self, source: Source, payload: bytes, *, persist: bool = True) -> bool:
        """Take a new list from ``source`` if it passes every check; True when taken."""
        try:
            hot = parse_hotlist(payload, source, self._limits, self._public_key)
        except HotListRejected as exc:
            with self._lock:
                kept = self._lists.get(source)
                self._rejection = Rejection(source, str(exc), self._clock())
            log.warning(
                "hot list from %s rejected: %s; keeping %s",
                source,
                exc,
                f"version {kept.version} ({len(kept.entries)} entries)" if kept else "no list",
            )
            return False
        with self._lock:
            old = self._lists.get(source)
            if old is not None and old.sha256 == hot.sha256:
                return True
        if persist:
            self._persist(source, payload)
        with self._lock:
            self._lists[source] = hot
            self._index = HotListIndex([self._lists[s] for s in SOURCES if s in self._lists])
        log.info(
            "hot list from %s: version %s, %d entries%s",
            source,
            hot.version,
            len(hot.entries),
            " (signature verified)" if hot.signed and self._public_key else "",
        )
        return True

    def poll_file(self) -> None:
        """Re-read ``hotlist.file`` when it changed (size or modification time)."""
        path = self._settings.file
        if path is None:
            return
        try:
            info = path.stat()
        except OSError as exc:
            if self._file_stamp != (0.0, -1):
                log.warning("hot list file %s: cannot read: %s", path, exc.strerror)
                self._file_stamp = (0.0, -1)
            return
        stamp = (info.st_mtime, info.st_size)
        if stamp == self._file_stamp:
            return
        self._file_stamp = stamp
        try:
            payload = path.read_bytes()
        except OSError as exc:
            log.warning("hot list file %s: cannot read: %s", path, exc.strerror)
            return
        self.apply("file", payload, persist=False)

    def use_file(self, path: Path | None) -> None:
        """``hotlist.file`` changed (config reload): read the new file at the next poll_file();
        with none, the list from the old file stops being in force."""
        if path == self._settings.file:
            return
        self._settings = self._settings.model_copy(update={"file": path})
        self._file_stamp = None
        if path is None:
            with self._lock:
                self._lists.pop("file", None)
                self._index = HotListIndex([self._lists[s] for s in SOURCES if s in self._lists])
            log.info("hot list file: none configured any more; its list is dropped")

    def match(self, evidence: Evidence) -> list[Hit]:
        with self._lock:
            index = self._index
        return index.match(
            evidence,
            self._clock(),
            max_diffs=self._settings.max_fuzzy_chars,
            min_score=self._settings.fuzzy_min_score,
        )

    def status(self) -> HotListStatus:
        with self._lock:
            lists = [self._lists[s] for s in SOURCES if s in self._lists]
            return HotListStatus(
                entries=len(self._index),
                sources=tuple(
                    SourceStatus(h.source, h.version, len(h.entries), h.sha256, h.signed)
                    for h in lists
                ),
                last_rejection=self._rejection,
            )

    def _persist(self, source: Source, payload: bytes) -> None:
        path = self._dir / f"{source}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            dir_fd = os.open(self._dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            # In force now, but not after a restart; say so rather than fail the update.
            log.error("hot list from %s: cannot save a copy in %s: %s", source, path, exc)  # noqa: TRY400


def _load_key(path: Path | None) -> Ed25519PublicKey | None:
    if path is None:
        return None
    where = credential_path(path)
    try:
        return load_public_key(where.read_bytes())
    except OSError as exc:
        raise ConfigError(f"hotlist.public_key_file: cannot read {where}: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"hotlist.public_key_file: {where}: not an Ed25519 PEM key ({exc})"
        ) from None


def sign_hotlist(body: dict[str, Any], sign: Callable[[bytes], str]) -> bytes:
    """The signed envelope for ``body`` (backend side; used by tests and tools)."""
    return canonical_json({"list": body, "signature": sign(canonical_json(body))})
