"""Device status on ``{prefix}/{device_id}/status``: a retained ``online`` heartbeat with the
figures a fleet operator needs, and ``offline`` as the MQTT last will and on clean shutdown.

The payload is described by ``edge/schema/status.v1.json`` and ``docs/events.md``. The daemon
gathers a ``DeviceStatus`` on its main thread (the clock check may run a subprocess, which
must not stall the publisher's network loop) and hands the encoded bytes to the publisher.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from edge import __version__
from edge.camera.capture import CaptureStats
from edge.clock import ClockWatch
from edge.events import encode_payload, format_time
from edge.hotlist import HotListStatus
from edge.retention import PurgeReport
from edge.store import ReadStore

STATUS_SCHEMA_VERSION = "1.2"
"""1.1 added ``hotlist``, ``alerts`` and ``retention``; 1.2 added ``outbox.refused``."""
STATUS_SCHEMA_RESOURCE = "schema/status.v1.json"
THERMAL_DIR = Path("/sys/class/thermal")

OfflineReason = Literal["shutdown", "connection_lost"]


@dataclass(frozen=True, slots=True)
class CameraStatus:
    camera_id: str
    fps_in: float
    """Frames read from the camera per second since the previous heartbeat."""
    fps_processed: float
    """Frames that went through detection per second (the motion gate skips the rest)."""
    frames_in: int
    frames_processed: int
    frames_dropped: int
    """Since start: frames thrown away because inference fell behind."""


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    depth: int
    oldest_unsent_age_s: float | None
    refused: int | None = None
    """Kept back: refused by the broker or over its maximum packet size; None when unknown."""


@dataclass(frozen=True, slots=True)
class ModelVersions:
    detector: str | None
    recognizer: str | None


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    device_id: str
    sent_at: datetime
    uptime_s: float
    interval_s: float
    cameras: tuple[CameraStatus, ...]
    outbox: OutboxStatus
    disk_free_bytes: int | None
    cpu_temperature_c: float | None
    clock_synchronised: bool | None
    models: ModelVersions
    software_version: str = __version__
    hotlist: HotListStatus | None = None
    alerts_depth: int | None = None
    """Alerts stored and not yet acknowledged; None when alerting is not wired in."""
    retention: PurgeReport | None = None


@dataclass(frozen=True, slots=True)
class Extras:
    """Optional figures the daemon adds to the status: each a cheap, thread-safe getter."""

    hotlist: Callable[[], HotListStatus] | None = None
    alerts_depth: Callable[[], int] | None = None
    retention: Callable[[], PurgeReport | None] | None = None
    outbox_refused: Callable[[], int] | None = None


@dataclass(frozen=True, slots=True)
class CameraProbe:
    """Where the collector reads one camera's counters; both are cheap and thread-safe."""

    camera_id: str
    capture_stats: Callable[[], CaptureStats]
    frames_processed: Callable[[], int]


def online_payload(status: DeviceStatus) -> bytes:
    payload = _base_payload(status)
    if status.outbox.refused is not None:
        payload["outbox"]["refused"] = status.outbox.refused
    if status.hotlist is not None:
        payload["hotlist"] = _hotlist(status.hotlist)
    if status.alerts_depth is not None:
        payload["alerts"] = {"depth": status.alerts_depth}
    if status.retention is not None:
        payload["retention"] = _retention(status.retention)
    return encode_payload(payload)


def _hotlist(status: HotListStatus) -> dict[str, Any]:
    rejection = status.last_rejection
    return {
        "entries": status.entries,
        "sources": [
            {
                "source": s.source,
                "version": s.version,
                "entries": s.entries,
                "sha256": s.sha256,
                "signed": s.signed,
            }
            for s in status.sources
        ],
        "last_rejection": None
        if rejection is None
        else {
            "source": rejection.source,
            "reason": rejection.reason,
            "at": format_time(rejection.at),
        },
    }


def _retention(report: PurgeReport) -> dict[str, Any]:
    return {
        "last_purge_at": format_time(report.at),
        "db_bytes": report.db_bytes,
        "receipts": [
            {"kind": r.kind, "deleted": r.deleted, "oldest": r.oldest, "newest": r.newest}
            for r in report.receipts
        ],
    }


def _base_payload(status: DeviceStatus) -> dict[str, Any]:
    return {
        "schema_version": STATUS_SCHEMA_VERSION,
        "state": "online",
        "device_id": status.device_id,
        "sent_at": format_time(status.sent_at),
        "uptime_s": round(status.uptime_s, 1),
        "interval_s": status.interval_s,
        "software_version": status.software_version,
        "cameras": [
            {
                "camera_id": c.camera_id,
                "fps_in": round(c.fps_in, 2),
                "fps_processed": round(c.fps_processed, 2),
                "frames_in": c.frames_in,
                "frames_processed": c.frames_processed,
                "frames_dropped": c.frames_dropped,
            }
            for c in status.cameras
        ],
        "outbox": {
            "depth": status.outbox.depth,
            "oldest_unsent_age_s": None
            if status.outbox.oldest_unsent_age_s is None
            else round(status.outbox.oldest_unsent_age_s, 1),
        },
        "disk_free_bytes": status.disk_free_bytes,
        "cpu_temperature_c": status.cpu_temperature_c,
        "clock_synchronised": status.clock_synchronised,
        "models": {"detector": status.models.detector, "recognizer": status.models.recognizer},
    }


def offline_payload(
    device_id: str, reason: OfflineReason, sent_at: datetime | None = None
) -> bytes:
    """``sent_at`` is null in the last will: the broker, not the device, decides when it goes."""
    return encode_payload(
        {
            "schema_version": STATUS_SCHEMA_VERSION,
            "state": "offline",
            "device_id": device_id,
            "reason": reason,
            "sent_at": None if sent_at is None else format_time(sent_at),
            "software_version": __version__,
        }
    )


def status_schema() -> dict[str, Any]:
    text = resources.files("edge").joinpath(STATUS_SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def cpu_temperature_c(thermal_dir: Path = THERMAL_DIR) -> float | None:
    """Hottest CPU/SoC thermal zone in degrees C; zone 0 when none is named so (a Raspberry
    Pi's only zone is ``cpu-thermal``); None when nothing is readable. Zones of other kinds
    are ignored: some Jetson PMIC zones report a constant 100 C."""
    named: list[float] = []
    fallback: float | None = None
    for zone in sorted(thermal_dir.glob("thermal_zone*")):
        try:
            millideg = int((zone / "temp").read_text(encoding="ascii").strip())
            kind = (zone / "type").read_text(encoding="ascii").strip().lower()
        except (OSError, ValueError):
            continue
        celsius = round(millideg / 1000.0, 1)
        if "cpu" in kind or "soc" in kind:
            named.append(celsius)
        elif zone.name == "thermal_zone0":
            fallback = celsius
    return max(named) if named else fallback


class StatusCollector:
    """Gathers one ``DeviceStatus``; frame rates are averaged since the previous call."""

    def __init__(
        self,
        *,
        device_id: str,
        interval_s: float,
        store: ReadStore,
        storage_dir: Path,
        cameras: Sequence[CameraProbe],
        models: ModelVersions,
        thermal_dir: Path = THERMAL_DIR,
        clock: Callable[[], bool | None] | None = None,
        extras: Extras | None = None,
    ) -> None:
        self._extras = extras or Extras()
        self._device_id = device_id
        self.interval_s = interval_s
        """Seconds between heartbeats, as reported; the daemon changes it on a reload."""
        self._store = store
        self._storage_dir = storage_dir
        self._cameras = tuple(cameras)
        self._models = models
        self._thermal_dir = thermal_dir
        self._clock = clock if clock is not None else ClockWatch().state
        """The daemon passes its shared ``ClockWatch``, so reads and status agree."""
        self._started = time.monotonic()
        self._previous: dict[str, tuple[float, int, int]] = {}

    def collect(self) -> DeviceStatus:
        now = time.monotonic()
        return DeviceStatus(
            device_id=self._device_id,
            sent_at=datetime.now(UTC),
            uptime_s=now - self._started,
            interval_s=self.interval_s,
            cameras=tuple(self._camera(probe, now) for probe in self._cameras),
            outbox=OutboxStatus(
                depth=self._store.pending_count(),
                oldest_unsent_age_s=self._store.oldest_pending_age_s(),
                refused=None
                if self._extras.outbox_refused is None
                else self._extras.outbox_refused(),
            ),
            disk_free_bytes=self._disk_free(),
            cpu_temperature_c=cpu_temperature_c(self._thermal_dir),
            clock_synchronised=self._clock(),
            models=self._models,
            hotlist=None if self._extras.hotlist is None else self._extras.hotlist(),
            alerts_depth=None if self._extras.alerts_depth is None else self._extras.alerts_depth(),
            retention=None if self._extras.retention is None else self._extras.retention(),
        )

    def _camera(self, probe: CameraProbe, now: float) -> CameraStatus:
        stats = probe.capture_stats()
        processed = probe.frames_processed()
        since, frames_in, frames_processed = self._previous.get(
            probe.camera_id, (self._started, 0, 0)
        )
        self._previous[probe.camera_id] = (now, stats.frames_in, processed)
        elapsed = max(now - since, 1e-3)
        return CameraStatus(
            camera_id=probe.camera_id,
            fps_in=(stats.frames_in - frames_in) / elapsed,
            fps_processed=(processed - frames_processed) / elapsed,
            frames_in=stats.frames_in,
            frames_processed=processed,
            frames_dropped=stats.frames_dropped,
        )

    def _disk_free(self) -> int | None:
        try:
            return shutil.disk_usage(self._storage_dir).free
        except OSError:
            return None
