"""Export a recognizer checkpoint to ONNX + manifest, measure it, and make the INT8 variant.

    python scripts/export_recognizer.py --checkpoint runs/recognizer/last.pt \\
        --data ../shared/datasets [--int8]

Writes models/plate-recognizer.onnx and models/plate-recognizer.json (atomically: temp file,
fsync, os.replace; the model before its manifest). Accuracy in the manifest is measured with
the run-time class edge.inference.recognizer.PlateRecognizer (onnxruntime, no torch) on the
held-out US crops (see train_recognizer.is_holdout), and, for reference only, on an equal-size
seeded sample of the Brazilian crops, which ARE training data.

With --int8: static INT8 quantization (QDQ, calibrated on synthetic crops) to
models/plate-recognizer-int8.onnx + .json, kept only when its held-out exact match is within
1 point of FP32; otherwise the files are removed and the reason recorded in the FP32 manifest.
"""

from __future__ import annotations

import argparse
import csv
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

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path.insert(0, str(REPO))  # `python scripts/export_recognizer.py` puts only scripts/ there

from edge.inference.recognizer import PlateRecognizer  # noqa: E402
from edge.inference.session import sha256_file  # noqa: E402
from scripts.train_recognizer import (  # noqa: E402
    ALPHABET,
    BATCH,
    CRNN,
    HOLDOUT_RULE,
    INPUT_H,
    INPUT_W,
    STATUS_CLASSES,
    is_holdout,
)

OPSET = 17
NAME = "plate-recognizer-crnn"


def write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.fchmod(fd, 0o644)  # mkstemp makes 0600 files; models are read by the daemon's user
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def holdout_set(data: Path) -> list[tuple[np.ndarray, str]]:
    folder = data / "openalpr-us-plate-crops"
    out = []
    with (folder / "labels.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if is_holdout(row["file"]):
                img = cv2.imread(str(folder / row["file"]), cv2.IMREAD_COLOR)
                if img is not None:
                    out.append((img, row["text"].strip().upper()))
    return out


def br_sample(data: Path, n: int) -> list[tuple[np.ndarray, str]]:
    folder = data / "openalpr-br-plate-crops"
    with (folder / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    pick = np.random.default_rng(7).permutation(len(rows))[:n]
    out = []
    for i in pick:
        img = cv2.imread(str(folder / rows[i]["file"]), cv2.IMREAD_COLOR)
        if img is not None:
            out.append((img, rows[i]["text"].strip().upper()))
    return out


def char_accuracy(pred: str, truth: str) -> float:
    """1 - edit distance / len(truth), floored at 0: insertions and drops both count."""
    prev = list(range(len(truth) + 1))
    for i, p in enumerate(pred, 1):
        cur = [i]
        for j, t in enumerate(truth, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (p != t)))
        prev = cur
    return max(0.0, 1.0 - prev[-1] / max(1, len(truth)))


def measure(model_path: Path, samples: list[tuple[np.ndarray, str]]) -> dict[str, Any]:
    rec = PlateRecognizer(model_path, threads=1)
    exact, chars = 0, 0.0
    t0 = time.perf_counter()
    for start in range(0, len(samples), 32):
        chunk = samples[start : start + 32]
        reads = rec.recognize([img for img, _ in chunk])
        for r, (_, truth) in zip(reads, chunk, strict=True):
            exact += r.text == truth
            chars += char_accuracy(r.text, truth)
    ms = (time.perf_counter() - t0) * 1000 / max(1, len(samples))
    n = max(1, len(samples))
    return {
        "samples": len(samples),
        "exact_match": round(exact / n, 4),
        "char_accuracy": round(chars / n, 4),
        "ms_per_crop_batched": round(ms, 2),
    }


def export_onnx(model: CRNN, path: Path) -> None:
    dummy = torch.zeros(1, 1, INPUT_H, INPUT_W)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp_path),
            input_names=["image"],
            output_names=["logits", "status"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}, "status": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
        write_atomic(path, tmp_path.read_bytes())


def check_against_torch(model: CRNN, path: Path) -> float:
    """Largest |torch - onnxruntime| logit difference on a few random and real-like inputs."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(4, 1, INPUT_H, INPUT_W)
    with torch.no_grad():
        ref, _ = model(x)
    got = sess.run(["logits"], {"image": x.numpy()})[0]
    return float(np.abs(ref.numpy() - got).max())


def manifest_for(
    path: Path, ck: dict[str, Any], accuracy: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    steps, samples, synthetic = ck["step"], ck["samples"], ck.get("synthetic", 0)
    return {
        "name": NAME,
        "kind": "plate-recognizer",
        "format": "ctc",
        "version": f"{datetime.now(UTC):%Y.%m.%d}-step{steps}",
        "sha256": sha256_file(path),
        "input_name": "image",
        "input_height": INPUT_H,
        "input_width": INPUT_W,
        "input_channels": 1,
        "color": "gray",
        "resize": "stretch to input size ignoring aspect; INTER_AREA when shrinking, "
        "INTER_LINEAR when enlarging",
        "normalize": {"mean": 0.5, "std": 0.5, "formula": "(pixel / 255 - mean) / std"},
        "alphabet": ALPHABET,
        "blank_index": 0,
        "outputs": [
            {
                "name": "logits",
                "shape": ["batch", 32, len(ALPHABET) + 1],
                "meaning": "per-frame CTC logits (softmax in the runtime); class 0 = blank, "
                "class i = alphabet[i-1]",
            },
            {"name": "status", "shape": ["batch", len(STATUS_CLASSES)], "meaning": "status logits"},
        ],
        "status_classes": list(STATUS_CLASSES),
        "architecture": "CRNN: 6 conv-BN-ReLU layers (16-48-96-96-160-192), BiLSTM 2x128, "
        f"linear; {sum(p.numel() for p in CRNN().parameters())} parameters",
        "training_data": {
            "synthetic": "scripts/synth/plates.py render_plate (US incl. us-plate-designs "
            "artwork; EU DE/FR/NL/RO and the formats of 16 more European countries, the "
            "letter O drawn as the digit 0 on half of those; BR old and Mercosul; paper tags; "
            "cut-off/occluded partials; camera augmentation) and render_non_plate for status "
            "'none'",
            "real": "openalpr-us-plate-crops TRAIN split (not held out) and "
            "openalpr-br-plate-crops with the reviewed corrections of "
            "scripts/synth/br_label_review.csv, both augmented; status head trained with "
            "real = 'full'",
            "weights": "exponential moving average of the trained weights (when the "
            "checkpoint keeps one)"
            if "ema" in ck
            else "the last step's weights",
            "batch_mix": BATCH,
            "steps": steps,
            "samples_seen": samples,
            "synthetic_samples_seen": synthetic,
            "training_minutes": round(float(ck.get("minutes", 0.0)), 1),
            "command": "python scripts/train_recognizer.py --data ../shared/datasets --minutes 150",
        },
        "holdout": {
            "dataset": "openalpr-us-plate-crops",
            "rule": HOLDOUT_RULE,
            "fraction": 0.3,
        },
        "accuracy": accuracy,
        "opset": OPSET,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }


def write_manifest(model_path: Path, manifest: dict[str, Any]) -> None:
    write_atomic(model_path.with_suffix(".json"), (json.dumps(manifest, indent=2) + "\n").encode())


def quantize(fp32: Path, int8: Path) -> None:
    """Static INT8 (QDQ, per-channel weights), percentile-calibrated on 256 synthetic crops.

    Dynamic quantization turns the convolutions into ConvInteger, which onnxruntime runs about
    10x slower than FP32 on CPU; static QDQ gives QLinearConv kernels instead. The LSTM stays
    FP32 (static quantization does not cover it).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from scripts.synth import plates
    from scripts.train_recognizer import preprocess

    class SyntheticCrops(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            rng = np.random.default_rng(99)
            self.batches = [
                np.stack([preprocess(plates.render_plate(rng)[0]) for _ in range(16)])
                for _ in range(16)
            ]

        def get_next(self) -> dict[str, np.ndarray] | None:
            return {"image": self.batches.pop()} if self.batches else None

    with tempfile.TemporaryDirectory() as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32), str(pre))
        quantize_static(
            str(pre),
            str(out),
            SyntheticCrops(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "MatMul", "Gemm"],
            # Min/max ranges let a few bright pixels (glare) stretch the scale: measured
            # 2 points of exact match lost; the 99.999th percentile keeps it within 0.5.
            calibrate_method=CalibrationMethod.Percentile,
        )
        write_atomic(int8, out.read_bytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", type=Path, default=REPO / "runs" / "recognizer" / "last.pt")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=REPO / "models" / "plate-recognizer.onnx")
    ap.add_argument(
        "--int8",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="make the INT8 variant too (default: only when one is already there, so the "
        "pair shipped together stays from the same checkpoint)",
    )
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ck = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    model = CRNN()
    # The moving average of the weights when the checkpoint has one (see train_recognizer.py).
    model.load_state_dict(ck.get("ema", ck["model"]))
    model.eval()
    args.out.parent.mkdir(parents=True, exist_ok=True)

    int8_path = args.out.with_name(args.out.stem + "-int8.onnx")
    if args.int8 is None:  # auto: keep refreshing INT8 once it has been made (kept or not)
        shipped = args.out.with_suffix(".json")
        made_before = shipped.is_file() and "int8" in json.loads(shipped.read_text())
        args.int8 = int8_path.is_file() or made_before
    # Build and measure in a private folder: nothing half-measured ever appears in models/.
    with tempfile.TemporaryDirectory(prefix="recognizer-export-") as tmp:
        staging = Path(tmp) / args.out.name
        export_onnx(model, staging)
        diff = check_against_torch(model, staging)
        if diff > 1e-3:
            raise SystemExit(f"ONNX output differs from torch by {diff:.2e}; not exporting")
        holdout = holdout_set(args.data)
        br = br_sample(args.data, len(holdout))
        write_manifest(staging, manifest_for(staging, ck, {}, {}))  # so the runtime loads it
        accuracy: dict[str, Any] = {
            "runtime": "edge.inference.recognizer.PlateRecognizer (onnxruntime CPU, greedy CTC)",
            "us_holdout": measure(staging, holdout),
            "br_train_sample": measure(staging, br) | {"note": "training data: not a hold-out"},
        }
        extra: dict[str, Any] = {"torch_onnx_max_abs_diff": diff}
        int8_manifest: dict[str, Any] | None = None
        int8_staging = Path(tmp) / int8_path.name
        if args.int8:
            quantize(staging, int8_staging)
            write_manifest(int8_staging, manifest_for(int8_staging, ck, {}, {}))
            int8_acc = {
                "us_holdout": measure(int8_staging, holdout),
                "br_train_sample": measure(int8_staging, br),
            }
            fp32_exact = accuracy["us_holdout"]["exact_match"]
            drop = fp32_exact - int8_acc["us_holdout"]["exact_match"] > 0.01
            extra["int8"] = {
                "method": "onnxruntime.quantization.quantize_static, QDQ, per-channel QInt8 "
                "weights, QUInt8 activations, Conv/MatMul/Gemm; percentile calibration on 256 "
                "synthetic crops",
                "accuracy": int8_acc,
                "kept": not drop,
                "size_bytes": int8_staging.stat().st_size,
            }
            if drop:
                extra["int8"]["reason"] = "held-out exact match more than 1 point below FP32"
            else:
                int8_manifest = manifest_for(
                    int8_staging, ck, int8_acc, {"quantization": extra["int8"]}
                )
                int8_manifest["name"] = NAME + "-int8"
                int8_manifest["fp32_accuracy"] = accuracy
        # Publish: each model before its manifest, so a reader never sees a manifest whose
        # sha256 names a model that is not there yet.
        write_atomic(args.out, staging.read_bytes())
        write_manifest(args.out, manifest_for(args.out, ck, accuracy, extra))
        if int8_manifest is not None:
            write_atomic(int8_path, int8_staging.read_bytes())
            write_manifest(int8_path, int8_manifest)
        elif args.int8:  # an older INT8 must not ship beside a newer FP32 it was not made from
            int8_path.unlink(missing_ok=True)
            int8_path.with_suffix(".json").unlink(missing_ok=True)
    us = accuracy["us_holdout"]
    print(
        f"exported {args.out} step {ck['step']}: US hold-out exact {us['exact_match']:.3f} "
        f"char {us['char_accuracy']:.3f} (n={us['samples']}), "
        f"BR(train) exact {accuracy['br_train_sample']['exact_match']:.3f}"
        + (f", int8 {extra['int8']['accuracy']['us_holdout']['exact_match']:.3f}"
           f" kept={extra['int8']['kept']}" if "int8" in extra else "")
    )  # fmt: skip


if __name__ == "__main__":
    main()
