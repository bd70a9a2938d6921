"""Several crops of one detected plate, read in one batch and voted into one read.

The detector's corners are a few pixels off now and then, and a crop that ends at the edge of
the last character loses it (LM298AI read as LM298A) or turns it into something else. The
recognizer then reads that crop with full confidence, so no single crop can be trusted to be
framed well. ``models.recognizer_views = 3`` reads the plate three times: as detected, 3 % of
its width wider on each side, and that plus 10 % of its height above and below; the three
reads are voted position by position (edge/voting.py, the same vote that combines the frames
of a pass). Measured with ``alpr-edge evaluate --recognizer-views 1`` and ``3`` when views
came in (detector step 4860, recognizer step 23755): exact plate reads 0.887 -> 0.919 on
held-out US crops put on real cars (scripts/make_crop_scenes.py), 0.889 -> 0.907 on
openalpr-endtoend-eu, 0.912 -> 0.921 on openalpr-endtoend-br. The recognizer runs three
crops per plate instead of one (batched); the detector, which costs several times more, runs
once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from edge.inference.rectify import plate_quad
from edge.types import Detection, PlateStatus, Point, Recognition
from edge.voting import vote

VIEWS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (0.03, 0.0), (0.03, 0.10))
"""(horizontal, vertical) growth of the plate quad per side, as a share of its width and
height; the first is the detection itself."""


def view_detections(detection: Detection, views: int) -> list[Detection]:
    """The detection as the first ``views`` entries of VIEWS frame it."""
    return [grow(detection, h, v) for h, v in VIEWS[:views]]


def grow(detection: Detection, horizontal: float, vertical: float) -> Detection:
    """The plate quad grown along its own top/bottom and left/right edges (so a tilted or
    foreshortened plate grows along its own lines); the box is the new quad's bounds."""
    if horizontal == 0.0 and vertical == 0.0:
        return detection
    tl, tr, br, bl = plate_quad(detection)
    top, bottom = tr - tl, br - bl
    left, right = bl - tl, br - tr
    grown = np.array(
        [
            tl - horizontal * top - vertical * left,
            tr + horizontal * top - vertical * right,
            br + horizontal * bottom + vertical * right,
            bl - horizontal * bottom + vertical * left,
        ]
    )
    corners: tuple[Point, Point, Point, Point] = (
        (float(grown[0, 0]), float(grown[0, 1])),
        (float(grown[1, 0]), float(grown[1, 1])),
        (float(grown[2, 0]), float(grown[2, 1])),
        (float(grown[3, 0]), float(grown[3, 1])),
    )
    x_lo, y_lo = grown.min(axis=0)
    x_hi, y_hi = grown.max(axis=0)
    return replace(
        detection, box=(float(x_lo), float(y_lo), float(x_hi), float(y_hi)), corners=corners
    )


def combine_views(reads: Sequence[Recognition]) -> Recognition:
    """One read from the reads of one plate's views.

    Text and character probabilities are voted as the frames of a pass are. The status is the
    one most views gave (the first view's on a tie), so a badge that one view mistakes for a
    plate stays "none"; a read without text stays as the first view gave it.
    """
    if len(reads) == 1:
        return reads[0]
    counts = Counter(r.status for r in reads)
    status = max(counts, key=lambda s: (counts[s], s is reads[0].status))
    if status is PlateStatus.NONE:
        return next(r for r in reads if r.status is PlateStatus.NONE)
    voted = vote([r for r in reads if r.status is not PlateStatus.NONE])
    if not voted.text:
        return reads[0]
    return Recognition(voted.text, voted.confidence, voted.chars, status)
