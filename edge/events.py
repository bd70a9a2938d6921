"""Read events: what one vehicle pass becomes on the wire, and where it is published.

A ``ReadEvent`` is built once per pass, gets its ``event_id`` once, and is stored before
anything else happens to it (see ``edge.store``). The wire payload is JSON described by
``edge/schema/read-event.v1.json``; ``docs/events.md`` gives the rules for changing it.

The plate crop JPEG is deliberately not part of ``ReadEvent``: it is a binary artifact
kept beside the read by the store, and it is put into the payload only at send time when
``mqtt.include_crop`` is on, so switching crops off also keeps queued reads' crops local.

The signature is made at send time too (``wire_payload``), over the payload exactly as it is
sent, crop included. Ed25519 is deterministic, so every retry of a read is byte-identical.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from edge import __version__
from edge.config import CameraSettings
from edge.types import CharCandidate, CharSlot, Direction, PlateStatus, TextCandidate, VehiclePass

SCHEMA_VERSION = "1.3"
"""1.1 added ``signature``; 1.2 the vehicle attribute confidences; 1.3 ``clock_synchronised``."""
SIGNATURE_KEY = "signature"
SCHEMA_RESOURCE = "schema/read-event.v1.json"
"""Inside the ``edge`` package; the one copy of the schema (installed with the package)."""

_TOPIC_FORBIDDEN = ("+", "#", "\0")
_PROB_DIGITS = 4
"""Four decimals is finer than any model's calibration and keeps payloads short."""


@dataclass(frozen=True, slots=True)
class Region:
    code: str
    confidence: float | None


@dataclass(frozen=True, slots=True)
class PlateInfo:
    text: str
    confidence: float
    candidates: tuple[TextCandidate, ...]
    status: PlateStatus
    region: Region | None
    chars: tuple[CharSlot, ...]


@dataclass(frozen=True, slots=True)
class VehicleInfo:
    """Vehicle attributes voted over the pass; ``None`` means unknown (no model configured,
    or the vote was below its threshold)."""

    color: str | None = None
    type: str | None = None
    make: str | None = None
    model: str | None = None
    color_confidence: float | None = None
    type_confidence: float | None = None
    make_model_confidence: float | None = None


@dataclass(frozen=True, slots=True)
class Location:
    latitude: float | None
    longitude: float | None
    heading_deg: float | None


@dataclass(frozen=True, slots=True)
class ReadEvent:
    """One vehicle pass, ready to store and publish. Times are timezone-aware UTC."""

    device_id: str
    camera_id: str
    captured_at: datetime
    """Capture time of the frame the plate was read best in."""
    first_seen: datetime
    last_seen: datetime
    frames_seen: int
    plate: PlateInfo
    direction: Direction
    location: Location
    vehicle: VehicleInfo = field(default_factory=VehicleInfo)
    clock_synchronised: bool | None = None
    """Whether the device's clock was NTP-synchronised when the read was made (edge/clock.py);
    None when the device cannot tell. A Pi booted without network keeps false time until then."""
    software_version: str = __version__
    schema_version: str = SCHEMA_VERSION
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    """Made once, here; every retry of this read carries the same id."""


def build_read_event(
    vehicle_pass: VehiclePass,
    *,
    device_id: str,
    camera: CameraSettings,
    clock_synchronised: bool | None = None,
    software_version: str = __version__,
) -> ReadEvent:
    """The event for one finished pass, with the camera's place and heading and the state of
    the device's clock now."""
    vp = vehicle_pass
    region = None
    if vp.region is not None:
        conf = None if vp.region_confidence is None else _prob(vp.region_confidence)
        region = Region(code=vp.region, confidence=conf)
    plate = PlateInfo(
        text=vp.text,
        confidence=_prob(vp.confidence),
        candidates=tuple(TextCandidate(c.text, _prob(c.confidence)) for c in vp.candidates),
        status=vp.status,
        region=region,
        chars=tuple(_char_slot(slot) for slot in vp.chars),
    )
    return ReadEvent(
        device_id=device_id,
        camera_id=vp.camera_id,
        captured_at=_utc(vp.best_seen),
        first_seen=_utc(vp.first_seen),
        last_seen=_utc(vp.last_seen),
        frames_seen=vp.frames_seen,
        plate=plate,
        direction=vp.direction,
        location=Location(camera.latitude, camera.longitude, camera.heading_deg),
        vehicle=VehicleInfo(
            color=vp.vehicle_colour,
            type=vp.vehicle_type,
            make=vp.vehicle_make,
            model=vp.vehicle_model,
            color_confidence=_optional_prob(vp.vehicle_colour_confidence),
            type_confidence=_optional_prob(vp.vehicle_type_confidence),
            make_model_confidence=_optional_prob(vp.make_model_confidence),
        ),
        clock_synchronised=clock_synchronised,
        software_version=software_version,
    )


def to_payload(event: ReadEvent, *, seq: int, crop_jpeg: bytes | None = None) -> dict[str, Any]:
    """The JSON-ready payload. ``seq`` comes from the store; the crop is embedded only when
    given (the caller decides whether crops are sent at all)."""
    plate = event.plate
    return {
        "schema_version": event.schema_version,
        "event_id": event.event_id,
        "seq": seq,
        "device_id": event.device_id,
        "camera_id": event.camera_id,
        "captured_at": format_time(event.captured_at),
        "first_seen": format_time(event.first_seen),
        "last_seen": format_time(event.last_seen),
        "frames_seen": event.frames_seen,
        "plate": {
            "text": plate.text,
            "confidence": plate.confidence,
            "candidates": [{"text": c.text, "confidence": c.confidence} for c in plate.candidates],
            "status": str(plate.status),
            "region": None
            if plate.region is None
            else {"code": plate.region.code, "confidence": plate.region.confidence},
            "chars": [
                {
                    "char": s.char,
                    "prob": s.prob,
                    "alternatives": [{"char": a.char, "prob": a.prob} for a in s.alternatives],
                }
                for s in plate.chars
            ],
        },
        "vehicle": {
            "color": event.vehicle.color,
            "type": event.vehicle.type,
            "make": event.vehicle.make,
            "model": event.vehicle.model,
            "color_confidence": event.vehicle.color_confidence,
            "type_confidence": event.vehicle.type_confidence,
            "make_model_confidence": event.vehicle.make_model_confidence,
        },
        "direction": str(event.direction),
        "location": {
            "latitude": event.location.latitude,
            "longitude": event.location.longitude,
            "heading_deg": event.location.heading_deg,
        },
        "plate_crop_jpeg": None if not crop_jpeg else base64.b64encode(crop_jpeg).decode("ascii"),
        "clock_synchronised": event.clock_synchronised,
        "software_version": event.software_version,
    }


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """Compact JSON with sorted keys: the same payload always gives the same bytes.

    NaN and infinity are refused (they are not JSON); ``build_read_event`` never makes them.
    """
    text = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def attach_crop(payload: bytes, crop_jpeg: bytes | None) -> bytes:
    """A stored payload with its crop embedded; deterministic, so retries stay identical."""
    if not crop_jpeg:
        return payload
    data = json.loads(payload)
    data["plate_crop_jpeg"] = base64.b64encode(crop_jpeg).decode("ascii")
    return encode_payload(data)


def signing_input(payload: Mapping[str, Any]) -> bytes:
    """The bytes a read's signature covers: the payload without its ``signature`` member,
    encoded by ``encode_payload`` (sorted keys, ``(",", ":")``, UTF-8, non-ASCII as is)."""
    return encode_payload({k: v for k, v in payload.items() if k != SIGNATURE_KEY})


def wire_payload(stored: bytes, crop_jpeg: bytes | None, sign: Callable[[bytes], str]) -> bytes:
    """A stored payload as it goes on the wire: the crop embedded when given, then signed.

    The same stored bytes, crop and key always give the same result, so retries stay
    byte-identical.
    """
    data = json.loads(stored)
    if crop_jpeg:
        data["plate_crop_jpeg"] = base64.b64encode(crop_jpeg).decode("ascii")
    data[SIGNATURE_KEY] = sign(signing_input(data))
    return encode_payload(data)


def reads_topic(prefix: str, device_id: str) -> str:
    """``{prefix}/{device_id}/reads``. Plate text never becomes a topic level: topics show up
    in broker logs and ACLs, and wildcard subscribers would see plates by topic name."""
    return _device_topic(prefix, device_id, "reads")


def status_topic(prefix: str, device_id: str) -> str:
    """``{prefix}/{device_id}/status``: retained ``online`` heartbeats, ``offline`` will."""
    return _device_topic(prefix, device_id, "status")


def _device_topic(prefix: str, device_id: str, leaf: str) -> str:
    if not device_id or "/" in device_id or any(ch in device_id for ch in _TOPIC_FORBIDDEN):
        raise ValueError(f"device id {device_id!r} cannot be a topic level")
    levels = prefix.split("/")
    if not prefix or any(not level for level in levels):
        raise ValueError(f"topic prefix {prefix!r} has an empty level")
    if any(ch in prefix for ch in _TOPIC_FORBIDDEN):
        raise ValueError(f"topic prefix {prefix!r} contains a wildcard or NUL")
    topic = f"{prefix}/{device_id}/{leaf}"
    if len(topic.encode("utf-8")) > 65535:
        raise ValueError("topic longer than MQTT allows (65535 bytes)")
    return topic


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-11-29T06:18:03.123Z``."""
    # isoformat, not strftime: glibc's %Y does not zero-pad years before 1000.
    return _utc(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_event_schema() -> dict[str, Any]:
    """The JSON Schema of the payload, loaded from the installed package."""
    text = resources.files("edge").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _utc(moment: datetime) -> datetime:
    # Frame times are documented as UTC; a naive one is taken at its word rather than
    # shifted by the host's local zone (edge devices are often left on local time).
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _prob(value: float) -> float:
    # Model outputs can be numpy scalars, drift a hair past 1.0 after products of softmaxes,
    # or be NaN on a degenerate crop; the payload promises a plain float in [0, 1].
    number = float(value)
    if not math.isfinite(number):
        return 0.0
    return round(min(1.0, max(0.0, number)), _PROB_DIGITS)


def _optional_prob(value: float | None) -> float | None:
    return None if value is None else _prob(value)


def _char_slot(slot: CharSlot) -> CharSlot:
    return CharSlot(
        char=slot.char,
        prob=_prob(slot.prob),
        alternatives=tuple(CharCandidate(a.char, _prob(a.prob)) for a in slot.alternatives),
    )
