"""Render a synthetic traffic clip for the demo and the end-to-end tests.

A fixed pole camera looks down a two-lane road; vehicles approach, growing from far away to
the bottom of the frame, each with a rendered plate. The ground truth (plate text, first and
last frame of each pass) is written beside the clip as JSON, so a test can count reads per
pass. Nothing here comes from ../shared: plates use the procedural styles only.

    python scripts/make_demo_clip.py demo/clip.mp4 --vehicles 6 --seed 1
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.synth.plates import render_plate_clean

PROCEDURAL_STYLES = ("us", "us", "us_dark", "eu_de", "br_mercosul", "br_old")
CAR_COLOURS = (
    (40, 40, 40),
    (235, 235, 235),
    (160, 160, 165),
    (40, 40, 170),
    (150, 80, 30),
    (60, 110, 60),
    (30, 160, 210),
)


@dataclass(frozen=True)
class Pass:
    text: str
    first_frame: int
    last_frame: int
    lane: int


@dataclass
class _Vehicle:
    plate: np.ndarray
    text: str
    colour: tuple[int, int, int]
    start: int
    frames: int
    lane: int


def _road(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    img = np.zeros((height, width, 3), np.uint8)
    horizon = int(height * 0.28)
    img[:horizon] = (200, 175, 150)  # sky, BGR
    for _ in range(8):  # buildings on the horizon
        x = int(rng.integers(0, width))
        w = int(rng.integers(width // 20, width // 8))
        h = int(rng.integers(horizon // 3, horizon))
        shade = int(rng.integers(70, 150))
        cv2.rectangle(img, (x, horizon - h), (x + w, horizon), (shade, shade, shade + 10), -1)
    img[horizon:] = (95, 95, 98)  # asphalt
    vx = width // 2
    pts = np.array([[vx - 40, horizon], [vx + 40, horizon], [width, height], [0, height]])
    cv2.fillPoly(img, [pts.astype(np.int32)], (85, 86, 88))
    for k in range(12):  # dashed centre line
        t0, t1 = k / 12, (k + 0.5) / 12
        y0 = int(horizon + (height - horizon) * t0**1.6)
        y1 = int(horizon + (height - horizon) * t1**1.6)
        cv2.line(img, (vx, y0), (vx, y1), (220, 220, 220), max(1, int(1 + 8 * t1)))
    noise = rng.normal(0, 6, img.shape[:2])[..., None]
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _draw_vehicle(frame: np.ndarray, v: _Vehicle, t: float) -> None:
    height, width = frame.shape[:2]
    horizon = height * 0.28
    s = 0.25 + 0.75 * t  # apparent size grows as the vehicle approaches
    cx = width / 2 + (v.lane - 0.5) * width * 0.55 * s
    bottom = horizon + (height * 0.95 - horizon) * (0.15 + 0.95 * t)
    car_w = width * 0.36 * s
    car_h = car_w * 0.78
    x1, x2 = int(cx - car_w / 2), int(cx + car_w / 2)
    y2 = int(bottom)
    y1 = int(bottom - car_h)
    cv2.rectangle(frame, (x1, y1 + int(car_h * 0.35)), (x2, y2), v.colour, -1)
    roof = np.array(
        [
            [x1 + car_w * 0.12, y1 + car_h * 0.36],
            [x1 + car_w * 0.22, y1],
            [x2 - car_w * 0.22, y1],
            [x2 - car_w * 0.12, y1 + car_h * 0.36],
        ],
        np.int32,
    )
    cv2.fillPoly(frame, [roof], v.colour)
    glass = np.array(  # dark tinted windscreen: no occupants are ever drawn
        [
            [x1 + car_w * 0.17, y1 + car_h * 0.33],
            [x1 + car_w * 0.25, y1 + car_h * 0.05],
            [x2 - car_w * 0.25, y1 + car_h * 0.05],
            [x2 - car_w * 0.17, y1 + car_h * 0.33],
        ],
        np.int32,
    )
    cv2.fillPoly(frame, [glass], (45, 40, 35))
    light_y = int(y1 + car_h * 0.5)
    r = max(2, int(car_w * 0.06))
    cv2.ellipse(frame, (x1 + 2 * r, light_y), (r * 2, r), 0, 0, 360, (210, 230, 240), -1)
    cv2.ellipse(frame, (x2 - 2 * r, light_y), (r * 2, r), 0, 0, 360, (210, 230, 240), -1)
    cv2.rectangle(frame, (x1, y2 - int(car_h * 0.08)), (x2, y2), (30, 30, 30), -1)
    plate_w = car_w * 0.36
    ph, pw = v.plate.shape[:2]
    plate_h = plate_w * ph / pw
    px1 = int(cx - plate_w / 2)
    py1 = int(y1 + car_h * 0.66 - plate_h / 2)
    pw_i, ph_i = max(4, int(plate_w)), max(2, int(plate_h))
    plate = cv2.resize(v.plate, (pw_i, ph_i), interpolation=cv2.INTER_AREA)
    ys, xs = max(0, py1), max(0, px1)
    ye, xe = min(height, py1 + ph_i), min(width, px1 + pw_i)
    if ye > ys and xe > xs:
        frame[ys:ye, xs:xe] = plate[ys - py1 : ye - py1, xs - px1 : xe - px1]


def make_clip(
    out: Path,
    *,
    vehicles: int = 6,
    seed: int = 1,
    width: int = 1280,
    height: int = 720,
    fps: int = 25,
    pass_s: float = 2.4,
    gap_s: float = 1.2,
) -> list[Pass]:
    rng = np.random.default_rng(seed)
    background = _road(width, height, rng)
    pass_frames = int(pass_s * fps)
    fleet: list[_Vehicle] = []
    start = int(0.6 * fps)
    for i in range(vehicles):
        style = PROCEDURAL_STYLES[int(rng.integers(len(PROCEDURAL_STYLES)))]
        plate, text = render_plate_clean(rng, style=style)
        colour = CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))]
        fleet.append(_Vehicle(plate, text, colour, start, pass_frames, lane=i % 2))
        # Every third vehicle overlaps the previous one in the other lane.
        start += pass_frames // 2 if i % 3 == 1 else pass_frames + int(gap_s * fps)
    total = max((v.start + v.frames for v in fleet), default=0) + int(1.0 * fps)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise SystemExit(f"cannot write video {out}")
    passes = [Pass(v.text, v.start, v.start + v.frames - 1, v.lane) for v in fleet]
    try:
        for index in range(total):
            frame = background.copy()
            live = [v for v in fleet if v.start <= index < v.start + v.frames]
            for v in sorted(live, key=lambda v: index - v.start):  # far ones first
                _draw_vehicle(frame, v, (index - v.start) / v.frames)
            writer.write(frame)
    finally:
        writer.release()
    truth: dict[str, object] = {"fps": fps, "frames": total, "width": width, "height": height}
    truth["passes"] = [asdict(p) for p in passes]
    out.with_suffix(".json").write_text(json.dumps(truth, indent=2), encoding="utf-8")
    return passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output .mp4; ground truth goes to .json beside it")
    parser.add_argument("--vehicles", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--gap-s", type=float, default=1.2, help="empty road between vehicles")
    args = parser.parse_args()
    passes = make_clip(
        args.out,
        vehicles=args.vehicles,
        seed=args.seed,
        width=args.width,
        height=args.height,
        fps=args.fps,
        gap_s=args.gap_s,
    )
    print(f"wrote {args.out}: {len(passes)} vehicle passes: {', '.join(p.text for p in passes)}")


if __name__ == "__main__":
    main()
