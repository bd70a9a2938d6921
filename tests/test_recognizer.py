"""The shipped plate recognizer model, loaded and run by the run-time class (no mocks)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.errors import ModelError
from edge.inference.recognizer import PlateRecognizer
from edge.inference.session import sha256_file
from edge.types import PlateStatus
from scripts.synth.plates import render_plate_clean

MODEL = Path(__file__).resolve().parents[1] / "models" / "plate-recognizer.onnx"
INT8_MODEL = MODEL.with_name("plate-recognizer-int8.onnx")

# Formats seen on real plates, separators included (they are drawn, never read).
CLEAN_CASES = (
    ("ABC1234", "us"),
    ("7XYZ123", "us"),
    ("KLX-41C", "us"),
    ("BJL 833", "us"),
    ("4CVU806", "us"),
    ("HPM*5520", "us_dark"),
    ("AB-123-CD", "eu_fr"),
    ("B 123 XYZ", "eu_ro"),
    ("RST4E56", "br_mercosul"),
    ("QVN-2636", "br_old"),
)


@pytest.fixture(scope="module")
def recognizer() -> PlateRecognizer:
    return PlateRecognizer(MODEL, threads=1)


def _copy_model(tmp_path: Path, data: bytes, manifest_changes: dict[str, object]) -> Path:
    """A model file with ``data`` in tmp_path and the shipped manifest, edited."""
    target = tmp_path / "plate-recognizer.onnx"
    target.write_bytes(data)
    manifest = json.loads(MODEL.with_suffix(".json").read_text(encoding="utf-8"))
    manifest["sha256"] = sha256_file(target)
    manifest.update(manifest_changes)
    target.with_suffix(".json").write_text(json.dumps(manifest), encoding="utf-8")
    return target


@pytest.mark.parametrize("model", [MODEL, INT8_MODEL], ids=["fp32", "int8"])
def test_reads_clean_synthetic_plates(model: Path) -> None:
    if model == INT8_MODEL and not model.is_file():
        pytest.skip("no INT8 variant shipped (the export dropped it; see the FP32 manifest)")
    recognizer = PlateRecognizer(model, threads=1)
    rng = np.random.default_rng(2024)
    crops, truths = [], []
    for text, style in CLEAN_CASES:
        image, label = render_plate_clean(rng, text, style)
        crops.append(image)
        truths.append(label)
    reads = recognizer.recognize(crops)
    correct = [r.text == t for r, t in zip(reads, truths, strict=True)]
    misses = [(t, r.text) for r, t in zip(reads, truths, strict=True) if r.text != t]
    assert sum(correct) >= 8, f"misread: {misses}"


def test_labels_drop_separators() -> None:
    _, label = render_plate_clean(np.random.default_rng(1), "AB-12.C D*9", "us")
    assert label == "AB12CD9"


def test_batch_returns_one_result_per_crop(recognizer: PlateRecognizer) -> None:
    rng = np.random.default_rng(7)
    crops = [render_plate_clean(rng)[0] for _ in range(5)]
    crops.append(np.zeros((0, 0, 3), dtype=np.uint8))  # an empty crop still gets a result
    reads = recognizer.recognize(crops)
    assert len(reads) == len(crops)
    assert reads[-1].text == ""
    assert reads[-1].status is PlateStatus.NONE
    assert recognizer.recognize([]) == []


def test_char_probabilities_are_probabilities(recognizer: PlateRecognizer) -> None:
    rng = np.random.default_rng(11)
    reads = recognizer.recognize([render_plate_clean(rng)[0] for _ in range(6)])
    for read in reads:
        assert read.text == "".join(c.char for c in read.chars)
        assert read.confidence == pytest.approx(float(np.prod([c.prob for c in read.chars])))
        assert isinstance(read.status, PlateStatus)
        for slot in read.chars:
            assert 0.0 <= slot.prob <= 1.0
            assert len(slot.alternatives) <= 3
            assert all(0.0 <= a.prob <= 1.0 and a.char != slot.char for a in slot.alternatives)


def test_version_names_model_and_hash(recognizer: PlateRecognizer) -> None:
    manifest = recognizer.manifest
    assert recognizer.version == f"{manifest['name']}@{manifest['sha256'][:12]}"
    assert manifest["alphabet"] == "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def test_truncated_model_is_refused_naming_the_file(tmp_path: Path) -> None:
    data = MODEL.read_bytes()
    path = _copy_model(tmp_path, data[: len(data) // 2], {})
    with pytest.raises(ModelError, match=r"plate-recognizer\.onnx") as err:
        PlateRecognizer(path)
    assert str(path) in err.value.message


def test_sha_mismatch_is_refused(tmp_path: Path) -> None:
    path = _copy_model(tmp_path, MODEL.read_bytes(), {})
    manifest = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    manifest["sha256"] = "0" * 64
    path.with_suffix(".json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ModelError, match="sha256"):
        PlateRecognizer(path)


def test_alphabet_that_does_not_fit_the_output_is_refused(tmp_path: Path) -> None:
    path = _copy_model(
        tmp_path, MODEL.read_bytes(), {"alphabet": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXY"}
    )
    with pytest.raises(ModelError, match="alphabet") as err:
        PlateRecognizer(path)
    assert str(path) in err.value.message


def test_missing_manifest_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    shutil.copyfile(MODEL, target)
    with pytest.raises(ModelError, match="manifest"):
        PlateRecognizer(target)
