"""The plate detector at run time: an ONNX CenterNet-style model finding plates and corners.

The model sees the frame scaled so its long side is ``input_size`` (padded to a multiple of 32)
and returns, on a grid of stride ``stride``:

* ``heatmap`` (N, 1, H/stride, W/stride): probability that a plate centre is in the cell;
* ``corners`` (N, 8, H/stride, W/stride): x, y offsets in input pixels from the cell centre to
  the plate's top-left, top-right, bottom-right and bottom-left corners.

A plate is a local maximum of the heatmap above the score threshold; overlapping plates are
merged by non-maximum suppression. No torch here: onnxruntime, numpy and OpenCV only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.errors import InputError, ModelError
from edge.inference.session import create_session, load_manifest, model_version, probe_run
from edge.types import Detection, ImageArray, Point

log = logging.getLogger(__name__)

FORMAT = "centernet-corners"
KIND = "plate-detector"
SIZE_MULTIPLE = 32
"""The net downsamples five times; other input sizes would misalign its feature maps."""
NMS_IOU = 0.5
DOWNSCALE_INTERPOLATION = cv2.INTER_LINEAR
"""Bilinear, not area averaging: INTER_AREA costs ~15 ms a 1080p frame at non-integer ratios
and gave the same recall on all three evaluation sets (training scenes are scaled bilinearly)."""

FloatArray = npt.NDArray[np.float32]


class PlateDetector:
    """Find licence plates (box, score and 4 corners) in a BGR image of any size."""

    def __init__(
        self,
        model_path: Path,
        *,
        providers: Sequence[str] = ("cpu",),
        threads: int = 0,
        input_size: int | None = None,
        score_threshold: float = 0.3,
    ) -> None:
        self.model_path = Path(model_path)
        self.manifest: dict[str, Any] = load_manifest(self.model_path)
        self._check_manifest()
        self.version: str = model_version(self.model_path, self.manifest)
        self.stride: int = int(self.manifest["stride"])
        size = int(self.manifest["input_size"]) if input_size is None else int(input_size)
        if size < SIZE_MULTIPLE or size % SIZE_MULTIPLE:
            raise ValueError(f"detector input_size must be a multiple of 32, >= 32; got {size}")
        self.input_size = size
        self.score_threshold = check_score_threshold(score_threshold)
        norm = self.manifest["normalize"]
        # Fold scale, mean and std into one multiply-add per pixel.
        std = np.asarray(norm["std"], np.float32)
        self._mul = [float(v) for v in np.float32(norm["scale"]) / std]
        self._add = [float(v) for v in -np.asarray(norm["mean"], np.float32) / std]
        self._rgb = self.manifest["color"] == "rgb"
        self._session = create_session(self.model_path, providers=providers, threads=threads)
        self._input_name, self._output_names = self._check_graph()

    # -- loading -------------------------------------------------------------------------------

    def _fail(self, what: str) -> ModelError:
        return ModelError(f"model {self.model_path}: {what}")

    def _check_manifest(self) -> None:
        m = self.manifest
        if m.get("kind") != KIND:
            raise self._fail(f"manifest kind is {m.get('kind')!r}, expected {KIND!r}")
        if m.get("format") != FORMAT:
            raise self._fail(f"manifest format is {m.get('format')!r}, expected {FORMAT!r}")
        for key in ("name", "sha256", "input_size", "stride", "color", "normalize", "outputs"):
            if key not in m:
                raise self._fail(f"manifest has no {key!r}")
        size = m["input_size"]
        if not isinstance(size, int) or size < SIZE_MULTIPLE or size % SIZE_MULTIPLE:
            raise self._fail(f"manifest input_size {size!r} is not a multiple of 32")
        if not isinstance(m["stride"], int) or m["stride"] not in (2, 4, 8):
            raise self._fail(f"manifest stride {m['stride']!r} is not 2, 4 or 8")
        if m["color"] not in ("bgr", "rgb"):
            raise self._fail(f"manifest color {m['color']!r} is not 'bgr' or 'rgb'")
        norm = m["normalize"]
        try:
            ok = (
                float(norm["scale"]) > 0
                and len(norm["mean"]) == 3
                and len(norm["std"]) == 3
                and all(float(s) > 0 for s in norm["std"])
            )
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise self._fail("manifest normalize needs scale > 0, mean[3] and std[3] > 0")
        outs = m["outputs"]
        if not isinstance(outs, dict) or not {"heatmap", "corners"} <= outs.keys():
            raise self._fail("manifest outputs must name 'heatmap' and 'corners'")

    def _check_graph(self) -> tuple[str, list[str]]:
        """Check the graph against the manifest and run it once, so a wrong model fails here
        rather than on the first frame."""
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise self._fail(f"graph has {len(inputs)} inputs, expected 1 image input")
        shape = inputs[0].shape
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise self._fail(f"graph input shape {shape} is not (N, 3, H, W)")
        if inputs[0].type != "tensor(float)":
            raise self._fail(f"graph input type {inputs[0].type} is not float32")
        graph_outputs = {o.name: o for o in self._session.get_outputs()}
        names: list[str] = []
        for role, channels in (("heatmap", 1), ("corners", 8)):
            name = (
                str(self.manifest["outputs"][role].get("name", role))
                if isinstance(self.manifest["outputs"][role], dict)
                else str(self.manifest["outputs"][role])
            )
            if name not in graph_outputs:
                raise self._fail(
                    f"graph has no output {name!r} ({role}); it has {sorted(graph_outputs)}"
                )
            oshape = graph_outputs[name].shape
            if len(oshape) != 4 or (isinstance(oshape[1], int) and oshape[1] != channels):
                raise self._fail(f"output {name!r} shape {oshape} is not (N, {channels}, h, w)")
            names.append(name)
        probe = np.zeros((1, 3, 2 * SIZE_MULTIPLE, 3 * SIZE_MULTIPLE), np.float32)
        heat, corners = probe_run(self._session, names, {inputs[0].name: probe}, self._fail)
        grid = (2 * SIZE_MULTIPLE // self.stride, 3 * SIZE_MULTIPLE // self.stride)
        if heat.shape != (1, 1, *grid) or corners.shape != (1, 8, *grid):
            raise self._fail(
                f"outputs {heat.shape} and {corners.shape} do not match stride {self.stride} "
                f"(expected (1, 1, {grid[0]}, {grid[1]}) and (1, 8, {grid[0]}, {grid[1]}))"
            )
        return inputs[0].name, names

    # -- inference ------------------------------------------------------------------------------

    def preprocess(self, image: ImageArray) -> tuple[FloatArray, float, float]:
        """Scale the long side to ``input_size``, pad to a multiple of 32 and normalise.

        Returns the NCHW blob and the x and y factors from image to input pixels.
        """
        h, w = image.shape[:2]
        scale = self.input_size / max(h, w)
        nw, nh = max(round(w * scale), 1), max(round(h * scale), 1)
        resized = image
        if (nw, nh) != (w, h):
            scaled = cv2.resize(image, (nw, nh), interpolation=DOWNSCALE_INTERPOLATION)
            resized = np.asarray(scaled, dtype=np.uint8)
        ph = -(-nh // SIZE_MULTIPLE) * SIZE_MULTIPLE
        pw = -(-nw // SIZE_MULTIPLE) * SIZE_MULTIPLE
        blob = np.empty((1, 3, ph, pw), np.float32)
        channels = cv2.split(resized)
        if self._rgb:
            channels = channels[::-1]
        # Channel by channel straight into the NCHW blob: a broadcast over HWC and a transpose
        # cost 20+ ms a 1080p frame on a small CPU; this costs about 1 ms.
        for c, plane in enumerate(channels):
            dst = blob[0, c]
            # Padding is what a black pixel normalises to, as the model saw around scenes.
            dst[nh:] = self._add[c]
            dst[:nh, nw:] = self._add[c]
            np.multiply(plane, self._mul[c], out=dst[:nh, :nw], casting="unsafe")
            if self._add[c]:
                dst[:nh, :nw] += self._add[c]
        return blob, nw / w, nh / h

    def detect(self, image: ImageArray) -> list[Detection]:
        """Plates in ``image`` (BGR, H x W x 3, uint8), best first, in that image's pixels."""
        check_frame(image)
        blob, sx, sy = self.preprocess(image)
        heat, offsets = self._session.run(self._output_names, {self._input_name: blob})
        return self._decode(heat[0, 0], offsets[0], sx, sy, image.shape[1], image.shape[0])

    def _decode(
        self, heat: FloatArray, offsets: FloatArray, sx: float, sy: float, w: int, h: int
    ) -> list[Detection]:
        # A centre is a cell that is the maximum of its 3x3 neighbourhood: CenterNet's
        # replacement for anchor matching.
        peaks = (heat >= self.score_threshold) & (
            heat >= cv2.dilate(heat, np.ones((3, 3), np.uint8))
        )
        ys, xs = np.nonzero(peaks)
        if len(ys) == 0:
            return []
        scores = heat[ys, xs].astype(np.float64)
        cx = (xs + 0.5) * self.stride
        cy = (ys + 0.5) * self.stride
        pts = offsets[:, ys, xs].T.reshape(-1, 4, 2).astype(np.float64)
        pts[:, :, 0] = (pts[:, :, 0] + cx[:, None]) / sx
        pts[:, :, 1] = (pts[:, :, 1] + cy[:, None]) / sy
        pts[:, :, 0] = pts[:, :, 0].clip(0, w)
        pts[:, :, 1] = pts[:, :, 1].clip(0, h)
        boxes = np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1)
        keep = nms(boxes, scores, NMS_IOU)
        out: list[Detection] = []
        for i in keep:
            b = boxes[i]
            if b[2] - b[0] < 1 or b[3] - b[1] < 1:
                continue
            q = pts[i]
            corners: tuple[Point, Point, Point, Point] = (
                (float(q[0, 0]), float(q[0, 1])),
                (float(q[1, 0]), float(q[1, 1])),
                (float(q[2, 0]), float(q[2, 1])),
                (float(q[3, 0]), float(q[3, 1])),
            )
            out.append(
                Detection(
                    box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                    score=float(scores[i]),
                    corners=corners,
                )
            )
        return out


def check_score_threshold(score_threshold: float) -> float:
    """``score_threshold`` when it lies in (0, 1); ValueError otherwise."""
    if not 0.0 < score_threshold < 1.0:
        raise ValueError(f"score_threshold must be in (0, 1); got {score_threshold}")
    return score_threshold


def check_frame(image: ImageArray) -> None:
    """InputError unless ``image`` is a non-empty H x W x 3 uint8 (BGR) image."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(
            f"detector needs an H x W x 3 uint8 BGR image; got {image.shape} {image.dtype}"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"detector got an empty image {image.shape}")


def box_iou(
    box: npt.NDArray[np.float64], boxes: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """IoU of one x1, y1, x2, y2 box with each row of ``boxes``."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    result: npt.NDArray[np.float64] = inter / np.maximum(area + areas - inter, 1e-9)
    return result


def nms(boxes: npt.NDArray[np.float64], scores: npt.NDArray[np.float64], iou: float) -> list[int]:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first."""
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        i = int(order.pop(0))
        keep.append(i)
        if order:
            rest = np.asarray(order)
            order = [int(j) for j in rest[box_iou(boxes[i], boxes[rest]) < iou]]
    return keep
