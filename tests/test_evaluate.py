"""``alpr-edge evaluate`` on small datasets built here: rendered plates in plain scenes (the
OpenALPR benchmark layout) and plate crops with labels.csv, read by the real models.

The first models may be weak, so these tests check what must hold whatever the accuracy:
keys, ranges, counts, consistency between metrics, and zero for labels that are wrong.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.cli import main
from edge.config import DEFAULT_MODELS_DIR
from edge.errors import EX_CONFIG, EX_DATAERR, EX_USAGE, InputError
from edge.evaluate import (
    char_similarity,
    is_holdout,
    match_boxes,
    normalize_text,
    parse_label_line,
)
from edge.progress import Progress
from scripts.synth.plates import render_plate_clean
from scripts.synth.splits import is_holdout as training_is_holdout

SCENE_KEYS = {
    "images",
    "plates",
    "detection_recall",
    "detection_precision",
    "exact_match",
    "top1_exact_match",
    "char_accuracy",
    "ms_per_image_median",
    "ms_per_image_p95",
    "layout",
    "dataset",
    "detector",
    "detector_input_size",
    "recognizer_views",
    "recognizer",
}
SCENE_SHARES = (
    "detection_recall",
    "detection_precision",
    "exact_match",
    "top1_exact_match",
    "char_accuracy",
)
CROP_KEYS = {
    "images",
    "exact_match",
    "top1_exact_match",
    "char_accuracy",
    "ms_per_image_median",
    "layout",
    "dataset",
    "recognizer",
    "split",
}
STATE_KEYS = {
    "plate_region",
    "state_images",
    "state_accuracy",
    "state_answered",
    "state_accuracy_answered",
    "state_ms_per_image_median",
}
"""Added when labels.csv has a state column."""
PLATE_WIDTH = 160
WRONG_TEXT = "QQ0Q0QQ"

models_missing = not all(
    (DEFAULT_MODELS_DIR / name).is_file()
    for name in ("plate-detector.onnx", "plate-recognizer.onnx")
)
needs_models = pytest.mark.skipif(models_missing, reason="models/*.onnx are not installed")


@dataclass(frozen=True)
class Scene:
    name: str
    boxes: tuple[tuple[int, int, int, int, str], ...]
    """x, y, w, h, text per plate."""


def _road(rng: np.random.Generator) -> np.ndarray:
    """A grey, road-like 1280x720 frame with a darker car body in the lower half."""
    shade = np.linspace(150, 90, 720, dtype=np.float32)[:, None, None]
    image = np.repeat(np.repeat(shade, 1280, axis=1), 3, axis=2)
    image += rng.normal(0, 6, image.shape).astype(np.float32)
    cv2.rectangle(image, (380, 300), (900, 700), (60, 55, 70), thickness=-1)
    return np.clip(image, 0, 255).astype(np.uint8)


def _paste_plate(rng: np.random.Generator, image: np.ndarray, x: int, y: int) -> tuple[int, str]:
    plate, text = render_plate_clean(rng, style="us")
    h = round(plate.shape[0] * PLATE_WIDTH / plate.shape[1])
    image[y : y + h, x : x + PLATE_WIDTH] = cv2.resize(plate, (PLATE_WIDTH, h))
    return h, text


def _write_scenes(folder: Path, layouts: Sequence[Sequence[tuple[int, int]]], seed: int) -> int:
    """One image per layout (plate top-left corners), labels beside; returns the plate count."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for index, corners in enumerate(layouts):
        image = _road(rng)
        lines = []
        for x, y in corners:
            h, text = _paste_plate(rng, image, x, y)
            lines.append(f"scene{index}.jpg\t{x}\t{y}\t{PLATE_WIDTH}\t{h}\t{text}")
        cv2.imwrite(str(folder / f"scene{index}.jpg"), image)
        (folder / f"scene{index}.txt").write_text("\n".join(lines) + "\n")
    return sum(len(c) for c in layouts)


def _write_crops(folder: Path, count: int, seed: int) -> list[str]:
    folder.mkdir()
    rng = np.random.default_rng(seed)
    names = []
    with (folder / "labels.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "state", "text"])
        for index in range(count):
            plate, text = render_plate_clean(rng, style="us")
            name = f"crop{index:03d}.jpg"
            cv2.imwrite(str(folder / name), cv2.resize(plate, (320, 160)))
            writer.writerow([name, "ca", text])
            names.append(name)
    return names


def _relabel(folder: Path, text: str) -> None:
    """Replace every plate text in a dataset with ``text``: labels that are certainly wrong."""
    for label in folder.glob("*.txt"):
        lines = [line.rsplit("\t", 1)[0] + f"\t{text}" for line in label.read_text().splitlines()]
        label.write_text("\n".join(lines) + "\n")
    crops = folder / "labels.csv"
    if crops.is_file():
        rows = list(csv.DictReader(crops.open(newline="")))
        with crops.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["file", "state", "text"])
            writer.writeheader()
            writer.writerows({**row, "text": text} for row in rows)


def _evaluate_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[dict[str, Any], str]:
    code = main(["evaluate", *args, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out.strip().splitlines()[-1]), captured.err


SCENE_LAYOUTS = (
    [(560, 520)],
    [(200, 150)],
    [(450, 480), (950, 200)],
    [(700, 600)],
)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    folder = tmp_path_factory.mktemp("scenes") / "openalpr"
    return folder, _write_scenes(folder, SCENE_LAYOUTS, seed=7)


# --------------------------------------------------------------------------- with the models


@needs_models
def test_scene_metrics_are_complete_and_consistent(
    scenes: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, plates = scenes
    result, _ = _evaluate_json(capsys, str(folder))
    assert set(result) == SCENE_KEYS
    assert result["layout"] == "openalpr"
    assert result["detector_input_size"] == _manifest_input_size()
    assert result["recognizer_views"] == 3
    assert result["images"] == len(SCENE_LAYOUTS)
    assert result["plates"] == plates
    for key in SCENE_SHARES:
        assert 0.0 <= result[key] <= 1.0, key
    assert result["top1_exact_match"] <= result["exact_match"]
    # recall is matched plates over ground-truth plates: a whole number of plates
    matched = result["detection_recall"] * plates
    assert abs(matched - round(matched)) < 1e-3
    assert result["detection_recall"] > 0, "clean 160 px plates on a plain road were missed"
    assert result["ms_per_image_median"] > 0
    assert result["ms_per_image_p95"] >= result["ms_per_image_median"]


@needs_models
def test_wrong_scene_labels_never_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "wrong"
    plates = _write_scenes(folder, SCENE_LAYOUTS[:2], seed=7)
    _relabel(folder, WRONG_TEXT)
    result, _ = _evaluate_json(capsys, str(folder))
    assert result["plates"] == plates
    assert result["exact_match"] == 0
    assert result["top1_exact_match"] == 0
    assert result["char_accuracy"] < 1


@needs_models
def test_corrupt_image_is_a_reported_miss_and_unlabelled_image_is_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "broken"
    plates = _write_scenes(folder, SCENE_LAYOUTS[:1], seed=3)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (folder / "broken.txt").write_text("broken.jpg\t10\t10\t160\t80\tABC123\n")
    cv2.imwrite(str(folder / "nolabel.jpg"), np.zeros((32, 32, 3), np.uint8))
    result, err = _evaluate_json(capsys, str(folder))
    assert result["images"] == 2
    assert result["plates"] == plates + 1
    assert result["detection_recall"] <= plates / (plates + 1)
    assert result["exact_match"] <= 0.5
    warnings = err.strip().splitlines()
    assert any("broken.jpg" in line and "unreadable" in line for line in warnings)
    assert any("1 image(s) without a .txt label" in line for line in warnings)


@needs_models
def test_readable_summary_without_json(
    scenes: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = scenes
    assert main(["evaluate", str(folder), "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "exact match" in out
    assert "detection recall" in out
    assert "{" not in out
    images_line = next(line for line in out.splitlines() if line.startswith("images "))
    assert images_line.split()[-1] == "1"


@needs_models
def test_crop_metrics_are_complete_and_consistent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "crops"
    _write_crops(folder, 5, seed=11)
    (folder / "crop999.jpg").write_bytes(b"garbage")
    with (folder / "labels.csv").open("a", newline="") as fh:
        fh.write("crop999.jpg,ca,ABC123\n")
    result, err = _evaluate_json(capsys, str(folder))
    assert set(result) == CROP_KEYS | STATE_KEYS
    assert 0.0 <= result["state_accuracy"] <= 1.0
    assert result["layout"] == "crops"
    assert result["split"] == "all"
    assert result["images"] == 6
    for key in ("exact_match", "top1_exact_match", "char_accuracy"):
        assert 0.0 <= result[key] <= 1.0, key
    assert result["top1_exact_match"] == result["exact_match"]
    assert result["exact_match"] <= 5 / 6
    assert "crop999.jpg" in err


@needs_models
def test_wrong_crop_labels_never_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "crops"
    _write_crops(folder, 4, seed=5)
    _relabel(folder, WRONG_TEXT)
    result, _ = _evaluate_json(capsys, str(folder))
    assert result["images"] == 4
    assert result["exact_match"] == 0


@needs_models
def test_split_keeps_the_training_holdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "crops"
    names = _write_crops(folder, 12, seed=2)
    held = sum(training_is_holdout(n) for n in names)
    holdout, _ = _evaluate_json(capsys, str(folder), "--split", "holdout")
    train, _ = _evaluate_json(capsys, str(folder), "--split", "train")
    assert (holdout["images"], train["images"]) == (held, len(names) - held)
    assert holdout["split"] == "holdout"


# --------------------------------------------------------------------------- model settings

CONFIG = """
device_id = "pole-1"
[mqtt]
host = "localhost"
[models]
{models}
[[cameras]]
id = "c1"
source = "file:///tmp/clip.mp4"
"""
BIG_FRAME = (2560, 1440)
"""A 160 px plate on this frame is 48 px wide to the shipped 768 detector, 10 px to a 160
one: too small to find at that size, whatever the model."""


def _manifest_input_size() -> int:
    manifest = json.loads((DEFAULT_MODELS_DIR / "plate-detector.json").read_text())
    return int(manifest["input_size"])


def _write_config(tmp_path: Path, models: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(models=models), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def big_scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 2560 x 1440 scenes with one 160 px plate each."""
    folder = tmp_path_factory.mktemp("big") / "openalpr"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for index, (x, y) in enumerate([(1100, 1000), (600, 500)]):
        image = cv2.resize(_road(rng), BIG_FRAME)
        h, text = _paste_plate(rng, image, x, y)
        cv2.imwrite(str(folder / f"big{index}.jpg"), image)
        (folder / f"big{index}.txt").write_text(
            f"big{index}.jpg\t{x}\t{y}\t{PLATE_WIDTH}\t{h}\t{text}\n"
        )
    return folder


@needs_models
def test_detector_input_size_flag_changes_what_the_detector_sees(
    big_scenes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    default, _ = _evaluate_json(capsys, str(big_scenes))
    tiny, _ = _evaluate_json(capsys, str(big_scenes), "--detector-input-size", "160")
    assert default["detector_input_size"] == _manifest_input_size()
    assert default["detection_recall"] == 1.0
    assert tiny["detector_input_size"] == 160
    assert tiny["detection_recall"] == 0.0


@needs_models
def test_config_models_are_measured_and_flags_override_them(
    big_scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = DEFAULT_MODELS_DIR / "plate-recognizer.onnx"
    config = _write_config(
        tmp_path, f'detector_input_size = 160\nrecognizer = "{tmp_path / "gone.onnx"}"'
    )
    # The config's recognizer is used: it does not exist.
    assert main(["evaluate", str(big_scenes), "--config", str(config)]) == EX_DATAERR
    assert "gone.onnx" in _one_line_error(capsys)
    tiny, _ = _evaluate_json(
        capsys, str(big_scenes), "--config", str(config), "--recognizer", str(shipped)
    )
    assert tiny["detector_input_size"] == 160
    assert tiny["detection_recall"] == 0.0
    flagged, _ = _evaluate_json(
        capsys,
        str(big_scenes),
        "--config",
        str(config),
        "--recognizer",
        str(shipped),
        "--detector-input-size",
        "768",
    )
    assert flagged["detector_input_size"] == 768
    assert flagged["detection_recall"] == 1.0


@pytest.mark.parametrize(
    ("models", "key"),
    [
        ("detector_input_size = 100", "models.detector_input_size"),
        ("detector_threshold = 2.0", "models.detector_threshold"),
        ("detector_size = 640", "models.detector_size"),
    ],
    ids=["size-not-multiple-of-32", "threshold-out-of-range", "unknown-key"],
)
def test_bad_config_is_one_line_naming_file_and_line(
    scenes: tuple[Path, int],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    models: str,
    key: str,
) -> None:
    folder, _ = scenes
    config = _write_config(tmp_path, models)
    assert main(["evaluate", str(folder), "--config", str(config)]) == EX_CONFIG
    message = _one_line_error(capsys)
    assert f"{config}:6: {key}" in message


def test_missing_config_is_a_config_error(
    scenes: tuple[Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = scenes
    missing = tmp_path / "nope.toml"
    assert main(["evaluate", str(folder), "--config", str(missing)]) == EX_CONFIG
    assert str(missing) in _one_line_error(capsys)


@pytest.mark.parametrize("size", ["100", "96", "4096", "abc", "640.5"])
def test_bad_detector_input_size_is_a_usage_error(
    scenes: tuple[Path, int], capsys: pytest.CaptureFixture[str], size: str
) -> None:
    folder, _ = scenes
    assert main(["evaluate", str(folder), "--detector-input-size", size]) == EX_USAGE
    message = _one_line_error(capsys)
    assert f"--detector-input-size {size}:" in message


def test_detector_input_size_on_crops_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "crops"
    folder.mkdir()
    (folder / "labels.csv").write_text("file,text\na.jpg,ABC123\n")
    assert main(["evaluate", str(folder), "--detector-input-size", "640"]) == EX_USAGE
    assert "--detector-input-size" in _one_line_error(capsys)


# --------------------------------------------------------------------------- bad input


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    "line",
    [
        "scene0.jpg\t10\t20\t160",
        "scene0.jpg\t10\t20\twide\t80\tABC123",
        "scene0.jpg\t10\t20\t160\t0\tABC123",
        "scene0.jpg\t10\t20\t160\t80\t---",
    ],
    ids=["missing-fields", "non-integer-box", "empty-box", "no-plate-characters"],
)
def test_malformed_label_line_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str
) -> None:
    folder = tmp_path / "bad"
    _write_scenes(folder, SCENE_LAYOUTS[:1], seed=1)
    label = folder / "scene0.txt"
    label.write_text(label.read_text() + "\n" + line + "\n")
    assert main(["evaluate", str(folder), "--json"]) == EX_DATAERR
    message = _one_line_error(capsys)
    assert str(label) in message
    assert "line 3" in message


def test_labels_csv_row_without_text_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "crops"
    folder.mkdir()
    (folder / "labels.csv").write_text("file,text\na.jpg,ABC123\nb.jpg\n")
    assert main(["evaluate", str(folder)]) == EX_DATAERR
    message = _one_line_error(capsys)
    assert "labels.csv" in message
    assert "line 3" in message


def test_labels_csv_without_text_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "crops"
    folder.mkdir()
    (folder / "labels.csv").write_text("file,plate\na.jpg,ABC123\n")
    assert main(["evaluate", str(folder)]) == EX_DATAERR
    assert "line 1" in _one_line_error(capsys)


@pytest.mark.parametrize("make", ["missing", "empty", "images-only", "other-files"])
def test_folder_in_neither_layout_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str
) -> None:
    folder = tmp_path / "data"
    if make != "missing":
        folder.mkdir()
    if make == "images-only":
        cv2.imwrite(str(folder / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    if make == "other-files":
        (folder / "notes.txt").write_text("hello\n")
    assert main(["evaluate", str(folder)]) == EX_DATAERR
    assert str(folder) in _one_line_error(capsys)


def test_split_on_scene_dataset_is_a_usage_error(
    scenes: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = scenes
    assert main(["evaluate", str(folder), "--split", "holdout"]) == EX_USAGE
    assert "--split" in _one_line_error(capsys)


# --------------------------------------------------------------------------- metric pieces


def test_label_line_accepts_any_whitespace() -> None:
    label = parse_label_line("a.jpg 10  20\t30 40   ab-12c", "a.txt, line 1")
    assert label.box == (10.0, 20.0, 40.0, 60.0)
    assert label.text == "AB12C"


def test_tab_separated_label_lines_keep_spaces_inside_fields() -> None:
    label = parse_label_line("my car.jpg\t10\t20.5\t30\t40\tAB 12C\n", "a.txt, line 1")
    assert label.box == (10.0, 20.5, 40.0, 60.5)
    assert label.text == "AB12C"
    for bad in ("a.jpg 10 20 thirty 40 AB12C", "a.jpg 10 20 nan 40 AB12C"):
        with pytest.raises(InputError, match=r"a\.txt, line 1: box x y w h must be numbers"):
            parse_label_line(bad, "a.txt, line 1")


def test_boxes_match_one_to_one_by_best_overlap() -> None:
    truths = [(0.0, 0.0, 100.0, 50.0)]
    found = [(5.0, 0.0, 105.0, 50.0), (0.0, 0.0, 100.0, 50.0), (0.0, 0.0, 40.0, 50.0)]
    assert match_boxes(truths, found) == {0: 1}
    assert match_boxes(truths, [(60.0, 0.0, 160.0, 50.0)]) == {}


def test_holdout_rule_is_the_training_scripts_rule() -> None:
    names = [f"{state}{n}.jpg" for state in ("ak", "ca", "ny", "tx") for n in range(50)]
    assert [is_holdout(n) for n in names] == [training_is_holdout(n) for n in names]
    assert 0 < sum(map(is_holdout, names)) < len(names)


@given(st.text(max_size=12))
def test_normalized_text_is_upper_alphanumeric_and_stable(text: str) -> None:
    normal = normalize_text(text)
    assert all(c.isascii() and (c.isupper() or c.isdigit()) for c in normal)
    assert normalize_text(normal) == normal


@given(st.text("ABC0123", max_size=8), st.text("ABC0123", max_size=8))
def test_char_similarity_is_a_share_and_one_only_when_equal(truth: str, read: str) -> None:
    score = char_similarity(truth, read)
    assert 0.0 <= score <= 1.0
    assert (score == 1.0) == (truth == read)
    assert score == char_similarity(read, truth)


def test_progress_is_silent_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Progress(3, "evaluate") as bar:
        for _ in range(3):
            bar.advance()
    assert capsys.readouterr().err == ""


def test_progress_draws_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    with Progress(2, "evaluate", stream=stream) as bar:
        bar.advance(2)
    assert stream.getvalue().endswith("evaluate [" + "#" * 30 + "] 2/2\n")


@needs_models
def test_misses_lists_each_image_not_read_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "openalpr"
    _write_scenes(folder, [[(560, 520)], [(200, 150)]], seed=7)
    report, _ = _evaluate_json(capsys, str(folder), "--misses")
    assert report["exact_match"] == 1.0
    # Without a miss nothing is listed: the JSON object is the only output line.
    assert main(["evaluate", str(folder), "--misses", "--json"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1
    # Label one image wrong: exactly that image is listed, with both texts.
    label = folder / "scene1.txt"
    fields = label.read_text().strip().split("\t")
    read_text = fields[-1]
    label.write_text("\t".join([*fields[:-1], "ZZZ999"]) + "\n")
    assert main(["evaluate", str(folder), "--misses", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("miss scene1.jpg: labelled ZZZ999; read ")
    assert f"{read_text} (" in lines[0]
    assert json.loads(lines[1])["exact_match"] == 0.5


@needs_models
def test_misses_on_crops_name_the_crop_and_both_texts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "crops"
    _write_crops(folder, 3, seed=11)
    _relabel(folder, "Q1Q1Q1")
    assert main(["evaluate", str(folder), "--misses"]) == 0
    out = capsys.readouterr().out.splitlines()
    misses = [line for line in out if line.startswith("miss ")]
    assert [m.split(":")[0] for m in misses] == [f"miss crop{i:03d}.jpg" for i in range(3)]
    assert all("labelled Q1Q1Q1; read " in m for m in misses)
    assert not any(m.endswith("read nothing") for m in misses)
