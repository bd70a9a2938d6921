"""Recognizer views: several crops of one plate, read in one batch and voted into one read.

Geometry and voting on constructed detections and reads; then the real models through the
daemon's PlateReader and ``alpr-edge evaluate`` on a rendered plate whose detected box cuts
into its last character.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.cli import main
from edge.config import DEFAULT_MODELS_DIR, ModelSettings
from edge.errors import EX_USAGE
from edge.inference.formats import Recognizer
from edge.inference.views import VIEWS, combine_views, grow, view_detections
from edge.pipeline import PlateReader
from edge.types import CharSlot, Detection, ImageArray, PlateStatus, Recognition
from scripts.synth.plates import render_plate_clean

needs_models = pytest.mark.skipif(
    not (DEFAULT_MODELS_DIR / "plate-recognizer.onnx").is_file(), reason="no shipped models"
)


def _read(text: str, prob: float = 0.9, status: PlateStatus = PlateStatus.FULL) -> Recognition:
    chars = tuple(CharSlot(c, prob) for c in text)
    return Recognition(text, math.prod(s.prob for s in chars), chars, status)


# --------------------------------------------------------------------------- geometry


def test_the_first_view_is_the_detection_itself() -> None:
    det = Detection((10.0, 20.0, 110.0, 50.0), 0.9)
    views = view_detections(det, 3)
    assert len(views) == 3 == len(VIEWS)
    assert views[0] is det
    assert view_detections(det, 1) == [det]


def test_an_upright_box_grows_by_shares_of_its_width_and_height() -> None:
    det = Detection((100.0, 200.0, 300.0, 250.0), 0.8)  # 200 x 50
    wider = grow(det, 0.03, 0.0)
    assert wider.box == pytest.approx((94.0, 200.0, 306.0, 250.0))
    taller = grow(det, 0.03, 0.10)
    assert taller.box == pytest.approx((94.0, 195.0, 306.0, 255.0))
    assert taller.score == det.score


def test_a_tilted_plate_grows_along_its_own_edges() -> None:
    # A plate rotated by 30 degrees: growing it must keep the corners on the plate's lines.
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    w, h = 200.0, 50.0
    local = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
    corners = tuple((500 + x * c - y * s, 300 + x * s + y * c) for x, y in local)
    xs, ys = [p[0] for p in corners], [p[1] for p in corners]
    det = Detection((min(xs), min(ys), max(xs), max(ys)), 0.9, corners)  # type: ignore[arg-type]
    grown = grow(det, 0.05, 0.10)
    assert grown.corners is not None
    q = np.asarray(grown.corners)
    top, left = q[1] - q[0], q[3] - q[0]
    assert np.linalg.norm(top) == pytest.approx(w * 1.1)
    assert np.linalg.norm(left) == pytest.approx(h * 1.2)
    assert math.degrees(math.atan2(top[1], top[0])) == pytest.approx(30.0)
    assert q.mean(axis=0) == pytest.approx((500.0, 300.0))


# --------------------------------------------------------------------------- voting


def test_two_views_that_see_the_last_character_outvote_one_that_cut_it() -> None:
    read = combine_views([_read("LM298A", 1.0), _read("LM298AI", 0.95), _read("LM298AI", 0.9)])
    assert read.text == "LM298AI"
    assert read.status is PlateStatus.FULL
    assert 0.0 < read.confidence <= 1.0


def test_views_agreeing_keep_the_text_and_average_the_doubt() -> None:
    read = combine_views([_read("ABC123", 1.0), _read("ABC123", 0.8), _read("ABC123", 0.9)])
    assert read.text == "ABC123"
    assert all(s.prob == pytest.approx(0.9) for s in read.chars)


def test_a_badge_most_views_call_no_plate_stays_no_plate() -> None:
    none = Recognition("", 0.0, (), PlateStatus.NONE)
    read = combine_views([_read("TOYOTA", 0.4), none, none])
    assert read.status is PlateStatus.NONE


def test_the_status_most_views_gave_wins() -> None:
    reads = [
        _read("7ABC123", 0.9, PlateStatus.PAPER),
        _read("7ABC123", 0.9, PlateStatus.FULL),
        _read("7ABC123", 0.9, PlateStatus.PAPER),
    ]
    assert combine_views(reads).status is PlateStatus.PAPER


def test_one_view_is_passed_through() -> None:
    only = _read("XYZ9", 0.7)
    assert combine_views([only]) is only


# --------------------------------------------------------------------------- real models


class CountingRecognizer:
    """The real recognizer, counting the crops each call gets."""

    def __init__(self, inner: Recognizer) -> None:
        self.inner = inner
        self.batches: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def recognize(self, crops: Sequence[ImageArray]) -> list[Recognition]:
        self.batches.append(len(crops))
        return list(self.inner.recognize(crops))


def _scene_with_plate(text: str) -> tuple[ImageArray, tuple[float, float, float, float]]:
    plate, _ = render_plate_clean(np.random.default_rng(5), text, "us")
    scene = np.full((720, 1280, 3), 110, np.uint8)
    w = 260
    h = round(plate.shape[0] * w / plate.shape[1])
    scene[300 : 300 + h, 500 : 500 + w] = cv2.resize(plate, (w, h))
    return scene, (500.0, 300.0, 500.0 + w, 300.0 + h)


@needs_models
def test_the_reader_sends_every_view_of_every_plate_in_one_batch() -> None:
    reader = PlateReader.from_settings(ModelSettings(threads=1))
    assert reader.views == 3  # the default
    counting = CountingRecognizer(reader.recognizer)
    reader.recognizer = counting
    scene, (x1, y1, x2, y2) = _scene_with_plate("7KQM482")
    dets = [Detection((x1, y1, x2, y2), 0.9), Detection((10.0, 10.0, 150.0, 70.0), 0.5)]
    reader.recognize(scene, dets)
    assert counting.batches == [6]
    single = PlateReader(reader.detector, counting, views=1)
    single.recognize(scene, dets)
    assert counting.batches[-1] == 2


@needs_models
def test_views_read_a_plate_whose_box_cuts_into_its_last_character() -> None:
    scene, (x1, y1, x2, y2) = _scene_with_plate("7KQM482")
    three = PlateReader.from_settings(ModelSettings(threads=1))
    one = PlateReader(three.detector, three.recognizer, views=1)
    rescued = []
    # Boxes ending from inside the "6th" character to past the last (the text ends at about
    # 87 % of the plate's width).
    for share in np.arange(0.80, 0.96, 0.01):
        cut = Detection((x1, y1, x1 + float(share) * (x2 - x1), y2), 0.9)
        [single] = one.recognize(scene, [cut])
        [voted] = three.recognize(scene, [cut])
        alone = [three.recognizer.recognize([c])[0].text for c in _view_crops(scene, cut)]
        assert single.recognition.text == alone[0]
        if alone.count("7KQM482") >= 2:
            assert voted.recognition.text == "7KQM482", (share, alone)
        if single.recognition.text != "7KQM482" and voted.recognition.text == "7KQM482":
            rescued.append(round(float(share), 2))
    assert rescued, "no cut box that one view misreads and three views read whole"


def _view_crops(scene: ImageArray, det: Detection) -> list[ImageArray]:
    from edge.inference.rectify import rectify_plate

    return [rectify_plate(scene, v) for v in view_detections(det, 3)]


def _evaluate(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["evaluate", *args])
    out, err = capsys.readouterr()
    return code, out, err


@needs_models
def test_evaluate_reports_the_views_it_read_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene, (x1, y1, x2, y2) = _scene_with_plate("7KQM482")
    cv2.imwrite(str(tmp_path / "a.jpg"), scene)
    box = f"{int(x1)}\t{int(y1)}\t{int(x2 - x1)}\t{int(y2 - y1)}"
    (tmp_path / "a.txt").write_text(f"a.jpg\t{box}\t7KQM482\n")
    for views in ("1", "3"):
        code, out, err = _evaluate(
            str(tmp_path), "--recognizer-views", views, "--json", capsys=capsys
        )
        assert code == 0, err
        report = json.loads(out.strip().splitlines()[-1])
        assert report["recognizer_views"] == int(views)
        assert report["exact_match"] == 1.0
    code, _, err = _evaluate(str(tmp_path), "--recognizer-views", "2", capsys=capsys)
    assert code == EX_USAGE
    assert err.strip().splitlines() == [
        "alpr-edge: error: --recognizer-views 2: Input should be 1 or 3"
    ]
