"""One image in, plates read out: the detector, crop rectification, the recognizer on each
plate's views (``models.recognizer_views``), the plate-text context prior and the agency's
plate formats (``models.plate_patterns``) together.

The daemon, ``alpr-edge read`` and ``alpr-edge evaluate`` all go through ``PlateReader`` so
that what is measured is what runs on the pole.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.config import ModelSettings
from edge.inference.context import round_letters_between_digits
from edge.inference.formats import Detector, Recognizer, load_detector, load_recognizer
from edge.inference.patterns import PlatePatterns
from edge.inference.rectify import rectify_plate
from edge.inference.views import combine_views, view_detections
from edge.types import Detection, ImageArray, PlateResult, PlateStatus, Recognition

MIN_READ_CHARS = 2
"""A single character is a badge, a sticker or noise, never a plate (plates have 2 to 8)."""


@dataclass(slots=True)
class StageTimes:
    """Milliseconds spent per stage, accumulated by the caller that owns the reader."""

    detect_ms: list[float] = field(default_factory=list)
    recognize_ms: list[float] = field(default_factory=list)


class PlateReader:
    def __init__(
        self,
        detector: Detector,
        recognizer: Recognizer,
        *,
        min_plate_height: float = 8.0,
        patterns: PlatePatterns | None = None,
        views: int = 1,
    ) -> None:
        if views < 1:
            raise ValueError(f"views must be >= 1; got {views}")
        self.detector = detector
        self.recognizer = recognizer
        self.min_plate_height = min_plate_height
        self.patterns = patterns
        """None: no format prior, reads are what the recognizer said."""
        self.views = views
        """Crops read per plate and voted into one read (edge/inference/views.py)."""
        self.times = StageTimes()

    @classmethod
    def from_settings(cls, settings: ModelSettings) -> PlateReader:
        # The manifest's format picks the class: ours, or a fast-plate-ocr / YOLOv9 model.
        detector = load_detector(
            settings.detector,
            providers=settings.providers,
            threads=settings.threads,
            input_size=settings.detector_input_size,
            score_threshold=settings.detector_threshold,
        )
        recognizer = load_recognizer(
            settings.recognizer, providers=settings.providers, threads=settings.threads
        )
        patterns = PlatePatterns(settings.plate_patterns) if settings.plate_patterns else None
        return cls(detector, recognizer, patterns=patterns, views=settings.recognizer_views)

    def warm_up(self, width: int = 1280, height: int = 720) -> float:
        """Run both models once so the first real frame is not slow; returns ms taken."""
        start = time.perf_counter()
        blank = np.full((height, width, 3), 127, dtype=np.uint8)
        self.detector.detect(blank)
        self.recognizer.recognize([np.full((64, 128, 3), 200, dtype=np.uint8)])
        self.times = StageTimes()
        return (time.perf_counter() - start) * 1000.0

    def detect(self, image: ImageArray, roi_mask: ImageArray | None = None) -> list[Detection]:
        start = time.perf_counter()
        found = self.detector.detect(image)
        self.times.detect_ms.append((time.perf_counter() - start) * 1000.0)
        kept = [d for d in found if d.height >= self.min_plate_height]
        if roi_mask is not None:
            kept = [d for d in kept if _inside(roi_mask, d)]
        return suppress_nested(kept)

    def recognize(self, image: ImageArray, detections: Sequence[Detection]) -> list[PlateResult]:
        if not detections:
            return []
        start = time.perf_counter()
        n = self.views
        crops = [rectify_plate(image, v) for d in detections for v in view_detections(d, n)]
        per_view = self.recognizer.recognize(crops)
        voted = [combine_views(per_view[i : i + n]) for i in range(0, len(per_view), n)]
        reads = finish_reads(voted, self.patterns)
        self.times.recognize_ms.append((time.perf_counter() - start) * 1000.0)
        # The recognizer's status head says "none" for badges, lights and signs that the
        # detector mistook for plates: its second opinion is what keeps precision up.
        return [
            PlateResult(d, r)
            for d, r in zip(detections, reads, strict=True)
            if r.status is not PlateStatus.NONE and len(r.text) >= MIN_READ_CHARS
        ]

    def read(self, image: ImageArray, roi_mask: ImageArray | None = None) -> list[PlateResult]:
        """Detect and read every plate in one image, most confident first."""
        results = self.recognize(image, self.detect(image, roi_mask))
        return sorted(results, key=lambda r: -r.recognition.confidence)


def finish_reads(reads: Sequence[Recognition], patterns: PlatePatterns | None) -> list[Recognition]:
    """The recognizer's reads after the text priors: an O or Q between two digits is read as
    the digit (edge/inference/context.py), then the agency's formats, if it set any."""
    out = [round_letters_between_digits(r) for r in reads]
    return out if patterns is None else [patterns.apply(r) for r in out]


NESTED_SHARE = 0.6
"""A box with this share of its area inside a stronger box is the same plate."""


def suppress_nested(detections: Sequence[Detection]) -> list[Detection]:
    """One box per plate: of two boxes where one lies mostly inside the other (half a plate,
    a plate in its frame), keep the larger unless it is much less certain. IoU-based NMS
    misses these because their overlap is small relative to the larger box."""
    kept: list[Detection] = []
    for det in sorted(detections, key=lambda d: -d.score):
        for i, other in enumerate(kept):
            smaller = min(_area(det), _area(other))
            if _intersection(det, other) / smaller < NESTED_SHARE:
                continue
            if _area(det) > _area(other) and det.score >= 0.5 * other.score:
                kept[i] = det
            break
        else:
            kept.append(det)
    return kept


def _area(d: Detection) -> float:
    return max(d.width * d.height, 1e-6)


def _intersection(a: Detection, b: Detection) -> float:
    w = min(a.box[2], b.box[2]) - max(a.box[0], b.box[0])
    h = min(a.box[3], b.box[3]) - max(a.box[1], b.box[1])
    return max(w, 0.0) * max(h, 0.0)


def _inside(mask: ImageArray, detection: Detection) -> bool:
    h, w = mask.shape[:2]
    cx, cy = detection.center
    x = min(max(int(cx), 0), w - 1)
    y = min(max(int(cy), 0), h - 1)
    return bool(mask[y, x])
