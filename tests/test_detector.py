"""The shipped plate detector, run through the runtime class on scenes the test draws itself."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import ModelError
from edge.inference.detector import PlateDetector
from edge.inference.rectify import plate_crop, rectify_plate
from edge.inference.session import create_session, sha256_file
from edge.types import Detection, Point

MODEL = Path(__file__).resolve().parent.parent / "models" / "plate-detector.onnx"
REQUIRED_KEYS = {
    "name", "kind", "format", "version", "sha256", "input_size", "stride", "color",
    "normalize", "outputs", "training_data", "holdout", "accuracy", "opset", "created",
}  # fmt: skip


@pytest.fixture(scope="module")
def detector() -> PlateDetector:
    return PlateDetector(MODEL, threads=1)


def draw_scene(seed: int, size: tuple[int, int] = (1920, 1080)) -> np.ndarray:
    """A road, a sky, a building and a car body: the structure a plate sits in, no plate."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 3] = (200, 170, 140)
    img[h // 3 :] = (95, 95, 100)
    cv2.rectangle(img, (80, 60), (600, h // 3), (120, 130, 150), -1)
    for x in range(120, 560, 70):
        cv2.rectangle(img, (x, 100), (x + 40, 160), (60, 60, 70), -1)
    cv2.line(img, (w // 2, h // 3), (w // 2 - 300, h), (230, 230, 230), 12)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def draw_car(img: np.ndarray, cx: int, cy: int, width: int) -> None:
    h = int(width * 0.7)
    x0, y0 = cx - width // 2, cy - h // 2
    cv2.rectangle(img, (x0, y0), (x0 + width, y0 + h), (40, 40, 150), -1)
    cv2.rectangle(img, (x0 + width // 8, y0 + h // 20), (x0 + width * 7 // 8, y0 + h * 2 // 5),
                  (35, 35, 35), -1)  # fmt: skip
    for sx in (x0 + width // 8, x0 + width * 7 // 8):
        cv2.ellipse(img, (sx, y0 + h * 11 // 20), (width // 14, h // 16), 0, 0, 360,
                    (230, 230, 230), -1)  # fmt: skip


def draw_plate(img: np.ndarray, x: int, y: int, char_height: int) -> tuple[int, int, int, int]:
    """A white European-style plate with dark characters ``char_height`` pixels tall."""
    text = "AB 123 CD"
    scale = char_height / 22.0  # FONT_HERSHEY_DUPLEX capitals are ~22 px at scale 1
    thick = max(1, round(char_height / 7))
    (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, scale, thick)
    pw, ph = int(tw * 1.12), int(char_height * 2.0)
    cv2.rectangle(img, (x, y), (x + pw, y + ph), (235, 235, 235), -1)
    cv2.rectangle(img, (x, y), (x + pw, y + ph), (20, 20, 20), max(1, ph // 20))
    cv2.putText(img, text, (x + int(tw * 0.06), y + (ph + char_height) // 2),
                cv2.FONT_HERSHEY_DUPLEX, scale, (20, 20, 20), thick, cv2.LINE_AA)  # fmt: skip
    return (x, y, x + pw, y + ph)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_manifest_has_what_the_runtime_and_operators_need(detector: PlateDetector) -> None:
    assert detector.manifest.keys() >= REQUIRED_KEYS
    assert detector.manifest["kind"] == "plate-detector"
    assert detector.manifest["opset"] >= 17
    assert detector.version == f"plate-detector@{sha256_file(MODEL)[:12]}"
    assert MODEL.stat().st_size < 3 * 1024 * 1024


@pytest.mark.parametrize("char_height", [15, 40])
def test_finds_plate_at_known_place_in_1080p_frame(
    detector: PlateDetector, char_height: int
) -> None:
    frame = draw_scene(1)
    car_w = char_height * 30
    draw_car(frame, 1100, 620, car_w)
    truth = draw_plate(frame, 1100 - char_height * 3, 620 + car_w // 8, char_height)
    original = frame.copy()

    found = detector.detect(frame)

    assert np.array_equal(frame, original), "the caller's frame must not be modified"
    assert found, "no plate found"
    best = max(found, key=lambda d: iou(d.box, truth))
    assert iou(best.box, truth) >= 0.5, (best, truth)
    assert best.corners is not None
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)


INT8_MODEL = MODEL.with_name("plate-detector-int8.onnx")


@pytest.mark.parametrize("char_height", [15, 40])
def test_int8_variant_finds_the_plate_where_the_fp32_model_does(char_height: int) -> None:
    if not INT8_MODEL.is_file():
        pytest.skip("no INT8 detector shipped (the export dropped it; see the FP32 manifest)")
    int8 = PlateDetector(INT8_MODEL, threads=1)
    assert int8.manifest["kind"] == "plate-detector"
    assert INT8_MODEL.stat().st_size < MODEL.stat().st_size
    frame = draw_scene(1)
    car_w = char_height * 30
    draw_car(frame, 1100, 620, car_w)
    truth = draw_plate(frame, 1100 - char_height * 3, 620 + car_w // 8, char_height)
    found = int8.detect(frame)
    assert found, "no plate found"
    assert iou(max(found, key=lambda d: iou(d.box, truth)).box, truth) >= 0.5


def test_scene_without_plate_gives_no_confident_detection(detector: PlateDetector) -> None:
    frame = draw_scene(2)
    draw_car(frame, 1100, 620, 600)

    found = detector.detect(frame)

    assert all(d.score < 0.5 for d in found), found
    assert len(found) <= 2, found


def test_detects_in_small_and_odd_sized_images(detector: PlateDetector) -> None:
    frame = draw_scene(3, size=(333, 187))
    draw_car(frame, 160, 100, 150)
    draw_plate(frame, 140, 115, 10)
    for d in detector.detect(frame):
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= 333 and 0 <= y1 < y2 <= 187, d
        assert d.corners is not None
        assert all(0 <= x <= 333 and 0 <= y <= 187 for x, y in d.corners), d


def test_sessions_do_not_spin_between_calls() -> None:
    session = create_session(MODEL, threads=2)
    options = session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 2


def test_truncated_model_raises_model_error_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "plate-detector.onnx"
    data = MODEL.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    manifest = json.loads(MODEL.with_suffix(".json").read_text(encoding="utf-8"))
    manifest["sha256"] = sha256_file(bad)  # so the load gets past the checksum to onnxruntime
    bad.with_suffix(".json").write_text(json.dumps(manifest), encoding="utf-8")

    with pytest.raises(ModelError, match=re.escape(str(bad))):
        PlateDetector(bad)


def test_model_with_wrong_outputs_raises_model_error(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["heatmap"])],
        "wrong",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["n", 3, "h", "w"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    wrong = tmp_path / "wrong.onnx"
    onnx.save(model, str(wrong))
    manifest = json.loads(MODEL.with_suffix(".json").read_text(encoding="utf-8"))
    manifest["sha256"] = sha256_file(wrong)
    wrong.with_suffix(".json").write_text(json.dumps(manifest), encoding="utf-8")

    with pytest.raises(ModelError, match=re.escape(str(wrong))):
        PlateDetector(wrong)


def test_sha_mismatch_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "plate-detector.onnx"
    shutil.copy(MODEL, copy)
    shutil.copy(MODEL.with_suffix(".json"), copy.with_suffix(".json"))
    with copy.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match="sha256"):
        PlateDetector(copy)


# -- rectification ----------------------------------------------------------------------------


def tilted_plate_image() -> tuple[np.ndarray, tuple[Point, Point, Point, Point]]:
    """A 4:1 plate, left half black and right half white, warped to a known quadrilateral."""
    plate = np.zeros((50, 200, 3), np.uint8)
    plate[:, 100:] = 255
    corners = ((120.0, 80.0), (330.0, 110.0), (325.0, 160.0), (118.0, 132.0))
    src = np.array([[0, 0], [200, 0], [200, 50], [0, 50]], np.float32)
    m = cv2.getPerspectiveTransform(src, np.array(corners, np.float32))
    img = np.full((240, 400, 3), 128, np.uint8)
    mask = cv2.warpPerspective(np.ones((50, 200), np.uint8), m, (400, 240))
    warped = cv2.warpPerspective(plate, m, (400, 240))
    img[mask > 0] = warped[mask > 0]
    return img, corners


def test_rectify_plate_gives_upright_crop_of_the_plate_aspect() -> None:
    img, corners = tilted_plate_image()
    det = Detection(box=(118.0, 80.0, 330.0, 160.0), score=0.9, corners=corners)

    crop = rectify_plate(img, det, margin=0.08, height=64)

    top = np.hypot(210, 30)
    bottom = np.hypot(207, 28)
    side = (np.hypot(2, 52) + np.hypot(5, 50)) / 2
    aspect = ((top + bottom) / 2 / side + 0.16) / 1.16
    assert crop.shape[0] == 64
    assert abs(crop.shape[1] / 64 - aspect) < 0.1 * aspect
    mid = crop[20:44]
    quarter = crop.shape[1] // 4
    # upright: black on the left, white on the right, not mirrored or rotated
    assert mid[:, quarter - 5 : quarter + 5].mean() < 60
    assert mid[:, 3 * quarter - 5 : 3 * quarter + 5].mean() > 195


def test_rectify_falls_back_to_box_and_never_returns_empty() -> None:
    img = np.zeros((100, 100, 3), np.uint8)
    for box in [(10.0, 10.0, 50.0, 20.0), (99.0, 99.0, 99.0, 99.0), (-50.0, -50.0, -40.0, -45.0)]:
        crop = rectify_plate(img, Detection(box=box, score=0.5))
        assert crop.shape[0] == 64 and crop.shape[1] >= 1 and crop.shape[2] == 3


def test_plate_crop_keeps_a_small_margin_and_clips_to_the_image() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    crop = plate_crop(img, Detection(box=(50.0, 40.0, 130.0, 60.0), score=0.5), margin=0.15)
    assert crop.shape[:2] == (26, 86)
    outside = plate_crop(img, Detection(box=(250.0, 150.0, 300.0, 170.0), score=0.5))
    assert outside.size > 0
