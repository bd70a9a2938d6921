"""Train the plate recognizer: a small CRNN (CNN + BiLSTM) with CTC, plus a plate-status head.

One command reproduces the shipped model::

    python scripts/train_recognizer.py --data ../shared/datasets --minutes 120

Data, mixed in every batch of 64:
  * 32 synthetic crops from scripts/synth/plates.py (render_plate: US, EU, BR, paper tags,
    cut-off and occluded plates, camera augmentation), generated on the fly;
  * 14 real US crops from openalpr-us-plate-crops, TRAIN part only, augmented;
  * 14 real Brazilian crops from openalpr-br-plate-crops, augmented, with the reviewed label
    corrections of scripts/synth/br_label_review.csv;
  (real crops are drawn with rare_char_weights: crops with rare characters come up more often);
  * 4 non-plate crops (render_non_plate): empty CTC target, status "none".
Hold-out rule (never trained on): a US crop is held out when
``int(sha256(file_name).hexdigest(), 16) % 10 < 3`` (file_name like ``ak1165.jpg``); the same
rule as scripts/synth/splits.py so every model in the project measures on the same 30%.

Preprocessing contract (the runtime in edge/inference/recognizer.py repeats it exactly):
BGR uint8 crop -> grey (cv2.COLOR_BGR2GRAY) -> resize to 128x32 (INTER_AREA when shrinking,
INTER_LINEAR when enlarging) -> float32 (x / 255 - 0.5) / 0.5 -> N x 1 x 32 x 128.
Outputs: ``logits`` N x 32 x 37 (CTC, blank = 0, then 0-9A-Z) and ``status`` N x 4 over
["full", "partial", "paper", "none"].

Runs are time-bounded (``--minutes``), checkpoint to runs/recognizer/last.pt every few minutes,
resume with ``--resume``, keep an exponential moving average of the weights (exported instead
of the last step's weights), log to runs/recognizer/train.log and export the ONNX model (via
scripts/export_recognizer.py, in a subprocess) every ``--export-every`` minutes. CPU budget:
the training process uses one torch thread and one data worker process.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path.insert(0, str(REPO))

from scripts.synth import plates  # noqa: E402 - the repo root must be on sys.path first

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # index + 1 in the output; 0 is the CTC blank
STATUS_CLASSES = ("full", "partial", "paper", "none")
INPUT_H, INPUT_W = 32, 128
HOLDOUT_RULE = "int(sha256(file_name).hexdigest(), 16) % 10 < 3  (file_name like 'ak1165.jpg')"
BATCH = {"synthetic": 32, "us": 14, "br": 14, "none": 4}

log = logging.getLogger("train_recognizer")


def is_holdout(file_name: str) -> bool:
    """The fixed 30% of openalpr-us-plate-crops kept out of training (by file-name hash)."""
    return int(hashlib.sha256(file_name.encode()).hexdigest(), 16) % 10 < 3


def preprocess(crop_bgr: np.ndarray) -> np.ndarray:
    """One crop -> 1 x 32 x 128 float32, exactly as the runtime does it."""
    grey = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY) if crop_bgr.ndim == 3 else crop_bgr
    shrink = grey.shape[0] > INPUT_H or grey.shape[1] > INPUT_W
    grey = cv2.resize(
        grey, (INPUT_W, INPUT_H), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )
    return ((grey.astype(np.float32) / 255.0 - 0.5) / 0.5)[None]


def encode(text: str) -> list[int]:
    return [ALPHABET.index(c) + 1 for c in text]


def greedy_decode(logits: np.ndarray) -> list[str]:
    """Best path: argmax per frame, collapse repeats, drop blanks (N x T x C logits)."""
    out = []
    for row in logits.argmax(-1):
        chars, prev = [], 0
        for k in row:
            if k != prev and k != 0:
                chars.append(ALPHABET[k - 1])
            prev = k
        out.append("".join(chars))
    return out


# --------------------------------------------------------------------------- model


def conv_bn(
    cin: int, cout: int, kernel: tuple[int, int] = (3, 3), pad: tuple[int, int] = (1, 1)
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class CRNN(nn.Module):
    """~0.8 M parameters: 6 convs to a 1 x 32 feature row, a BiLSTM, per-frame classes.

    32 frames over a 128 px wide crop: 4 px per frame, enough for 10 characters and the blanks
    CTC needs between repeats. The status head pools the convolutional features over time.
    """

    def __init__(self, num_classes: int = len(ALPHABET) + 1, num_status: int = 4) -> None:
        super().__init__()
        # Narrow early layers: on 2 shared CPU cores the full-resolution convs cost the most.
        self.features = nn.Sequential(
            conv_bn(1, 16),
            nn.MaxPool2d(2, 2),  # 16 x 64
            conv_bn(16, 48),
            nn.MaxPool2d(2, 2),  # 8 x 32
            conv_bn(48, 96),
            conv_bn(96, 96),
            nn.MaxPool2d((2, 1), (2, 1)),  # 4 x 32
            conv_bn(96, 160),
            nn.MaxPool2d((2, 1), (2, 1)),  # 2 x 32
            conv_bn(160, 192, kernel=(2, 3), pad=(0, 1)),  # 1 x 32
        )
        self.rnn = nn.LSTM(192, 128, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(256, num_classes)
        self.status = nn.Sequential(
            nn.Linear(192, 64), nn.ReLU(inplace=True), nn.Linear(64, num_status)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x).squeeze(2).permute(0, 2, 1)  # N x T x 192
        status = self.status(f.mean(dim=1))
        seq, _ = self.rnn(f)
        return self.classifier(self.dropout(seq)), status


# --------------------------------------------------------------------------- data


def load_real(data: Path) -> dict[str, list[tuple[np.ndarray, str]]]:
    """Real training crops in memory: US (train split only) and Brazilian."""
    real: dict[str, list[tuple[np.ndarray, str]]] = {"us": [], "br": []}
    us_dir = data / "openalpr-us-plate-crops"
    with (us_dir / "labels.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            text = row["text"].strip().upper()
            if is_holdout(row["file"]) or not text or any(c not in ALPHABET for c in text):
                continue
            img = cv2.imread(str(us_dir / row["file"]), cv2.IMREAD_COLOR)
            if img is not None:
                real["us"].append((img, text))
    br_dir = data / "openalpr-br-plate-crops"
    review = load_label_review(BR_LABEL_REVIEW)
    with (br_dir / "labels.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            text = row["text"].strip().upper()
            if row["file"] in review:
                text = review[row["file"]]  # "" drops the crop
            if not text or any(c not in ALPHABET for c in text):
                continue
            img = cv2.imread(str(br_dir / row["file"]), cv2.IMREAD_COLOR)
            if img is not None:
                real["br"].append((img, text))
    return real


BR_LABEL_REVIEW = SCRIPTS / "synth" / "br_label_review.csv"
"""openalpr-br-plate-crops takes its text from file names, unverified. Reviewed corrections:
13 photos whose first letter is labelled Q where the plate shows O or I (the photos of O
plates are otherwise few, so these taught the recognizer to read a Brazilian O as Q), and
117 crops the step-23755 recognizer reads differently from the label, most of them label
errors on inspection, left out."""


def load_label_review(path: Path) -> dict[str, str]:
    """file -> the text to train on: the corrected text, or "" to leave the crop out."""
    with path.open(newline="") as fh:
        return {
            row["file"]: row["text"].strip().upper() if row["action"] == "relabel" else ""
            for row in csv.DictReader(fh)
        }


def rare_char_weights(pool: list[tuple[np.ndarray, str]]) -> np.ndarray:
    """Sampling weights that lift crops holding characters the pool rarely shows.

    Real sets are skewed (in openalpr-br-plate-crops ``A`` is 4x as common as ``O``), and the
    rare letters are the ones the recognizer confuses (O/D/Q/0). A crop's weight is the square
    root of the inverse frequency of its rarest character, so rare crops come up more often
    without drowning the rest.
    """
    if not pool:
        return np.zeros(0)
    counts: dict[str, int] = {}
    for _, text in pool:
        for c in text:
            counts[c] = counts.get(c, 0) + 1
    total = sum(counts.values())
    w = np.array([max((total / counts[c]) ** 0.5 for c in text) for _, text in pool])
    return np.asarray(w / w.sum(), dtype=np.float64)


def augment_real(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Real crops are already camera images: jitter the box, then sometimes degrade more."""
    h, w = img.shape[:2]
    x0, x1 = int(rng.uniform(-0.04, 0.06) * w), int(rng.uniform(-0.04, 0.06) * w)
    y0, y1 = int(rng.uniform(-0.05, 0.08) * h), int(rng.uniform(-0.05, 0.08) * h)
    padded = cv2.copyMakeBorder(
        img, max(0, -y0), max(0, -y1), max(0, -x0), max(0, -x1), cv2.BORDER_REPLICATE
    )
    top, left = max(0, y0), max(0, x0)
    crop = padded[top : padded.shape[0] - max(0, y1), left : padded.shape[1] - max(0, x1)]
    if rng.random() < 0.6:
        crop = plates.augment_crop(rng, np.ascontiguousarray(crop))
    return crop


class BatchStream(torch.utils.data.IterableDataset[dict[str, torch.Tensor]]):
    """Endless batches for one worker process: synthetic + real + non-plate crops."""

    def __init__(self, data: Path, seed: int) -> None:
        super().__init__()
        self.data = data
        self.seed = seed

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        plates.configure(self.data)
        rng = np.random.default_rng(self.seed)
        real = load_real(self.data)
        weights = {key: rare_char_weights(pool) for key, pool in real.items()}
        while True:
            images: list[np.ndarray] = []
            texts: list[str] = []
            status: list[int] = []
            for _ in range(BATCH["synthetic"]):
                img, text, st = plates.render_plate(rng)
                images.append(img)
                texts.append(text)
                status.append(STATUS_CLASSES.index(st))
            for key in ("us", "br"):
                pool = real[key]
                for _ in range(BATCH[key] if pool else 0):
                    img, text = pool[rng.choice(len(pool), p=weights[key])]
                    images.append(augment_real(rng, img))
                    texts.append(text)
                    status.append(0)  # the real sets are readable, whole plates
            for _ in range(BATCH["none"]):
                images.append(plates.render_non_plate(rng))
                texts.append("")
                status.append(STATUS_CLASSES.index("none"))
            x = np.stack([preprocess(im) for im in images])
            targets = [i for t in texts for i in encode(t)]
            yield {
                "x": torch.from_numpy(x),
                "targets": torch.tensor(targets, dtype=torch.long),
                "target_lengths": torch.tensor([len(t) for t in texts], dtype=torch.long),
                "status": torch.tensor(status, dtype=torch.long),
                "n_synthetic": torch.tensor(BATCH["synthetic"] + BATCH["none"]),
            }


# --------------------------------------------------------------------------- training


def save_atomic(obj: object, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


EMA_DECAY = 0.999
"""The exported weights are an exponential moving average of the trained ones (about the last
1,000 steps): single checkpoints minutes apart differed by about 2 points of exact match on
the evaluation sets, and the average does not depend on where the run happened to stop."""
EMA_START = 200
"""Steps of a fresh run before the average starts to lag (it copies the model until then, so
the random start does not linger in it)."""


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model; BatchNorm's running statistics likewise."""
    for e, m in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
        if e.dtype.is_floating_point:
            e.mul_(decay).add_(m.detach(), alpha=1.0 - decay)
        else:
            e.copy_(m)


def run_export(args: argparse.Namespace, checkpoint: Path, *, int8: bool) -> None:
    """Export in a child process: a failing export must not stop training."""
    cmd = [
        sys.executable,
        str(SCRIPTS / "export_recognizer.py"),
        "--checkpoint",
        str(checkpoint),
        "--data",
        str(args.data),
        "--out",
        str(args.out),
        "--threads",
        "1",
    ]
    if int8:
        cmd.append("--int8")
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
    tail = (res.stderr + res.stdout).strip().splitlines()[-3:]  # the summary is on stdout
    log.info("export rc=%d in %.0fs: %s", res.returncode, time.monotonic() - t0, " | ".join(tail))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, required=True, help="the shared datasets directory")
    ap.add_argument("--minutes", type=float, default=120.0, help="training time for this run")
    ap.add_argument("--run-dir", type=Path, default=REPO / "runs" / "recognizer")
    ap.add_argument("--out", type=Path, default=REPO / "models" / "plate-recognizer.onnx")
    ap.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    ap.add_argument("--lr", type=float, default=None, help="peak lr (1e-3 fresh, 3e-4 resumed)")
    ap.add_argument("--export-every", type=float, default=10.0, help="minutes between exports")
    ap.add_argument("--checkpoint-every", type=float, default=3.0, help="minutes")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.data = args.data.resolve()
    args.out = args.out.resolve()
    args.run_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        handlers=[logging.FileHandler(args.run_dir / "progress.log"), logging.StreamHandler()],
    )
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    model = CRNN()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    last = args.run_dir / "last.pt"
    step, samples, synthetic, prior_minutes = 0, 0, 0, 0.0
    ema = CRNN()
    if args.resume and last.is_file():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        # A checkpoint from before the EMA was kept starts its average at the model itself.
        ema.load_state_dict(ck.get("ema", ck["model"]))
        opt.load_state_dict(ck["optimizer"])
        step, samples = ck["step"], ck["samples"]
        synthetic, prior_minutes = ck.get("synthetic", 0), ck.get("minutes", 0.0)
        log.info("resumed from %s at step %d (%d samples)", last, step, samples)
    else:
        ema.load_state_dict(model.state_dict())
    ema.eval()
    ema.requires_grad_(False)
    peak_lr = args.lr if args.lr is not None else (3e-4 if step else 1e-3)
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "CRNN %.2f M parameters, input %dx%d grey, peak lr %g",
        n_params / 1e6,
        INPUT_H,
        INPUT_W,
        peak_lr,
    )

    # The data worker gets a new seed on every (re)start so a resumed run sees new samples.
    stream = BatchStream(args.data, seed=args.seed * 1000 + step)
    loader = torch.utils.data.DataLoader(
        stream, batch_size=None, num_workers=1, prefetch_factor=4, persistent_workers=True
    )
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    ce = nn.CrossEntropyLoss()

    def checkpoint() -> None:
        save_atomic(
            {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": opt.state_dict(),
                "step": step,
                "samples": samples,
                "synthetic": synthetic,
                "minutes": prior_minutes + (time.monotonic() - start) / 60,
                "config": {
                    "alphabet": ALPHABET,
                    "status_classes": list(STATUS_CLASSES),
                    "input_height": INPUT_H,
                    "input_width": INPUT_W,
                    "batch_mix": BATCH,
                    "holdout": HOLDOUT_RULE,
                    "data": str(args.data),
                },
            },
            last,
        )

    start = time.monotonic()
    budget_s = args.minutes * 60
    next_ck = start + args.checkpoint_every * 60
    next_export = start + args.export_every * 60
    warmup = 300 if step == 0 else 50
    avg_loss, avg_status, avg_acc, t_log = 0.0, 0.0, 0.0, time.monotonic()
    model.train()
    for run_step, batch in enumerate(loader):
        elapsed = time.monotonic() - start
        if elapsed > budget_s:
            break
        frac = elapsed / budget_s
        lr = (
            peak_lr
            * min(1.0, (run_step + 1) / warmup)
            * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
        )
        for group in opt.param_groups:
            group["lr"] = lr
        logits, status_logits = model(batch["x"])
        log_probs = logits.log_softmax(-1).permute(1, 0, 2)  # T x N x C for CTCLoss
        n, t = logits.shape[0], logits.shape[1]
        loss_ctc = ctc(
            log_probs,
            batch["targets"],
            torch.full((n,), t, dtype=torch.long),
            batch["target_lengths"],
        )
        loss_status = ce(status_logits, batch["status"])
        loss = loss_ctc + 0.2 * loss_status
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        update_ema(ema, model, EMA_DECAY if step >= EMA_START else 0.0)
        step += 1
        samples += n
        synthetic += int(batch["n_synthetic"])
        avg_loss = 0.98 * avg_loss + 0.02 * loss_ctc.item() if step > 1 else loss_ctc.item()
        avg_status = 0.98 * avg_status + 0.02 * loss_status.item()
        if step % 50 == 0:
            lengths = batch["target_lengths"].tolist()
            flat = batch["targets"].tolist()
            truth, pos = [], 0
            for ln in lengths:
                truth.append("".join(ALPHABET[i - 1] for i in flat[pos : pos + ln]))
                pos += ln
            pred = greedy_decode(logits.detach().numpy())
            acc = float(np.mean([p == q for p, q in zip(pred, truth, strict=True)]))
            avg_acc = 0.8 * avg_acc + 0.2 * acc
            rate = 50 * n / (time.monotonic() - t_log)
            t_log = time.monotonic()
            log.info(
                "step %d samples %d ctc %.3f status %.3f batch-exact %.2f lr %.2e %.0f/s %.1f min",
                step, samples, avg_loss, avg_status, avg_acc, lr, rate, elapsed / 60,
            )  # fmt: skip
        if time.monotonic() > next_ck:
            checkpoint()
            next_ck = time.monotonic() + args.checkpoint_every * 60
        if time.monotonic() > next_export:
            checkpoint()
            model.eval()
            run_export(args, last, int8=False)
            model.train()
            next_export = time.monotonic() + args.export_every * 60
    checkpoint()
    log.info(
        "training done: step %d, %d samples, %.1f min",
        step,
        samples,
        (time.monotonic() - start) / 60,
    )
    run_export(args, last, int8=True)
    (args.run_dir / "done.json").write_text(json.dumps({"step": step, "samples": samples}))


if __name__ == "__main__":
    main()
