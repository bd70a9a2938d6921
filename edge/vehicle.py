"""The vehicle around a plate: its box from the plate's geometry, and attribute votes.

A plate has a known physical width, so its pixel width gives the image scale at the vehicle:
a US plate is 0.305 m wide, an EU one 0.52 m (told apart by aspect: EU plates are about
4.7:1, US 2:1). A car is about 1.8 m wide and its front rises about 1.1 m above the plate, so
the vehicle box is about 2 m wide, from 1.3 m above the plate's centre to 0.5 m below it.

The box and the pixels inside it exist only in memory, for the attribute classifiers: they
show the windscreen and may show occupants, so nothing cut from them is ever stored or sent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge.types import Detection, ImageArray, LabelScores, PlateObservation

US_PLATE_WIDTH_M = 0.305
EU_PLATE_WIDTH_M = 0.52
EU_MIN_ASPECT = 3.4
"""Width / height above which a plate is taken to be a long European one."""
VEHICLE_HALF_WIDTH_M = 1.0
"""Half of 1.8 m plus mirrors and a margin for a plate that is off-centre."""
ABOVE_PLATE_M = 1.3
BELOW_PLATE_M = 0.5
MIN_BOX_SIDE = 16

Box = tuple[int, int, int, int]


def vehicle_box(detection: Detection, frame_size: tuple[int, int]) -> tuple[Box, float] | None:
    """The vehicle's box (x1, y1, x2, y2, pixels, clipped to the frame of ``(height, width)``)
    and the share of the unclipped box inside the frame; None when too little is left."""
    height, width = frame_size
    pw, ph = detection.width, detection.height
    if pw <= 1 or ph <= 1:
        return None
    plate_m = EU_PLATE_WIDTH_M if pw / ph >= EU_MIN_ASPECT else US_PLATE_WIDTH_M
    px_per_m = pw / plate_m
    cx, cy = detection.center
    x1 = cx - VEHICLE_HALF_WIDTH_M * px_per_m
    x2 = cx + VEHICLE_HALF_WIDTH_M * px_per_m
    y1 = cy - ABOVE_PLATE_M * px_per_m
    y2 = cy + BELOW_PLATE_M * px_per_m
    full_area = (x2 - x1) * (y2 - y1)
    box = (
        int(max(0.0, np.floor(x1))),
        int(max(0.0, np.floor(y1))),
        int(min(float(width), np.ceil(x2))),
        int(min(float(height), np.ceil(y2))),
    )
    if box[2] - box[0] < MIN_BOX_SIDE or box[3] - box[1] < MIN_BOX_SIDE:
        return None
    inside = (box[2] - box[0]) * (box[3] - box[1]) / full_area
    return box, float(min(1.0, inside))


def vehicle_crop(image: ImageArray, box: Box, size: int) -> ImageArray:
    """The box's pixels shrunk to at most ``size`` x ``size`` (memory only, never stored)."""
    x1, y1, x2, y2 = box
    view = image[y1:y2, x1:x2]
    # A near vehicle's box is hundreds of pixels a side: take every k-th pixel first so the
    # area resize reads a few times the output, not the whole box (1.7 -> 0.3 ms at 1080p).
    step = max(1, min(view.shape[:2]) // (2 * size))
    view = view[::step, ::step]
    h, w = view.shape[:2]
    if h <= size and w <= size:
        return np.ascontiguousarray(view)
    out = cv2.resize(view, (min(w, size), min(h, size)), interpolation=cv2.INTER_AREA)
    return np.asarray(out, dtype=np.uint8)


def vote_labels(frames: Sequence[LabelScores | None]) -> tuple[str, float] | None:
    """Weighted majority over a pass: each frame adds its label probabilities times its
    weight; the winner's confidence is its weighted mean probability. None without votes."""
    totals: dict[str, float] = defaultdict(float)
    weight = 0.0
    for frame in frames:
        if frame is None or frame.weight <= 0:
            continue
        weight += frame.weight
        for label, prob in frame.scores:
            totals[label] += prob * frame.weight
    if not totals or weight <= 0:
        return None
    label, total = max(totals.items(), key=lambda kv: (kv[1], kv[0]))
    return label, round(min(1.0, total / weight), 4)


@dataclass(frozen=True, slots=True)
class PassAttributes:
    """Attributes voted over one pass, not yet held to the configured thresholds."""

    vehicle_type: str | None = None
    vehicle_type_confidence: float | None = None
    vehicle_colour: str | None = None
    vehicle_colour_confidence: float | None = None
    vehicle_make: str | None = None
    vehicle_model: str | None = None
    make_model_confidence: float | None = None
    region: str | None = None
    region_confidence: float | None = None


def vote_attributes(observations: Sequence[PlateObservation]) -> PassAttributes:
    """Type, colour, make/model (``Make|Model`` labels) and plate region over a pass."""
    vtype = vote_labels([o.vehicle_type for o in observations])
    colour = vote_labels([o.vehicle_colour for o in observations])
    make_model = vote_labels([o.make_model for o in observations])
    region = vote_labels([o.region for o in observations])
    make, _, model = make_model[0].partition("|") if make_model else ("", "", "")
    return PassAttributes(
        vehicle_type=vtype[0] if vtype else None,
        vehicle_type_confidence=vtype[1] if vtype else None,
        vehicle_colour=colour[0] if colour else None,
        vehicle_colour_confidence=colour[1] if colour else None,
        vehicle_make=make.strip() or None,
        vehicle_model=model.strip() or None,
        make_model_confidence=make_model[1] if make_model else None,
        region=region[0] if region else None,
        region_confidence=region[1] if region else None,
    )
