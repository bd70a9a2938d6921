"""Typed, frozen values that cross stage boundaries.

camera -> Frame -> detector -> Detection -> recognizer -> Recognition
-> tracker -> VehiclePass -> ReadEvent (stored, then published).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import numpy as np
import numpy.typing as npt

ImageArray = npt.NDArray[np.uint8]
"""An image as OpenCV holds it: H x W x 3, BGR, uint8."""

Point = tuple[float, float]


class PlateStatus(StrEnum):
    FULL = "full"
    PARTIAL = "partial"
    PAPER = "paper"
    NONE = "none"


class Direction(StrEnum):
    APPROACHING = "approaching"
    RECEDING = "receding"
    LEFT = "left"
    RIGHT = "right"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Frame:
    camera_id: str
    index: int
    captured_at: datetime
    """Wall-clock capture time, UTC."""
    monotonic: float
    """time.monotonic() at capture, for intervals."""
    image: ImageArray = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Detection:
    """A plate found in an image, in that image's pixel coordinates."""

    box: tuple[float, float, float, float]
    """x1, y1, x2, y2."""
    score: float
    corners: tuple[Point, Point, Point, Point] | None = None
    """top-left, top-right, bottom-right, bottom-left, when the detector gives them."""

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def center(self) -> Point:
        return ((self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0)


@dataclass(frozen=True, slots=True)
class CharCandidate:
    char: str
    prob: float


@dataclass(frozen=True, slots=True)
class CharSlot:
    """One recognized character with its probability and the runner-up characters."""

    char: str
    prob: float
    alternatives: tuple[CharCandidate, ...] = ()


@dataclass(frozen=True, slots=True)
class Recognition:
    """What the recognizer read on one plate crop."""

    text: str
    confidence: float
    chars: tuple[CharSlot, ...]
    status: PlateStatus


@dataclass(frozen=True, slots=True)
class LabelScores:
    """One attribute classifier's most likely labels on one crop, best first.

    ``weight`` is how much this frame counts when a pass is voted (e.g. the share of the
    vehicle box inside the frame)."""

    scores: tuple[tuple[str, float], ...]
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class PlateObservation:
    """One plate in one frame: where it was and what was read there."""

    frame_index: int
    captured_at: datetime
    monotonic: float
    detection: Detection
    recognition: Recognition
    crop: ImageArray | None = field(repr=False, compare=False, default=None)
    """The plate plus a small margin (never the windscreen); only the pass's best one is
    ever encoded and stored."""
    vehicle_type: LabelScores | None = None
    vehicle_colour: LabelScores | None = None
    make_model: LabelScores | None = None
    """Labels ``Make|Model``."""
    region: LabelScores | None = None
    """The plate's issuing region: US state code or country code."""


@dataclass(frozen=True, slots=True)
class TextCandidate:
    text: str
    confidence: float


@dataclass(frozen=True, slots=True)
class VehiclePass:
    """One vehicle's pass through the view, with its voted plate read."""

    camera_id: str
    text: str
    confidence: float
    candidates: tuple[TextCandidate, ...]
    status: PlateStatus
    first_seen: datetime
    last_seen: datetime
    best_seen: datetime
    frames_seen: int
    direction: Direction
    crop_jpeg: bytes = field(repr=False, default=b"")
    chars: tuple[CharSlot, ...] = ()
    region: str | None = None
    region_confidence: float | None = None
    vehicle_type: str | None = None
    vehicle_type_confidence: float | None = None
    vehicle_colour: str | None = None
    vehicle_colour_confidence: float | None = None
    vehicle_make: str | None = None
    vehicle_model: str | None = None
    make_model_confidence: float | None = None


@dataclass(frozen=True, slots=True)
class PlateResult:
    """A detected plate and what was read on it, in one image."""

    detection: Detection
    recognition: Recognition
