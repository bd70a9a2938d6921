"""Export an attribute checkpoint to ONNX + manifest and measure it on its held-out split.

    python scripts/export_attributes.py --task type --data ../shared/datasets

Reads runs/attributes/TASK.pt (from scripts/train_attributes.py) and writes
models/vehicle-type.onnx, models/vehicle-colour.onnx or models/plate-region.onnx with its
manifest (atomically: temp file, fsync, os.replace; the model before its manifest). The ONNX
output is checked against torch; accuracy is measured with the run-time class
edge.inference.attributes.AttributeClassifier (onnxruntime, no torch) on the held-out split
(see train_attributes), per crop, at several confidence thresholds (accuracy of the crops
kept, and the share kept).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `python scripts/export_attributes.py` puts only scripts/ there

from edge.inference.attributes import AttributeClassifier  # noqa: E402
from edge.inference.session import sha256_file  # noqa: E402
from scripts.synth.splits import is_holdout  # noqa: E402
from scripts.train_attributes import (  # noqa: E402
    COLOUR_MAP,
    TASKS,
    TYPE_MAP,
    SmallClassifier,
    Task,
    build_model,
    load_us_crops,
    read_rows,
)

OPSET = 17
OUTPUTS = {
    "type": ("vehicle-type", "vehicle_type"),
    "colour": ("vehicle-colour", "vehicle_colour"),
    "region": ("plate-region", "plate_region"),
}
THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
SPLITS = {
    "type": "vehicle-type-crops, file-name hash rule of scripts/synth/splits.py on the image "
    "name (int(sha256(name).hexdigest(), 16) % 10 < 3), 30%",
    "colour": "vehicle-colour, its split column (test)",
    "region": "openalpr-us-plate-crops, hash rule on the file name (held-out 30%)",
}
DATA = {
    "type": "vehicle-type-crops train part; " + ", ".join(f"{k}->{v}" for k, v in TYPE_MAP.items()),
    "colour": "vehicle-colour train split; "
    + ", ".join(f"{k}->{v}" for k, v in COLOUR_MAP.items()),
    "region": "us-plate-designs (all), openalpr-us-plate-crops train part, 600 "
    "openalpr-br-plate-crops (BRA), 200 synthetic plates per country (eu_de/eu_fr/eu_nl/eu_ro, "
    "br_old/br_mercosul); all through plates.augment_crop",
}


class FixedAdaptivePool(torch.nn.Module):
    """AdaptiveAvgPool2d for one known input size as two matrix products: the ONNX exporter
    refuses adaptive pooling whose output size does not divide the input size."""

    ph: torch.Tensor  # buffers, registered in __init__
    pw_t: torch.Tensor

    def __init__(self, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer("ph", pool_matrix(in_hw[0], out_hw[0]))
        self.register_buffer("pw_t", pool_matrix(in_hw[1], out_hw[1]).T.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.ph, x), self.pw_t)


def pool_matrix(size: int, out: int) -> torch.Tensor:
    """Rows average the windows torch's adaptive pooling uses: floor(i*n/o) to ceil((i+1)*n/o)."""
    m = torch.zeros(out, size)
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def exportable(model: SmallClassifier, task: Task) -> SmallClassifier:
    """The model with its adaptive pooling fixed to the input size (same outputs)."""
    features = model.features
    pool = features[-1]
    if not isinstance(pool, torch.nn.AdaptiveAvgPool2d):
        return model
    with torch.no_grad():
        fmap = features[:-1](torch.zeros(1, 3, *task.input_size))
    features[-1] = FixedAdaptivePool((fmap.shape[2], fmap.shape[3]), task.pool)
    return model


def write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.fchmod(fd, 0o644)  # mkstemp makes 0600 files; models are read by the daemon's user
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def held_out(data: Path, task: Task) -> list[tuple[np.ndarray, str]]:
    """The held-out images at their own size, with their class names."""
    if task.name == "region":
        return [(img, task.classes[k]) for img, k in load_us_crops(data, holdout=True)]
    out = []
    if task.name == "type":
        folder = data / "vehicle-type-crops"
        rows = [
            (r["file"], TYPE_MAP[r["vehicle_type"]])
            for r in read_rows(folder / "labels.csv")
            if is_holdout(Path(r["file"]).name)
        ]
    else:
        folder = data / "vehicle-colour"
        rows = [
            (r["file"], COLOUR_MAP[r["color"]])
            for r in read_rows(folder / "labels.csv")
            if r["split"] == "test"
        ]
    for name, label in rows:
        img = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if img is not None:
            out.append((img, label))
    return out


def measure(
    model_path: Path, attribute: str, samples: list[tuple[np.ndarray, str]]
) -> dict[str, Any]:
    clf = AttributeClassifier(model_path, attribute=attribute, threads=1)
    labels = clf.labels
    t0 = time.perf_counter()
    probs = [
        clf.probabilities([img for img, _ in samples[start : start + 32]])
        for start in range(0, len(samples), 32)
    ]
    ms = (time.perf_counter() - t0) * 1000 / max(1, len(samples))
    p = np.concatenate(probs)
    truth = np.array([labels.index(t) for _, t in samples])
    pred, conf = p.argmax(1), p.max(1)
    single = []
    for crop, _ in samples[:50]:
        t1 = time.perf_counter()
        clf.probabilities([crop])
        single.append((time.perf_counter() - t1) * 1000)
    at = {}
    for th in THRESHOLDS:
        keep = conf >= th
        at[f"{th:.1f}"] = {
            "kept": round(float(keep.mean()), 4),
            "accuracy_of_kept": round(float((pred[keep] == truth[keep]).mean()), 4)
            if keep.any()
            else None,
        }
    recall = {
        label: round(float((pred[truth == k] == k).mean()), 4)
        for k, label in enumerate(labels)
        if (truth == k).any()
    }
    top3 = np.argsort(-p, axis=1)[:, :3]
    return {
        "samples": len(samples),
        "accuracy": round(float((pred == truth).mean()), 4),
        "top3_accuracy": round(float((top3 == truth[:, None]).any(axis=1).mean()), 4),
        "by_threshold": at,
        "recall_per_class": recall,
        "ms_per_crop_batched": round(ms, 3),
        "ms_per_crop_single_median": round(float(np.median(single)), 3),
    }


def country_check(data: Path, model_path: Path) -> dict[str, Any]:
    """Plates of openalpr-endtoend-eu/br (never trained on; countries not labelled per image):
    how often the model names a country of the right group (EU codes, or BR)."""
    from edge.inference.rectify import plate_crop
    from edge.types import Detection

    clf = AttributeClassifier(model_path, attribute="plate_region", threads=1)
    out: dict[str, Any] = {}
    for name, expected in (("eu", {"DEU", "FRA", "NLD", "ROU"}), ("br", {"BRA"})):
        crops = []
        for label_file in sorted((data / f"openalpr-endtoend-{name}").glob("*.txt")):
            read = cv2.imread(str(label_file.with_suffix(".jpg")), cv2.IMREAD_COLOR)
            if read is None:
                continue
            image = np.asarray(read, dtype=np.uint8)  # IMREAD_COLOR gives 8-bit BGR
            for line in label_file.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 6:
                    x, y, w, h = (int(v) for v in fields[1:5])
                    crops.append(plate_crop(image, Detection((x, y, x + w, y + h), 1.0)))
        best = [r.scores[0] for r in clf.classify(crops)]
        answered = [label for label, p in best if p >= 0.5]
        out[name] = {
            "plates": len(best),
            "top1_in_group": round(sum(label in expected for label, _ in best) / len(best), 4),
            "answered_at_0.5": round(len(answered) / len(best), 4),
            "in_group_when_answered": round(
                sum(label in expected for label in answered) / max(1, len(answered)), 4
            ),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--task", choices=sorted(TASKS), required=True)
    ap.add_argument("--data", type=Path, required=True, help="the shared datasets directory")
    ap.add_argument("--checkpoint", type=Path, default=None, help="default runs/attributes/TASK.pt")
    ap.add_argument("--out-dir", type=Path, default=REPO / "models")
    args = ap.parse_args()
    torch.set_num_threads(1)
    task = TASKS[args.task]
    ckpt_path = args.checkpoint or REPO / "runs" / "attributes" / f"{task.name}.pt"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model = build_model(task)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    h, w = task.input_size
    stem, attribute = OUTPUTS[task.name]
    onnx_path = args.out_dir / f"{stem}.onnx"

    dummy = torch.randn(4, 3, h, w)
    with torch.no_grad():
        reference = model(dummy).numpy()
    model = exportable(model, task)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_model = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp_model),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}},
            opset_version=OPSET,
            dynamo=False,
        )
        import onnxruntime as ort

        sess = ort.InferenceSession(str(tmp_model), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"image": dummy.numpy()})[0]
        diff = float(np.abs(got - reference).max())
        if diff > 1e-3:
            raise SystemExit(f"ONNX output differs from torch by {diff}")
        write_atomic(onnx_path, tmp_model.read_bytes())

    manifest: dict[str, Any] = {
        "name": stem,
        "kind": "attribute-classifier",
        "attribute": attribute,
        "version": datetime.now(UTC).strftime("%Y.%m.%d"),
        "labels": list(task.classes),
        "input_height": h,
        "input_width": w,
        "color": "bgr",
        "normalize": {"mean": 0.5, "std": 0.5},
        "output": "logits",
        "sha256": sha256_file(onnx_path),
        "opset": OPSET,
        "parameters": ckpt["parameters"],
        "training": {
            "script": "scripts/train_attributes.py --task " + task.name,
            "data": DATA[task.name],
            "steps": ckpt["steps"],
            "samples": ckpt["samples"],
            "minutes": ckpt["minutes"],
            "seed": ckpt["seed"],
        },
        "onnx_vs_torch_max_abs_diff": round(diff, 6),
    }
    # The manifest must exist (with the sha) before the run-time class can load the model.
    write_atomic(onnx_path.with_suffix(".json"), json.dumps(manifest, indent=2).encode())
    result = measure(onnx_path, attribute, held_out(args.data, task))
    manifest["heldout"] = {"split": SPLITS[task.name], **result}
    if task.name == "region":
        manifest["reference_countries"] = country_check(args.data, onnx_path)
    write_atomic(onnx_path.with_suffix(".json"), (json.dumps(manifest, indent=2) + "\n").encode())
    print(json.dumps({"model": str(onnx_path), **manifest["heldout"]}, indent=2))


if __name__ == "__main__":
    main()
