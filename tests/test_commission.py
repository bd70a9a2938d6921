"""``alpr-edge commission`` on rendered clips, through the daemon's own pipeline: it names the
passes it watched and gives a verdict, and says what to change when the setup is poor."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli import main
from scripts.make_demo_clip import make_clip


def config(tmp_path: Path, clip: Path, roi: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""device_id = "pole-commission"
[storage]
dir = "{tmp_path / "state"}"
[models]
threads = 1
[[cameras]]
id = "north"
source = "{clip.as_uri()}"
realtime = false
{roi}
""",
        encoding="utf-8",
    )
    return path


def commission(
    path: Path, capsys: pytest.CaptureFixture[str], vehicles: int = 3
) -> tuple[str, dict[str, object]]:
    args = ["commission", "--config", str(path), "--camera", "north", "--json"]
    assert main([*args, "--vehicles", str(vehicles), "--timeout", "240"]) == 0
    out = capsys.readouterr().out
    return out, json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "pole.mp4"
    make_clip(path, vehicles=3, seed=7)
    return path


def test_report_names_the_passes_and_a_verdict(
    tmp_path: Path, clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, report = commission(config(tmp_path, clip), capsys)
    assert "camera north: 3 of 3 vehicle passes in" in out
    assert out.count("  pass ") == 3
    for row in ("read rate ", "character height ", "blur ", "exposure ", "ROI edge "):
        assert f"\n{row}" in out
    assert report["verdict"] in ("PASS", "ADJUST")
    assert f"verdict: {report['verdict']}" in out
    heights = report["char_height_px"]
    assert isinstance(heights, dict) and heights["median"] >= 15, "1280x720: large enough"
    advice = report["advice"]
    assert isinstance(advice, list) and not any("zoom" in tip for tip in advice)


def test_small_characters_get_the_zoom_advice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = tmp_path / "small.mp4"
    make_clip(small, vehicles=3, seed=7, width=320, height=180)
    out, report = commission(config(tmp_path, small), capsys)
    assert report["verdict"] == "ADJUST"
    assert "verdict: ADJUST" in out
    if report["passes"] or "found" not in str(report["advice"]):
        assert "advice: zoom in: characters are " in out, out
    else:  # the detector found no plate at all at this size
        assert "advice: no plates found" in out, out


def test_motion_blur_gets_the_shutter_advice(
    tmp_path: Path, clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blurred = tmp_path / "blurred.mp4"
    source = cv2.VideoCapture(str(clip))
    out = cv2.VideoWriter(str(blurred), cv2.VideoWriter.fourcc(*"mp4v"), 25, (1280, 720))
    kernel = np.zeros((7, 7), np.float32)
    kernel[3, :] = 1 / 7  # a 7 px horizontal smear: the shutter open too long
    while True:
        ok, frame = source.read()
        if not ok:
            break
        out.write(cv2.filter2D(frame, -1, kernel))
    source.release()
    out.release()
    text, report = commission(config(tmp_path, blurred), capsys)
    assert report["verdict"] == "ADJUST"
    assert "advice: lower the shutter time" in text, text


def test_plates_at_the_roi_edge_get_the_roi_advice(
    tmp_path: Path, clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A region that ends where the plates are read best.
    roi = "roi = [[0.0, 0.0], [1.0, 0.0], [1.0, 0.75], [0.0, 0.75]]"
    out, report = commission(config(tmp_path, clip, roi), capsys)
    assert report["verdict"] == "ADJUST"
    assert "advice: move the ROI" in out, out


def test_an_empty_road_says_no_plates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.mp4"
    make_clip(empty, vehicles=0)
    out, report = commission(config(tmp_path, empty), capsys, vehicles=2)
    assert "camera north: 0 of 2 vehicle passes (end of clip)" in out
    assert report["verdict"] == "ADJUST"
    assert "advice: no plates found" in out


@pytest.mark.parametrize("views", [1, 3])
def test_commission_reads_as_the_configured_reader_does(views: int) -> None:
    """Commissioning measures through a wrapper of the daemon's reader: it must read with the
    same settings (views, plate formats, minimum plate height), or its verdict is about a
    different pipeline."""
    from edge.commission import _MeasuringReader
    from edge.config import ModelSettings
    from edge.pipeline import PlateReader

    settings = ModelSettings(threads=1, recognizer_views=views, plate_patterns=["LLLNNNN"])
    reader = PlateReader.from_settings(settings)
    reader.min_plate_height = 11.0
    measuring = _MeasuringReader(reader)
    assert measuring.views == views
    assert measuring.patterns is reader.patterns
    assert measuring.min_plate_height == 11.0
    assert measuring.detector is reader.detector
    assert measuring.recognizer is reader.recognizer
