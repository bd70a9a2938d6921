"""Measure the shipped model pair end to end and write the figures into both manifests.

    python scripts/record_accuracy.py --data ../shared/datasets [--models models]

Runs ``alpr-edge evaluate --json`` (the daemon's own pipeline, default settings) on the data
kept out of training: openalpr-endtoend-eu and -br, the held-out US crops (recognizer alone)
and those crops put on real cars (scripts/make_crop_scenes.py, made in temporary folders): on
ro-plates-voc dash-cam frames, and on the close-up photos of the two end-to-end sets.
The figures, the command and the targets of issue #3 go under ``end_to_end`` in
``plate-recognizer.json`` and ``plate-detector.json`` (the model files and their sha256 are
not touched); a markdown table for the README is printed, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.make_crop_scenes import make_scenes  # noqa: E402

SCENE_SETS = ("openalpr-endtoend-eu", "openalpr-endtoend-br")
TARGETS = {
    "openalpr-endtoend-eu": {"detection_recall": 0.97, "exact_match": 0.92},
    "openalpr-endtoend-br": {"detection_recall": 0.97, "exact_match": 0.92},
    "openalpr-us-plate-crops (held-out 30 %)": {"exact_match": 0.95},
}
COLUMNS = (
    "images",
    "detection_recall",
    "detection_precision",
    "exact_match",
    "top1_exact_match",
    "char_accuracy",
    "ms_per_image_median",
)
"""The figures kept, in the README table's order."""
US_CLOSEUPS = "held-out US crops on close-up car photos (make_crop_scenes.py --backgrounds closeup)"
KEPT = (*COLUMNS, "detector_input_size", "recognizer_views")


def evaluate(target: Path, models: Path, *extra: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "edge", "evaluate", str(target), "--json", *extra]
    cmd += ["--detector", str(models / "plate-detector.onnx")]
    cmd += ["--recognizer", str(models / "plate-recognizer.onnx")]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {k: report[k] for k in KEPT if k in report}


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, required=True, help="the shared datasets directory")
    ap.add_argument("--models", type=Path, default=REPO / "models")
    args = ap.parse_args()
    figures: dict[str, dict[str, Any]] = {}
    for name in SCENE_SETS:
        figures[name] = evaluate(args.data / name, args.models)
    us = "openalpr-us-plate-crops (held-out 30 %)"
    figures[us] = evaluate(args.data / "openalpr-us-plate-crops", args.models, "--split", "holdout")
    with tempfile.TemporaryDirectory(prefix="alpr-us-scenes-") as tmp:
        make_scenes(args.data, Path(tmp))
        figures["held-out US crops on real cars (scripts/make_crop_scenes.py)"] = evaluate(
            Path(tmp), args.models
        )
    with tempfile.TemporaryDirectory(prefix="alpr-us-closeups-") as tmp:
        make_scenes(args.data, Path(tmp), backgrounds="closeup")
        figures[US_CLOSEUPS] = evaluate(Path(tmp), args.models)
    met = {
        name: all(figures[name][k] >= v for k, v in wanted.items())
        for name, wanted in TARGETS.items()
    }
    block = {
        "command": "python scripts/record_accuracy.py --data ../shared/datasets "
        "(alpr-edge evaluate --json, default settings, on data kept out of training)",
        "figures": figures,
        "targets": TARGETS,
        "targets_met": met,
    }
    for manifest in ("plate-recognizer.json", "plate-detector.json"):
        path = args.models / manifest
        data = json.loads(path.read_text())
        data.setdefault("accuracy", {})
        data["accuracy"]["end_to_end"] = block
        write_json_atomic(path, data)
    print("| data | images | detection recall | precision | exact | top-1 exact | char | ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name, f in figures.items():
        cells = [f.get(k) for k in COLUMNS]
        print(f"| {name} | " + " | ".join("–" if c is None else str(c) for c in cells) + " |")
    print(json.dumps(block, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
