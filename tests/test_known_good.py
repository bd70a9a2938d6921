"""A model that fails its check, load or warm-up leaves the last known-good pair running."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_detector import write_models

from edge.config import ModelSettings
from edge.errors import EX_DATAERR, ModelError
from edge.inference.known_good import known_good_dir, load_reader


def model_settings(models: Path) -> ModelSettings:
    return ModelSettings(
        detector=models / "plate-detector.onnx",
        recognizer=models / "plate-recognizer.onnx",
        threads=1,
    )


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_good_start_keeps_an_atomic_known_good_copy(tmp_path: Path) -> None:
    write_models(tmp_path / "models")
    state = tmp_path / "state"
    reader, warm_ms = load_reader(model_settings(tmp_path / "models"), state)
    assert warm_ms > 0
    kept = known_good_dir(state)
    assert kept.is_symlink(), "swapped in as one symlink, so the pair changes together"
    names = sorted(p.name for p in kept.iterdir())
    assert names == ["detector.json", "detector.onnx", "recognizer.json", "recognizer.onnx"]
    assert (kept / "detector.onnx").read_bytes() == reader.detector.model_path.read_bytes()
    before = (kept / "recognizer.onnx").stat().st_mtime_ns
    load_reader(model_settings(tmp_path / "models"), state)  # same models: nothing rewritten
    assert (kept / "recognizer.onnx").stat().st_mtime_ns == before
    assert [p.name for p in (state / "models").iterdir() if p.name.startswith(".")] == [
        kept.resolve().name
    ]


def test_corrupted_model_falls_back_to_known_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    detector, _ = write_models(tmp_path / "models")
    state = tmp_path / "state"
    load_reader(model_settings(tmp_path / "models"), state)
    corrupt(detector)
    with caplog.at_level(logging.INFO, logger="edge.inference.known_good"):
        reader, _ = load_reader(model_settings(tmp_path / "models"), state)
    assert reader.detector.model_path == known_good_dir(state) / "detector.onnx"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "sha256" in errors[0].getMessage() and str(detector) in errors[0].getMessage()
    assert any(
        r.levelno == logging.WARNING and "known-good" in r.getMessage() for r in caplog.records
    )
    # The failed model never becomes known-good.
    assert (known_good_dir(state) / "detector.onnx").read_bytes() != detector.read_bytes()


def test_without_known_good_a_bad_model_stops_the_start(tmp_path: Path) -> None:
    detector, _ = write_models(tmp_path / "models")
    corrupt(detector)
    with pytest.raises(ModelError, match="sha256"):
        load_reader(model_settings(tmp_path / "models"), tmp_path / "state")


def test_daemon_exits_65_on_a_bad_model_and_no_known_good(tmp_path: Path) -> None:
    detector, recognizer = write_models(tmp_path / "models")
    corrupt(recognizer)
    config = tmp_path / "config.toml"
    config.write_text(
        f"""device_id = "pole-kg"
[storage]
dir = "{tmp_path / "state"}"
[models]
detector = "{detector}"
recognizer = "{recognizer}"
[[cameras]]
id = "cam1"
source = "file://{tmp_path / "absent.mp4"}"
""",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "edge", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == EX_DATAERR, result.stderr
    assert "sha256" in result.stderr and "Traceback" not in result.stderr
