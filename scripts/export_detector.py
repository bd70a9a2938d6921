"""Export a plate-detector checkpoint to ONNX with its manifest, measured with the runtime class.

    python scripts/export_detector.py --checkpoint runs/detector/last.pt \
        --data ../shared/datasets [--int8]

Writes ``models/plate-detector.onnx`` + ``.json`` (and with ``--int8`` the statically quantised
``models/plate-detector-int8.onnx`` + ``.json``, kept only when its recall on every evaluation
set is within 1 point of the float model's). Accuracy is measured with
``edge.inference.detector.PlateDetector`` on onnxruntime, the code that runs on the pole.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `python scripts/export_detector.py` puts only scripts/ there

from edge.inference.detector import FORMAT, KIND, PlateDetector  # noqa: E402
from edge.inference.session import sha256_file  # noqa: E402
from scripts.synth.scenes import read_voc_boxes  # noqa: E402
from scripts.synth.splits import HOLDOUT_TENTHS  # noqa: E402

DEFAULT_INPUT_SIZE = 768
OPSET = 17
EVAL_SETS = ("openalpr-endtoend-eu", "openalpr-endtoend-br", "ro-plates-voc/valid")
SCORE_THRESHOLD = 0.3
NORMALIZE = {"scale": 1 / 255, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}

Box = tuple[float, float, float, float]


# ---------------------------------------------------------------------------------------------
# evaluation data


def load_eval_set(data: Path, name: str) -> list[tuple[Path, list[Box]]]:
    root = data / name
    items: list[tuple[Path, list[Box]]] = []
    if name.startswith("ro-plates-voc"):
        items.extend(
            (root / "images" / (xml.stem + ".jpg"), read_voc_boxes(xml))
            for xml in sorted((root / "annots").glob("*.xml"))
        )
        return items
    for txt in sorted(root.glob("*.txt")):
        boxes: list[Box] = []
        for line in txt.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) >= 5:
                x, y, w, h = (float(v) for v in parts[1:5])
                boxes.append((x, y, x + w, y + h))
        items.append((root / (txt.stem + ".jpg"), boxes))
    return items


def read_bgr(path: Path) -> npt.NDArray[np.uint8] | None:
    """The image as 8-bit BGR (what cv2.imread gives with IMREAD_COLOR), or None."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if img is None else np.asarray(img, dtype=np.uint8)


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def evaluate(detector: PlateDetector, data: Path, name: str) -> dict[str, Any]:
    """Recall and precision at IoU >= 0.5, greedy matching by score."""
    tp = n_gt = n_det = 0
    t0 = time.perf_counter()
    items = load_eval_set(data, name)
    for path, gts in items:
        img = read_bgr(path)
        if img is None:
            continue
        dets = detector.detect(img)
        n_gt += len(gts)
        n_det += len(dets)
        used = [False] * len(gts)
        for d in dets:
            best, best_j = 0.5, -1
            for j, g in enumerate(gts):
                v = iou(d.box, g)
                if not used[j] and v >= best:
                    best, best_j = v, j
            if best_j >= 0:
                used[best_j] = True
                tp += 1
    return {
        "images": len(items),
        "plates": n_gt,
        "detections": n_det,
        "recall": round(tp / max(n_gt, 1), 4),
        "precision": round(tp / max(n_det, 1), 4),
        "ms_per_image": round((time.perf_counter() - t0) * 1000 / max(len(items), 1), 1),
    }


def threshold_sweep(model: Path, data: Path, threads: int) -> dict[str, Any]:
    """Precision/recall against score threshold on the validation set (ro-plates-voc/valid
    only: the evaluation sets must not choose the threshold).

    Greedy matching in score order makes the matches above any threshold the same as a run at
    that threshold, so one low-threshold pass gives the whole curve.
    """
    det = PlateDetector(model, threads=threads, score_threshold=0.1)
    scored: list[tuple[float, bool]] = []
    n_gt = 0
    for path, gts in load_eval_set(data, "ro-plates-voc/valid"):
        img = read_bgr(path)
        if img is None:
            continue
        n_gt += len(gts)
        used = [False] * len(gts)
        for d in det.detect(img):
            best, best_j = 0.5, -1
            for j, g in enumerate(gts):
                v = iou(d.box, g)
                if not used[j] and v >= best:
                    best, best_j = v, j
            if best_j >= 0:
                used[best_j] = True
            scored.append((d.score, best_j >= 0))
    curve = {}
    for t in (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7):
        tp = sum(1 for s, ok in scored if s >= t and ok)
        n = sum(1 for s, _ in scored if s >= t)
        r, p = tp / max(n_gt, 1), tp / max(n, 1)
        curve[f"{t:.2f}"] = {"recall": round(r, 4), "precision": round(p, 4),
                             "f1": round(2 * r * p / max(r + p, 1e-9), 4)}  # fmt: skip
    best_t = max(curve, key=lambda k: curve[k]["f1"])
    return {"set": "ro-plates-voc/valid", "curve": curve, "best_f1_threshold": float(best_t)}


def measure_speed(model: Path, input_size: int, threads: int, runs: int = 20) -> float:
    """Median ms for one 1920x1080 frame through PlateDetector.detect (preprocess included)."""
    det = PlateDetector(model, threads=threads, input_size=input_size)
    frame = np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    det.detect(frame)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        det.detect(frame)
        times.append((time.perf_counter() - t0) * 1000)
    return round(float(np.median(times)), 1)


# ---------------------------------------------------------------------------------------------
# export


def export_onnx(checkpoint: Path, out: Path) -> dict[str, Any]:
    import onnx
    import torch

    from scripts.train_detector import ExportWrapper, PlateNet

    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    net = PlateNet(ck.get("width", 1.0))
    net.load_state_dict(ck["ema"])  # the averaged weights are steadier than the last step's
    model = ExportWrapper(net).eval()
    dummy = torch.rand(1, 3, 448, 768)
    torch.onnx.export(
        model,
        (dummy,),
        str(out),
        opset_version=OPSET,
        input_names=["image"],
        output_names=["heatmap", "corners"],
        dynamic_axes={
            "image": {0: "batch", 2: "height", 3: "width"},
            "heatmap": {0: "batch", 2: "grid_h", 3: "grid_w"},
            "corners": {0: "batch", 2: "grid_h", 3: "grid_w"},
        },
        dynamo=False,
    )
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    # The ONNX graph must agree with torch, at a size other than the one it was traced at.
    import onnxruntime as ort

    x = torch.rand(1, 3, 320, 576)
    with torch.no_grad():
        ref = [t.numpy() for t in model(x)]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": x.numpy()})
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ref, got, strict=True))
    if diff > 1e-3:
        raise SystemExit(f"ONNX output differs from torch by {diff}")
    return {
        "step": int(ck["step"]),
        "samples": int(ck["samples"]),
        "minutes": round(float(ck["trained_s"]) / 60, 1),
        "params": sum(p.numel() for p in net.parameters()),
        "max_abs_diff_vs_torch": diff,
    }


def base_manifest(name: str, sha: str, train: dict[str, Any], data: Path) -> dict[str, Any]:
    return {
        "name": name,
        "kind": KIND,
        "format": FORMAT,
        "version": datetime.now(UTC).strftime("%Y.%m.%d.%H%M"),
        "sha256": sha,
        "input_size": DEFAULT_INPUT_SIZE,
        "input_multiple": 32,
        "stride": 4,
        "color": "bgr",
        "normalize": NORMALIZE,
        "preprocess": (
            "resize so the long side is input_size (aspect kept), pad right/bottom to a multiple "
            "of 32 with 0 after normalising, float32 NCHW, x = (pixel * scale - mean) / std"
        ),
        "inputs": {"image": {"shape": ["batch", 3, "height", "width"], "dtype": "float32"}},
        "outputs": {
            "heatmap": {
                "name": "heatmap",
                "shape": ["batch", 1, "height/4", "width/4"],
                "meaning": "sigmoid probability of a plate centre in the cell",
            },
            "corners": {
                "name": "corners",
                "shape": ["batch", 8, "height/4", "width/4"],
                "meaning": "x,y offsets in input pixels from the cell centre "
                "((col+0.5)*stride, (row+0.5)*stride) to the plate's "
                "top-left, top-right, bottom-right, bottom-left corners",
            },
        },
        "decode": {"peak": "3x3 local maximum", "score_threshold": SCORE_THRESHOLD, "nms_iou": 0.5},
        "training_data": {
            "sources": [
                "ro-plates-voc/train (frames; labelled plates kept as positives)",
                "openalpr-br-plate-crops (all), openalpr-us-plate-crops (training part only), "
                "us-plate-designs: plate textures pasted with random perspective",
                "scripts/synth/plates.py synthetic plates (when available)",
                "vehicle-type-crops and procedural road scenes as backgrounds",
            ],
            "never_used": [
                "openalpr-endtoend-eu",
                "openalpr-endtoend-br",
                "ro-plates-voc/valid",
                "held-out US crops",
            ],
            "data_dir": str(data.name),
            **train,
        },
        "holdout": {
            "us_crops_rule": "int(sha256(file_name).hexdigest(), 16) % 10 < "
            f"{HOLDOUT_TENTHS} -> held out (scripts/synth/splits.py)",
            "evaluation_sets": list(EVAL_SETS),
        },
        "opset": OPSET,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_json_atomic(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def install(src: Path, dst: Path, manifest: dict[str, Any]) -> None:
    """Model and manifest land together: a reader never sees a model with a stale sha256."""
    tmp_model = dst.with_suffix(".onnx.tmp")
    tmp_model.write_bytes(src.read_bytes())
    with tmp_model.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp_model, dst)
    write_json_atomic(manifest, dst.with_suffix(".json"))


def measure(model: Path, data: Path, threads: int) -> dict[str, Any]:
    det = PlateDetector(model, threads=threads, score_threshold=SCORE_THRESHOLD)
    acc: dict[str, Any] = {
        "iou": 0.5,
        "score_threshold": SCORE_THRESHOLD,
        "input_size": det.input_size,
        "runtime": "edge.inference.detector.PlateDetector (onnxruntime, CPU)",
    }
    for name in EVAL_SETS:
        acc[name] = evaluate(det, data, name)
    return acc


class CalibrationFrames:
    """Calibration batches for static INT8: training frames, preprocessed as at run time."""

    def __init__(self, detector: PlateDetector, data: Path, n: int = 48) -> None:
        paths = sorted((data / "ro-plates-voc" / "train" / "images").glob("*.jpg"))[::4][:n]
        self._blobs: Iterator[np.ndarray] = (detector.preprocess(self._read(p))[0] for p in paths)

    @staticmethod
    def _read(path: Path) -> npt.NDArray[np.uint8]:
        img = read_bgr(path)
        if img is None:
            raise FileNotFoundError(f"cannot read calibration frame {path}")
        return img

    def get_next(self) -> dict[str, np.ndarray] | None:
        blob = next(self._blobs, None)
        return None if blob is None else {"image": blob}


def export_int8(
    fp32: Path, out: Path, data: Path, fp32_acc: dict[str, Any], threads: int
) -> dict[str, Any]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.frames = CalibrationFrames(PlateDetector(fp32, threads=threads), data)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return self.frames.get_next()

    with tempfile.TemporaryDirectory() as td:
        pre = Path(td) / "pre.onnx"
        # symbolic shape inference cannot follow the dynamic-size Resize nodes; onnx's can
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        q = Path(td) / "int8.onnx"
        quantize_static(
            str(pre),
            str(q),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # The sigmoid heatmap and the pixel offsets need their float precision.
            nodes_to_exclude=[],
        )
        fp32_manifest = json.loads(fp32.with_suffix(".json").read_text(encoding="utf-8"))
        manifest = {
            **fp32_manifest,
            "name": "plate-detector-int8",
            "sha256": sha256_file(q),
            "quantization": "static QDQ, per-channel int8 "
            "weights, uint8 activations, 48 ro-plates-voc/train frames for calibration",
        }
        qpath = Path(td) / "plate-detector-int8.onnx"
        os.replace(q, qpath)
        write_json_atomic(manifest, qpath.with_suffix(".json"))
        acc = measure(qpath, data, threads)
        manifest["accuracy"] = acc
        manifest["speed_ms_1080p"] = {
            "1_thread": measure_speed(qpath, DEFAULT_INPUT_SIZE, 1),
            "2_threads": measure_speed(qpath, DEFAULT_INPUT_SIZE, 2),
        }
        drops = {n: round(fp32_acc[n]["recall"] - acc[n]["recall"], 4) for n in EVAL_SETS}
        kept = all(v <= 0.01 for v in drops.values())
        result = {"kept": kept, "recall_drop": drops, "speed_ms_1080p": manifest["speed_ms_1080p"]}
        if kept:
            install(qpath, out, manifest)
        else:
            result["reason"] = "recall dropped by more than 1 point on " + ", ".join(
                n for n, v in drops.items() if v > 0.01
            )
            for stale in (out, out.with_suffix(".json")):
                stale.unlink(missing_ok=True)
        return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--checkpoint", type=Path, default=REPO / "runs" / "detector" / "last.pt")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=REPO / "models" / "plate-detector.onnx")
    ap.add_argument("--int8", action="store_true", help="also build and measure the INT8 model")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads for measuring")
    args = ap.parse_args()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td) / "plate-detector.onnx"
        train = export_onnx(args.checkpoint, tmp)
        manifest = base_manifest("plate-detector", sha256_file(tmp), train, args.data)
        write_json_atomic(manifest, tmp.with_suffix(".json"))
        manifest["accuracy"] = measure(tmp, args.data, args.threads)
        manifest["speed_ms_1080p"] = {
            "input_size": DEFAULT_INPUT_SIZE,
            "1_thread": measure_speed(tmp, DEFAULT_INPUT_SIZE, 1),
            "2_threads": measure_speed(tmp, DEFAULT_INPUT_SIZE, 2),
            "1_thread_640": measure_speed(tmp, 640, 1),
        }
        # Why the default input size is what it is: ro-plates-voc/valid (the validation set,
        # small dash-cam plates like a pole camera's) at the other candidate size.
        alt = PlateDetector(tmp, threads=args.threads, input_size=640)
        manifest["input_size_study"] = {
            "ro-plates-voc/valid@768": manifest["accuracy"]["ro-plates-voc/valid"],
            "ro-plates-voc/valid@640": evaluate(alt, args.data, "ro-plates-voc/valid"),
        }
        manifest["threshold_study"] = threshold_sweep(tmp, args.data, args.threads)
        manifest["size_bytes"] = tmp.stat().st_size
        write_json_atomic(manifest, tmp.with_suffix(".json"))
        if args.int8:
            try:
                manifest["int8"] = export_int8(
                    tmp,
                    args.out.with_name(args.out.stem + "-int8.onnx"),
                    args.data,
                    manifest["accuracy"],
                    args.threads,
                )
            except Exception as exc:
                manifest["int8"] = {"kept": False, "reason": f"quantisation failed: {exc}"}
        install(tmp, args.out, manifest)
    summary = {k: manifest["accuracy"][k] for k in EVAL_SETS}
    print(
        json.dumps(
            {
                "step": train["step"],
                "accuracy": summary,
                "speed_ms_1080p": manifest["speed_ms_1080p"],
                "int8": manifest.get("int8"),
            }
        )
    )


if __name__ == "__main__":
    main()
