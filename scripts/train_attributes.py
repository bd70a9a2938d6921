"""Train the attribute classifiers: vehicle type, vehicle colour and plate region (state).

One command per shipped model::

    python scripts/train_attributes.py --task type   --data ../shared/datasets --minutes 8
    python scripts/train_attributes.py --task colour --data ../shared/datasets --minutes 8
    python scripts/train_attributes.py --task region --data ../shared/datasets --minutes 12

then ``python scripts/export_attributes.py --task TASK --data ../shared/datasets`` writes
``models/vehicle-type.onnx``, ``models/vehicle-colour.onnx`` or ``models/plate-region.onnx``
with its manifest and held-out accuracy.

Data and held-out splits (never trained on, measured by the export script):

* ``type``: ``vehicle-type-crops`` (100x100 traffic-camera crops). Classes: bike ->
  motorcycle, car, juggernaut -> truck, minibus -> van, pickup, truck -> truck. Held out: the
  file-name hash rule of scripts/synth/splits.py on the image name (``00017.jpg``), 30%.
* ``colour``: ``vehicle-colour``, its own ``split`` column (test held out). Classes: black,
  blue, brown (brown/beige), green, grey (the data's silver), red, white, yellow (yellow/gold)
  and other (the data's pink: rare on roads, and kept apart so it is not forced into red).
* ``region``: 51 US jurisdictions (50 states + DC, postal codes) and the countries DEU, FRA,
  NLD, ROU, BRA (ISO 3166-1 alpha-3, so that Germany is not Delaware). Data:
  ``us-plate-designs`` (reference artwork, state label), the TRAIN part of
  ``openalpr-us-plate-crops`` (hash rule; the held-out 30% is the measurement set),
  600 ``openalpr-br-plate-crops`` (BRA) and 200 synthetic eu_de/eu_fr/eu_nl/eu_ro/br_* plates from
  scripts/synth/plates.py; every plate goes through ``plates.augment_crop`` (perspective,
  margins, blur, low light, IR, glare, JPEG) to look like a camera crop.

Vehicle crops are augmented like the box edge.vehicle derives from the plate: random crops
that cut sides and roof, zoom-out with replicated borders, flips, blur, noise, low light, JPEG
(and grey IR frames for type only: a grey frame has no colour label).

Preprocessing contract (edge/inference/attributes.py repeats it): BGR uint8 crop -> resize
to the manifest's input size ignoring aspect (INTER_AREA shrinking, INTER_LINEAR enlarging)
-> float32 (x / 255 - 0.5) / 0.5 -> N x 3 x H x W. Output ``logits`` N x classes.

CPU budget: one torch thread, no worker processes, images decoded once into small arrays;
runs are bounded by ``--minutes`` (after loading) and save runs/attributes/TASK.pt.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path.insert(0, str(REPO))

from scripts.synth import plates  # noqa: E402 - the repo root must be on sys.path first
from scripts.synth.splits import is_holdout  # noqa: E402

log = logging.getLogger("train_attributes")

TYPE_MAP = {
    "bike": "motorcycle",
    "car": "car",
    "juggernaut": "truck",
    "minibus": "van",
    "pickup": "pickup",
    "truck": "truck",
}
TYPE_CLASSES = ("car", "pickup", "van", "truck", "motorcycle")
COLOUR_MAP = {
    "black": "black",
    "blue": "blue",
    "brown": "brown",
    "green": "green",
    "pink": "other",
    "red": "red",
    "silver": "grey",
    "white": "white",
    "yellow": "yellow",
}
COLOUR_CLASSES = ("black", "white", "grey", "red", "blue", "green", "brown", "yellow", "other")
US_CODES = tuple(
    [
        "AK",
        "AL",
        "AR",
        "AZ",
        "CA",
        "CO",
        "CT",
        "DC",
        "DE",
        "FL",
        "GA",
        "HI",
        "IA",
        "ID",
        "IL",
        "IN",
        "KS",
        "KY",
        "LA",
        "MA",
        "MD",
        "ME",
        "MI",
        "MN",
        "MO",
        "MS",
        "MT",
        "NC",
        "ND",
        "NE",
        "NH",
        "NJ",
        "NM",
        "NV",
        "NY",
        "OH",
        "OK",
        "OR",
        "PA",
        "RI",
        "SC",
        "SD",
        "TN",
        "TX",
        "UT",
        "VA",
        "VT",
        "WA",
        "WI",
        "WV",
        "WY",
    ]
)
COUNTRY_STYLES = {
    "DEU": ("eu_de",),
    "FRA": ("eu_fr",),
    "NLD": ("eu_nl",),
    "ROU": ("eu_ro",),
    "BRA": ("br_old", "br_mercosul"),
}
"""Countries by ISO 3166-1 alpha-3: two letters would collide with US codes (DE, Delaware)."""
REGION_CLASSES = US_CODES + tuple(COUNTRY_STYLES)
if len(set(REGION_CLASSES)) != len(REGION_CLASSES):
    raise SystemExit("region labels must be distinct")

VEHICLE_SIZE = (64, 64)
"""Height, width of the vehicle classifiers' input."""
REGION_SIZE = (48, 96)
STORE_SIZE = 80
"""Vehicle images are kept at 80x80 so crop jitter still has pixels to take."""
PLATE_STORE = (120, 240)
BATCH = 64
BR_REAL = 600
"""Real Brazilian crops among the non-US plates (200 synthetic ones per country beside them)."""


@dataclass(frozen=True)
class Task:
    name: str
    classes: tuple[str, ...]
    input_size: tuple[int, int]
    pool: tuple[int, int]
    """Spatial grid kept before the classifier: layout matters for state artwork."""
    widths: tuple[int, ...]


TASKS = {
    "type": Task("type", TYPE_CLASSES, VEHICLE_SIZE, (2, 2), (16, 32, 64, 96, 128)),
    "colour": Task("colour", COLOUR_CLASSES, VEHICLE_SIZE, (1, 1), (16, 32, 48, 64, 96)),
    "region": Task("region", REGION_CLASSES, REGION_SIZE, (2, 4), (24, 48, 64, 96, 128)),
}


# --------------------------------------------------------------------------- model


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallClassifier(nn.Module):
    """Five 3x3 convs, three max-pools, a pooled grid and one linear layer (< 0.3 M params)."""

    def __init__(self, num_classes: int, widths: tuple[int, ...], pool: tuple[int, int]) -> None:
        super().__init__()
        w0, w1, w2, w3, w4 = widths
        self.features = nn.Sequential(
            conv_bn(3, w0, stride=2),
            conv_bn(w0, w1),
            nn.MaxPool2d(2),
            conv_bn(w1, w2),
            nn.MaxPool2d(2),
            conv_bn(w2, w3),
            nn.MaxPool2d(2),
            conv_bn(w3, w4),
            nn.AdaptiveAvgPool2d(pool),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.2), nn.Linear(w4 * pool[0] * pool[1], num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


def build_model(task: Task) -> SmallClassifier:
    return SmallClassifier(len(task.classes), task.widths, task.pool)


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    """N x H x W x 3 BGR uint8 -> N x 3 x H x W float, (x / 255 - 0.5) / 0.5."""
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """To (height, width) ignoring aspect, as the runtime does."""
    h, w = size
    shrink = image.shape[0] > h or image.shape[1] > w
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


# --------------------------------------------------------------------------- data


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def load_vehicles(data: Path, task: Task, *, holdout: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x 80 x 80 x 3) and class indices of the train or held-out part."""
    if task.name == "type":
        folder = data / "vehicle-type-crops"
        rows = [
            (r["file"], TYPE_MAP[r["vehicle_type"]])
            for r in read_rows(folder / "labels.csv")
            if is_holdout(Path(r["file"]).name) == holdout
        ]
    else:
        folder = data / "vehicle-colour"
        rows = [
            (r["file"], COLOUR_MAP[r["color"]])
            for r in read_rows(folder / "labels.csv")
            if (r["split"] == "test") == holdout
        ]
    images, labels = [], []
    for name, label in rows:
        img = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if img is not None:
            images.append(resize(img, (STORE_SIZE, STORE_SIZE)))
            labels.append(task.classes.index(label))
    return np.stack(images), np.array(labels, np.int64)


def load_us_crops(data: Path, *, holdout: bool) -> list[tuple[np.ndarray, int]]:
    folder = data / "openalpr-us-plate-crops"
    out = []
    for row in read_rows(folder / "labels.csv"):
        if is_holdout(row["file"]) != holdout:
            continue
        img = cv2.imread(str(folder / row["file"]), cv2.IMREAD_COLOR)
        if img is not None:
            out.append((img, REGION_CLASSES.index(row["state"].strip().upper())))
    return out


def load_region_sources(data: Path, rng: np.random.Generator) -> list[list[tuple[np.ndarray, int]]]:
    """Clean plates to augment, by source: designs, real US train crops, non-US."""
    folder = data / "us-plate-designs"
    designs = []
    for row in read_rows(folder / "labels.csv"):
        img = cv2.imread(str(folder / row["file"]), cv2.IMREAD_COLOR)
        if img is not None and row["state"] in US_CODES:
            designs.append((resize(img, PLATE_STORE), REGION_CLASSES.index(row["state"])))
    real = [(resize(img, PLATE_STORE), k) for img, k in load_us_crops(data, holdout=False)]
    foreign = []
    for code, styles in COUNTRY_STYLES.items():
        for i in range(200):
            img, _ = plates.render_plate_clean(rng, style=styles[i % len(styles)])
            foreign.append((img, REGION_CLASSES.index(code)))
    br = data / "openalpr-br-plate-crops"
    br_rows = read_rows(br / "labels.csv")
    for i in rng.permutation(len(br_rows))[:BR_REAL]:
        img = cv2.imread(str(br / br_rows[i]["file"]), cv2.IMREAD_COLOR)
        if img is not None:
            foreign.append((img, REGION_CLASSES.index("BRA")))
    return [designs, real, foreign]


class RegionPool:
    """Augmented plate crops, refreshed a few at a time: augment_crop costs ~20 ms a crop."""

    SHARES = (0.45, 0.35, 0.20)
    """Designs, real US train crops, non-US: real crops are few, designs give every state."""

    def __init__(self, sources: list[list[tuple[np.ndarray, int]]], size: int, seed: int) -> None:
        self.sources = sources
        self.rng = np.random.default_rng(seed)
        self.images = np.zeros((size, *REGION_SIZE, 3), np.uint8)
        self.labels = np.zeros(size, np.int64)
        for i in range(size):
            self._fill(i)

    def _fill(self, i: int) -> None:
        source = self.sources[int(self.rng.choice(3, p=self.SHARES))]
        img, label = source[int(self.rng.integers(len(source)))]
        self.images[i] = resize(plates.augment_crop(self.rng, img), REGION_SIZE)
        self.labels[i] = label

    def batch(self, n: int, refresh: int) -> tuple[np.ndarray, np.ndarray]:
        for i in self.rng.integers(len(self.labels), size=refresh):
            self._fill(int(i))
        pick = self.rng.integers(len(self.labels), size=n)
        images = self.images[pick].astype(np.float32)
        # cheap extra variety per draw: exposure and contrast
        gain = self.rng.uniform(0.8, 1.2, (n, 1, 1, 1)).astype(np.float32)
        shift = self.rng.uniform(-20, 20, (n, 1, 1, 1)).astype(np.float32)
        return np.clip(images * gain + shift, 0, 255).astype(np.uint8), self.labels[pick]


def vehicle_crop(rng: np.random.Generator, img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A crop like the plate-derived vehicle box: sides or roof cut, or road around it."""
    s = img.shape[0]
    if rng.random() < 0.25:  # zoom out: the box reaches past the vehicle
        pad = int(s * rng.uniform(0.05, 0.25))
        img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        s = img.shape[0]
    scale = rng.uniform(0.6, 1.0)
    aspect = math.exp(rng.uniform(-0.2, 0.2))
    cw = min(s, int(s * scale * aspect))
    ch = min(s, int(s * scale / aspect))
    x = int(rng.integers(0, s - cw + 1))
    # the box sits on the plate: it keeps the lower part and may lose the roof
    y = s - ch if rng.random() < 0.4 else int(rng.integers(0, s - ch + 1))
    out = resize(img[y : y + ch, x : x + cw], size)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def degrade(rng: np.random.Generator, img: np.ndarray, *, grey_ok: bool) -> np.ndarray:
    """Camera faults: blur, low light, noise, JPEG, (IR grey)."""
    r = rng.random()
    if r < 0.2:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    elif r < 0.3:
        k = int(rng.integers(3, 6))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0 / k
        img = cv2.filter2D(img, -1, kernel)
    f: np.ndarray = img.astype(np.float32)  # float32 throughout; numpy's stubs say float64
    r = rng.random()
    if grey_ok and r < 0.1:
        g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
        f = np.repeat(((g - g.mean()) * rng.uniform(1.2, 2.0) + 140)[:, :, None], 3, axis=2)
    elif r < 0.3:  # low light under street lamps
        f = 255 * (f / 255) ** rng.uniform(1.1, 1.8) * rng.uniform(0.5, 0.85)
        f *= np.array([rng.uniform(0.8, 1.0), rng.uniform(0.9, 1.0), 1.0], np.float32)
    else:
        f = (f - 128) * rng.uniform(0.7, 1.25) + 128 + rng.uniform(-30, 30)
        f *= rng.uniform(0.92, 1.08, 3).astype(np.float32)
    if rng.random() < 0.4:
        f += rng.normal(0, rng.uniform(2, 10), f.shape).astype(np.float32)
    img = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 90))])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            img = decoded
    return img


def vehicle_batches(
    images: np.ndarray, labels: np.ndarray, task: Task, seed: int
) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    # balanced draws: each class as often as the others
    by_class = [np.flatnonzero(labels == k) for k in range(len(task.classes))]

    def draw() -> tuple[np.ndarray, np.ndarray]:
        ks = rng.integers(len(by_class), size=BATCH)
        idx = [int(rng.choice(by_class[k])) for k in ks]
        out = np.stack(
            [
                degrade(
                    rng, vehicle_crop(rng, images[i], task.input_size), grey_ok=task.name == "type"
                )
                for i in idx
            ]
        )
        return out, labels[idx]

    return draw


# --------------------------------------------------------------------------- training


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), 256):
            logits = model(to_tensor(images[start : start + 256]))
            correct += int((logits.argmax(1).numpy() == labels[start : start + 256]).sum())
    model.train()
    return correct / max(1, len(labels))


def save_atomic(obj: object, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--task", choices=sorted(TASKS), required=True)
    ap.add_argument("--data", type=Path, required=True, help="the shared datasets directory")
    ap.add_argument("--minutes", type=float, default=10.0, help="training time after loading")
    ap.add_argument("--run-dir", type=Path, default=REPO / "runs" / "attributes")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    task = TASKS[args.task]
    args.run_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        handlers=[
            logging.FileHandler(args.run_dir / f"{task.name}.log"),
            logging.StreamHandler(),
        ],
    )
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    plates.configure(args.data)
    t_load = time.monotonic()
    if task.name == "region":
        pool = RegionPool(load_region_sources(args.data, rng), 2500, args.seed)

        def draw() -> tuple[np.ndarray, np.ndarray]:
            return pool.batch(BATCH, refresh=6)

        held = load_us_crops(args.data, holdout=True)
        val_x = np.stack([resize(img, task.input_size) for img, _ in held])
        val_y = np.array([k for _, k in held], np.int64)
    else:
        train_x, train_y = load_vehicles(args.data, task, holdout=False)
        held_x, held_y = load_vehicles(args.data, task, holdout=True)
        val_x = np.stack([resize(img, task.input_size) for img in held_x])
        val_y = held_y
        draw = vehicle_batches(train_x, train_y, task, args.seed)
        log.info("train %d images, held out %d", len(train_y), len(val_y))
    log.info("loaded in %.0f s", time.monotonic() - t_load)

    model = build_model(task)
    params = sum(p.numel() for p in model.parameters())
    log.info("%s: %d classes, %d parameters", task.name, len(task.classes), params)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    budget = args.minutes * 60.0
    start = time.monotonic()
    step, seen, running = 0, 0, 0.0
    last_log = start
    while (elapsed := time.monotonic() - start) < budget:
        # warm-up then cosine decay over the time budget
        frac = elapsed / budget
        lr = args.lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * frac))
        for group in opt.param_groups:
            group["lr"] = lr
        images, labels = draw()
        loss = loss_fn(model(to_tensor(images)), torch.from_numpy(labels))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        seen += len(labels)
        running = 0.98 * running + 0.02 * float(loss) if step > 1 else float(loss)
        if time.monotonic() - last_log > 60:
            last_log = time.monotonic()
            log.info(
                "step %d, %.1f min, %d samples, loss %.3f, lr %.5f",
                step,
                elapsed / 60,
                seen,
                running,
                lr,
            )
    model.eval()
    accuracy = evaluate(model, val_x, val_y)
    log.info("done: %d steps, %d samples; held-out accuracy %.3f (torch)", step, seen, accuracy)
    save_atomic(
        {
            "task": task.name,
            "classes": list(task.classes),
            "input_size": list(task.input_size),
            "state_dict": model.state_dict(),
            "steps": step,
            "samples": seen,
            "minutes": round((time.monotonic() - start) / 60, 1),
            "parameters": params,
            "seed": args.seed,
        },
        args.run_dir / f"{task.name}.pt",
    )


if __name__ == "__main__":
    main()
