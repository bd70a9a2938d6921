"""``alpr-edge snapshot`` on a rendered clip: an annotated PNG of the frame's size, written
atomically, with the plates and region of interest drawn where they are."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_detector import write_models

from edge.config import ModelSettings
from edge.pipeline import PlateReader
from edge.snapshot import CHAR_HEIGHT_PER_PLATE_HEIGHT, plate_height_px
from edge.types import Detection
from scripts.make_demo_clip import make_clip

WIDTH, HEIGHT = 640, 360


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "pole.mp4"
    make_clip(path, vehicles=1, seed=5, width=WIDTH, height=HEIGHT)
    return path


def write_config(tmp_path: Path, clip: Path) -> Path:
    detector, recognizer = write_models(tmp_path / "models")
    config = tmp_path / "config.toml"
    config.write_text(
        f"""device_id = "pole-aim"
[storage]
dir = "{tmp_path / "state"}"
[models]
detector = "{detector}"
recognizer = "{recognizer}"
threads = 1
[[cameras]]
id = "north"
source = "{clip.as_uri()}"
realtime = false
roi = [[0.05, 0.35], [0.95, 0.35], [0.95, 0.98], [0.05, 0.98]]
""",
        encoding="utf-8",
    )
    return config


def snapshot(config: Path, out: Path, camera: str = "north") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "edge",
            "snapshot",
            "--config",
            str(config),
            "--camera",
            camera,
            "--out",
            str(out),
            "--wait",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def raw_frame(clip: Path, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(clip))
    try:
        for _ in range(index + 1):
            ok, frame = cap.read()
            assert ok
        return np.asarray(frame)
    finally:
        cap.release()


def test_snapshot_draws_plates_on_a_frame_of_the_cameras_size(tmp_path: Path, clip: Path) -> None:
    config = write_config(tmp_path, clip)
    out = tmp_path / "aim" / "north.png"
    out.parent.mkdir()
    result = snapshot(config, out)
    assert result.returncode == 0, result.stderr
    match = re.search(r"frame (\d+) \(640x360\): (\d+) plate\(s\)", result.stdout)
    assert match, result.stdout
    assert int(match[2]) >= 1, "the first frame with a plate is kept"
    assert re.search(r"\d+ px characters", result.stdout)
    assert sorted(p.name for p in out.parent.iterdir()) == ["north.png"], "no temp file left"

    picture = cv2.imread(str(out))
    assert picture is not None and picture.shape == (HEIGHT, WIDTH, 3)
    raw = raw_frame(clip, int(match[1]))
    models = tmp_path / "models"
    reader = PlateReader.from_settings(
        ModelSettings(
            detector=models / "plate-detector.onnx", recognizer=models / "plate-recognizer.onnx"
        )
    )
    plates = reader.read(raw)
    assert plates
    for plate in plates:
        x1, y1, x2, y2 = (round(v) for v in plate.detection.box)
        drawn = np.abs(
            picture[y1 : y2 + 1, x1 : x2 + 1].astype(int) - raw[y1 : y2 + 1, x1 : x2 + 1]
        )
        assert (drawn.max(axis=2) > 40).sum() > 2 * (x2 - x1), "box and corners are drawn there"
    # The ROI's top edge is drawn at 35 % of the height; the sky above it is left alone.
    roi_y = round(0.35 * HEIGHT)
    assert np.abs(picture[roi_y, 100:500].astype(int) - raw[roi_y, 100:500]).max() > 40
    untouched = np.abs(picture[30:75, 400:620].astype(int) - raw[30:75, 400:620])
    assert untouched.max() <= 3, "only annotations change the picture (PNG is lossless)"


def test_unknown_camera_is_a_config_error(tmp_path: Path, clip: Path) -> None:
    result = snapshot(write_config(tmp_path, clip), tmp_path / "x.png", camera="south")
    assert result.returncode == 78
    assert result.stderr.strip() == (
        "alpr-edge: error: no camera 'south' in the config (cameras: north)"
    )
    assert not (tmp_path / "x.png").exists()


def test_character_height_is_six_tenths_of_the_plate_edges() -> None:
    tilted = Detection(
        box=(0, 0, 120, 60), score=0.9, corners=((0, 10), (100, 0), (100, 40), (0, 50))
    )
    assert plate_height_px(tilted) == 40.0  # the edges, not the 60 px box
    assert CHAR_HEIGHT_PER_PLATE_HEIGHT * plate_height_px(tilted) == pytest.approx(24.0)
