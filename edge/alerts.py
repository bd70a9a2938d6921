"""Hot-list alerts: raised from a pass (or early, from the frames of a pass still in view),
stored in the ``alerts`` table of the read database before they are sent, published on
``{prefix}/{device_id}/alerts`` ahead of every read until the broker's PUBACK.

Reads are made when a pass ends, which can be a second or more after the plate was first
read well. So the pipeline also shows the ``Alerter`` every frame's recognitions
(``check_frame``): once ``hotlist.early_min_frames`` frames of one plate match an entry with
a score of at least ``hotlist.early_min_score``, the alert goes out at once (``stage``
``early``). When the pass then ends, ``check_pass`` raises alerts only for the entries no
early alert of that pass covered: one alert per pass per hot-list entry.

Payload: ``edge/schema/alert.v1.json`` and ``docs/events.md``.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Literal

from edge import __version__
from edge.config import CameraSettings, Settings
from edge.crops import encode_jpeg
from edge.events import ReadEvent, encode_payload, format_time
from edge.hotlist import Hit, HotListKeeper
from edge.matching import Evidence
from edge.store import ReadStore
from edge.types import CharSlot, PlateObservation, TextCandidate, VehiclePass

log = logging.getLogger(__name__)

ALERT_SCHEMA_VERSION = "1.1"
"""1.1 added ``clock_synchronised``."""
ALERT_SCHEMA_RESOURCE = "schema/alert.v1.json"
EARLY_LINK_SLACK_S = 2.0
"""An early alert belongs to a pass that ended at most this long after its last frame."""

Stage = Literal["early", "pass"]


@dataclass(frozen=True, slots=True)
class AlertRead:
    """What was read, as the alert carries it."""

    event_id: str | None
    """The read's ``event_id``; null for an early alert (the read does not exist yet)."""
    captured_at: datetime
    text: str
    confidence: float
    candidates: tuple[TextCandidate, ...]
    chars: tuple[CharSlot, ...]
    crop_jpeg: bytes = field(repr=False, default=b"")


@dataclass(frozen=True, slots=True)
class Alert:
    device_id: str
    camera: CameraSettings
    stage: Stage
    read: AlertRead
    hit: Hit
    raised_at: datetime
    clock_synchronised: bool | None = None
    """Whether the device's clock was NTP-synchronised when the alert was raised (edge/clock.py)."""
    alert_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def alert_payload(alert: Alert, *, seq: int) -> dict[str, Any]:
    hit, read, entry, match = alert.hit, alert.read, alert.hit.entry, alert.hit.match
    return {
        "schema_version": ALERT_SCHEMA_VERSION,
        "alert_id": alert.alert_id,
        "seq": seq,
        "device_id": alert.device_id,
        "camera_id": alert.camera.id,
        "raised_at": format_time(alert.raised_at),
        "clock_synchronised": alert.clock_synchronised,
        "stage": alert.stage,
        "read": {
            "event_id": read.event_id,
            "captured_at": format_time(read.captured_at),
            "text": read.text,
            "confidence": round(read.confidence, 4),
            "candidates": [
                {"text": c.text, "confidence": round(c.confidence, 4)} for c in read.candidates
            ],
            "chars": [
                {
                    "char": s.char,
                    "prob": round(s.prob, 4),
                    "alternatives": [
                        {"char": a.char, "prob": round(a.prob, 4)} for a in s.alternatives
                    ],
                }
                for s in read.chars
            ],
            "plate_crop_jpeg": base64.b64encode(read.crop_jpeg).decode("ascii")
            if read.crop_jpeg
            else None,
        },
        "entry": {
            "plate": entry.plate,
            "pattern": entry.pattern,
            "reason": entry.reason,
            "priority": entry.priority,
            "expires_at": None if entry.expires_at is None else format_time(entry.expires_at),
        },
        "hotlist": {"source": hit.source, "version": hit.version},
        "match": {
            "kind": match.kind,
            "score": match.score,
            "matched_text": match.matched_text,
            "via": match.via,
            "differences": [
                {
                    "position": d.position,
                    "read": d.read,
                    "entry": d.entry,
                    "prob": d.prob,
                    "source": d.source,
                }
                for d in match.differences
            ],
        },
        "location": {
            "latitude": alert.camera.latitude,
            "longitude": alert.camera.longitude,
            "heading_deg": alert.camera.heading_deg,
        },
        "software_version": __version__,
    }


def alert_schema() -> dict[str, Any]:
    text = resources.files("edge").joinpath(ALERT_SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@dataclass(frozen=True, slots=True)
class StoredAlert:
    alert_id: str
    seq: int
    payload: bytes = field(repr=False)


class AlertOutbox:
    """The ``alerts`` table: each alert committed before it is sent, sent until acknowledged."""

    def __init__(self, store: ReadStore) -> None:
        self._store = store

    def add(self, alert: Alert) -> int:
        """Store an alert; returns its per-device alert ``seq``. Committed on return."""
        cipher = self._store.cipher
        with self._store.session("store an alert") as db, db.atomic():
            db.execute("UPDATE counters SET value = value + 1 WHERE name = 'alert_seq'")
            row = db.execute("SELECT value FROM counters WHERE name = 'alert_seq'").fetchone()
            seq = int(row[0])
            payload = encode_payload(alert_payload(alert, seq=seq)).decode("utf-8")
            if cipher is not None:
                payload = cipher.seal_text(payload, f"alerts/{alert.alert_id}/payload")
            db.table("alerts").insert(
                {
                    "alert_id": alert.alert_id,
                    "seq": seq,
                    "camera_id": alert.camera.id,
                    "raised_at": format_time(alert.raised_at),
                    "read_event_id": alert.read.event_id,
                    "payload": payload,
                    "published_at": None,
                }
            )
        return seq

    def pending(self, limit: int) -> list[StoredAlert]:
        with self._store.session("read the alert outbox") as db:
            rows = db.execute(
                "SELECT alert_id, seq, payload FROM alerts WHERE published_at IS NULL "
                "ORDER BY seq LIMIT ?",
                [limit],
            ).fetchall()
        cipher = self._store.cipher
        out = []
        for alert_id, seq, payload in rows:
            text = str(payload)
            if cipher is not None:
                text = cipher.open_text(text, f"alerts/{alert_id}/payload")
            out.append(StoredAlert(str(alert_id), int(seq), text.encode("utf-8")))
        return out

    def has_pending(self) -> bool:
        with self._store.session("read the alert outbox") as db:
            row = db.execute("SELECT 1 FROM alerts WHERE published_at IS NULL LIMIT 1").fetchone()
        return row is not None

    def pending_count(self) -> int:
        with self._store.session("count the alert outbox") as db:
            row = db.execute("SELECT COUNT(*) FROM alerts WHERE published_at IS NULL").fetchone()
        return int(row[0])

    def mark_published_many(self, alert_ids: Sequence[str]) -> int:
        if not alert_ids:
            return 0
        now = format_time(datetime.now(UTC))
        marked = 0
        with self._store.session("mark alerts published") as db, db.atomic():
            for alert_id in alert_ids:
                cursor = db.execute(
                    "UPDATE alerts SET published_at = ? WHERE alert_id = ? "
                    "AND published_at IS NULL",
                    [now, alert_id],
                )
                marked += cursor.rowcount
        return marked


@dataclass(slots=True)
class _EarlyTrack:
    """One hot-list entry being matched by the frames of one camera."""

    frames: int
    last_stream_time: float
    last_seen: datetime
    alerted: bool = False


class Alerter:
    """Matches reads and frame recognitions against the hot list and raises alerts."""

    def __init__(
        self,
        settings: Settings,
        keeper: HotListKeeper,
        outbox: AlertOutbox,
        *,
        notify: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock_synchronised: Callable[[], bool | None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._keeper = keeper
        self._outbox = outbox
        self._notify = notify
        self._clock = clock
        self._clock_synchronised = clock_synchronised
        self._lock = threading.Lock()
        self._early: dict[tuple[str, str], _EarlyTrack] = {}
        self._with_crop = settings.privacy.keep_images and settings.mqtt.include_crop
        self.raised = 0

    def reconfigure(self, settings: Settings) -> None:
        """The settings after a config reload (tracking and hot-list thresholds)."""
        self._settings = settings

    def check_frame(self, camera: CameraSettings, observations: Sequence[PlateObservation]) -> int:
        """One processed frame's recognitions; raises early alerts, returns how many."""
        hs = self._settings.hotlist
        timeout = self._settings.tracking.pass_timeout_s
        raised = 0
        for obs in observations:
            evidence = Evidence.of_recognition(obs.recognition)
            for hit in self._keeper.match(evidence):
                if hit.match.score < hs.early_min_score:
                    continue
                key = (camera.id, hit.entry.pattern)
                with self._lock:
                    track = self._early.get(key)
                    gap = None if track is None else obs.monotonic - track.last_stream_time
                    # An alerted plate stays alerted while it keeps being matched (a pass can
                    # have unreadable stretches); frames toward an alert must be close.
                    limit = EARLY_LINK_SLACK_S if track is not None and track.alerted else timeout
                    if track is None or gap is None or gap > limit:
                        track = _EarlyTrack(0, obs.monotonic, obs.captured_at)
                        self._early[key] = track
                    if gap != 0 or track.frames == 0:
                        track.frames += 1
                    track.last_stream_time = obs.monotonic
                    track.last_seen = obs.captured_at
                    due = not track.alerted and track.frames >= hs.early_min_frames
                    if due:
                        track.alerted = True
                if due:
                    read = AlertRead(
                        event_id=None,
                        captured_at=obs.captured_at,
                        text=obs.recognition.text,
                        confidence=obs.recognition.confidence,
                        candidates=(),
                        chars=obs.recognition.chars,
                        crop_jpeg=encode_jpeg(obs.crop) if self._with_crop else b"",
                    )
                    self._raise(
                        Alert(
                            self._settings.device_id,
                            camera,
                            "early",
                            read,
                            hit,
                            self._clock(),
                            self._clock_synchronised(),
                        )
                    )
                    raised += 1
        return raised

    def match_pass(self, vehicle_pass: VehiclePass) -> list[Hit]:
        return self._keeper.match(Evidence.of_pass(vehicle_pass))

    def check_pass(
        self,
        camera: CameraSettings,
        vehicle_pass: VehiclePass,
        event: ReadEvent,
        hits: Sequence[Hit],
    ) -> int:
        """Alerts for a finished pass, except for entries an early alert of it already
        covered; returns how many were raised."""
        raised = 0
        for hit in hits:
            if self._covered_early(camera.id, hit.entry.pattern, vehicle_pass):
                continue
            read = AlertRead(
                event_id=event.event_id,
                captured_at=event.captured_at,
                text=vehicle_pass.text,
                confidence=event.plate.confidence,
                candidates=event.plate.candidates,
                chars=event.plate.chars,
                crop_jpeg=vehicle_pass.crop_jpeg if self._with_crop else b"",
            )
            self._raise(
                Alert(
                    self._settings.device_id,
                    camera,
                    "pass",
                    read,
                    hit,
                    self._clock(),
                    event.clock_synchronised,  # as its read says
                )
            )
            raised += 1
        self._forget_stale(camera.id, vehicle_pass.last_seen)
        return raised

    def _covered_early(self, camera_id: str, pattern: str, vehicle_pass: VehiclePass) -> bool:
        with self._lock:
            track = self._early.get((camera_id, pattern))
            if track is None or not track.alerted:
                return False
            slack = timedelta(seconds=EARLY_LINK_SLACK_S)
            if vehicle_pass.first_seen - slack <= track.last_seen <= vehicle_pass.last_seen + slack:
                del self._early[(camera_id, pattern)]
                return True
        return False

    def _forget_stale(self, camera_id: str, now: datetime) -> None:
        horizon = now - timedelta(seconds=EARLY_LINK_SLACK_S + 60.0)
        with self._lock:
            for key in [k for k, t in self._early.items() if k[0] == camera_id]:
                if self._early[key].last_seen < horizon:
                    del self._early[key]

    def _raise(self, alert: Alert) -> None:
        seq = self._outbox.add(alert)
        self._notify()
        self.raised += 1
        fields = {
            "alert_id": alert.alert_id,
            "camera_id": alert.camera.id,
            "seq": seq,
            "event_id": alert.read.event_id,
        }
        # The plate (read and entry) at DEBUG only; the reason says what to do about it.
        log.warning(
            "hot-list alert raised: %s seq=%d camera=%s stage=%s event=%s reason=%r "
            "priority=%s match=%s score=%.2f",
            alert.alert_id,
            seq,
            alert.camera.id,
            alert.stage,
            alert.read.event_id or "-",
            alert.hit.entry.reason,
            alert.hit.entry.priority,
            alert.hit.match.kind,
            alert.hit.match.score,
            extra=fields,
        )
        log.debug(
            "hot-list alert %s: read=%s entry=%s",
            alert.alert_id,
            alert.read.text,
            alert.hit.entry.plate,
            extra=fields,
        )
