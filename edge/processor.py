"""One camera's frame processing, synchronous and timed: gate, detect, recognize, track.

The daemon's pipeline thread and ``alpr-edge bench`` both drive a FrameProcessor, so the
benchmark measures exactly the code that runs on the pole.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from edge.config import CameraSettings, Settings
from edge.crops import storage_crop
from edge.inference.attributes import AttributeModels
from edge.motion import MotionGate, roi_mask
from edge.pipeline import PlateReader
from edge.tracker import PlateTracker
from edge.types import Frame, ImageArray, PlateObservation, VehiclePass

STAGES = ("motion", "detect", "recognize", "attributes", "track")


class StageTimer:
    """Milliseconds per stage over the last ``window`` samples (all of them when None)."""

    def __init__(self, window: int | None = 1000) -> None:
        self._samples: dict[str, deque[float]] = {}
        self._window = window

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, (time.perf_counter() - start) * 1000.0)

    def add(self, stage: str, ms: float) -> None:
        self._samples.setdefault(stage, deque(maxlen=self._window)).append(ms)

    def median_ms(self) -> dict[str, float]:
        return {k: round(statistics.median(v), 3) for k, v in self._samples.items() if v}

    def total_ms(self) -> dict[str, float]:
        return {k: round(sum(v), 1) for k, v in self._samples.items()}

    def count(self, stage: str) -> int:
        return len(self._samples.get(stage, ()))


class FrameProcessor:
    """Frames in, finished vehicle passes out. Owned by one thread."""

    def __init__(
        self,
        camera: CameraSettings,
        reader: PlateReader,
        settings: Settings,
        timer: StageTimer | None = None,
        on_observations: Callable[[list[PlateObservation]], None] | None = None,
        attributes: AttributeModels | None = None,
    ) -> None:
        """``on_observations`` sees each processed frame's plate reads as they are made,
        before any pass ends (the hot-list alerter's early path). ``attributes``: the
        vehicle and plate-region classifiers; loaded from ``settings.models`` when None."""
        self.camera = camera
        self.on_observations = on_observations
        self.reader = reader
        self.tracker = PlateTracker(camera.id, settings.tracking, patterns=reader.patterns)
        self.gate = MotionGate(settings.motion, roi=camera.roi) if settings.motion.enabled else None
        self.timer = timer or StageTimer()
        self.frames_processed = 0
        self.frames_gated = 0
        self.frames_skipped = 0
        """Frames not run through the models because of ``camera.process_fps``."""
        self._min_interval = 0.9 / camera.process_fps if camera.process_fps else 0.0
        self._next_due = float("-inf")
        self._mask: ImageArray | None = None
        self.attributes = attributes or AttributeModels.from_settings(settings.models)
        self._frames_with_plates = 0

    def process(self, frame: Frame, stream_time: float) -> list[VehiclePass]:
        """Handle one frame seen at ``stream_time`` seconds; return the passes that ended."""
        moving = True
        if self.gate is not None:
            with self.timer.measure("motion"):
                moving = self.gate.update(frame.image, stream_time)
        # While a plate is being followed every frame counts, even if the gate is quiet.
        observations: list[PlateObservation] = []
        if not (moving or self.tracker.open_tracks):
            self.frames_gated += 1
        elif not self._over_rate(stream_time):
            observations = self._observe(frame, stream_time)
            self.frames_processed += 1
            if observations and self.on_observations is not None:
                self.on_observations(observations)
        with self.timer.measure("track"):
            return self._settle(self.tracker.update(stream_time, observations))

    def _over_rate(self, stream_time: float) -> bool:
        """True when ``camera.process_fps`` says this frame comes too soon after the last one
        the models ran on (it is skipped, and counted). 0.9 of the interval, so a 30 fps
        camera capped at 15 runs the models on every other frame, not every third."""
        if stream_time < self._next_due:
            self.frames_skipped += 1
            return True
        self._next_due = stream_time + self._min_interval
        return False

    def idle(self, stream_time: float) -> list[VehiclePass]:
        """No frame arrived: let passes time out."""
        return self._settle(self.tracker.update(stream_time, []))

    def reconfigure(self, settings: Settings) -> None:
        """New live thresholds (config reload). Call between frames, on the owning thread."""
        self.tracker.reconfigure(settings.tracking)
        if self.gate is not None:
            self.gate.reconfigure(settings.motion)
        self.reader.detector.score_threshold = settings.models.detector_threshold

    def flush(self) -> list[VehiclePass]:
        return self._settle(self.tracker.flush())

    def _settle(self, passes: list[VehiclePass]) -> list[VehiclePass]:
        """Voted attributes below their configured thresholds become null, not guesses."""
        return [self.attributes.apply_thresholds(p) for p in passes]

    def _observe(self, frame: Frame, stream_time: float) -> list[PlateObservation]:
        image = frame.image
        if self.camera.roi is not None and (
            self._mask is None or self._mask.shape[:2] != image.shape[:2]
        ):
            self._mask = roi_mask(image.shape[:2], self.camera.roi)
        with self.timer.measure("detect"):
            detections = self.reader.detect(image, self._mask)
        if not detections:
            return []
        with self.timer.measure("recognize"):
            results = self.reader.recognize(image, detections)
            observations = [
                PlateObservation(
                    frame_index=frame.index,
                    captured_at=frame.captured_at,
                    monotonic=stream_time,
                    detection=r.detection,
                    recognition=r.recognition,
                    crop=storage_crop(image, r.detection),
                )
                for r in results
                if r.recognition.text
            ]
        if not observations or not self.attributes.enabled:
            return observations
        # Attributes change little between frames: every Nth frame with plates is enough
        # for the pass vote and keeps the cost per processed frame small.
        self._frames_with_plates += 1
        if (self._frames_with_plates - 1) % self.attributes.settings.attributes_every:
            return observations
        with self.timer.measure("attributes"):
            return self.attributes.annotate(image, observations)
