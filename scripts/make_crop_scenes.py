"""Put held-out plate crops on real cars: an end-to-end test set in the OpenALPR layout.

There is no labelled US scene set here, so the detector and recognizer are never measured
together on US plates. This makes one from data no model trained on: each held-out US crop
(``openalpr-us-plate-crops``, the 30 % of scripts/synth/splits.py) is warped, with a pole
camera's yaw, pitch and roll, onto the place of a labelled plate in a ro-plates-voc/valid
frame (1280x720 dash-cam photos the detector never trained on). That frame's own plates are
blurred out first, so every readable plate in the image is labelled. Plate heights are drawn
from 36 to 90 px (characters of about 15 to 40 px on a US plate); a mild blur and JPEG
re-encoding follow. Deterministic for a given ``--seed``::

    python scripts/make_crop_scenes.py --data ../shared/datasets --out /tmp/us-scenes
    alpr-edge evaluate /tmp/us-scenes --json

``--backgrounds closeup`` uses the close-up car photos of openalpr-endtoend-eu and -br instead
(evaluation sets, never trained on), the regime of photo benchmarks such as OpenALPR's
endtoend/us: the US plate takes the place of the car's own plate, about as wide as a US plate
is next to a European one (0.55 to 0.75 of its width).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge.evaluate import load_scenes  # noqa: E402
from scripts.synth.scenes import paste_quad, random_plate_quad, read_voc_boxes  # noqa: E402
from scripts.synth.splits import is_holdout  # noqa: E402

MIN_HEIGHT, MAX_HEIGHT = 36.0, 90.0
US_WIDTH_SHARE = (0.55, 0.75)
"""A US plate (305 mm) next to the European/Brazilian plate (400-520 mm) it replaces."""
CLOSEUP_SETS = ("openalpr-endtoend-eu", "openalpr-endtoend-br")
Box = tuple[float, float, float, float]


def held_out_crops(crops_dir: Path) -> list[tuple[str, str]]:
    """(file, text) of the held-out crops, in labels.csv order."""
    with (crops_dir / "labels.csv").open(newline="") as fh:
        rows = [(r["file"], r["text"].strip().upper()) for r in csv.DictReader(fh)]
    return [(f, t) for f, t in rows if is_holdout(f) and t.isalnum()]


def frames(ro_valid: Path) -> list[tuple[Path, list[Box]]]:
    """ro-plates-voc/valid frames with at least one labelled plate."""
    out = []
    for xml in sorted((ro_valid / "annots").glob("*.xml")):
        boxes = read_voc_boxes(xml)
        image = ro_valid / "images" / (xml.stem + ".jpg")
        if boxes and image.is_file():
            out.append((image, boxes))
    return out


def closeup_frames(data: Path) -> list[tuple[Path, list[Box]]]:
    """Photos of the OpenALPR end-to-end sets with their plate boxes (x1, y1, x2, y2), read
    as ``alpr-edge evaluate`` reads them."""
    return [
        (sample.image, [plate.box for plate in sample.plates])
        for name in CLOSEUP_SETS
        for sample in load_scenes(data / name)[0]
        if sample.plates
    ]


def blur_out(img: np.ndarray, box: Box) -> None:
    """Make a plate unreadable in place (a wide box blur over it and a small margin)."""
    x1, y1, x2, y2 = box
    pad = 0.3 * (y2 - y1)
    xa, ya = max(int(x1 - pad), 0), max(int(y1 - pad), 0)
    xb, yb = min(int(x2 + pad) + 1, img.shape[1]), min(int(y2 + pad) + 1, img.shape[0])
    if xb > xa and ya < yb:
        region = img[ya:yb, xa:xb]
        k = max(int(y2 - y1) | 1, 9)
        img[ya:yb, xa:xb] = cv2.blur(region, (k * 2 + 1, k))


def make_scene(
    rng: np.random.Generator,
    frame: np.ndarray,
    boxes: list[Box],
    plate: np.ndarray,
    closeup: bool = False,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The frame with its plates blurred and ``plate`` on the largest one's place: drawn from
    MIN_HEIGHT to MAX_HEIGHT tall, or (``closeup``) about as wide as a US plate there is."""
    img = frame.copy()
    for box in boxes:
        blur_out(img, box)
    x1, y1, x2, y2 = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    aspect = plate.shape[1] / plate.shape[0]
    if closeup:
        height = float(rng.uniform(*US_WIDTH_SHARE)) * (x2 - x1) / aspect
    else:
        height = float(rng.uniform(MIN_HEIGHT, MAX_HEIGHT))
    cx = float(np.clip((x1 + x2) / 2, height * aspect, img.shape[1] - height * aspect))
    cy = float(np.clip((y1 + y2) / 2, height, img.shape[0] - height))
    quad = random_plate_quad(rng, cx, cy, height, aspect)
    paste_quad(img, plate, quad, rng)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (3, 3), float(rng.uniform(0.3, 1.0)))
    quality = int(rng.integers(60, 95))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    if decoded is not None:
        img = decoded
    bx1, by1 = np.floor(quad.min(axis=0)).astype(int)
    bx2, by2 = np.ceil(quad.max(axis=0)).astype(int)
    return img, (int(bx1), int(by1), int(bx2 - bx1), int(by2 - by1))


def make_scenes(
    data: Path,
    out: Path,
    crops_name: str = "openalpr-us-plate-crops",
    seed: int = 0,
    backgrounds: str = "ro",
) -> int:
    """Write the scenes into ``out``; returns how many. ``backgrounds``: "ro" (dash-cam frames
    of ro-plates-voc/valid) or "closeup" (the OpenALPR end-to-end photos)."""
    crops_dir = data / crops_name
    crops = held_out_crops(crops_dir)
    closeup = backgrounds == "closeup"
    scenes = closeup_frames(data) if closeup else frames(data / "ro-plates-voc" / "valid")
    if not crops or not scenes:
        raise SystemExit(f"make_crop_scenes: no held-out crops in {crops_dir} or no frames")
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for i, (name, text) in enumerate(crops):
        plate = cv2.imread(str(crops_dir / name), cv2.IMREAD_COLOR)
        frame_path, boxes = scenes[i % len(scenes)]
        frame = cv2.imread(str(frame_path), cv2.IMREAD_COLOR)
        if plate is None or frame is None:
            continue
        img, (x, y, w, h) = make_scene(rng, frame, boxes, plate, closeup)
        stem = f"{Path(name).stem}_{frame_path.stem}"
        cv2.imwrite(str(out / f"{stem}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        (out / f"{stem}.txt").write_text(f"{stem}.jpg\t{x}\t{y}\t{w}\t{h}\t{text}\n")
        written += 1
    return written


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, required=True, help="the shared datasets directory")
    ap.add_argument("--out", type=Path, required=True, help="folder to write (OpenALPR layout)")
    ap.add_argument("--crops", default="openalpr-us-plate-crops", help="crops dataset name")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--backgrounds",
        choices=("ro", "closeup"),
        default="ro",
        help="ro-plates-voc dash-cam frames, or the OpenALPR end-to-end close-up photos",
    )
    args = ap.parse_args()
    written = make_scenes(args.data, args.out, args.crops, args.seed, args.backgrounds)
    print(f"{written} scenes in {args.out}")


if __name__ == "__main__":
    main()
