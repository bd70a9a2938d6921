"""The measurement scripts the issues quote (backlog drain, soak) still run end to end.

They print figures rather than assert them; these tests only check that each one works on
a small input against a real mosquitto and reports what it measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.make_demo_clip import make_clip

REPO = Path(__file__).resolve().parents[1]


def run_script(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )


def test_measure_backlog_drains_every_read_through_a_real_broker() -> None:
    done = run_script("scripts/measure_backlog.py", "--reads", "500")
    assert done.returncode == 0, done.stderr
    assert "drained 500 reads" in done.stdout
    assert "RSS growth over the drain" in done.stdout


def test_measure_soak_runs_the_daemon_on_a_looping_clip(tmp_path: Path) -> None:
    clip = tmp_path / "loop.mp4"
    passes = make_clip(clip, vehicles=2, seed=3, width=640, height=360, gap_s=0.5)
    done = run_script(
        "scripts/measure_soak.py",
        "--minutes", "0.6", "--sample-s", "2", "--report-min", "0.2",
        "--clip", str(clip), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["daemon_stayed_up"] and result["error_log_lines"] == 0
    # the clip is about 6 s long and loops for 36 s: each loop brings its cars by again,
    # entering where they entered before, so they are new passes, not a parked plate
    assert result["reads"] > len(passes)
    assert result["samples"] >= 5 and result["peak_rss_mib"] > 50


def test_store_memory_stops_growing_once_the_page_cache_is_full() -> None:
    done = run_script(
        "scripts/measure_store_memory.py", "--reads", "3000", "--every", "500", "--json"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # SQLite's page cache (2 MiB by default) fills in the first ~1000 reads; after that
    # a store that kept anything per read would keep growing.
    assert result["growth_mib_second_half"] < 0.5
    assert result["growth_mib_end"] < 8


def _voc(path: Path, boxes: list[tuple[int, int, int, int]]) -> None:
    objects = "".join(
        f"<object><name>plate</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for a, b, c, d in boxes
    )
    path.write_text(f"<annotation>{objects}</annotation>")


def test_make_crop_scenes_puts_each_held_out_crop_on_a_car(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import cv2
    import numpy as np

    from edge.evaluate import is_holdout, parse_label_file
    from scripts.synth.plates import render_plate_clean

    data = tmp_path / "data"
    crops = data / "openalpr-us-plate-crops"
    crops.mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows, held = ["file,text"], []
    for i in range(12):
        text = f"{i}ABC{100 + i}"
        plate, _ = render_plate_clean(rng, text, "us")
        cv2.imwrite(str(crops / f"us{i}.jpg"), plate)
        rows.append(f"us{i}.jpg,{text}")
        if is_holdout(f"us{i}.jpg"):
            held.append(text)
    (crops / "labels.csv").write_text("\n".join(rows) + "\n")
    valid = data / "ro-plates-voc" / "valid"
    (valid / "annots").mkdir(parents=True)
    (valid / "images").mkdir()
    for k in range(2):
        frame = np.full((720, 1280, 3), 90 + 40 * k, np.uint8)
        # the frame's own plate: must not stay readable
        ro, _ = render_plate_clean(rng, "B123XYZ", "eu_ro")
        frame[500:540, 560:740] = cv2.resize(ro, (180, 40))
        cv2.imwrite(str(valid / "images" / f"valid{k:04d}.jpg"), frame)
        _voc(valid / "annots" / f"valid{k:04d}.xml", [(560, 500, 740, 540)])
    out = tmp_path / "scenes"
    done = run_script(
        "scripts/make_crop_scenes.py", "--data", str(data), "--out", str(out), timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert held, "the hold-out rule kept none of the 12 names"
    labels = sorted(out.glob("*.txt"))
    assert len(labels) == len(held) == len(list(out.glob("*.jpg")))
    texts = []
    for label in labels:
        [truth] = parse_label_file(label)
        x1, y1, x2, y2 = truth.box
        assert 0 <= x1 < x2 <= 1280 and 0 <= y1 < y2 <= 720
        assert 36 * 0.7 <= y2 - y1 <= 90 * 1.6  # drawn heights, give or take the tilt
        texts.append(truth.text)
    assert sorted(texts) == sorted(held)
    from edge.cli import main

    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["images"] == len(held)
    assert report["detection_recall"] >= 0.5  # the pasted plates are where the labels say
    assert report["exact_match"] >= 0.5


def test_make_crop_scenes_closeup_puts_a_us_plate_in_place_of_the_photos_own(
    tmp_path: Path,
) -> None:
    import cv2
    import numpy as np

    from edge.evaluate import is_holdout, parse_label_file
    from scripts.synth.plates import render_plate_clean

    data = tmp_path / "data"
    crops = data / "openalpr-us-plate-crops"
    crops.mkdir(parents=True)
    rng = np.random.default_rng(3)
    rows, held = ["file,text"], 0
    for i in range(12):
        plate, _ = render_plate_clean(rng, f"{i}ABC{100 + i}", "us")
        cv2.imwrite(str(crops / f"us{i}.jpg"), plate)
        rows.append(f"us{i}.jpg,{i}ABC{100 + i}")
        held += is_holdout(f"us{i}.jpg")
    (crops / "labels.csv").write_text("\n".join(rows) + "\n")
    x, y, w, h = 500, 400, 260, 56  # each photo's own (European) plate
    for name in ("openalpr-endtoend-eu", "openalpr-endtoend-br"):
        folder = data / name
        folder.mkdir(parents=True)
        eu, _ = render_plate_clean(rng, "BA302OZ", "eu_de")
        photo = np.full((720, 1280, 3), 120, np.uint8)
        photo[y : y + h, x : x + w] = cv2.resize(eu, (w, h))
        cv2.imwrite(str(folder / "car.jpg"), photo)
        (folder / "car.txt").write_text(f"car.jpg\t{x}\t{y}\t{w}\t{h}\tBA302OZ\n")
    out = tmp_path / "closeups"
    done = run_script(
        "scripts/make_crop_scenes.py",
        *("--data", str(data), "--out", str(out), "--backgrounds", "closeup"),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    labels = sorted(out.glob("*.txt"))
    assert len(labels) == held >= 1
    for label in labels:
        [truth] = parse_label_file(label)
        x1, y1, x2, y2 = truth.box
        # a US plate about as wide as one is next to the European plate it replaced
        assert 0.55 * w * 0.8 <= x2 - x1 <= 0.75 * w * 1.2
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        assert abs(cx - (x + w / 2)) < 0.1 * h and abs(cy - (y + h / 2)) < 0.1 * h
        assert truth.text.startswith(tuple("0123456789")) and "ABC" in truth.text
    assert {p.stem.split("_", 1)[1] for p in labels} <= {"car"}


def test_record_accuracy_writes_the_figures_into_both_manifests(tmp_path: Path) -> None:
    import shutil

    import cv2
    import numpy as np

    from scripts.synth.plates import render_plate_clean

    data = tmp_path / "data"
    rng = np.random.default_rng(2)
    # Two scene sets in the OpenALPR layout, one plate each image.
    for name, style in (("openalpr-endtoend-eu", "eu_de"), ("openalpr-endtoend-br", "br_old")):
        folder = data / name
        folder.mkdir(parents=True)
        for i, text in enumerate(("ABC1234", "XYZ9876")):
            plate, _ = render_plate_clean(rng, text, style)
            scene = np.full((720, 1280, 3), 100, np.uint8)
            h = round(plate.shape[0] * 300 / plate.shape[1])
            scene[300 : 300 + h, 400:700] = cv2.resize(plate, (300, h))
            cv2.imwrite(str(folder / f"s{i}.jpg"), scene)
            (folder / f"s{i}.txt").write_text(f"s{i}.jpg\t400\t300\t300\t{h}\t{text}\n")
    crops = data / "openalpr-us-plate-crops"
    crops.mkdir()
    rows = ["file,text"]
    for i in range(12):
        plate, _ = render_plate_clean(rng, f"{i}KQM{400 + i}", "us")
        cv2.imwrite(str(crops / f"us{i}.jpg"), plate)
        rows.append(f"us{i}.jpg,{i}KQM{400 + i}")
    (crops / "labels.csv").write_text("\n".join(rows) + "\n")
    valid = data / "ro-plates-voc" / "valid"
    (valid / "annots").mkdir(parents=True)
    (valid / "images").mkdir()
    cv2.imwrite(str(valid / "images" / "valid0000.jpg"), np.full((720, 1280, 3), 80, np.uint8))
    _voc(valid / "annots" / "valid0000.xml", [(560, 500, 740, 540)])
    models = tmp_path / "models"
    models.mkdir()
    for name in ("plate-detector", "plate-recognizer"):
        for ext in (".onnx", ".json"):
            shutil.copy(REPO / "models" / f"{name}{ext}", models / f"{name}{ext}")
    done = run_script(
        "scripts/record_accuracy.py", "--data", str(data), "--models", str(models), timeout=300
    )
    assert done.returncode == 0, done.stderr
    block = json.loads(done.stdout.strip().splitlines()[-1])
    figures = block["figures"]
    assert figures["openalpr-endtoend-eu"]["images"] == 2
    assert figures["openalpr-endtoend-eu"]["recognizer_views"] == 3
    assert 0.0 <= figures["openalpr-endtoend-br"]["exact_match"] <= 1.0
    assert figures["openalpr-us-plate-crops (held-out 30 %)"]["images"] >= 1
    from scripts.record_accuracy import US_CLOSEUPS

    # the US crops again, on the four end-to-end photos
    assert (
        figures[US_CLOSEUPS]["images"]
        == figures["openalpr-us-plate-crops (held-out 30 %)"]["images"]
    )
    assert set(block["targets_met"]) == set(block["targets"])
    for name in ("plate-detector", "plate-recognizer"):
        manifest = json.loads((models / f"{name}.json").read_text())
        assert manifest["accuracy"]["end_to_end"] == block
        # the model file itself is untouched: the loader still accepts the pair
        original = json.loads((REPO / "models" / f"{name}.json").read_text())
        assert manifest["sha256"] == original["sha256"]
    from edge.config import ModelSettings
    from edge.pipeline import PlateReader

    PlateReader.from_settings(
        ModelSettings(
            detector=models / "plate-detector.onnx", recognizer=models / "plate-recognizer.onnx"
        )
    )
