"""Linking plate observations into passes: one read per vehicle pass."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np

from edge.config import TrackingSettings
from edge.inference.patterns import PlatePatterns
from edge.tracker import MAX_TRACK_OBSERVATIONS, PlateTracker
from edge.types import (
    CharCandidate,
    CharSlot,
    Detection,
    Direction,
    PlateObservation,
    PlateStatus,
    Recognition,
)

T0 = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def obs(t: float, box: tuple[float, float, float, float], text: str) -> PlateObservation:
    rec = Recognition(
        text=text,
        confidence=0.9,
        chars=tuple(CharSlot(c, 0.98) for c in text),
        status=PlateStatus.FULL,
    )
    return PlateObservation(
        frame_index=int(t * 30),
        captured_at=T0 + timedelta(seconds=t),
        monotonic=t,
        detection=Detection(box=box, score=0.9),
        recognition=rec,
        crop=np.full((30, 90, 3), 128, np.uint8),
    )


def moving_box(t: float, x0: float, speed: float) -> tuple[float, float, float, float]:
    x = x0 + speed * t
    return (x, 500.0, x + 120.0, 560.0)


def test_one_pass_per_vehicle_with_two_vehicles_in_view() -> None:
    tracker = PlateTracker("cam", TrackingSettings())
    passes = []
    for i in range(30):
        t = i / 30
        observations = [
            obs(t, moving_box(t, 100, 600), "ABC1234"),
            obs(t, moving_box(t, 1200, -600), "XYZ987"),
        ]
        passes += tracker.update(t, observations)
    assert passes == []  # nothing ends while both plates are in view
    passes += tracker.update(2.0, [])
    assert sorted(p.text for p in passes) == ["ABC1234", "XYZ987"]
    by_text = {p.text: p for p in passes}
    assert by_text["ABC1234"].frames_seen == 30
    assert by_text["ABC1234"].direction is Direction.RIGHT
    assert by_text["XYZ987"].direction is Direction.LEFT
    assert by_text["ABC1234"].first_seen == T0
    assert by_text["ABC1234"].crop_jpeg.startswith(b"\xff\xd8")  # a JPEG of the best crop


def test_pass_ends_after_timeout_and_a_new_pass_starts() -> None:
    tracker = PlateTracker("cam", TrackingSettings(pass_timeout_s=0.5, repeat_window_s=0))
    ended = []
    for i in range(10):
        ended += tracker.update(i / 30, [obs(i / 30, (100, 100, 220, 160), "AAA111")])
    ended += tracker.update(1.0, [])
    assert [p.text for p in ended] == ["AAA111"]
    for i in range(10):
        t = 2.0 + i / 30
        ended += tracker.update(t, [obs(t, (100, 100, 220, 160), "AAA111")])
    ended += tracker.flush()
    assert [p.text for p in ended] == ["AAA111", "AAA111"]


def test_single_unsure_frame_is_not_a_pass() -> None:
    tracker = PlateTracker("cam", TrackingSettings(min_frames=2))
    weak = obs(0.0, (0, 0, 100, 50), "AB1")
    weak = PlateObservation(
        frame_index=0,
        captured_at=T0,
        monotonic=0.0,
        detection=weak.detection,
        recognition=Recognition(
            "AB1", 0.3, tuple(CharSlot(c, 0.6) for c in "AB1"), PlateStatus.PARTIAL
        ),
    )
    tracker.update(0.0, [weak])
    assert tracker.flush() == []


def test_approaching_plate_grows() -> None:
    tracker = PlateTracker("cam", TrackingSettings())
    for i in range(20):
        t = i / 30
        s = 60 + 6 * i
        tracker.update(
            t, [obs(t, (900 - s, 400 + 10 * i, 900 + s, 400 + 10 * i + s / 2), "GROW12")]
        )
    (p,) = tracker.flush()
    assert p.direction is Direction.APPROACHING


def test_second_box_on_a_followed_plate_is_not_a_second_vehicle() -> None:
    tracker = PlateTracker("cam", TrackingSettings())
    for i in range(20):
        t = i / 30
        box = moving_box(t, 100, 300)
        observations = [obs(t, box, "ABC1234")]
        if i % 5 == 3:  # now and then the detector also boxes the right half of the plate
            observations.append(obs(t, (box[0] + 50, box[1] + 5, box[2] + 10, box[3]), "1234"))
        tracker.update(t, observations)
    assert [p.text for p in tracker.flush()] == ["ABC1234"]


def test_tracks_that_converge_on_one_plate_are_merged() -> None:
    tracker = PlateTracker("cam", TrackingSettings())
    for i in range(12):
        t = i / 30
        observations = [obs(t, (100 + 2 * i, 100, 220 + 2 * i, 160), "ABC1234")]
        if i < 6:  # a second track drifts onto the same plate, then the two coincide
            x = 400 - 55 * i
            observations.append(obs(t, (x, 100, x + 120, 160), "ABC1Z34"))
        tracker.update(t, observations)
    passes = tracker.flush()
    assert [p.text for p in passes] == ["ABC1234"]
    assert 12 < passes[0].frames_seen <= 12 + 6  # the duplicate frames joined the pass


def test_same_plate_at_the_same_place_soon_after_is_not_a_second_read() -> None:
    tracker = PlateTracker("cam", TrackingSettings(pass_timeout_s=0.5, repeat_window_s=30))
    ended = []
    for start in (0.0, 2.0):  # e.g. an occlusion splits one vehicle's pass in two
        for i in range(10):
            t = start + i / 30
            ended += tracker.update(t, [obs(t, (100, 100, 220, 160), "AAA111")])
        ended += tracker.update(start + 1.5, [])
    assert [p.text for p in ended] == ["AAA111"]


def test_parked_plate_is_read_once_and_memory_stays_bounded() -> None:
    tracker = PlateTracker("cam", TrackingSettings(max_pass_s=10))
    ended = []
    for i in range(30 * 60):  # a minute at 30 fps with a parked car in view
        t = i / 30
        ended += tracker.update(t, [obs(t, (500, 400, 620, 460), "PARK123")])
    assert [p.text for p in ended] == ["PARK123"]
    assert len(tracker._tracks[0].observations) <= MAX_TRACK_OBSERVATIONS
    assert tracker.flush() == []
    assert len(tracker._tracks) == 0


def test_the_pass_text_is_held_to_the_formats_the_tracker_was_given() -> None:
    def read(t: float, text: str, slot: CharSlot) -> PlateObservation:
        o = obs(t, moving_box(t, 100, 600), text)
        chars = (*o.recognition.chars[:3], slot, *o.recognition.chars[4:])
        return replace(o, recognition=replace(o.recognition, chars=chars))

    unsure_one = CharSlot("1", 0.4, (CharCandidate("I", 0.35),))
    sure_i = CharSlot("I", 0.99)
    frames = [read(i / 30, "ABC1234", unsure_one) for i in range(0, 20, 2)]
    frames += [read(i / 30, "ABCI234", sure_i) for i in range(1, 20, 2)]
    frames.sort(key=lambda o: o.monotonic)
    texts = []
    for patterns in (None, PlatePatterns(["LLLNNNN"])):
        tracker = PlateTracker("cam", TrackingSettings(), patterns=patterns)
        passes = [p for o in frames for p in tracker.update(o.monotonic, [o])]
        passes += tracker.update(5.0, [])
        texts.append([p.text for p in passes])
    assert texts == [["ABCI234"], ["ABC1234"]]
