"""Plate recognizer: CTC text model over plate crops, run with onnxruntime (no torch).

The model and its manifest (``NAME.onnx`` + ``NAME.json``) are written by
scripts/export_recognizer.py. The manifest says how to preprocess a crop:

* ``input_height`` x ``input_width``, ``input_channels`` (1 for ``color: "gray"``, 3 for
  ``"bgr"``); the crop is resized to that size ignoring its aspect (the model was trained so),
  with area interpolation when shrinking and bilinear when enlarging;
* ``normalize``: ``(pixel / 255 - mean) / std``.

Outputs: ``logits`` (N x T x (1 + len(alphabet)), class 0 is the CTC blank, class i is
``alphabet[i - 1]``) and, when ``status_classes`` is in the manifest, ``status`` (N x classes).

Decoding is greedy (best path). Each read character's ``prob`` is the maximum, over the frames
that collapsed into it, of that character's softmax probability; its ``alternatives`` are the
up to 3 next most likely non-blank characters over the same frames (those at 0.001 or more).
``Recognition.confidence`` is the plain product of the character probabilities (no geometric
mean, so longer reads with the same per-character certainty score lower), 0.0 for no text.
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
from edge.types import CharCandidate, CharSlot, ImageArray, PlateStatus, Recognition

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

LOW_CHAR_PROB = 0.5
"""Without a status head, a read with any character below this is reported as partial."""
MAX_ALTERNATIVES = 3
MIN_ALTERNATIVE_PROB = 0.001
LOGITS_OUTPUT = "logits"
STATUS_OUTPUT = "status"


class PlateRecognizer:
    """Reads plate text from crops with a CTC ONNX model, checked against its manifest."""

    def __init__(
        self,
        model_path: Path,
        *,
        providers: Sequence[str] = ("cpu",),
        threads: int = 0,
    ) -> None:
        self.model_path = Path(model_path)
        self.manifest: dict[str, Any] = load_manifest(self.model_path)
        self._read_manifest()
        self._session = create_session(self.model_path, providers=providers, threads=threads)
        self._check_graph()
        self.version: str = model_version(self.model_path, self.manifest)

    # ------------------------------------------------------------------ loading checks

    def _fail(self, reason: str) -> ModelError:
        return ModelError(f"recognizer model {self.model_path}: {reason}")

    def _read_manifest(self) -> None:
        m = self.manifest
        if m.get("kind") != "plate-recognizer":
            raise self._fail(f"manifest kind is {m.get('kind')!r}, expected 'plate-recognizer'")
        if m.get("format") != "ctc":
            raise self._fail(f"manifest format is {m.get('format')!r}; only 'ctc' is supported")
        alphabet = m.get("alphabet")
        if not isinstance(alphabet, str) or not alphabet or len(set(alphabet)) != len(alphabet):
            raise self._fail("manifest alphabet must be a non-empty string of distinct characters")
        self.alphabet: str = alphabet
        try:
            self.input_height = int(m["input_height"])
            self.input_width = int(m["input_width"])
            self.input_channels = int(m["input_channels"])
            mean = float(m["normalize"]["mean"])
            std = float(m["normalize"]["std"])
        except (KeyError, TypeError, ValueError) as exc:
            raise self._fail(
                f"manifest input/normalize entries are missing or bad: {exc}"
            ) from None
        color = m.get("color")
        if (color, self.input_channels) not in (("gray", 1), ("bgr", 3)):
            raise self._fail(
                f"manifest color {color!r} with {self.input_channels} channels is not supported"
            )
        if self.input_height < 8 or self.input_width < 8 or std <= 0:
            raise self._fail("manifest input size or normalize std is out of range")
        self.color: str = str(color)
        self._mean, self._std = mean, std
        classes = m.get("status_classes")
        self.status_classes: tuple[PlateStatus, ...] | None = None
        if classes is not None:
            try:
                self.status_classes = tuple(PlateStatus(c) for c in classes)
            except (TypeError, ValueError):
                raise self._fail(
                    f"manifest status_classes {classes!r} are not plate statuses"
                ) from None

    def _check_graph(self) -> None:
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise self._fail(f"expected one input, the graph has {len(inputs)}")
        self._input_name: str = inputs[0].name
        expected = (self.input_channels, self.input_height, self.input_width)
        shape = list(inputs[0].shape)
        if len(shape) != 4 or any(
            isinstance(d, int) and d != e for d, e in zip(shape[1:], expected, strict=True)
        ):
            raise self._fail(f"input shape {shape} does not fit manifest N x {expected}")
        outputs = {o.name: list(o.shape) for o in self._session.get_outputs()}
        if LOGITS_OUTPUT not in outputs:
            raise self._fail(f"graph has no {LOGITS_OUTPUT!r} output (has {sorted(outputs)})")
        self._has_status = self.status_classes is not None and STATUS_OUTPUT in outputs
        if self.status_classes is not None and not self._has_status:
            raise self._fail(f"manifest lists status_classes but graph has no {STATUS_OUTPUT!r}")
        # Shapes can be symbolic in the graph, so run one blank crop to see the real ones.
        dummy = np.zeros((1, *expected), dtype=np.float32)
        names = [LOGITS_OUTPUT, STATUS_OUTPUT] if self._has_status else [LOGITS_OUTPUT]
        results = probe_run(self._session, names, {self._input_name: dummy}, self._fail)
        logits = np.asarray(results[0])
        n_classes = len(self.alphabet) + 1
        if logits.ndim != 3 or logits.shape[0] != 1 or logits.shape[2] != n_classes:
            raise self._fail(
                f"logits shape {list(logits.shape)} does not fit the manifest alphabet of "
                f"{len(self.alphabet)} characters (expected N x T x {n_classes})"
            )
        if self._has_status and self.status_classes is not None:
            status = np.asarray(results[1])
            if status.shape != (1, len(self.status_classes)):
                raise self._fail(
                    f"status shape {list(status.shape)} does not fit "
                    f"{len(self.status_classes)} status_classes"
                )

    # ------------------------------------------------------------------ inference

    def _preprocess(self, crop: ImageArray) -> FloatArray:
        image: npt.NDArray[np.uint8] = np.asarray(crop, dtype=np.uint8)
        if image.ndim == 3 and image.shape[2] == 3:
            if self.color == "gray":
                image = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
        elif image.ndim == 2 and self.color == "bgr":
            image = np.asarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
        elif image.ndim != 2:
            raise InputError(f"plate crop must be H x W x 3 BGR, got shape {image.shape}")
        h, w = image.shape[:2]
        shrink = h > self.input_height or w > self.input_width
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        resized = cv2.resize(image, (self.input_width, self.input_height), interpolation=interp)
        scaled = (resized.astype(np.float32) / np.float32(255.0) - self._mean) / self._std
        if scaled.ndim == 2:
            return scaled[None].astype(np.float32)
        return np.ascontiguousarray(scaled.transpose(2, 0, 1), dtype=np.float32)

    def recognize(self, crops: Sequence[ImageArray]) -> list[Recognition]:
        """Read every crop in one batched model call; one Recognition per crop, in order."""
        usable, results = no_reads(crops)
        if not usable:
            return results
        batch = np.stack([self._preprocess(crops[i]) for i in usable])
        names = [LOGITS_OUTPUT, STATUS_OUTPUT] if self._has_status else [LOGITS_OUTPUT]
        outputs = self._session.run(names, {self._input_name: batch})
        probs = _softmax(np.asarray(outputs[0], dtype=np.float32))
        status_probs = (
            _softmax(np.asarray(outputs[1], dtype=np.float32)) if self._has_status else None
        )
        for row, index in enumerate(usable):
            chars = self._decode(probs[row])
            head = None if status_probs is None else self._status_from_head(status_probs[row])
            results[index] = _recognition(chars, head)
        return results

    def _status_from_head(self, probs: FloatArray) -> PlateStatus:
        classes = self.status_classes or ()  # only called when the head exists
        return classes[int(np.argmax(probs))]

    def _decode(self, probs: FloatArray) -> tuple[CharSlot, ...]:
        """Greedy CTC decode of one T x C probability matrix."""
        best = probs.argmax(axis=1)
        slots: list[CharSlot] = []
        t, frames = 0, len(best)
        while t < frames:
            k = int(best[t])
            end = t + 1
            while end < frames and best[end] == k:
                end += 1
            if k != 0:
                run = probs[t:end].max(axis=0)
                order = np.argsort(-run)
                alternatives = tuple(
                    CharCandidate(self.alphabet[c - 1], float(run[c]))
                    for c in order
                    if c not in (0, k) and run[c] >= MIN_ALTERNATIVE_PROB
                )[:MAX_ALTERNATIVES]
                slots.append(CharSlot(self.alphabet[k - 1], float(run[k]), alternatives))
            t = end
        return tuple(slots)


def no_reads(crops: Sequence[ImageArray]) -> tuple[list[int], list[Recognition]]:
    """The indexes of the crops that hold pixels, and one empty read per crop to fill in."""
    usable = [i for i, c in enumerate(crops) if c.size > 0 and min(c.shape[:2]) > 0]
    empty = Recognition(text="", confidence=0.0, chars=(), status=PlateStatus.NONE)
    return usable, [empty] * len(crops)


def _softmax(logits: FloatArray) -> FloatArray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    out: FloatArray = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return out


def read_confidence(chars: Sequence[CharSlot]) -> float:
    """A read's confidence: the product of its character probabilities; 0.0 for no text."""
    return float(np.prod([c.prob for c in chars])) if chars else 0.0


def _recognition(chars: tuple[CharSlot, ...], head: PlateStatus | None) -> Recognition:
    text = "".join(c.char for c in chars)
    confidence = read_confidence(chars)
    if not chars:
        status = PlateStatus.NONE  # nothing read: whatever the head says, there is no text
    elif head is not None:
        status = head
    elif len(chars) < 2 or any(c.prob < LOW_CHAR_PROB for c in chars):
        status = PlateStatus.PARTIAL
    else:
        status = PlateStatus.FULL
    return Recognition(text=text, confidence=confidence, chars=chars, status=status)
