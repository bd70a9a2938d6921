"""Foreign model formats: fast-plate-ocr recognizers and YOLOv9 end-to-end detectors.

The models are the project's own tiny exports in those formats (tests/data/, made by
scripts/export_foreign_formats.py): the fast-plate-ocr one reads AB12CD on a bright crop and
nothing on a dark one; the YOLOv9 one boxes the white pixels of the frame.
"""

from __future__ import annotations

import importlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_detector import RECOGNIZER, write_tiny_detector

from edge.config import ModelSettings
from edge.errors import ModelError
from edge.evaluate import evaluate_crops
from edge.inference.detector import PlateDetector
from edge.inference.formats import (
    load_detector,
    load_recognizer,
    recognizer_format,
    write_manifest,
)
from edge.inference.formats.fast_plate_ocr import FastPlateOcrRecognizer
from edge.inference.formats.plate_config import parse_flat_yaml, read_plate_config
from edge.inference.formats.yolov9_e2e import Yolov9PlateDetector
from edge.inference.recognizer import PlateRecognizer
from edge.inference.session import sha256_file
from edge.pipeline import PlateReader
from edge.types import PlateStatus

yaml: Any
try:  # PyYAML is not a dependency; the cross-check runs where it is installed
    yaml = importlib.import_module("yaml")
except ImportError:
    yaml = None

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
OCR = DATA / "fast-plate-ocr-tiny.onnx"
YOLO = DATA / "yolov9-e2e-tiny.onnx"
TEXT = "AB12CD"
PLATE_BOX = (200, 240, 400, 300)
"""x1, y1, x2, y2 of the white plate in the test frames."""


def _softmax_prob(best: float, runner_up: float | None, classes: int) -> tuple[float, float]:
    """Probabilities of the best and runner-up characters of a slot with those logits and 0
    for every other class (as scripts/export_foreign_formats.py sets them)."""
    rest = classes - (2 if runner_up is not None else 1)
    total = math.exp(best) + (math.exp(runner_up) if runner_up is not None else 0.0) + rest
    return math.exp(best) / total, (math.exp(runner_up) / total if runner_up else 0.0)


def _copy(model: Path, directory: Path, *, manifest: bool = True, yaml: bool = True) -> Path:
    target = directory / model.name
    shutil.copyfile(model, target)
    for suffix, wanted in ((".json", manifest), (".yaml", yaml)):
        if wanted and model.with_suffix(suffix).is_file():
            shutil.copyfile(model.with_suffix(suffix), target.with_suffix(suffix))
    return target


def _frame(height: int, width: int) -> np.ndarray:
    image = np.full((height, width, 3), 30, np.uint8)
    x1, y1, x2, y2 = PLATE_BOX
    image[y1:y2, x1:x2] = 255
    return image


# -- fast-plate-ocr ------------------------------------------------------------------------------


def test_fast_plate_ocr_reads_known_text_with_char_probs_and_drops_padding() -> None:
    recognizer = load_recognizer(OCR)
    assert isinstance(recognizer, FastPlateOcrRecognizer)
    assert recognizer.version.startswith("fast-plate-ocr-tiny@")
    bright = np.full((40, 170, 3), 255, np.uint8)
    dark = np.zeros((30, 90, 3), np.uint8)
    empty = np.zeros((0, 10, 3), np.uint8)

    read, nothing, skipped, gray = recognizer.recognize(
        [bright, dark, empty, np.full((50, 150), 255, np.uint8)]
    )

    assert read.text == TEXT  # 8 slots, the two pad slots dropped
    assert read.status is PlateStatus.FULL
    classes = len(recognizer.alphabet)
    plain, _ = _softmax_prob(5.0, None, classes)
    best, second = _softmax_prob(5.0, 3.0, classes)
    probs = {c.char: c.prob for c in read.chars}
    assert probs["A"] == pytest.approx(plain, abs=1e-4)
    assert probs["B"] == pytest.approx(best, abs=1e-4)
    b_slot = read.chars[1]
    assert b_slot.alternatives[0].char == "8"
    assert b_slot.alternatives[0].prob == pytest.approx(second, abs=1e-4)
    assert all(a.char != "_" for c in read.chars for a in c.alternatives)
    assert read.confidence == pytest.approx(math.prod(c.prob for c in read.chars), rel=1e-5)
    assert (nothing.text, nothing.status, nothing.chars) == ("", PlateStatus.NONE, ())
    assert skipped.status is PlateStatus.NONE
    assert gray.text == TEXT


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("max_plate_slots", "7", "max_plate_slots 7 x alphabet of 37 = 259"),
        ("alphabet", "'0123456789ABCDEFGHIJKLMNOPQRSTUVWXY_'", "alphabet of 36"),
        ("img_width", "96", "does not fit the plate config"),
    ],
)
def test_plate_config_that_does_not_fit_the_graph_names_the_file(
    tmp_path: Path, key: str, value: str, reason: str
) -> None:
    model = _copy(OCR, tmp_path, manifest=False)
    yaml_path = model.with_suffix(".yaml")
    lines = [
        f"{key}: {value}" if line.startswith(f"{key}:") else line
        for line in yaml_path.read_text(encoding="utf-8").splitlines()
    ]
    yaml_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    with pytest.raises(ModelError) as raised:
        write_manifest(model, "fast-plate-ocr")

    assert str(model) in raised.value.message
    assert reason in raised.value.message
    assert not model.with_suffix(".json").exists()  # nothing left behind


def test_plate_config_edited_after_the_manifest_is_refused(tmp_path: Path) -> None:
    model = _copy(OCR, tmp_path)
    yaml_path = model.with_suffix(".yaml")
    yaml_path.write_text(
        yaml_path.read_text(encoding="utf-8").replace("pad_char: '_'", "pad_char: 'Z'"),
        encoding="utf-8",
    )

    with pytest.raises(ModelError, match=r"differs from the one in the manifest"):
        load_recognizer(model)


def test_manifest_carries_the_plate_config_so_the_model_loads_without_its_yaml(
    tmp_path: Path,
) -> None:
    model = _copy(OCR, tmp_path, yaml=False)  # as in the known-good copy: .onnx and .json

    recognizer = load_recognizer(model)

    assert recognizer.recognize([np.full((40, 170, 3), 255, np.uint8)])[0].text == TEXT


def test_manifest_without_format_is_placed_by_the_yaml_beside_the_model(tmp_path: Path) -> None:
    model = _copy(OCR, tmp_path, manifest=False)
    model.with_suffix(".json").write_text(json.dumps({"sha256": sha256_file(model)}))

    assert recognizer_format(model) == "fast-plate-ocr"
    with pytest.raises(ModelError, match="expected 'plate-recognizer'/'fast-plate-ocr'"):
        load_recognizer(model)  # a bare manifest still has to say what the model is


def test_foreign_model_without_manifest_says_how_to_write_one(tmp_path: Path) -> None:
    model = _copy(OCR, tmp_path, manifest=False)

    with pytest.raises(ModelError, match=r"make_manifest\.py .*--format"):
        load_recognizer(model)


def test_foreign_model_changed_after_its_manifest_fails_the_sha256_check(tmp_path: Path) -> None:
    model = _copy(YOLO, tmp_path)
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))

    with pytest.raises(ModelError, match="sha256"):
        load_detector(model)


# -- YOLOv9 end-to-end ---------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width"), [(480, 800), (800, 480)])
def test_yolov9_box_comes_back_in_original_pixels_of_a_non_square_frame(
    height: int, width: int
) -> None:
    detector = load_detector(YOLO, score_threshold=0.5)
    assert isinstance(detector, Yolov9PlateDetector)

    found = detector.detect(_frame(height, width))

    assert len(found) == 1
    assert found[0].box == pytest.approx(PLATE_BOX, abs=1.0)
    assert found[0].score == pytest.approx(0.9, abs=1e-5)
    assert found[0].corners is None
    assert detector.detect(np.zeros((height, width, 3), np.uint8)) == []


def test_yolov9_score_threshold_drops_weaker_boxes() -> None:
    detector = load_detector(YOLO, score_threshold=0.95)

    assert detector.detect(_frame(480, 800)) == []


def test_graph_that_is_not_yolov9_e2e_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "detector.onnx"
    shutil.copyfile(OCR, model)

    with pytest.raises(ModelError) as raised:
        write_manifest(model, "yolov9-e2e")

    assert str(model) in raised.value.message
    assert "not YOLOv9 end-to-end" in raised.value.message


def test_yolov9_fixed_input_size_cannot_be_changed_by_config() -> None:
    with pytest.raises(ModelError, match="fixed at 320"):
        load_detector(YOLO, input_size=640)


def test_detector_manifest_without_format_is_placed_by_the_graph(tmp_path: Path) -> None:
    model = _copy(YOLO, tmp_path, manifest=False)
    model.with_suffix(".json").write_text(json.dumps({"sha256": sha256_file(model)}))

    with pytest.raises(ModelError, match="expected 'plate-detector'/'yolov9-e2e'"):
        load_detector(model)


# -- make_manifest -------------------------------------------------------------------------------


def test_make_manifest_writes_a_loadable_manifest_and_keeps_an_existing_one(
    tmp_path: Path,
) -> None:
    model = _copy(YOLO, tmp_path, manifest=False)
    command = [sys.executable, str(REPO / "scripts" / "make_manifest.py"), str(model)]

    made = subprocess.run([*command, "--format", "yolov9-e2e"], capture_output=True, text=True)
    again = subprocess.run([*command, "--format", "yolov9-e2e"], capture_output=True, text=True)

    assert made.returncode == 0, made.stderr
    manifest = json.loads(model.with_suffix(".json").read_text())
    assert manifest["sha256"] == sha256_file(model)
    assert (manifest["kind"], manifest["format"]) == ("plate-detector", "yolov9-e2e")
    assert again.returncode == 65
    assert "exists" in again.stderr
    assert isinstance(load_detector(model), Yolov9PlateDetector)


# -- the pipeline --------------------------------------------------------------------------------


def test_plate_reader_reads_end_to_end_with_both_foreign_models() -> None:
    reader = PlateReader.from_settings(
        ModelSettings(detector=YOLO, recognizer=OCR, detector_threshold=0.5)
    )
    reader.warm_up()

    results = reader.read(_frame(480, 800))

    assert [r.recognition.text for r in results] == [TEXT]
    assert results[0].detection.box == pytest.approx(PLATE_BOX, abs=1.0)


def test_plate_reader_with_our_detector_and_a_fast_plate_ocr_recognizer(tmp_path: Path) -> None:
    detector = write_tiny_detector(tmp_path / "plate-detector.onnx")
    reader = PlateReader.from_settings(ModelSettings(detector=detector, recognizer=OCR))

    results = reader.read(_frame(480, 800))

    assert isinstance(reader.detector, PlateDetector)
    assert results
    assert {r.recognition.text for r in results} == {TEXT}


def test_plate_reader_with_a_yolov9_detector_and_our_recognizer(tmp_path: Path) -> None:
    recognizer = _copy(RECOGNIZER, tmp_path)
    reader = PlateReader.from_settings(
        ModelSettings(detector=YOLO, recognizer=recognizer, detector_threshold=0.5)
    )
    image = _frame(480, 800)

    detections = reader.detect(image)
    results = reader.recognize(image, detections)

    assert isinstance(reader.recognizer, PlateRecognizer)
    assert [d.box for d in detections] == [pytest.approx(PLATE_BOX, abs=1.0)]
    assert all(r.detection in detections for r in results)


def test_evaluate_on_crops_runs_a_fast_plate_ocr_recognizer(tmp_path: Path) -> None:
    for name, value in (("white.png", 255), ("black.png", 0)):
        cv2.imwrite(str(tmp_path / name), np.full((40, 160, 3), value, np.uint8))
    (tmp_path / "labels.csv").write_text("file,text\nwhite.png,AB12CD\nblack.png,AB12CD\n")

    report = evaluate_crops(tmp_path, ModelSettings(recognizer=OCR), 0, "all")

    assert str(report.info["recognizer"]).startswith("fast-plate-ocr-tiny@")
    assert report.metrics["exact_match"] == pytest.approx(0.5)


# -- the plate config reader ---------------------------------------------------------------------


def test_plate_config_reader_takes_fast_plate_ocr_layouts(tmp_path: Path) -> None:
    path = tmp_path / "plate_config.yaml"
    path.write_text(
        "---\n# Latin plates\nmax_plate_slots: 9  # heads\n"
        'alphabet: "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_"\npad_char: _\n'
        "img_height: 64\nimg_width: 128\nkeep_aspect_ratio: true\ninterpolation: area\n"
        "image_color_mode: rgb\npadding_color: [1, 2, 3]\nplate_regions:\n  - Argentina\n"
        "  - 'Côte d''Ivoire'\n",
        encoding="utf-8",
    )

    config = read_plate_config(path)

    assert (config.max_plate_slots, config.pad_char, config.channels) == (9, "_", 3)
    assert (config.keep_aspect_ratio, config.interpolation) == (True, "area")
    assert config.padding_color == (1, 2, 3)
    assert config.plate_regions == ("Argentina", "Côte d'Ivoire")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_plate_slots: 9\nnested:\n  key: 1\n", "line 3: indented line"),
        ("max_plate_slots: &a 9\n", "line 1: unsupported YAML syntax '&'"),
        ("alphabet: 'ABC\n", "line 1: unclosed ' quote"),
        ("img_height: 64\nimg_height: 70\n", "line 2: 'img_height' appears twice"),
        ("- A\n", "line 1: a list item"),
        ("max_plate_slots: 9\ncolour: red\n", "unknown key(s) colour"),
        ("max_plate_slots: 9\n", "missing alphabet, pad_char, img_height, img_width"),
    ],
)
def test_plate_config_reader_refuses_what_it_cannot_read_exactly(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ModelError) as raised:
        read_plate_config(path)

    assert str(path) in raised.value.message
    assert message in raised.value.message


_PLAIN_CHARS = st.characters(
    categories=("L", "N", "P", "S"), exclude_characters="\x85\u2028\u2029\ufeff"
)


@settings(max_examples=200, deadline=None)
@given(
    alphabet=st.lists(_PLAIN_CHARS, min_size=2, max_size=40, unique=True).map("".join),
    slots=st.integers(1, 20),
    regions=st.lists(st.text(_PLAIN_CHARS, min_size=1, max_size=12), max_size=4),
    padding=st.integers(0, 255),
)
def test_plate_config_round_trips_quoted_values(
    alphabet: str, slots: int, regions: list[str], padding: int
) -> None:
    def quoted(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    text = (
        f"max_plate_slots: {slots}\nalphabet: {quoted(alphabet)}  # any characters\n"
        f"pad_char: {quoted(alphabet[-1])}\nimg_height: 32\nimg_width: 96\n"
        f"padding_color: {padding}\nplate_regions:\n"
        + "".join(f"  - {quoted(r)}\n" for r in regions)
    )

    parsed = parse_flat_yaml(text, Path("generated.yaml"))

    assert parsed["alphabet"] == alphabet
    assert parsed["pad_char"] == alphabet[-1]
    assert parsed["plate_regions"] == (regions or None)
    if yaml is not None:  # the general parser agrees where it is installed (not a dependency)
        assert parsed == yaml.safe_load(text)
