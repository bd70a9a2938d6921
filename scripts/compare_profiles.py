"""Fast vs default vs accurate settings: accuracy (`alpr-edge evaluate`) and speed (`bench`).

    python3 scripts/compare_profiles.py --data ../shared/datasets [--clip busy1080.mp4]

For each profile it writes a daemon config, then runs, through the real CLI,
``alpr-edge evaluate --config`` on openalpr-endtoend-eu, openalpr-endtoend-br, the
held-out US crops (the recognizer alone) and the same crops put on real cars
(scripts/make_crop_scenes.py, made in a temporary folder), and ``alpr-edge bench --config``
on a busy 1080p clip (rendered with scripts/make_demo_clip.py when ``--clip`` is not given).
It prints one markdown table and, last, one JSON object with every figure. "CPU cores for
real time" is bench's CPU time divided by the clip's duration: how many of this machine's
cores the pipeline keeps busy when the clip plays at its own frame rate.

Profiles (the [models] and [[cameras]] settings that differ):
  accurate   the shipped defaults: detector input 768 (the model's), FP32 recognizer, the
             models on every frame that moves
  fast       INT8 recognizer, camera.process_fps = 10
  fast-1view fast, and recognizer_views = 1 (one crop per plate instead of three)
  fast-int8  fast, and the INT8 detector
  fast-640   fast, and detector_input_size = 640
  input-960  detector_input_size = 960 (a larger detector input is not more accurate here)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.demo import write_config  # noqa: E402
from scripts.make_crop_scenes import make_scenes  # noqa: E402
from scripts.make_demo_clip import make_clip  # noqa: E402

INT8 = 'recognizer = "{models}/plate-recognizer-int8.onnx"\n'
PROFILES: dict[str, dict[str, str]] = {
    "accurate": {"models": "", "camera": ""},
    "fast": {"models": INT8, "camera": "process_fps = 10.0\n"},
    "fast-1view": {
        "models": "recognizer_views = 1\n" + INT8,
        "camera": "process_fps = 10.0\n",
    },
    "fast-int8": {
        "models": 'detector = "{models}/plate-detector-int8.onnx"\n' + INT8,
        "camera": "process_fps = 10.0\n",
    },
    "fast-640": {"models": "detector_input_size = 640\n" + INT8, "camera": "process_fps = 10.0\n"},
    "input-960": {"models": "detector_input_size = 960\n", "camera": ""},
}
DATASETS = (
    ("eu", "openalpr-endtoend-eu", ()),
    ("br", "openalpr-endtoend-br", ()),
    ("us", "openalpr-us-plate-crops", ("--split", "holdout")),
)
US_SCENES = "us-scenes"
"""Key of the held-out US crops on real cars (made per run in the temporary folder)."""


def profile_config(folder: Path, profile: str, clip: Path) -> Path:
    parts = PROFILES[profile]
    return write_config(
        folder / f"{profile}.toml",
        device_id=f"profile-{profile}",
        clip=clip,
        state=folder / profile,
        models=parts["models"].replace("{models}", str(REPO / "models")),
        camera=parts["camera"],
    )


def last_json(cmd: list[str]) -> dict[str, Any]:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, required=True, help="the shared datasets directory")
    ap.add_argument("--clip", type=Path, default=None, help="busy 1080p clip for bench")
    ap.add_argument("--profiles", default=",".join(PROFILES))
    ap.add_argument("--limit", default="0", help="evaluate only the first N items (quick look)")
    args = ap.parse_args()
    edge = [sys.executable, "-m", "edge"]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="alpr-profiles-") as tmp:
        folder = Path(tmp)
        clip: Path = args.clip or folder / "busy1080.mp4"
        if args.clip is None:
            make_clip(clip, vehicles=8, seed=5, width=1920, height=1080)
        make_scenes(args.data, folder / US_SCENES)
        targets = [(key, str(args.data / name), extra) for key, name, extra in DATASETS]
        targets.append((US_SCENES, str(folder / US_SCENES), ()))
        for profile in args.profiles.split(","):
            config = profile_config(folder, profile, clip)
            row: dict[str, Any] = {}
            for key, target, extra in targets:
                row[key] = last_json(
                    [
                        *edge,
                        "evaluate",
                        target,
                        "--json",
                        "--config",
                        str(config),
                        "--limit",
                        args.limit,
                        *extra,
                    ]
                )
            row["bench"] = last_json([*edge, "bench", str(clip), "--json", "--config", str(config)])
            results[profile] = row
            print(f"{profile}: done", file=sys.stderr, flush=True)
    print(
        "| profile | eu recall | eu exact | br recall | br exact | US crops exact "
        "| US on cars recall | US on cars exact | bench fps | processed frames | reads | detect ms "
        "| CPU cores for real time | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for profile, row in results.items():
        b = row["bench"]
        clip_s = b["realtime_factor"] * b["wall_s"]
        b["cores_for_real_time"] = round(b["cpu_s"] / clip_s, 2) if clip_s else None
        print(
            f"| {profile} | {row['eu']['detection_recall']:.3f} | {row['eu']['exact_match']:.3f} "
            f"| {row['br']['detection_recall']:.3f} | {row['br']['exact_match']:.3f} "
            f"| {row['us']['exact_match']:.3f} | {row[US_SCENES]['detection_recall']:.3f} "
            f"| {row[US_SCENES]['exact_match']:.3f} | {b['fps']} | {b['frames_processed']} "
            f"| {b['reads']} | {b['stage_ms'].get('detect')} | {b['cores_for_real_time']} "
            f"| {b['peak_rss_mb']} |"
        )
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
