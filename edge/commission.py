"""``alpr-edge commission``: watch the next N vehicle passes and say whether the camera is set
up well enough to leave on the pole, and if not, what to change.

It runs the daemon's own pipeline (``CameraPipeline`` -> ``FrameProcessor``: motion gate,
detector, recognizer, tracker) on one camera and measures, at each pass's best view (the
frame whose crop the read carries):

* read rate: the share of passes read in full with confidence (``CONFIDENT_READ``);
* character height: ~0.6 x the plate's height in pixels (``edge.snapshot``);
* blur: variance of the Laplacian of the plate crop scaled to a fixed height, over the
  variance of its grey levels (``sharpness``): motion blur or a soft focus lowers it;
* exposure: mean grey level of the plate crop and the share of clipped pixels;
* ROI edge: plates read within a quarter plate width of the region of interest's edge (or cut
  by the frame's edge) are at the margin of where the camera looks.

The verdict is PASS or ADJUST with one line of advice per problem.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import cv2
import numpy as np

from edge.camera import CaptureThread, open_source
from edge.config import CameraSettings, Settings
from edge.pipeline import PlateReader
from edge.snapshot import CHAR_HEIGHT_PER_PLATE_HEIGHT, MIN_CHAR_HEIGHT_PX, plate_height_px
from edge.types import Detection, ImageArray, PlateObservation, PlateStatus, VehiclePass

CONFIDENT_READ = 0.7
"""A pass counts as read when voted in full with at least this confidence."""
MIN_READ_RATE = 0.9
BLURRED_BELOW = 90.0
"""``sharpness()`` under which characters are smeared. On rendered 1280x720 clips: sharp
plates 123-256 (median 139), the same clip with a 7 px horizontal motion blur 49-98 (64)."""
DARK_BELOW = 60.0
BRIGHT_ABOVE = 215.0
CLIPPED_ABOVE = 0.15
"""Share of the plate's pixels at 0-5 or 250-255 that says exposure or IR is off."""
NEAR_EDGE_SHARE = 1 / 3
EDGE_MARGIN_PLATE_WIDTHS = 0.25
MAX_VIEWS = 20_000
SHARPNESS_HEIGHT_PX = 32

Verdict = Literal["PASS", "ADJUST"]


@dataclass(frozen=True, slots=True)
class PlateView:
    """One plate read on one frame, measured."""

    captured_at: datetime
    text: str
    char_height_px: float
    blur: float
    mean: float
    clipped: float
    near_edge: bool


@dataclass(frozen=True, slots=True)
class PassReport:
    text: str
    confidence: float
    status: PlateStatus
    frames: int
    view: PlateView | None

    @property
    def confident(self) -> bool:
        return self.status is PlateStatus.FULL and self.confidence >= CONFIDENT_READ


@dataclass(frozen=True, slots=True)
class CommissionReport:
    camera_id: str
    asked: int
    seconds: float
    passes: tuple[PassReport, ...]
    unread_char_heights: tuple[float, ...]
    """Plates the detector found but no pass came of (nothing read), in character pixels."""
    ended: str
    """``"done"``, ``"timeout"`` or ``"end of clip"``."""

    @property
    def views(self) -> list[PlateView]:
        return [p.view for p in self.passes if p.view is not None]

    @property
    def read_rate(self) -> float:
        return sum(p.confident for p in self.passes) / len(self.passes) if self.passes else 0.0

    def advice(self) -> list[str]:
        views = self.views
        if not self.passes:
            if not self.unread_char_heights:
                return [
                    f"no plates found in {self.seconds:.0f} s: aim and focus with "
                    "`alpr-edge snapshot`, check the ROI, or wait for traffic"
                ]
            found = statistics.median(self.unread_char_heights)
            if found < MIN_CHAR_HEIGHT_PX:
                return [_zoom(found)]
            return [f"no plates read, found ones have {found:.0f} px characters: check focus"]
        tips = []
        chars = statistics.median(v.char_height_px for v in views) if views else None
        if chars is not None and chars < MIN_CHAR_HEIGHT_PX:
            tips.append(_zoom(chars))
        # Sharpness means little on plates too small to read: zoom in first.
        sized = chars is not None and chars >= MIN_CHAR_HEIGHT_PX
        if sized and statistics.median(v.blur for v in views) < BLURRED_BELOW:
            tips.append(
                "lower the shutter time (or check focus): plates are blurred "
                f"(sharpness {statistics.median(v.blur for v in views):.0f}, "
                f"{BLURRED_BELOW:.0f} at least)"
            )
        if views:
            mean = statistics.median(v.mean for v in views)
            clipped = statistics.median(v.clipped for v in views)
            if mean < DARK_BELOW:
                tips.append(f"plates are dark (mean {mean:.0f}): raise exposure or gain, or IR")
            elif mean > BRIGHT_ABOVE or clipped > CLIPPED_ABOVE:
                tips.append(
                    f"plates are overexposed (mean {mean:.0f}, {clipped:.0%} clipped): "
                    "lower exposure or IR power"
                )
            near = sum(v.near_edge for v in views) / len(views)
            if near >= NEAR_EDGE_SHARE:
                tips.append(
                    f"move the ROI (or aim): {near:.0%} of plates are read at its edge, "
                    "some are likely missed beyond it"
                )
        if self.read_rate < MIN_READ_RATE and not tips:
            tips.append(
                f"only {self.read_rate:.0%} of passes read with confidence: check aim, focus "
                "and lighting with `alpr-edge snapshot`"
            )
        return tips

    @property
    def verdict(self) -> Verdict:
        ok = self.passes and self.read_rate >= MIN_READ_RATE and not self.advice()
        return "PASS" if ok else "ADJUST"

    def lines(self) -> list[str]:
        views = self.views
        head = f"camera {self.camera_id}: {len(self.passes)} of {self.asked} vehicle passes"
        if self.ended != "done":
            head += f" ({self.ended})"
        out = [f"{head} in {self.seconds:.0f} s"]
        for i, p in enumerate(self.passes, 1):
            v = p.view
            seen = (
                f", {v.char_height_px:.0f} px characters, sharpness {v.blur:.0f}, mean {v.mean:.0f}"
                if v is not None
                else ""
            )
            out.append(
                f"  pass {i}: {p.text} {p.status} {p.confidence:.2f}, {p.frames} frames{seen}"
            )
        confident = sum(p.confident for p in self.passes)
        out.append(
            f"read rate         {confident}/{len(self.passes)} confident full reads "
            f"({self.read_rate:.0%}; {MIN_READ_RATE:.0%} needed)"
        )
        if views:
            heights = [v.char_height_px for v in views]
            out.append(
                f"character height  median {statistics.median(heights):.0f} px, min "
                f"{min(heights):.0f} px ({MIN_CHAR_HEIGHT_PX} px needed)"
            )
            out.append(
                f"blur              sharpness median {statistics.median(v.blur for v in views):.0f}"
                f" ({BLURRED_BELOW:.0f} at least; variance of Laplacian)"
            )
            out.append(
                f"exposure          mean {statistics.median(v.mean for v in views):.0f}, "
                f"{statistics.median(v.clipped for v in views):.0%} clipped "
                f"({DARK_BELOW:.0f}-{BRIGHT_ABOVE:.0f}, under {CLIPPED_ABOVE:.0%} clipped)"
            )
            near = sum(v.near_edge for v in views)
            out.append(f"ROI edge          {near} of {len(views)} plates read at its edge")
        elif self.unread_char_heights:
            out.append(
                f"character height  median {statistics.median(self.unread_char_heights):.0f} px "
                "(plates found, none read)"
            )
        out.append(f"verdict: {self.verdict}")
        out.extend(f"advice: {tip}" for tip in self.advice())
        return out

    def as_json(self) -> dict[str, Any]:
        views = self.views
        return {
            "camera_id": self.camera_id,
            "vehicles_asked": self.asked,
            "passes": len(self.passes),
            "seconds": round(self.seconds, 1),
            "ended": self.ended,
            "read_rate": round(self.read_rate, 3),
            "char_height_px": None
            if not views
            else {
                "median": round(statistics.median(v.char_height_px for v in views), 1),
                "min": round(min(v.char_height_px for v in views), 1),
            },
            "blur": None if not views else round(statistics.median(v.blur for v in views), 1),
            "exposure": None
            if not views
            else {
                "mean": round(statistics.median(v.mean for v in views), 1),
                "clipped": round(statistics.median(v.clipped for v in views), 3),
            },
            "near_roi_edge": sum(v.near_edge for v in views),
            "verdict": self.verdict,
            "advice": self.advice(),
        }


def _zoom(chars: float) -> str:
    return (
        f"zoom in: characters are {chars:.0f} px high, the recognizer needs "
        f"{MIN_CHAR_HEIGHT_PX} px at least"
    )


class _MeasuringReader(PlateReader):
    """The configured reader, noting each frame and the size of every plate found."""

    def __init__(self, reader: PlateReader) -> None:
        super().__init__(
            reader.detector,
            reader.recognizer,
            min_plate_height=reader.min_plate_height,
            patterns=reader.patterns,
            views=reader.views,
        )
        self.image: ImageArray | None = None
        self.found: deque[float] = deque(maxlen=MAX_VIEWS)

    def detect(self, image: ImageArray, roi_mask: ImageArray | None = None) -> list[Detection]:
        # FrameProcessor calls detect, recognize, then its observation hook, on one thread:
        # the hook measures the plates on this image.
        self.image = image
        detections = super().detect(image, roi_mask)
        self.found.extend(plate_height_px(d) * CHAR_HEIGHT_PER_PLATE_HEIGHT for d in detections)
        return detections


def measure_view(
    image: ImageArray, obs: PlateObservation, roi: list[tuple[float, float]] | None
) -> PlateView:
    """Character height, sharpness and exposure of one plate on its frame."""
    det = obs.detection
    h, w = image.shape[:2]
    x1, y1, x2, y2 = det.box
    crop = image[max(int(y1), 0) : min(int(np.ceil(y2)), h), max(int(x1), 0) : min(int(x2), w)]
    grey = np.asarray(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop, np.uint8)
    if grey.size == 0:
        blur, mean, clipped = 0.0, 0.0, 0.0
    else:
        blur = sharpness(grey)
        mean = float(grey.mean())
        clipped = float(((grey <= 5) | (grey >= 250)).mean())
    return PlateView(
        captured_at=obs.captured_at,
        text=obs.recognition.text,
        char_height_px=plate_height_px(det) * CHAR_HEIGHT_PER_PLATE_HEIGHT,
        blur=blur,
        mean=mean,
        clipped=clipped,
        near_edge=_near_edge(det, (w, h), roi),
    )


def sharpness(grey: ImageArray) -> float:
    """Variance of the Laplacian of the plate at a fixed height (``SHARPNESS_HEIGHT_PX``),
    over the variance of its grey levels: the same plate scores the same near or far, bright
    or dim, and motion blur or a soft focus lowers it."""
    h, w = grey.shape[:2]
    scale = SHARPNESS_HEIGHT_PX / max(h, 1)
    size = (max(1, round(w * scale)), SHARPNESS_HEIGHT_PX)
    resized = cv2.resize(grey, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    plate = np.asarray(resized, np.float32)
    contrast = float(plate.var())
    if contrast < 1.0:
        return 0.0
    return 100.0 * float(cv2.Laplacian(plate, cv2.CV_32F).var()) / contrast


def _near_edge(
    det: Detection, size: tuple[int, int], roi: list[tuple[float, float]] | None
) -> bool:
    w, h = size
    if roi is None:  # the frame is the region: a plate cut by its edge
        x1, y1, x2, y2 = det.box
        return x1 <= 2 or y1 <= 2 or x2 >= w - 3 or y2 >= h - 3
    polygon = np.array([(x * w, y * h) for x, y in roi], np.float32)
    margin = EDGE_MARGIN_PLATE_WIDTHS * det.width
    x1, y1, x2, y2 = det.box
    return any(
        cv2.pointPolygonTest(polygon, (float(x), float(y)), True) < margin
        for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))
    )


def find_view(views: list[PlateView], vehicle_pass: VehiclePass) -> PlateView | None:
    """The measured view of a pass's best frame: the one its read and crop came from."""
    at_best = [v for v in views if v.captured_at == vehicle_pass.best_seen]
    same = [v for v in at_best if v.text == vehicle_pass.text]
    if same or at_best:
        return (same or at_best)[0]
    during = [
        v for v in views if vehicle_pass.first_seen <= v.captured_at <= vehicle_pass.last_seen
    ]
    return max(during, key=lambda v: v.char_height_px, default=None)


def run_commission(
    settings: Settings,
    camera: CameraSettings,
    *,
    vehicles: int,
    timeout_s: float,
    reader: PlateReader | None = None,
) -> CommissionReport:
    """Run the pipeline on ``camera`` until ``vehicles`` passes ended, the clip ended, or
    ``timeout_s`` passed."""
    from edge.app import CameraPipeline  # the daemon's pipeline thread, exactly

    base = reader or PlateReader.from_settings(settings.models)
    base.warm_up()
    measuring = _MeasuringReader(base)
    views: deque[PlateView] = deque(maxlen=MAX_VIEWS)
    passes: list[VehiclePass] = []
    lock = threading.Lock()
    done = threading.Event()

    def observe(_camera: CameraSettings, observations: list[PlateObservation]) -> None:
        image = measuring.image
        if image is not None:
            views.extend(measure_view(image, obs, camera.roi) for obs in observations)

    def emit(vehicle_pass: VehiclePass, _camera: CameraSettings) -> None:
        with lock:
            if len(passes) < vehicles:
                passes.append(vehicle_pass)
            if len(passes) >= vehicles:
                done.set()

    stop = threading.Event()
    capture = CaptureThread(open_source(camera), queue_size=camera.queue_size)
    pipeline = CameraPipeline(camera, capture, measuring, settings, emit, stop, observe=observe)
    start = time.monotonic()
    capture.start()
    pipeline.start()
    ended = "timeout"
    try:
        while not done.wait(0.2):
            if not pipeline.alive:
                ended = "end of clip" if capture.finished else "pipeline stopped"
                break
            if time.monotonic() - start >= timeout_s:
                break
        else:
            ended = "done"
    finally:
        stop.set()
        capture.stop(timeout=5.0)
        pipeline.join(timeout=30.0)
    seconds = time.monotonic() - start
    if ended != "done" and len(passes) >= vehicles:
        ended = "done"  # the last passes ended when the clip did
    seen = list(views)
    with lock:
        reports = tuple(
            PassReport(p.text, p.confidence, p.status, p.frames_seen, find_view(seen, p))
            for p in passes
        )
    unread = () if reports else tuple(measuring.found)
    return CommissionReport(camera.id, vehicles, seconds, reports, unread, ended)
