"""Link plate observations across frames into vehicle passes; one read per pass.

A fixed camera sees each vehicle for a second or two. Observations are matched to open
tracks by box overlap or, for fast vehicles, by a centre distance scaled to the plate's size;
a track whose plate has not been seen for ``pass_timeout_s`` of stream time is closed and
voted into a single VehiclePass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edge.config import TrackingSettings
from edge.crops import encode_jpeg
from edge.inference.patterns import PlatePatterns
from edge.types import Detection, Direction, PlateObservation, VehiclePass
from edge.vehicle import vote_attributes
from edge.voting import vote

MAX_CENTER_JUMP = 3.0
"""How far, in plate widths, a plate may move between two processed frames."""
DIRECTION_MIN_GROWTH = 1.25
MIN_PLATE_CHARS = 2
SHORT_PLATE_CHARS = 4
SHORT_PLATE_CONFIDENCE = 0.6
SHORT_TRACK = 3
MAX_TRACK_OBSERVATIONS = 120
DUPLICATE_OVERLAP = 0.3
"""Boxes sharing this much of the smaller one's area are on the same plate."""
DIRECTION_MIN_SHIFT = 1.0


def iou(a: Detection, b: Detection) -> float:
    ax1, ay1, ax2, ay2 = a.box
    bx1, by1, bx2, by2 = b.box
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


def _overlaps(a: Detection, b: Detection) -> bool:
    ix = min(a.box[2], b.box[2]) - max(a.box[0], b.box[0])
    iy = min(a.box[3], b.box[3]) - max(a.box[1], b.box[1])
    if ix <= 0 or iy <= 0:
        return False
    smaller = min(a.width * a.height, b.width * b.height)
    return ix * iy / max(smaller, 1e-6) >= DUPLICATE_OVERLAP


def _similar(a: str, b: str) -> bool:
    """At most a third of the characters differ (edit distance)."""
    if not a or not b:
        return False
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1] <= max(len(a), len(b)) / 3


def _distance_score(a: Detection, b: Detection) -> float:
    """0 when far apart, up to 1 when the centres coincide, scaled to plate size."""
    (ax, ay), (bx, by) = a.center, b.center
    scale = max(a.width, b.width, 1.0)
    dist = math.hypot(ax - bx, ay - by) / scale
    return max(0.0, 1.0 - dist / MAX_CENTER_JUMP)


@dataclass(slots=True)
class _Track:
    observations: list[PlateObservation] = field(default_factory=list)
    last_time: float = 0.0
    emitted: bool = False
    """Read out already (a parked plate): absorb its observations, never read it again."""

    @property
    def last(self) -> PlateObservation:
        return self.observations[-1]

    @property
    def first_time(self) -> float:
        return self.observations[0].monotonic

    def add(self, observation: PlateObservation, now: float) -> None:
        self.observations.append(observation)
        self.last_time = now
        if len(self.observations) > MAX_TRACK_OBSERVATIONS:
            # Bounded memory for a plate that stays in view: drop the least certain frame,
            # keeping the first and last for direction and timing.
            middle = self.observations[1:-1]
            worst = min(range(len(middle)), key=lambda i: middle[i].recognition.confidence)
            del self.observations[worst + 1]


@dataclass(frozen=True, slots=True)
class _Emitted:
    time: float
    text: str
    detection: Detection


def direction_of(observations: Sequence[PlateObservation]) -> Direction:
    """Approaching when the plate grows, receding when it shrinks, else left or right."""
    if len(observations) < 2:
        return Direction.UNKNOWN
    first, last = observations[0].detection, observations[-1].detection
    growth = (last.height + 1e-6) / (first.height + 1e-6)
    if growth >= DIRECTION_MIN_GROWTH:
        return Direction.APPROACHING
    if growth <= 1 / DIRECTION_MIN_GROWTH:
        return Direction.RECEDING
    shift = (last.center[0] - first.center[0]) / max(first.width, 1.0)
    if shift >= DIRECTION_MIN_SHIFT:
        return Direction.RIGHT
    if shift <= -DIRECTION_MIN_SHIFT:
        return Direction.LEFT
    dy = last.center[1] - first.center[1]
    if abs(dy) >= first.height:
        # A plate moving down the frame of a pole camera is coming closer.
        return Direction.APPROACHING if dy > 0 else Direction.RECEDING
    return Direction.UNKNOWN


class PlateTracker:
    """Per-camera tracker. Not thread-safe: one pipeline thread owns it."""

    def __init__(
        self, camera_id: str, settings: TrackingSettings, patterns: PlatePatterns | None = None
    ) -> None:
        """``patterns``: the agency's plate formats, which each pass's voted text is held to."""
        self.camera_id = camera_id
        self._settings = settings
        self._patterns = patterns
        self._tracks: list[_Track] = []
        self._recent: list[_Emitted] = []

    def reconfigure(self, settings: TrackingSettings) -> None:
        """New thresholds for the passes still open and those to come."""
        self._settings = settings

    @property
    def open_tracks(self) -> int:
        return len(self._tracks)

    def update(self, now: float, observations: Sequence[PlateObservation]) -> list[VehiclePass]:
        """Add one frame's observations (possibly none) at stream time ``now``.

        Returns the passes that ended.
        """
        self._assign(now, observations)
        ended = self._close(lambda t: now - t.last_time > self._settings.pass_timeout_s)
        return ended + self._read_out_parked(now)

    def _read_out_parked(self, now: float) -> list[VehiclePass]:
        passes: list[VehiclePass] = []
        for track in self._tracks:
            if not track.emitted and now - track.first_time > self._settings.max_pass_s:
                track.emitted = True
                vehicle_pass = self._to_pass(track)
                if vehicle_pass is not None:
                    passes.append(vehicle_pass)
        return passes

    def flush(self) -> list[VehiclePass]:
        """Close every open track (end of stream, shutdown)."""
        return self._close(lambda _t: True)

    def _assign(self, now: float, observations: Sequence[PlateObservation]) -> None:
        pairs: list[tuple[float, int, int]] = []
        for ti, track in enumerate(self._tracks):
            for oi, obs in enumerate(observations):
                score = max(
                    iou(track.last.detection, obs.detection),
                    _distance_score(track.last.detection, obs.detection),
                )
                if track.last.recognition.text and (
                    track.last.recognition.text == obs.recognition.text
                ):
                    score += 0.5
                if score > 0.0:
                    pairs.append((score, ti, oi))
        pairs.sort(reverse=True)
        used_tracks: set[int] = set()
        used_obs: set[int] = set()
        for _score, ti, oi in pairs:
            if ti in used_tracks or oi in used_obs:
                continue
            used_tracks.add(ti)
            used_obs.add(oi)
            self._tracks[ti].add(observations[oi], now)
        matched = [observations[oi] for oi in used_obs]
        for oi, obs in enumerate(observations):
            if oi in used_obs:
                continue
            # A second box on a plate already followed is a duplicate, not a new vehicle.
            if any(_overlaps(obs.detection, m.detection) for m in matched):
                continue
            self._tracks.append(_Track(observations=[obs], last_time=now))
        self._merge_coincident(used_tracks)

    def _merge_coincident(self, updated: set[int]) -> None:
        """Two tracks that now sit on the same plate were one vehicle all along."""
        tracks = [self._tracks[i] for i in sorted(updated)]
        merged: set[int] = set()
        for a in range(len(tracks)):
            for b in range(a + 1, len(tracks)):
                ta, tb = tracks[a], tracks[b]
                if id(ta) in merged or id(tb) in merged:
                    continue
                if not _overlaps(ta.last.detection, tb.last.detection):
                    continue
                # Plates of two vehicles can cross on screen; only a track on the same text
                # (or a short-lived one) is a duplicate.
                short = min(len(ta.observations), len(tb.observations)) <= SHORT_TRACK
                if not short and not _similar(ta.last.recognition.text, tb.last.recognition.text):
                    continue
                keep, drop = (ta, tb) if len(ta.observations) >= len(tb.observations) else (tb, ta)
                keep.observations = sorted(
                    keep.observations + drop.observations[:-1], key=lambda o: o.monotonic
                )
                merged.add(id(drop))
        if merged:
            self._tracks = [t for t in self._tracks if id(t) not in merged]

    def _close(self, done: Callable[[_Track], bool]) -> list[VehiclePass]:
        ended = [t for t in self._tracks if done(t)]
        self._tracks = [t for t in self._tracks if not done(t)]
        passes = [self._to_pass(t) for t in ended if not t.emitted]
        return [p for p in passes if p is not None]

    def _is_repeat(self, text: str, detection: Detection, now: float) -> bool:
        """The same plate at the same place moments ago: the same vehicle, already read."""
        window = self._settings.repeat_window_s
        self._recent = [e for e in self._recent if now - e.time <= window]
        return any(e.text == text and _overlaps(e.detection, detection) for e in self._recent)

    def _to_pass(self, track: _Track) -> VehiclePass | None:
        obs = track.observations
        result = vote(
            [o.recognition for o in obs],
            max_candidates=self._settings.max_candidates,
            patterns=self._patterns,
        )
        if len(result.text) < MIN_PLATE_CHARS:
            return None  # a sign, a logo or a wheel rim, not a plate
        if len(result.text) < SHORT_PLATE_CHARS and result.confidence < SHORT_PLATE_CONFIDENCE:
            return None  # short and unsure: far more often a badge than a vanity plate
        if len(obs) < self._settings.min_frames and result.confidence < 0.9:
            return None
        now = obs[-1].monotonic
        if self._is_repeat(result.text, obs[0].detection, now):
            return None
        self._recent.append(_Emitted(now, result.text, obs[-1].detection))
        best = max(
            obs,
            key=lambda o: (
                o.recognition.text == result.text,
                o.recognition.confidence * min(o.detection.height, 80.0),
            ),
        )
        attrs = vote_attributes(obs)
        return VehiclePass(
            camera_id=self.camera_id,
            text=result.text,
            confidence=result.confidence,
            candidates=result.candidates,
            status=result.status,
            first_seen=obs[0].captured_at,
            last_seen=obs[-1].captured_at,
            best_seen=best.captured_at,
            frames_seen=len(obs),
            direction=direction_of(obs),
            crop_jpeg=encode_jpeg(best.crop),
            chars=result.chars,
            region=attrs.region,
            region_confidence=attrs.region_confidence,
            vehicle_type=attrs.vehicle_type,
            vehicle_type_confidence=attrs.vehicle_type_confidence,
            vehicle_colour=attrs.vehicle_colour,
            vehicle_colour_confidence=attrs.vehicle_colour_confidence,
            vehicle_make=attrs.vehicle_make,
            vehicle_model=attrs.vehicle_model,
            make_model_confidence=attrs.make_model_confidence,
        )
