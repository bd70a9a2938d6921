"""Scene compositing for the plate detector: plates with exactly known corners in varied scenes.

Every sample is a square training crop (the detector is fully convolutional, so a small crop
teaches it as well as a whole frame and is much cheaper) with a list of plate quadrilaterals
(top-left, top-right, bottom-right, bottom-left, in crop pixels) and an ignore flag for plates
too small or too cut off to count either way.

Sources: real Romanian dash-cam frames (their labelled plates stay positives), procedurally drawn
road scenes with vehicles, and texture backgrounds; plate textures are real crops (Brazilian
crops, the training part of the US crops, US plate designs) and, once it exists, the synthetic
renderer in ``scripts/synth/plates.py``.
"""

from __future__ import annotations

import csv
import importlib
import logging
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from scripts.synth.splits import is_holdout

log = logging.getLogger(__name__)

Quad = np.ndarray
"""4 x 2 float32: top-left, top-right, bottom-right, bottom-left."""

MIN_PLATE_HEIGHT = 6.0
"""Plates shorter than this (input pixels) are marked ignore: too small to read, so a
detection there is neither rewarded nor punished."""

DETECTION_LONG_SIDE = 768
"""Long side the daemon feeds the detector; real frames are scaled relative to it."""


@dataclass
class Sample:
    image: np.ndarray
    quads: list[Quad] = field(default_factory=list)
    ignore: list[bool] = field(default_factory=list)


def _read(path: Path) -> np.ndarray | None:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return img


def read_voc_boxes(xml_path: Path) -> list[tuple[float, float, float, float]]:
    root = ET.parse(xml_path).getroot()  # noqa: S314 - our own read-only dataset
    boxes = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        vals = [float(bb.findtext(k, "0")) for k in ("xmin", "ymin", "xmax", "ymax")]
        boxes.append((vals[0], vals[1], vals[2], vals[3]))
    return boxes


def box_quad(x1: float, y1: float, x2: float, y2: float) -> Quad:
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)


class SceneBank:
    """Everything a sample is made from, decoded once and kept in memory."""

    def __init__(self, data_dir: Path, *, max_frames: int | None = None) -> None:
        t0 = time.monotonic()
        self.data_dir = data_dir
        ro = data_dir / "ro-plates-voc" / "train"
        self.frames: list[np.ndarray] = []
        self.frame_quads: list[list[Quad]] = []
        for xml in sorted((ro / "annots").glob("*.xml"))[:max_frames]:
            img = _read(ro / "images" / (xml.stem + ".jpg"))
            if img is None:
                continue
            self.frames.append(img)
            self.frame_quads.append([box_quad(*b) for b in read_voc_boxes(xml)])

        self.plates: list[np.ndarray] = []
        br = data_dir / "openalpr-br-plate-crops"
        for row in _csv_rows(br / "labels.csv")[: None if max_frames is None else 200]:
            img = _read(br / row["file"])
            if img is not None:
                self.plates.append(img)
        us = data_dir / "openalpr-us-plate-crops"
        self.n_us_train = 0
        for row in _csv_rows(us / "labels.csv"):
            # The recognizer measures on the held-out US crops: never let them in here.
            if is_holdout(row["file"]):
                continue
            img = _read(us / row["file"])
            if img is not None:
                self.plates.append(img)
                self.n_us_train += 1
        self.designs: list[np.ndarray] = []
        des = data_dir / "us-plate-designs"
        for row in _csv_rows(des / "labels.csv")[: None if max_frames is None else 200]:
            img = _read(des / row["file"])
            if img is not None:
                self.designs.append(_trim_white_border(img))
        self.vehicles: list[np.ndarray] = []
        veh = data_dir / "vehicle-type-crops"
        for row in _csv_rows(veh / "labels.csv")[:: 4 if max_frames is None else 40]:
            img = _read(veh / row["file"])
            if img is not None:
                self.vehicles.append(img)
        self.synth = SyntheticPlates()
        log.info(
            "scene bank: %d frames, %d plate crops (%d US train), %d designs, %d vehicles in %.1fs",
            len(self.frames),
            len(self.plates),
            self.n_us_train,
            len(self.designs),
            len(self.vehicles),
            time.monotonic() - t0,
        )

    def plate_texture(self, rng: np.random.Generator) -> np.ndarray:
        r = rng.random()
        if r < 0.35:
            synth = self.synth.render(rng)
            if synth is not None:
                return synth
        if r < 0.6 and self.designs:
            return self.designs[int(rng.integers(len(self.designs)))]
        return self.plates[int(rng.integers(len(self.plates)))]


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _trim_white_border(img: np.ndarray) -> np.ndarray:
    """Design images are padded with white on some sides; the plate edge is where it stops."""
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    rows = np.where((grey < 235).mean(axis=1) > 0.1)[0]
    cols = np.where((grey < 235).mean(axis=0) > 0.1)[0]
    if len(rows) < 20 or len(cols) < 40:
        return img
    return img[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


class SyntheticPlates:
    """Polls for the recognizer engineer's renderer; real crops stand in until it appears.

    Their module is in active development, so any failure just falls back to real crops.
    """

    POLL_SECONDS = 60.0
    POOL_SIZE = 400

    def __init__(self) -> None:
        self._render: Callable[[np.random.Generator], tuple[np.ndarray, str]] | None = None
        self._next_poll = 0.0
        self._failures = 0
        self._pool: list[np.ndarray] = []

    def render(self, rng: np.random.Generator) -> np.ndarray | None:
        # Rendering costs ~40 ms a plate: keep a rolling pool so the data worker keeps up with
        # training, while still adding fresh plates all the time.
        if len(self._pool) >= self.POOL_SIZE and rng.random() > 0.15:
            return self._pool[int(rng.integers(len(self._pool)))]
        img = self._render_new(rng)
        if img is not None:
            if len(self._pool) < self.POOL_SIZE:
                self._pool.append(img)
            else:
                self._pool[int(rng.integers(self.POOL_SIZE))] = img
        return img

    def _render_new(self, rng: np.random.Generator) -> np.ndarray | None:
        if self._render is None:
            now = time.monotonic()
            if now < self._next_poll or self._failures > 20:
                return None
            self._next_poll = now + self.POLL_SECONDS
            path = Path(__file__).with_name("plates.py")
            if not path.is_file():
                return None
            try:
                if "scripts.synth.plates" in sys.modules:
                    mod = importlib.reload(sys.modules["scripts.synth.plates"])
                else:
                    mod = importlib.import_module("scripts.synth.plates")
                self._render = mod.render_plate_clean
                log.info("synthetic plates from %s are now in the mix", path)
            except Exception as exc:
                self._failures += 1
                log.info("synthetic plates not usable yet: %s", exc)
                return None
        try:
            img, _text = self._render(rng)
            img = np.asarray(img)
            if img.ndim == 2:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            if img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 8:
                return None
            return np.ascontiguousarray(img[:, :, :3]).astype(np.uint8)
        except Exception:
            self._failures += 1
            if self._failures > 20:
                self._render = None
            return None


# ---------------------------------------------------------------------------------------------
# plate geometry and pasting


def random_plate_quad(
    rng: np.random.Generator, cx: float, cy: float, height: float, aspect: float
) -> Quad:
    """A plate seen from a pole camera: mostly upright, some yaw, pitch and roll."""
    w = height * aspect
    h = height
    yaw = rng.normal(0, 0.18)  # horizontal foreshortening and a side taller than the other
    w *= np.cos(yaw)
    persp = np.clip(rng.normal(0, 0.06), -0.15, 0.15) * h
    pitch = np.clip(rng.normal(0, 0.08), -0.2, 0.2) * w  # top narrower/wider than bottom
    quad = np.array(
        [
            [-w / 2 + pitch / 2, -h / 2 - persp],
            [w / 2 - pitch / 2, -h / 2 + persp],
            [w / 2, h / 2 + persp],
            [-w / 2, h / 2 - persp],
        ],
        np.float32,
    )
    roll = np.clip(rng.normal(0, 0.07), -0.25, 0.25)
    shear = np.clip(rng.normal(0, 0.05), -0.15, 0.15)
    c, s = np.cos(roll), np.sin(roll)
    m = np.array([[c, -s], [s, c]], np.float32) @ np.array([[1, shear], [0, 1]], np.float32)
    return (quad @ m.T + np.array([cx, cy], np.float32)).astype(np.float32)


def photometric_plate(rng: np.random.Generator, tex: np.ndarray) -> np.ndarray:
    out = tex.astype(np.float32)
    out = out * rng.uniform(0.6, 1.25) + rng.uniform(-30, 30)
    out += rng.normal(0, 8, size=(1, 1, 3))
    if rng.random() < 0.15:
        # dirt: low-frequency dark blotches
        blot = cv2.resize(rng.random((4, 8)).astype(np.float32), (tex.shape[1], tex.shape[0]))
        out *= (1 - 0.5 * blot**3)[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def paste_quad(canvas: np.ndarray, tex: np.ndarray, quad: Quad, rng: np.random.Generator) -> None:
    """Warp ``tex`` onto ``canvas`` (in place) so its corners land exactly on ``quad``."""
    h, w = tex.shape[:2]
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    x0 = max(int(np.floor(quad[:, 0].min())) - 2, 0)
    y0 = max(int(np.floor(quad[:, 1].min())) - 2, 0)
    x1 = min(int(np.ceil(quad[:, 0].max())) + 2, canvas.shape[1])
    y1 = min(int(np.ceil(quad[:, 1].max())) + 2, canvas.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    dst = quad - np.array([x0, y0], np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    # Shrinking a texture many times over with one warp aliases; pre-blur like a lens would.
    scale = (quad[:, 1].max() - quad[:, 1].min()) / h
    if scale < 0.5:
        k = min(int(0.5 / scale) | 1, 15)
        tex = cv2.GaussianBlur(tex, (k, k), 0)
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpPerspective(
        tex, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    mask = np.zeros((size[1], size[0]), np.float32)
    cv2.fillConvexPoly(mask, np.round(dst * 16).astype(np.int32), 1.0, cv2.LINE_AA, shift=4)
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    if rng.random() < 0.5:
        # a dark frame or shadow edge around the plate, as plate holders and bumpers give
        ring = cv2.dilate(mask, np.ones((3, 3), np.uint8)) - mask
        region *= 1 - 0.6 * ring[..., None]
    canvas[y0:y1, x0:x1] = (region * (1 - mask[..., None]) + warped * mask[..., None]).astype(
        np.uint8
    )


def plate_aspect(rng: np.random.Generator, tex: np.ndarray) -> float:
    aspect = tex.shape[1] / tex.shape[0] * rng.uniform(0.88, 1.12)
    if aspect < 3.5 and rng.random() < 0.15:
        # Long single-row European plates (~4.7:1) are rare among the textures; stretching a
        # short plate gives the corner regression that shape without a new texture source.
        aspect *= rng.uniform(1.3, 1.9)
    return float(aspect)


def sample_plate_height(rng: np.random.Generator, lo: float = 7.0, hi: float = 140.0) -> float:
    # Log-uniform, weighted towards small plates: those are the hard, common case on a pole.
    u = rng.random() ** 1.3
    return float(np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))))


# ---------------------------------------------------------------------------------------------
# backgrounds


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    if rng.random() < 0.5:  # greys, white, black: most cars
        g = int(rng.integers(10, 240))
        return (g, g, g)
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


def procedural_scene(
    rng: np.random.Generator, bank: SceneBank, size: int
) -> tuple[np.ndarray, list[Quad]]:
    """A road with vehicles seen from the front or back; plates sit on their bumpers."""
    img = np.zeros((size, size, 3), np.uint8)
    horizon = int(rng.uniform(-0.2, 0.5) * size)
    sky = np.array(_random_colour(rng), np.float32)
    road = np.array([rng.uniform(40, 140)] * 3, np.float32) + rng.normal(0, 10, 3)
    ys = np.arange(size, dtype=np.float32)[:, None, None]
    t = np.clip((ys - horizon) / max(size - horizon, 1), 0, 1)
    img[:] = np.clip(np.where(ys < horizon, sky, road * (0.8 + 0.4 * t)), 0, 255).astype(np.uint8)
    noise = cv2.resize(rng.normal(0, 12, (size // 8, size // 8)).astype(np.float32), (size, size))
    img = np.clip(img + noise[..., None], 0, 255).astype(np.uint8)
    # buildings and poles above the horizon, lane marks below
    for _ in range(int(rng.integers(0, 6))):
        x = int(rng.integers(0, size))
        w = int(rng.integers(size // 10, size // 2))
        top = int(rng.integers(-size // 2, max(horizon, 1)))
        cv2.rectangle(img, (x, top), (x + w, max(horizon, top + 10)), _random_colour(rng), -1)
        for _ in range(int(rng.integers(0, 12))):
            wx, wy = x + int(rng.integers(0, w)), top + int(rng.integers(0, max(horizon - top, 1)))
            cv2.rectangle(img, (wx, wy), (wx + 8, wy + 12), _random_colour(rng), -1)
    for _ in range(int(rng.integers(0, 5))):
        x = int(rng.integers(0, size))
        cv2.line(
            img,
            (x, horizon),
            (int(x + rng.normal(0, size)), size),
            (220, 220, 220),
            int(rng.integers(1, 8)),
        )
    _text_distractors(rng, img, int(rng.integers(0, 4)))

    quads: list[Quad] = []
    for _ in range(int(rng.integers(1, 4))):
        ph = sample_plate_height(rng)
        tex = bank.plate_texture(rng)
        aspect = plate_aspect(rng, tex)
        pw = ph * aspect
        cw = pw * rng.uniform(3.2, 5.0)  # vehicle about 4 plate widths wide
        ch = cw * rng.uniform(0.55, 0.9)
        cx = rng.uniform(-0.1, 1.1) * size
        cy = rng.uniform(0.2, 1.2) * size
        body = box_quad(cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch * 0.6)
        if any(_overlaps(body, q) for q in quads):
            continue  # a vehicle drawn over an earlier plate would leave a wrong label
        _draw_vehicle(rng, img, cx, cy, cw, ch)
        px, py = cx + rng.normal(0, cw * 0.05), cy + ch * rng.uniform(0.15, 0.32)
        quad = random_plate_quad(rng, px, py, ph, aspect)
        paste_quad(img, photometric_plate(rng, tex), quad, rng)
        quads.append(quad)
    return img, quads


def _draw_vehicle(
    rng: np.random.Generator, img: np.ndarray, cx: float, cy: float, w: float, h: float
) -> None:
    colour = _random_colour(rng)
    x0, y0, x1, y1 = int(cx - w / 2), int(cy - h / 2), int(cx + w / 2), int(cy + h / 2)
    if rng.random() < 0.4 and len(img):  # sometimes a real vehicle photo as the body
        return _draw_vehicle_photo(rng, img, x0, y0, x1, y1)
    cv2.rectangle(img, (x0, y0), (x1, y1), colour, -1)
    dark = tuple(int(v * 0.3) for v in colour)
    # windscreen, lights, grille, wheels: shapes a plate detector must learn to ignore
    cv2.rectangle(
        img,
        (int(x0 + w * 0.12), int(y0 + h * 0.05)),
        (int(x1 - w * 0.12), int(y0 + h * 0.4)),
        (30, 30, 30) if rng.random() < 0.7 else dark,
        -1,
    )
    lc = (int(rng.integers(180, 256)),) * 3
    for sx in (x0 + w * 0.12, x1 - w * 0.12):
        cv2.ellipse(
            img,
            (int(sx), int(y0 + h * 0.55)),
            (max(int(w * 0.08), 1), max(int(h * 0.06), 1)),
            0,
            0,
            360,
            lc,
            -1,
        )
    for k in range(int(rng.integers(0, 5))):
        yy = int(y0 + h * (0.5 + 0.04 * k))
        cv2.line(img, (int(cx - w * 0.2), yy), (int(cx + w * 0.2), yy), dark, 1 + int(w > 200))
    for sx in (x0 + w * 0.15, x1 - w * 0.15):
        cv2.rectangle(
            img,
            (int(sx - w * 0.07), int(y1 - h * 0.05)),
            (int(sx + w * 0.07), int(y1 + h * 0.1)),
            (15, 15, 15),
            -1,
        )
    return None


def _draw_vehicle_photo(
    rng: np.random.Generator, img: np.ndarray, x0: int, y0: int, x1: int, y1: int
) -> None:
    bank_img = _VEHICLES[int(rng.integers(len(_VEHICLES)))] if _VEHICLES else None
    if bank_img is None or x1 - x0 < 4 or y1 - y0 < 4:
        return
    _blit(img, cv2.resize(bank_img, (x1 - x0, y1 - y0)), x0, y0)


_VEHICLES: list[np.ndarray] = []


def _blit(img: np.ndarray, patch: np.ndarray, x0: int, y0: int) -> None:
    h, w = patch.shape[:2]
    ax0, ay0 = max(x0, 0), max(y0, 0)
    ax1, ay1 = min(x0 + w, img.shape[1]), min(y0 + h, img.shape[0])
    if ax1 > ax0 and ay1 > ay0:
        img[ay0:ay1, ax0:ax1] = patch[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0]


_WORDS = [
    "STOP",
    "PARKING",
    "EXIT",
    "SALE",
    "OPEN",
    "BUS",
    "TAXI",
    "GARAGE",
    "CAFE",
    "SCHOOL",
    "NO ENTRY",
    "24H",
    "HOTEL",
    "PHARMACY",
    "BANK",
    "AB 12",
    "KM 5",
]


def _text_distractors(rng: np.random.Generator, img: np.ndarray, n: int) -> None:
    """Shop signs, road signs and stickers: text that is not on a plate."""
    for _ in range(n):
        if rng.random() < 0.3:
            _badge(rng, img)
            continue
        word = _WORDS[int(rng.integers(len(_WORDS)))]
        scale = rng.uniform(0.4, 2.5)
        thick = int(rng.integers(1, 4))
        (tw, th), _ = cv2.getTextSize(word, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        x = int(rng.integers(-tw // 2, img.shape[1]))
        y = int(rng.integers(0, img.shape[0] + th))
        pad = int(th * rng.uniform(0.3, 1.5))
        # Signs are taller than plates around their text, or not framed at all.
        if rng.random() < 0.7:
            cv2.rectangle(
                img, (x - pad, y - th - pad), (x + tw + pad, y + 2 * pad), _random_colour(rng), -1
            )
        cv2.putText(
            img,
            word,
            (x, y),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            _random_colour(rng),
            thick,
            cv2.LINE_AA,
        )


_BADGES = [
    "SK",
    "D",
    "NL",
    "RO",
    "CZ",
    "GB",
    "F",
    "TDI",
    "GTI",
    "4x4",
    "AUDI",
    "SKODA",
    "CITROEN",
    "OPEL",
    "FORD",
    "TOYOTA",
    "VW",
]


def _badge(rng: np.random.Generator, img: np.ndarray) -> None:
    """Country ovals and maker badges: short text on a car's back that is not a plate."""
    word = _BADGES[int(rng.integers(len(_BADGES)))]
    scale = rng.uniform(0.3, 1.8)
    thick = int(rng.integers(1, 4))
    (tw, th), _ = cv2.getTextSize(word, cv2.FONT_HERSHEY_DUPLEX, scale, thick)
    x = int(rng.integers(0, max(img.shape[1] - tw, 1)))
    y = int(rng.integers(th, img.shape[0]))
    light = int(rng.integers(190, 256))
    if len(word) <= 2 and rng.random() < 0.7:
        centre = (x + tw // 2, y - th // 2)
        axes = (int(tw * 0.9) + 4, int(th * 1.1) + 3)
        cv2.ellipse(img, centre, axes, 0, 0, 360, (light, light, light), -1, cv2.LINE_AA)
        cv2.ellipse(img, centre, axes, 0, 0, 360, (20, 20, 20), max(thick // 2, 1), cv2.LINE_AA)
        colour: tuple[int, int, int] = (15, 15, 15)
    else:
        colour = (light, light, light)  # chrome lettering
    cv2.putText(img, word, (x, y), cv2.FONT_HERSHEY_DUPLEX, scale, colour, thick, cv2.LINE_AA)


def texture_background(rng: np.random.Generator, bank: SceneBank, size: int) -> np.ndarray:
    r = rng.random()
    if r < 0.4 and bank.vehicles:
        # a mosaic of real vehicle photos: clutter that contains car-like structure
        n = int(rng.integers(1, 4))
        cell = size // n + 1
        img: np.ndarray = np.zeros((size, size, 3), np.uint8)
        for i in range(n):
            for j in range(n):
                v = bank.vehicles[int(rng.integers(len(bank.vehicles)))]
                _blit(img, cv2.resize(v, (cell, cell)), j * cell, i * cell)
        return img
    if r < 0.7:
        low = rng.random((int(rng.integers(2, 12)),) * 2 + (3,)).astype(np.float32)
        img = cv2.resize(low * 255, (size, size), interpolation=cv2.INTER_CUBIC)
        img += rng.normal(0, rng.uniform(2, 25), img.shape).astype(np.float32)
        return np.clip(img, 0, 255).astype(np.uint8)
    img = np.full((size, size, 3), _random_colour(rng), np.uint8)
    for _ in range(int(rng.integers(5, 40))):
        p1 = tuple(int(v) for v in rng.integers(-size // 4, size * 5 // 4, 2))
        p2 = tuple(int(v) for v in rng.integers(-size // 4, size * 5 // 4, 2))
        if rng.random() < 0.5:
            cv2.rectangle(img, p1, p2, _random_colour(rng), int(rng.choice([-1, 1, 2, 4])))
        else:
            cv2.line(img, p1, p2, _random_colour(rng), int(rng.integers(1, 6)))
    _text_distractors(rng, img, int(rng.integers(0, 5)))
    return img


def frame_crop(
    rng: np.random.Generator, bank: SceneBank, size: int
) -> tuple[np.ndarray, list[Quad]]:
    """A crop of a real frame scaled as the daemon would (plus 0.3-2x), its plates labelled."""
    i = int(rng.integers(len(bank.frames)))
    frame, quads = bank.frames[i], bank.frame_quads[i]
    base = DETECTION_LONG_SIDE / max(frame.shape[:2])
    s = base * float(np.exp(rng.uniform(np.log(0.4), np.log(2.2))))
    fh, fw = frame.shape[:2]
    # Choose the crop in frame pixels first so only the needed part is resized.
    cw = size / s
    if quads and rng.random() < 0.75:
        q = quads[int(rng.integers(len(quads)))]
        c = q.mean(axis=0)
        fx = c[0] - rng.uniform(0.1, 0.9) * cw
        fy = c[1] - rng.uniform(0.1, 0.9) * cw
    else:
        fx = rng.uniform(min(0, fw - cw), max(0, fw - cw))
        fy = rng.uniform(min(0, fh - cw), max(0, fh - cw))
    m = np.array([[s, 0, -fx * s], [0, s, -fy * s]], np.float32)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    img = cv2.warpAffine(frame, m, (size, size), flags=interp, borderMode=cv2.BORDER_CONSTANT)
    out = [((q - np.array([fx, fy], np.float32)) * s).astype(np.float32) for q in quads]
    return img, out


# ---------------------------------------------------------------------------------------------
# global augmentation


def augment(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    out = img
    if rng.random() < 0.25:  # motion or focus blur
        if rng.random() < 0.5:
            k = int(rng.integers(3, 9))
            kern: np.ndarray = np.zeros((k, k), np.float32)
            kern[k // 2, :] = 1.0 / k
            rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1)
            kern = cv2.warpAffine(kern, rot, (k, k))
            out = cv2.filter2D(out, -1, kern / max(kern.sum(), 1e-6))
        else:
            out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.8))
    f: np.ndarray = out.astype(np.float32)  # float64 after some of the steps below
    r = rng.random()
    if r < 0.15:  # IR night: monochrome, plates bright against dark
        g: np.ndarray = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY).astype(np.float32)
        g = 255 * (g / 255) ** rng.uniform(0.6, 1.6) * rng.uniform(0.7, 1.3)
        f = np.repeat(g[..., None], 3, axis=2)
    elif r < 0.3:  # low light
        f = 255 * (f / 255) ** rng.uniform(1.3, 2.5) * rng.uniform(0.3, 0.8)
    elif r < 0.4:
        f = np.repeat(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)[..., None], 3, axis=2).astype(
            np.float32
        )
    else:
        f = f * rng.uniform(0.7, 1.3, size=(1, 1, 3)) + rng.uniform(-25, 25)
    if rng.random() < 0.15:  # glare / headlight bloom
        h, w = f.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rad = rng.uniform(0.05, 0.4) * w
        f += (
            rng.uniform(60, 200)
            * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * rad**2))[..., None]
        )
    if rng.random() < 0.1:  # rain streaks
        layer = np.zeros(f.shape[:2], np.float32)
        ang = rng.normal(0, 0.3)
        for _ in range(int(rng.integers(50, 300))):
            x, y = rng.uniform(0, f.shape[1]), rng.uniform(0, f.shape[0])
            ln = rng.uniform(5, 25)
            cv2.line(layer, (int(x), int(y)), (int(x + ln * np.sin(ang)), int(y + ln)), 1.0, 1)
        f = f * (1 - 0.3 * layer[..., None]) + 200 * 0.3 * layer[..., None]
    if rng.random() < 0.5:
        f += rng.normal(0, rng.uniform(1, 12), f.shape)
    out = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        q = int(rng.integers(20, 95))
        ok, enc = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])
        decoded = cv2.imdecode(enc, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            out = decoded
    return out


# ---------------------------------------------------------------------------------------------


def make_sample(rng: np.random.Generator, bank: SceneBank, size: int = 384) -> Sample:
    global _VEHICLES
    if not _VEHICLES:
        _VEHICLES = bank.vehicles
    r = rng.random()
    if r < 0.45 and bank.frames:
        img, quads = frame_crop(rng, bank, size)
        if quads and rng.random() < 0.3:
            # Swap the real plate for another texture at exactly the labelled place.
            for q in quads:
                if np.ptp(q[:, 1]) > 5:
                    tex = photometric_plate(rng, bank.plate_texture(rng))
                    paste_quad(img, tex, q, rng)
        n_extra = int(rng.integers(0, 3)) if rng.random() < 0.4 else 0
    elif r < 0.8:
        img, quads = procedural_scene(rng, bank, size)
        n_extra = 0
    else:
        img, quads = texture_background(rng, bank, size), []
        n_extra = int(rng.integers(0, 4))
    img = np.ascontiguousarray(img)
    for _ in range(n_extra):
        tex = bank.plate_texture(rng)
        aspect = plate_aspect(rng, tex)
        ph = sample_plate_height(rng)
        quad = random_plate_quad(rng, rng.uniform(0, size), rng.uniform(0, size), ph, aspect)
        if any(_overlaps(quad, q) for q in quads):
            continue
        paste_quad(img, photometric_plate(rng, tex), quad, rng)
        quads.append(quad)
    if rng.random() < 0.35:
        add_lights(rng, img, quads, int(rng.integers(1, 5)))
    img = augment(rng, img)
    kept: list[Quad] = []
    ignore: list[bool] = []
    for q in quads:
        c = q.mean(axis=0)
        if not (0 <= c[0] < size and 0 <= c[1] < size):
            continue
        height = float(np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2
        # visible fraction of the plate's bounding box
        x0, y0 = q.min(axis=0)
        x1, y1 = q.max(axis=0)
        vis = (min(x1, size) - max(x0, 0)) * (min(y1, size) - max(y0, 0))
        vis /= max((x1 - x0) * (y1 - y0), 1e-6)
        kept.append(q)
        ignore.append(height < MIN_PLATE_HEIGHT or vis < 0.6)
    return Sample(img, kept, ignore)


def add_lights(rng: np.random.Generator, img: np.ndarray, quads: list[Quad], n: int) -> None:
    """Glowing tail-light bars, reversing lights and lit signs (in place), away from plates:
    bright elongated blobs are what a young detector confuses with plates at night."""
    size = img.shape[0]
    glow = np.zeros(img.shape, np.float32)
    for _ in range(n):
        h = float(np.exp(rng.uniform(np.log(4), np.log(40))))
        w = h * rng.uniform(1.5, 7.0)
        cx, cy = rng.uniform(0, img.shape[1]), rng.uniform(0, size)
        quad = random_plate_quad(rng, cx, cy, h, w / h)
        if any(_overlaps(quad, q) for q in quads):
            continue
        r = rng.random()
        colour = (40, 40, 255) if r < 0.5 else (200, 220, 255) if r < 0.8 else (30, 160, 255)
        layer = np.zeros(img.shape, np.float32)
        pts = np.round(quad * 16).astype(np.int32)
        cv2.fillConvexPoly(layer, pts, colour, cv2.LINE_AA, shift=4)
        if rng.random() < 0.5:
            # a saturated core, as an over-exposed lamp gives
            core = quad.mean(axis=0) + (quad - quad.mean(axis=0)) * 0.6
            cv2.fillConvexPoly(layer, np.round(core * 16).astype(np.int32), (255, 255, 255),
                               cv2.LINE_AA, shift=4)  # fmt: skip
        glow += layer + 0.8 * cv2.GaussianBlur(layer, (0, 0), max(h * rng.uniform(0.3, 1.2), 1))
    img[:] = np.clip(img.astype(np.float32) + glow, 0, 255).astype(np.uint8)


def _overlaps(a: Quad, b: Quad) -> bool:
    ax0, ay0 = a.min(axis=0)
    ax1, ay1 = a.max(axis=0)
    bx0, by0 = b.min(axis=0)
    bx1, by1 = b.max(axis=0)
    pad = 0.3 * max(ay1 - ay0, by1 - by0)
    return not (ax1 + pad < bx0 or bx1 + pad < ax0 or ay1 + pad < by0 or by1 + pad < ay0)
