"""Detector adapter for open-image-models' YOLOv9 end-to-end plate detectors.

The format (open-image-models, MIT, https://github.com/ankandrew/open-image-models):

* input: one float32 tensor 1 x 3 x S x S, RGB, pixels / 255. The frame is letterboxed: scaled
  so it fits S x S with its aspect kept, centred, and the rest filled with grey 114;
* output: one tensor K x 7, one row per plate after the graph's own non-maximum suppression:
  ``batch index, x1, y1, x2, y2, class id, score``, the box in letterboxed input pixels.

Boxes only: ``Detection.corners`` is None, so the crop for the recognizer is the axis-aligned
box plus margin. Boxes are mapped back to the frame by removing the padding and the scale and
clipped to it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.errors import ModelError
from edge.inference.detector import check_frame, check_score_threshold
from edge.inference.session import (
    check_kind_format,
    create_session,
    load_manifest,
    model_version,
    probe_run,
)
from edge.types import Detection, ImageArray

log = logging.getLogger(__name__)

FORMAT = "yolov9-e2e"
KIND = "plate-detector"
PAD_VALUE = 114
ROW_WIDTH = 7
MIN_INPUT = 32


def looks_like_yolov9_e2e(inputs: Sequence[Any], outputs: Sequence[Any]) -> bool:
    """Whether onnxruntime node args have this format's signature: one N x 3 x S x S float
    input and a first output of rank 2 whose rows are 7 wide."""
    if len(inputs) != 1 or not outputs:
        return False
    shape, out = list(inputs[0].shape), list(outputs[0].shape)
    return (
        inputs[0].type == "tensor(float)"
        and len(shape) == 4
        and shape[1] in (3, "3")
        and len(out) == 2
        and out[1] in (ROW_WIDTH, str(ROW_WIDTH))
    )


class Yolov9PlateDetector:
    """Find licence plates (box and score) in a BGR image of any size; PlateDetector's API."""

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
        check_kind_format(self.manifest, KIND, FORMAT, self._fail)
        self.score_threshold = check_score_threshold(score_threshold)
        self.version: str = model_version(self.model_path, self.manifest)
        self._session = create_session(self.model_path, providers=providers, threads=threads)
        self.input_size, self._input_name, self._output_name = self._check_graph(input_size)

    def _fail(self, what: str) -> ModelError:
        return ModelError(f"model {self.model_path}: {what}")

    def _check_graph(self, requested: int | None) -> tuple[int, str, str]:
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if not looks_like_yolov9_e2e(inputs, outputs):
            raise self._fail(
                f"graph inputs {[list(i.shape) for i in inputs]} and outputs "
                f"{[list(o.shape) for o in outputs]} are not YOLOv9 end-to-end "
                "(one float N x 3 x S x S input, a K x 7 output)"
            )
        _, _, h, w = inputs[0].shape
        fixed = {d for d in (h, w) if isinstance(d, int)}
        if len(fixed) > 1:
            raise self._fail(f"graph input is {h} x {w}; the format is square")
        manifest_size = self.manifest.get("input_size")
        size = next(iter(fixed), None)
        if size is None:  # a dynamic graph: the manifest or the config says what it was made for
            size = requested or manifest_size
            if not isinstance(size, int):
                raise self._fail("graph input size is dynamic and the manifest has no input_size")
        elif requested is not None and requested != size:
            raise self._fail(f"input is fixed at {size} x {size}; detector_input_size {requested}")
        if manifest_size is not None and fixed and manifest_size != size:
            raise self._fail(f"manifest input_size {manifest_size} but the graph takes {size}")
        if size < MIN_INPUT or size % MIN_INPUT:
            raise self._fail(f"input size {size} is not a multiple of {MIN_INPUT}")
        probe = np.full((1, 3, size, size), PAD_VALUE / 255.0, np.float32)
        result = probe_run(self._session, [outputs[0].name], {inputs[0].name: probe}, self._fail)
        rows = np.asarray(result[0])
        if rows.ndim != 2 or rows.shape[1] != ROW_WIDTH:
            raise self._fail(f"output shape {list(rows.shape)} is not K x {ROW_WIDTH}")
        return size, inputs[0].name, outputs[0].name

    def letterbox(
        self, image: ImageArray
    ) -> tuple[npt.NDArray[np.float32], float, float, int, int]:
        """The NCHW RGB blob, the x and y scale from image to input pixels, and the left and
        top padding in input pixels."""
        s = self.input_size
        h, w = image.shape[:2]
        scale = min(s / h, s / w)
        nw, nh = min(max(round(w * scale), 1), s), min(max(round(h * scale), 1), s)
        resized = image
        if (nw, nh) != (w, h):
            resized = np.asarray(
                cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR), np.uint8
            )
        left, top = (s - nw) // 2, (s - nh) // 2
        blob = np.full((1, 3, s, s), PAD_VALUE / 255.0, np.float32)
        for c in range(3):  # BGR in, RGB out
            np.multiply(
                resized[:, :, 2 - c],
                np.float32(1 / 255),
                out=blob[0, c, top : top + nh, left : left + nw],
                casting="unsafe",
            )
        return blob, nw / w, nh / h, left, top

    def detect(self, image: ImageArray) -> list[Detection]:
        """Plates in ``image`` (BGR, H x W x 3, uint8), best first, in that image's pixels."""
        check_frame(image)
        blob, sx, sy, left, top = self.letterbox(image)
        rows = np.asarray(
            self._session.run([self._output_name], {self._input_name: blob})[0], np.float64
        )
        rows = rows[rows[:, 6] >= self.score_threshold]
        h, w = image.shape[:2]
        boxes = np.empty((len(rows), 4), np.float64)
        boxes[:, [0, 2]] = ((rows[:, [1, 3]] - left) / sx).clip(0, w)
        boxes[:, [1, 3]] = ((rows[:, [2, 4]] - top) / sy).clip(0, h)
        out = [
            Detection(box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])), score=float(s))
            for b, s in zip(boxes, rows[:, 6], strict=True)
            if b[2] - b[0] >= 1 and b[3] - b[1] >= 1
        ]
        return sorted(out, key=lambda d: -d.score)
