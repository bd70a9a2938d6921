"""Vehicle type, colour, plate region and make/model: the shipped ONNX classifiers, the vehicle
box from the plate, votes over a pass, thresholds, and models that are missing or dropped in."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.config import CameraSettings, ModelSettings, Settings, TrackingSettings
from edge.errors import ModelError
from edge.evaluate import detect_layout, evaluate_vehicles
from edge.events import ReadEvent, encode_payload, read_event_schema, to_payload, wire_payload
from edge.inference.attributes import AttributeClassifier, AttributeModels, decide
from edge.inference.session import sha256_file
from edge.pipeline import PlateReader
from edge.processor import FrameProcessor
from edge.signing import EventSigner
from edge.tracker import PlateTracker
from edge.types import (
    CharSlot,
    Detection,
    Frame,
    LabelScores,
    PlateObservation,
    PlateStatus,
    Recognition,
)
from edge.vehicle import vehicle_box, vote_attributes, vote_labels

MODELS = Path(__file__).resolve().parents[1] / "models"
SHIPPED = {
    "vehicle_type": MODELS / "vehicle-type.onnx",
    "vehicle_colour": MODELS / "vehicle-colour.onnx",
    "plate_region": MODELS / "plate-region.onnx",
}
T0 = datetime(2026, 11, 29, 6, 18, 3, tzinfo=UTC)
FRAME_HW = (720, 1280)


def observation(t: float, **scores: LabelScores) -> PlateObservation:
    text = "ABC123"
    chars = tuple(CharSlot(c, 0.99) for c in text)
    return PlateObservation(
        frame_index=int(t * 25),
        captured_at=T0,
        monotonic=t,
        detection=Detection((600, 500, 680, 540), 0.9),
        recognition=Recognition(text, 0.95, chars, PlateStatus.FULL),
        crop=np.full((30, 60, 3), 200, np.uint8),
        **scores,
    )


def scene() -> np.ndarray:
    """A grey road with a red car body and a white plate where ``observation`` puts it."""
    image = np.full((*FRAME_HW, 3), 90, np.uint8)
    cv2.rectangle(image, (420, 330), (860, 600), (30, 30, 200), -1)
    cv2.rectangle(image, (600, 500), (680, 540), (235, 235, 235), -1)
    return image


# --------------------------------------------------------------------------- shipped models


@pytest.mark.parametrize("attribute", sorted(SHIPPED))
def test_shipped_classifier_gives_manifest_labels_with_probabilities(attribute: str) -> None:
    model = AttributeClassifier(SHIPPED[attribute], attribute=attribute, threads=1)
    manifest = json.loads(SHIPPED[attribute].with_suffix(".json").read_text())
    assert manifest["sha256"] == sha256_file(SHIPPED[attribute])
    assert 0.0 <= manifest["heldout"]["accuracy"] <= 1.0
    rng = np.random.default_rng(0)
    crops = [
        rng.integers(0, 255, (100, 100, 3), dtype=np.uint8),
        np.full((40, 90, 3), 30, np.uint8),
        np.full((200, 120, 3), 220, np.uint8),
    ]
    results = model.classify(crops)
    assert len(results) == len(crops)
    for result in results:
        probs = [p for _, p in result.scores]
        assert all(label in model.labels for label, _ in result.scores)
        assert all(0.0 <= p <= 1.0 for p in probs)
        assert probs == sorted(probs, reverse=True)
        assert sum(probs) <= 1.0 + 1e-3
    assert model.classify([]) == []


def test_below_threshold_is_none() -> None:
    unsure = LabelScores((("car", 0.42), ("van", 0.3)))
    assert decide(unsure, 0.5) is None
    assert decide(unsure, 0.4) == ("car", 0.42)
    assert decide(None, 0.0) is None


def test_processor_sends_null_below_threshold_and_label_above() -> None:
    camera = CameraSettings(id="cam", source="file:///x.mp4")
    models = ModelSettings(vehicle_type_threshold=0.6, vehicle_colour_threshold=0.3)
    settings = Settings(device_id="d", cameras=[camera], models=models)
    reader = PlateReader.from_settings(settings.models)
    processor = FrameProcessor(camera, reader, settings)
    scores = {
        "vehicle_type": LabelScores((("pickup", 0.55), ("car", 0.4))),
        "vehicle_colour": LabelScores((("white", 0.55), ("grey", 0.4))),
    }
    processor.tracker.update(0.0, [observation(0.0, **scores)])
    processor.tracker.update(0.04, [observation(0.04, **scores)])
    (vehicle_pass,) = processor.idle(5.0)
    assert vehicle_pass.vehicle_type is None
    assert vehicle_pass.vehicle_type_confidence is None
    assert vehicle_pass.vehicle_colour == "white"
    assert vehicle_pass.vehicle_colour_confidence == pytest.approx(0.55)


# --------------------------------------------------------------------------- votes


def test_vote_picks_the_weighted_majority_over_a_pass() -> None:
    red = LabelScores((("red", 0.6), ("other", 0.3)))
    other = LabelScores((("other", 0.7), ("red", 0.2)))
    voted = vote_labels([red, red, other, None])
    assert voted is not None and voted[0] == "red"
    assert voted[1] == pytest.approx(1.4 / 3, abs=1e-4)
    # a frame that saw only a sliver of the vehicle counts for less
    weighted = vote_labels([LabelScores(red.scores, weight=0.1), other])
    assert weighted is not None and weighted[0] == "other"
    assert vote_labels([None, None]) is None


def test_tracker_votes_type_colour_region_over_the_pass() -> None:
    tracker = PlateTracker("cam", TrackingSettings())
    frames = [
        {"vehicle_type": "pickup", "vehicle_colour": "white", "region": "TX"},
        {"vehicle_type": "pickup", "vehicle_colour": "grey", "region": "TX"},
        {"vehicle_type": "car", "vehicle_colour": "white", "region": "OK"},
        {},
    ]
    for i, labels in enumerate(frames):
        scores = {k: LabelScores(((v, 0.8), ("other", 0.1))) for k, v in labels.items()}
        tracker.update(i * 0.04, [observation(i * 0.04, **scores)])
    (vehicle_pass,) = tracker.flush()
    assert (vehicle_pass.vehicle_type, vehicle_pass.vehicle_colour) == ("pickup", "white")
    assert vehicle_pass.region == "TX"
    assert vehicle_pass.region_confidence == pytest.approx(0.8 * 2 / 3, abs=1e-3)
    assert vehicle_pass.vehicle_make is None


# --------------------------------------------------------------------------- vehicle box


def test_vehicle_box_is_around_and_above_the_plate() -> None:
    plate = Detection((600, 500, 680, 540), 0.9)  # 80 px wide US plate: 262 px a metre
    box, inside = vehicle_box(plate, FRAME_HW)  # type: ignore[misc]
    x1, y1, x2, y2 = box
    assert x1 < 600 and x2 > 680 and y2 > 540
    assert 520 - y1 > 5 * plate.height  # reaches well above the plate: bonnet and roof
    assert (x2 - x1) > 5 * plate.width  # a car is about six US plates wide
    assert inside == pytest.approx(1.0)


@pytest.mark.parametrize(
    "box",
    [(0, 690, 90, 719), (1200, 0, 1279, 40), (620, 700, 700, 719), (-30, 300, 40, 330)],
)
def test_vehicle_box_is_clipped_to_the_frame(box: tuple[float, float, float, float]) -> None:
    found = vehicle_box(Detection(box, 0.9), FRAME_HW)
    assert found is not None
    (x1, y1, x2, y2), inside = found
    assert 0 <= x1 < x2 <= FRAME_HW[1] and 0 <= y1 < y2 <= FRAME_HW[0]
    assert 0.0 < inside < 1.0


def test_vehicle_box_of_a_long_eu_plate_is_narrower_per_plate_width() -> None:
    us = vehicle_box(Detection((600, 500, 680, 540), 0.9), FRAME_HW)
    eu = vehicle_box(Detection((600, 500, 680, 518), 0.9), FRAME_HW)
    assert us is not None and eu is not None
    assert eu[0][2] - eu[0][0] < us[0][2] - us[0][0]


def test_degenerate_plate_gives_no_vehicle_box() -> None:
    assert vehicle_box(Detection((10, 10, 10.5, 30), 0.9), FRAME_HW) is None


# --------------------------------------------------------------------------- missing models


def test_missing_model_turns_its_attribute_off_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ModelSettings(vehicle_type=tmp_path / "gone.onnx", threads=1)
    with caplog.at_level(logging.WARNING):
        models = AttributeModels.from_settings(settings)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "gone.onnx" in warnings[0].getMessage()
    assert models.vehicle_type is None
    assert models.vehicle_colour is not None and models.plate_region is not None
    (annotated,) = models.annotate(scene(), [observation(0.0)])
    assert annotated.vehicle_type is None
    assert annotated.vehicle_colour is not None and annotated.region is not None
    # the vehicle pixels are not kept anywhere: the observation's only image is the plate crop
    assert annotated.crop is not None and annotated.crop.shape == (30, 60, 3)


def test_daemon_pieces_work_without_any_attribute_model(tmp_path: Path) -> None:
    camera = CameraSettings(id="cam", source="file:///x.mp4")
    models = ModelSettings(
        vehicle_type=tmp_path / "a.onnx",
        vehicle_colour=tmp_path / "b.onnx",
        plate_region=tmp_path / "c.onnx",
    )
    settings = Settings(device_id="d", cameras=[camera], models=models)
    processor = FrameProcessor(camera, PlateReader.from_settings(models), settings)
    assert not processor.attributes.enabled
    frame = Frame("cam", 0, T0, 0.0, scene())
    assert processor.process(frame, 0.0) == []
    processor.tracker.update(0.1, [observation(0.1)])
    processor.tracker.update(0.14, [observation(0.14)])
    assert all(p.vehicle_type is None and p.region is None for p in processor.flush())


def test_corrupt_model_is_refused_by_sha256_and_turned_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = tmp_path / "vehicle-colour.onnx"
    model.write_bytes(SHIPPED["vehicle_colour"].read_bytes() + b"x")
    model.with_suffix(".json").write_text(
        SHIPPED["vehicle_colour"].with_suffix(".json").read_text()
    )
    with pytest.raises(ModelError, match="sha256"):
        AttributeClassifier(model, attribute="vehicle_colour")
    with caplog.at_level(logging.WARNING):
        models = AttributeModels.from_settings(ModelSettings(vehicle_colour=model))
    assert models.vehicle_colour is None
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


# --------------------------------------------------------------------------- make and model


def tiny_classifier(path: Path, classes: int, *, labels: list[str] | None = None) -> Path:
    """A 16x16 BGR classifier: mean colour per channel -> a linear layer."""
    rng = np.random.default_rng(1)
    weight = numpy_helper.from_array(rng.normal(size=(3, classes)).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(classes, np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["mm"]),
            helper.make_node("Add", ["mm", "b"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", classes])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    manifest: dict[str, Any] = {
        "name": "agency-make-model",
        "kind": "attribute-classifier",
        "attribute": "make_model",
        "input_height": 16,
        "input_width": 16,
        "color": "rgb",
        "normalize": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "output": "logits",
        "sha256": sha256_file(path),
    }
    if labels is not None:
        manifest["labels"] = labels
    path.with_suffix(".json").write_text(json.dumps(manifest))
    return path


def test_make_model_classifier_with_label_file_is_loaded_and_voted(tmp_path: Path) -> None:
    model = tiny_classifier(tmp_path / "make-model.onnx", 3)
    labels = tmp_path / "labels.txt"
    labels.write_text("Toyota|Corolla\nFord|F-150\n\nTesla|Model 3\n", encoding="utf-8")
    settings = ModelSettings(make_model=model, make_model_labels=labels, threads=1)
    models = AttributeModels.from_settings(settings)
    assert models.make_model is not None
    assert models.make_model.labels == ("Toyota|Corolla", "Ford|F-150", "Tesla|Model 3")
    observations = models.annotate(scene(), [observation(0.0), observation(0.04)])
    scores = observations[0].make_model
    assert scores is not None and scores.scores[0][0] in models.make_model.labels
    voted = vote_attributes(observations)
    assert f"{voted.vehicle_make}|{voted.vehicle_model}" == scores.scores[0][0]
    assert voted.make_model_confidence is not None and 0 < voted.make_model_confidence <= 1


def test_make_model_is_off_unless_configured_and_labels_must_fit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert AttributeModels.from_settings(ModelSettings()).make_model is None
    model = tiny_classifier(tmp_path / "mm.onnx", 3)
    labels = tmp_path / "labels.txt"
    labels.write_text("Toyota|Corolla\nFord|F-150\n", encoding="utf-8")
    with pytest.raises(ModelError, match="does not fit 2 labels"):
        AttributeClassifier(model, attribute="make_model", labels_file=labels)
    with caplog.at_level(logging.WARNING):
        models = AttributeModels.from_settings(
            ModelSettings(make_model=model, make_model_labels=labels)
        )
    assert models.make_model is None
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    with pytest.raises(ValueError, match="together"):
        ModelSettings(make_model=model)
    labels.write_text("Ford|Focus\nFord|Focus\nKia|Rio\n", encoding="utf-8")
    with pytest.raises(ModelError, match="distinct"):
        AttributeClassifier(model, attribute="make_model", labels_file=labels)


# --------------------------------------------------------------------------- the read


def test_read_carries_voted_attributes_and_validates(
    make_event: Callable[..., ReadEvent], signer: EventSigner
) -> None:
    event = make_event(
        region="TX",
        region_confidence=0.71,
        vehicle_type="pickup",
        vehicle_type_confidence=0.8123456,
        vehicle_colour="white",
        vehicle_colour_confidence=0.9,
    )
    payload = to_payload(event, seq=1)
    assert payload["plate"]["region"] == {"code": "TX", "confidence": 0.71}
    vehicle = payload["vehicle"]
    assert (vehicle["type"], vehicle["type_confidence"]) == ("pickup", 0.8123)
    assert (vehicle["color"], vehicle["color_confidence"]) == ("white", 0.9)
    assert vehicle["make"] is None and vehicle["make_model_confidence"] is None
    validator = jsonschema.Draft202012Validator(read_event_schema())
    validator.validate(json.loads(wire_payload(encode_payload(payload), None, signer.sign)))


# --------------------------------------------------------------------------- evaluate


def test_evaluate_reports_type_and_colour_accuracy_on_labelled_crops(tmp_path: Path) -> None:
    rows = []
    for i, (colour, bgr) in enumerate([("white", (240, 240, 240)), ("red", (30, 30, 200))] * 3):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), np.full((80, 80, 3), bgr, np.uint8))
        rows.append({"file": f"{i}.jpg", "color": colour, "vehicle_type": "bike", "split": "test"})
    with (tmp_path / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "color", "vehicle_type", "split"])
        writer.writeheader()
        writer.writerows(rows)
    assert detect_layout(tmp_path) == "vehicles"
    report = evaluate_vehicles(tmp_path, ModelSettings(threads=1), 0, "holdout")
    for prefix in ("type", "colour"):
        assert report.metrics[f"{prefix}_images"] == 6
        assert 0.0 <= report.metrics[f"{prefix}_accuracy"] <= 1.0
        assert 0.0 <= report.metrics[f"{prefix}_answered"] <= 1.0
    assert str(report.info["vehicle_colour"]).startswith("vehicle-colour@")
