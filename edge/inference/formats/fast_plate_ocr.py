"""Recognizer adapter for fast-plate-ocr ONNX models: fixed character slots x alphabet.

The format (fast-plate-ocr, MIT, https://github.com/ankandrew/fast-plate-ocr):

* input: one uint8 tensor N x H x W x C (NHWC, C = 1 for ``image_color_mode: grayscale``, 3 for
  ``rgb`` in RGB order), pixels 0-255 unnormalised: the model scales them itself;
* the crop is resized to ``img_height`` x ``img_width`` (``interpolation``), stretched, or
  letterboxed with ``padding_color`` when ``keep_aspect_ratio`` is true;
* output: ``max_plate_slots`` x ``len(alphabet)`` softmax probabilities per crop (flat or
  N x slots x alphabet; the output named ``plate`` when there are several, e.g. with a region
  head, which is not used here: the plate-region classifier answers that); a slot whose best
  character is ``pad_char`` is empty.

The plate config YAML says all that. Its parsed values are copied into the model's manifest by
``scripts/make_manifest.py`` so that the manifest alone describes the model (the known-good copy
of a model is the ``.onnx`` and the ``.json``); a YAML beside the model that disagrees with the
manifest is an error rather than a guess which one is right.

Each read character's ``prob`` is its slot's softmax probability; ``alternatives`` are the up to
3 next most likely characters of the slot (pad excluded, 0.001 or more). Confidence and status
follow the CTC recognizer (edge.inference.recognizer): no status head, so a read with a
character under 0.5 is ``partial``.
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
from edge.inference.formats.plate_config import (
    PlateOcrConfig,
    plate_config_from_mapping,
    read_plate_config,
)
from edge.inference.recognizer import (
    MAX_ALTERNATIVES,
    MIN_ALTERNATIVE_PROB,
    _recognition,
    _softmax,
    no_reads,
)
from edge.inference.session import (
    check_kind_format,
    create_session,
    load_manifest,
    model_version,
    probe_run,
)
from edge.types import CharCandidate, CharSlot, ImageArray, Recognition

log = logging.getLogger(__name__)

FORMAT = "fast-plate-ocr"
KIND = "plate-recognizer"
PLATE_OUTPUT = "plate"
_INTERPOLATION = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos4": cv2.INTER_LANCZOS4,
}

FloatArray = npt.NDArray[np.float32]


def plate_config_beside(model_path: Path) -> Path | None:
    """The plate config YAML next to a model, by fast-plate-ocr's naming or ours."""
    for name in (f"{model_path.stem}.yaml", f"{model_path.stem}_plate_config.yaml"):
        candidate = model_path.with_name(name)
        if candidate.is_file():
            return candidate
    return None


class FastPlateOcrRecognizer:
    """Reads plate text from crops with a fast-plate-ocr ONNX model; PlateRecognizer's API."""

    def __init__(
        self,
        model_path: Path,
        *,
        providers: Sequence[str] = ("cpu",),
        threads: int = 0,
        plate_config: Path | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.manifest: dict[str, Any] = load_manifest(self.model_path)
        check_kind_format(self.manifest, KIND, FORMAT, self._fail)
        self.config = self._read_config(plate_config)
        self.alphabet = self.config.alphabet
        self._pad = self.config.alphabet.index(self.config.pad_char)
        self._session = create_session(self.model_path, providers=providers, threads=threads)
        self._input_name, self._output_name = self._check_graph()
        self.version: str = model_version(self.model_path, self.manifest)

    # ------------------------------------------------------------------ loading checks

    def _fail(self, reason: str) -> ModelError:
        return ModelError(f"recognizer model {self.model_path}: {reason}")

    def _read_config(self, explicit: Path | None) -> PlateOcrConfig:
        embedded = self.manifest.get("plate_config")
        yaml_path = explicit if explicit is not None else plate_config_beside(self.model_path)
        from_yaml = read_plate_config(yaml_path) if yaml_path is not None else None
        if embedded is None:
            if from_yaml is None:
                raise self._fail(
                    "no plate config: the manifest has none and there is no "
                    f"{self.model_path.stem}.yaml beside the model"
                )
            return from_yaml
        if not isinstance(embedded, dict):
            raise self._fail("manifest plate_config must be an object")
        try:
            config = plate_config_from_mapping(embedded)
        except (TypeError, ValueError) as exc:
            raise self._fail(f"manifest plate_config: {exc}") from None
        if from_yaml is not None and from_yaml != config:
            raise self._fail(
                f"plate config {yaml_path} differs from the one in the manifest; rerun "
                "scripts/make_manifest.py after changing it"
            )
        return config

    def _check_graph(self) -> tuple[str, str]:
        cfg = self.config
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise self._fail(f"expected one input, the graph has {len(inputs)}")
        expected = (cfg.img_height, cfg.img_width, cfg.channels)
        shape = list(inputs[0].shape)
        if len(shape) != 4 or any(
            isinstance(d, int) and d != e for d, e in zip(shape[1:], expected, strict=True)
        ):
            raise self._fail(
                f"input shape {shape} does not fit the plate config's N x {expected} "
                f"(img_height, img_width, {cfg.image_color_mode} channels)"
            )
        if inputs[0].type != "tensor(uint8)":
            raise self._fail(f"input type {inputs[0].type} is not uint8 (NHWC pixels)")
        names = [o.name for o in self._session.get_outputs()]
        output = PLATE_OUTPUT if PLATE_OUTPUT in names else names[0]
        probe = np.zeros((1, *expected), np.uint8)
        result = np.asarray(
            probe_run(self._session, [output], {inputs[0].name: probe}, self._fail)[0]
        )
        want = cfg.max_plate_slots * len(cfg.alphabet)
        if result.shape[0] != 1 or result.size != want:
            raise self._fail(
                f"output {output!r} shape {list(result.shape)} does not fit the plate config: "
                f"max_plate_slots {cfg.max_plate_slots} x alphabet of {len(cfg.alphabet)} = "
                f"{want} values per crop"
            )
        return inputs[0].name, output

    # ------------------------------------------------------------------ inference

    def _preprocess(self, crop: ImageArray) -> npt.NDArray[np.uint8]:
        cfg = self.config
        image: npt.NDArray[np.uint8] = np.asarray(crop, dtype=np.uint8)
        code: int | None
        if image.ndim == 3 and image.shape[2] == 3:
            code = cv2.COLOR_BGR2GRAY if cfg.channels == 1 else cv2.COLOR_BGR2RGB
        elif image.ndim == 2:
            code = None if cfg.channels == 1 else cv2.COLOR_GRAY2RGB
        else:
            raise InputError(f"plate crop must be H x W x 3 BGR, got shape {image.shape}")
        if code is not None:
            image = np.asarray(cv2.cvtColor(image, code), dtype=np.uint8)
        interp = _INTERPOLATION[cfg.interpolation]
        h, w = image.shape[:2]
        if not cfg.keep_aspect_ratio:
            image = np.asarray(
                cv2.resize(image, (cfg.img_width, cfg.img_height), interpolation=interp),
                dtype=np.uint8,
            )
        else:
            scale = min(cfg.img_height / h, cfg.img_width / w)
            nw = min(max(round(w * scale), 1), cfg.img_width)
            nh = min(max(round(h * scale), 1), cfg.img_height)
            if (nw, nh) != (w, h):
                image = np.asarray(cv2.resize(image, (nw, nh), interpolation=interp), np.uint8)
            shape = (cfg.img_height, cfg.img_width) + ((3,) if cfg.channels == 3 else ())
            fill = cfg.padding_color if cfg.channels == 3 else cfg.padding_color[0]
            canvas = np.empty(shape, np.uint8)
            canvas[...] = fill
            top, left = (cfg.img_height - nh) // 2, (cfg.img_width - nw) // 2
            canvas[top : top + nh, left : left + nw] = image
            image = canvas
        return image[..., None] if image.ndim == 2 else image

    def recognize(self, crops: Sequence[ImageArray]) -> list[Recognition]:
        """Read every crop in one batched model call; one Recognition per crop, in order."""
        usable, results = no_reads(crops)
        if not usable:
            return results
        batch = np.stack([self._preprocess(crops[i]) for i in usable])
        raw = self._session.run([self._output_name], {self._input_name: batch})[0]
        probs = _as_probabilities(
            np.asarray(raw, np.float32).reshape(
                len(usable), self.config.max_plate_slots, len(self.alphabet)
            )
        )
        for row, index in enumerate(usable):
            results[index] = _recognition(self._decode(probs[row]), None)
        return results

    def _decode(self, probs: FloatArray) -> tuple[CharSlot, ...]:
        """One slots x alphabet probability matrix to characters, pad slots dropped."""
        slots: list[CharSlot] = []
        for slot in probs:
            order = np.argsort(-slot, kind="stable")
            best = int(order[0])
            if best == self._pad:
                continue
            alternatives = tuple(
                CharCandidate(self.alphabet[c], float(slot[c]))
                for c in order[1:]
                if c != self._pad and slot[c] >= MIN_ALTERNATIVE_PROB
            )[:MAX_ALTERNATIVES]
            slots.append(CharSlot(self.alphabet[best], float(slot[best]), alternatives))
        return tuple(slots)


def _as_probabilities(values: FloatArray) -> FloatArray:
    """fast-plate-ocr models end in a softmax; a model exported without it gets one here."""
    if values.min() >= 0.0 and np.allclose(values.sum(axis=-1), 1.0, atol=1e-2):
        return values
    return _softmax(values)
