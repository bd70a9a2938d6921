"""A tiny, real ONNX plate detector made by the tests, for tests that need a loadable detector
whatever state the trained one is in.

It follows the runtime contract of ``edge.inference.detector`` (manifest, NCHW float input,
``heatmap`` and ``corners`` outputs on a stride-8 grid) with a hand-set graph: a cell scores
high where all three colour channels are bright (a white plate, a white car, a headlight) and
every detection is a fixed 64 x 16 input-pixel quadrilateral around its cell. Deterministic,
built in milliseconds, and nothing like an accurate detector.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.inference.session import sha256_file

STRIDE = 8
INPUT_SIZE = 640
HALF_W, HALF_H = 32.0, 8.0
RECOGNIZER = Path(__file__).resolve().parent.parent / "models" / "plate-recognizer.onnx"


def write_tiny_detector(path: Path) -> Path:
    """Write ``path`` (.onnx) and its manifest (.json) beside it; return ``path``."""
    corner_bias = np.array(
        [-HALF_W, -HALF_H, HALF_W, -HALF_H, HALF_W, HALF_H, -HALF_W, HALF_H], np.float32
    )
    inits = [
        numpy_helper.from_array(np.zeros((8, 3, 1, 1), np.float32), "corner_w"),
        numpy_helper.from_array(corner_bias, "corner_b"),
        numpy_helper.from_array(np.array(40.0, np.float32), "gain"),
        numpy_helper.from_array(np.array(0.82, np.float32), "level"),
    ]
    nodes = [
        helper.make_node(
            "AveragePool", ["image"], ["pooled"], kernel_shape=[STRIDE, STRIDE], strides=[8, 8]
        ),
        helper.make_node("ReduceMin", ["pooled"], ["whitest"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["whitest", "level"], ["above"]),
        helper.make_node("Mul", ["above", "gain"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["raw_heat"]),
        # Smooth so that a bright patch has one peak in its middle, not a plateau.
        helper.make_node(
            "AveragePool", ["raw_heat"], ["heatmap"], kernel_shape=[5, 5], pads=[2, 2, 2, 2]
        ),
        helper.make_node("Conv", ["pooled", "corner_w", "corner_b"], ["corners"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-detector",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [
            helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["N", 1, "h", "w"]),
            helper.make_tensor_value_info("corners", TensorProto.FLOAT, ["N", 8, "h", "w"]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    manifest = {
        "name": "tiny-test-detector",
        "kind": "plate-detector",
        "format": "centernet-corners",
        "version": "test",
        "sha256": sha256_file(path),
        "input_size": INPUT_SIZE,
        "stride": STRIDE,
        "color": "bgr",
        "normalize": {"scale": 1 / 255, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
        "outputs": {"heatmap": {"name": "heatmap"}, "corners": {"name": "corners"}},
    }
    path.with_suffix(".json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return path


def write_models(directory: Path) -> tuple[Path, Path]:
    """The tiny detector and a copy of the shipped recognizer in ``directory``."""
    detector = write_tiny_detector(directory / "plate-detector.onnx")
    recognizer = directory / "plate-recognizer.onnx"
    shutil.copyfile(RECOGNIZER, recognizer)
    shutil.copyfile(RECOGNIZER.with_suffix(".json"), recognizer.with_suffix(".json"))
    return detector, recognizer
