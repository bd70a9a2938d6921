"""PlateReader helpers that do not need a model."""

from __future__ import annotations

from edge.pipeline import suppress_nested
from edge.types import Detection


def test_box_inside_a_stronger_box_is_the_same_plate() -> None:
    plate = Detection(box=(100, 100, 260, 180), score=0.9)
    half = Detection(box=(110, 105, 180, 175), score=0.6)
    other = Detection(box=(400, 100, 560, 180), score=0.5)
    assert suppress_nested([half, plate, other]) == [plate, other]


def test_neighbouring_plates_are_both_kept() -> None:
    left = Detection(box=(100, 100, 260, 180), score=0.9)
    right = Detection(box=(230, 100, 390, 180), score=0.8)
    assert suppress_nested([left, right]) == [left, right]


def test_full_plate_box_wins_over_a_stronger_half_plate_box() -> None:
    half = Detection(box=(287, 480, 409, 525), score=0.62)
    full = Detection(box=(293, 471, 461, 535), score=0.36)
    assert suppress_nested([half, full]) == [full]
