"""`alpr-edge bench`: the daemon's pipeline on a rendered clip, through the real CLI.

Checks what the command reports (not how fast this machine is: speed is a figure the
command prints, never a test assertion) and that ``camera.process_fps`` caps how many
frames the models run on without losing passes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts.demo import write_config
from scripts.make_demo_clip import Pass, make_clip

FPS = 25


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Pass]]:
    path = tmp_path_factory.mktemp("bench") / "road.mp4"
    passes = make_clip(path, vehicles=3, seed=11, fps=FPS)
    return path, passes


def bench(video: Path, *extra: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "edge", "bench", str(video), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_bench_reports_frames_stages_reads_and_memory(clip: tuple[Path, list[Pass]]) -> None:
    video, passes = clip
    result = bench(video)
    assert result["frames"] == result["frames_processed"] + result["frames_gated"]
    assert result["frames_skipped"] == 0
    assert result["fps"] > 0 and result["peak_rss_mb"] > 50
    assert {"decode", "motion", "detect", "recognize", "track", "store"} <= set(result["stage_ms"])
    assert result["reads"] == len(passes)


def test_process_fps_caps_model_frames_and_keeps_every_pass(
    clip: tuple[Path, list[Pass]], tmp_path: Path
) -> None:
    video, passes = clip
    full = bench(video)
    # loop = true in the config must not make bench run forever: bench reads the clip once.
    config = write_config(
        tmp_path / "config.toml",
        device_id="bench-test",
        clip=video,
        state=tmp_path / "state",
        camera="loop = true\nprocess_fps = 10.0\n",
    )
    capped = bench(video, "--config", str(config))
    assert capped["frames"] == full["frames"]
    assert capped["frames_skipped"] > 0
    # 25 fps capped at 10: the models see at most every other frame of those that move
    assert capped["frames_processed"] <= 0.55 * full["frames_processed"]
    assert (
        capped["frames_processed"] + capped["frames_gated"] + capped["frames_skipped"]
        == (capped["frames"])
    )
    assert capped["reads"] == len(passes)
