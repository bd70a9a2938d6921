"""Attribute classifiers: vehicle type, vehicle colour, plate region and optional make/model.

Each is an image classifier run with onnxruntime (no torch), checked against the manifest
``NAME.json`` beside ``NAME.onnx`` (sha256 first, as every model here). Manifest keys:

* ``kind``: ``"attribute-classifier"``; ``attribute``: ``"vehicle_type"``,
  ``"vehicle_colour"``, ``"plate_region"`` or ``"make_model"``;
* ``labels``: the output classes in order (for make/model the configured label file, one
  ``Make|Model`` per line, takes their place);
* ``input_height``, ``input_width``; ``color``: ``"bgr"`` or ``"rgb"``;
* ``normalize``: ``mean`` and ``std``, one number or one per channel (in the ``color``
  order): the crop, resized to the input size ignoring aspect (area interpolation when
  shrinking, bilinear when enlarging), becomes ``(pixel / 255 - mean) / std``, N x 3 x H x W;
* ``output``: ``"logits"`` (softmax is applied here, the default) or ``"probabilities"``.

The graph has one input and its first output is N x len(labels).

``AttributeModels`` loads the configured ones: a missing or broken optional model turns its
attribute off with one log line, never stopping the daemon. It classifies the vehicle box
(edge.vehicle) and the plate crop of each observation; the vehicle pixels live only inside
``annotate`` and are never stored or sent.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np
import numpy.typing as npt

from edge.config import ModelSettings
from edge.errors import ModelError
from edge.inference.session import create_session, load_manifest, model_version
from edge.types import ImageArray, LabelScores, PlateObservation, VehiclePass
from edge.vehicle import vehicle_box, vehicle_crop, vote_labels

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

KIND: Final = "attribute-classifier"
ATTRIBUTES: Final = ("vehicle_type", "vehicle_colour", "plate_region", "make_model")
TOP_K = 5
"""Labels kept per frame for the pass vote: the rest carry too little to change a winner."""
ATTRIBUTE_THREADS = 1
"""These models take about a millisecond: a thread pool of their own costs more than it
saves, and its spinning threads would take CPU from the detector."""
VEHICLE_CROP_MAX = 96
"""Vehicle boxes are shrunk to this once, before each classifier resizes to its input."""


class AttributeClassifier:
    """One ONNX image classifier from its manifest; ``classify`` gives top labels per crop."""

    def __init__(
        self,
        model_path: Path,
        *,
        attribute: str,
        labels_file: Path | None = None,
        providers: Sequence[str] = ("cpu",),
        threads: int = 0,
    ) -> None:
        self.model_path = Path(model_path)
        self.attribute = attribute
        self.manifest: dict[str, Any] = load_manifest(self.model_path)
        self._read_manifest(labels_file)
        self._session = create_session(self.model_path, providers=providers, threads=threads)
        self._check_graph()
        self.version: str = model_version(self.model_path, self.manifest)

    def _fail(self, reason: str) -> ModelError:
        return ModelError(f"{self.attribute} model {self.model_path}: {reason}")

    def _read_manifest(self, labels_file: Path | None) -> None:
        m = self.manifest
        if m.get("kind") != KIND:
            raise self._fail(f"manifest kind is {m.get('kind')!r}, expected {KIND!r}")
        if m.get("attribute") != self.attribute:
            raise self._fail(f"manifest attribute is {m.get('attribute')!r}")
        labels = read_labels(labels_file) if labels_file is not None else m.get("labels")
        if (
            not isinstance(labels, list)
            or not labels
            or not all(isinstance(x, str) and x for x in labels)
        ):
            raise self._fail("labels must be a non-empty list of non-empty strings")
        if len(set(labels)) != len(labels):
            raise self._fail("labels must be distinct (votes add up by label)")
        self.labels: tuple[str, ...] = tuple(labels)
        try:
            self.input_height = int(m["input_height"])
            self.input_width = int(m["input_width"])
            mean = np.asarray(m["normalize"]["mean"], np.float32).reshape(-1)
            std = np.asarray(m["normalize"]["std"], np.float32).reshape(-1)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._fail(
                f"manifest input/normalize entries are missing or bad: {exc}"
            ) from None
        if m.get("color", "bgr") not in ("bgr", "rgb"):
            raise self._fail(f"manifest color {m.get('color')!r} is not 'bgr' or 'rgb'")
        if mean.size not in (1, 3) or std.size not in (1, 3) or (std <= 0).any():
            raise self._fail("normalize mean/std must be one or three numbers, std > 0")
        if not (8 <= self.input_height <= 1024 and 8 <= self.input_width <= 1024):
            raise self._fail("manifest input size is out of range")
        if m.get("output", "logits") not in ("logits", "probabilities"):
            raise self._fail(f"manifest output {m.get('output')!r} is not logits/probabilities")
        self._rgb = m.get("color") == "rgb"
        self._softmax = m.get("output", "logits") == "logits"
        self._mean = mean.reshape(-1, 1, 1) if mean.size == 3 else mean.reshape(1, 1, 1)
        self._std = std.reshape(-1, 1, 1) if std.size == 3 else std.reshape(1, 1, 1)

    def _check_graph(self) -> None:
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise self._fail(f"expected one input, the graph has {len(inputs)}")
        self._input_name: str = inputs[0].name
        dummy = np.zeros((1, 3, self.input_height, self.input_width), np.float32)
        try:
            out = np.asarray(self._session.run(None, {self._input_name: dummy})[0])
        except Exception as exc:  # onnxruntime raises untyped errors for broken graphs
            raise self._fail(f"test inference failed: {str(exc).strip()[:200]}") from None
        if out.shape != (1, len(self.labels)):
            raise self._fail(
                f"output shape {list(out.shape)} does not fit {len(self.labels)} labels"
            )

    def _preprocess(self, crop: ImageArray) -> FloatArray:
        image = crop if crop.ndim == 3 else cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
        h, w = image.shape[:2]
        shrink = h > self.input_height or w > self.input_width
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        resized = cv2.resize(image, (self.input_width, self.input_height), interpolation=interp)
        if self._rgb:
            resized = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        chw = resized.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
        out: FloatArray = ((chw - self._mean) / self._std).astype(np.float32)
        return out

    def probabilities(self, crops: Sequence[ImageArray]) -> FloatArray:
        """N x len(labels) class probabilities, one row per crop, in one batched call."""
        if not crops:
            return np.zeros((0, len(self.labels)), np.float32)
        batch = np.stack([self._preprocess(c) for c in crops])
        out = np.asarray(self._session.run(None, {self._input_name: batch})[0], np.float32)
        if not self._softmax:
            return out
        shifted = np.exp(out - out.max(axis=1, keepdims=True))
        probs: FloatArray = (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
        return probs

    def classify(
        self, crops: Sequence[ImageArray], weights: Sequence[float] | None = None
    ) -> list[LabelScores]:
        """The TOP_K labels of each crop, best first, probabilities in [0, 1]."""
        probs = self.probabilities(crops)
        out = []
        for row, p in enumerate(probs):
            order = np.argsort(-p)[:TOP_K]
            scores = tuple((self.labels[i], round(float(p[i]), 4)) for i in order)
            weight = 1.0 if weights is None else float(weights[row])
            out.append(LabelScores(scores, weight))
        return out


def read_labels(path: Path) -> list[str]:
    """One label per non-empty line (UTF-8); surrounding spaces dropped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"label file {path}: cannot read: {exc}") from None
    return [line.strip() for line in lines if line.strip()]


def decide(scores: LabelScores | None, threshold: float) -> tuple[str, float] | None:
    """The best label of one crop, or None when it is less likely than ``threshold``."""
    return settle(vote_labels([scores]), threshold)


def settle(voted: tuple[str, float] | None, threshold: float) -> tuple[str, float] | None:
    if voted is None or voted[1] < threshold:
        return None
    return voted


class AttributeModels:
    """The configured attribute classifiers; any of them may be off (None)."""

    def __init__(
        self,
        settings: ModelSettings,
        *,
        vehicle_type: AttributeClassifier | None = None,
        vehicle_colour: AttributeClassifier | None = None,
        plate_region: AttributeClassifier | None = None,
        make_model: AttributeClassifier | None = None,
    ) -> None:
        self.settings = settings
        self.vehicle_type = vehicle_type
        self.vehicle_colour = vehicle_colour
        self.plate_region = plate_region
        self.make_model = make_model

    @classmethod
    def from_settings(cls, settings: ModelSettings) -> AttributeModels:
        """Load what is configured; each missing or broken model: one log line, then off."""
        loaded = {
            name: _load_optional(settings, name, path)
            for name, path in (
                ("vehicle_type", settings.vehicle_type),
                ("vehicle_colour", settings.vehicle_colour),
                ("plate_region", settings.plate_region),
                ("make_model", settings.make_model),
            )
        }
        models = cls(settings, **loaded)
        models.warm_up()
        return models

    @property
    def vehicle_models(self) -> list[AttributeClassifier]:
        models = (self.vehicle_type, self.vehicle_colour, self.make_model)
        return [m for m in models if m is not None]

    @property
    def enabled(self) -> bool:
        return bool(self.vehicle_models) or self.plate_region is not None

    def versions(self) -> dict[str, str]:
        return {
            name: model.version for name in ATTRIBUTES if (model := getattr(self, name)) is not None
        }

    def warm_up(self) -> None:
        blank = np.full((64, 64, 3), 127, np.uint8)
        for model in (*self.vehicle_models, self.plate_region):
            if model is not None:
                model.classify([blank])

    def apply_thresholds(self, vehicle_pass: VehiclePass) -> VehiclePass:
        """The pass with every voted attribute below its threshold made null."""
        p, m = vehicle_pass, self.settings
        vtype = settle(_pair(p.vehicle_type, p.vehicle_type_confidence), m.vehicle_type_threshold)
        colour = settle(
            _pair(p.vehicle_colour, p.vehicle_colour_confidence), m.vehicle_colour_threshold
        )
        region = settle(_pair(p.region, p.region_confidence), m.plate_region_threshold)
        make = settle(_pair(p.vehicle_make, p.make_model_confidence), m.make_model_threshold)
        return dataclasses.replace(
            p,
            vehicle_type=vtype[0] if vtype else None,
            vehicle_type_confidence=vtype[1] if vtype else None,
            vehicle_colour=colour[0] if colour else None,
            vehicle_colour_confidence=colour[1] if colour else None,
            region=region[0] if region else None,
            region_confidence=region[1] if region else None,
            vehicle_make=p.vehicle_make if make else None,
            vehicle_model=p.vehicle_model if make else None,
            make_model_confidence=make[1] if make else None,
        )

    def annotate(
        self, image: ImageArray, observations: Sequence[PlateObservation]
    ) -> list[PlateObservation]:
        """The observations with their attribute scores filled in (new objects)."""
        if not observations or not self.enabled:
            return list(observations)
        per: dict[str, list[LabelScores | None]] = {
            name: [None] * len(observations) for name in ATTRIBUTES
        }
        if self.vehicle_models:
            boxes = [vehicle_box(o.detection, image.shape[:2]) for o in observations]
            found = [(i, b) for i, b in enumerate(boxes) if b is not None]
            crops = [vehicle_crop(image, box, VEHICLE_CROP_MAX) for _, (box, _) in found]
            weights = [share for _, (_, share) in found]
            for name in ("vehicle_type", "vehicle_colour", "make_model"):
                model: AttributeClassifier | None = getattr(self, name)
                if model is None or not crops:
                    continue
                for (i, _), scores in zip(found, model.classify(crops, weights), strict=True):
                    per[name][i] = scores
        if self.plate_region is not None:
            plates = [(i, o.crop) for i, o in enumerate(observations) if o.crop is not None]
            results = self.plate_region.classify([c for _, c in plates if c is not None])
            for (i, _), scores in zip(plates, results, strict=True):
                per["plate_region"][i] = scores
        return [
            dataclasses.replace(
                o,
                vehicle_type=per["vehicle_type"][i],
                vehicle_colour=per["vehicle_colour"][i],
                make_model=per["make_model"][i],
                region=per["plate_region"][i],
            )
            for i, o in enumerate(observations)
        ]


def _pair(label: str | None, confidence: float | None) -> tuple[str, float] | None:
    return None if label is None or confidence is None else (label, confidence)


def _load_optional(
    settings: ModelSettings, name: str, path: Path | None
) -> AttributeClassifier | None:
    if path is None:
        return None
    if not path.is_file():
        log.warning("%s model %s not found: that attribute stays null", name, path)
        return None
    labels = settings.make_model_labels if name == "make_model" else None
    try:
        return AttributeClassifier(
            path,
            attribute=name,
            labels_file=labels,
            providers=settings.providers,
            threads=ATTRIBUTE_THREADS,
        )
    except ModelError as exc:
        log.error("%s; that attribute stays null", exc)  # noqa: TRY400 - the reason is the line
        return None
