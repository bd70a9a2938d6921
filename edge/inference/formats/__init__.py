"""Model formats: which class runs a detector or recognizer file, chosen by its manifest.

Every model needs its manifest ``NAME.json`` beside ``NAME.onnx`` (its sha256 is checked before
onnxruntime sees the file). The manifest's ``format`` picks the class:

=================== ================== ==============================================
role                format             class
=================== ================== ==============================================
detector            centernet-corners  PlateDetector (ours: box and corners)
detector            yolov9-e2e         Yolov9PlateDetector (open-image-models)
recognizer          ctc                PlateRecognizer (ours: CTC, status head)
recognizer          fast-plate-ocr     FastPlateOcrRecognizer (fast-plate-ocr)
=================== ================== ==============================================

A manifest without ``format`` (an agency's hand-written ``{"sha256": ...}``) is placed by what
sits beside the model: a fast-plate-ocr plate config YAML makes a recognizer fast-plate-ocr;
a detector graph with YOLOv9 end-to-end inputs and outputs makes it yolov9-e2e.
``write_manifest`` (``scripts/make_manifest.py``) writes the full manifest for a foreign model.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from edge.errors import ModelError
from edge.inference.detector import FORMAT as CENTERNET
from edge.inference.detector import PlateDetector
from edge.inference.formats.fast_plate_ocr import FORMAT as FAST_PLATE_OCR
from edge.inference.formats.fast_plate_ocr import FastPlateOcrRecognizer, plate_config_beside
from edge.inference.formats.plate_config import read_plate_config
from edge.inference.formats.yolov9_e2e import FORMAT as YOLOV9_E2E
from edge.inference.formats.yolov9_e2e import Yolov9PlateDetector, looks_like_yolov9_e2e
from edge.inference.recognizer import PlateRecognizer
from edge.inference.session import create_session, load_manifest, manifest_path, sha256_file
from edge.types import Detection, ImageArray, Recognition

CTC = "ctc"
DETECTOR_FORMATS = (CENTERNET, YOLOV9_E2E)
RECOGNIZER_FORMATS = (CTC, FAST_PLATE_OCR)
FOREIGN_FORMATS = (FAST_PLATE_OCR, YOLOV9_E2E)


class Detector(Protocol):
    model_path: Path
    version: str
    manifest: dict[str, Any]
    input_size: int
    """Long side of the image as the model sees it: the config's, else the model's own."""
    score_threshold: float
    """Live: a config reload sets it between frames."""

    def detect(self, image: ImageArray) -> list[Detection]: ...


class Recognizer(Protocol):
    model_path: Path
    version: str
    manifest: dict[str, Any]

    def recognize(self, crops: Sequence[ImageArray]) -> list[Recognition]: ...


def _manifest_for_dispatch(path: Path) -> dict[str, Any]:
    """The manifest, unverified (the class verifies it), with advice when it is missing."""
    if path.is_file() and not manifest_path(path).is_file():
        raise ModelError(
            f"model {path}: manifest {manifest_path(path)} is missing; for a fast-plate-ocr or "
            f"YOLOv9 end-to-end model write one with: python scripts/make_manifest.py {path} "
            "--format fast-plate-ocr|yolov9-e2e"
        )
    return load_manifest(path, verify_sha256=False)


def detector_format(path: Path) -> str:
    """The detector format of ``path``: the manifest's, else read from the graph."""
    declared = _manifest_for_dispatch(path).get("format")
    if declared is not None:
        if declared not in DETECTOR_FORMATS:
            raise ModelError(
                f"model {path}: manifest format {declared!r} is not a detector format "
                f"({', '.join(DETECTOR_FORMATS)})"
            )
        return str(declared)
    session = create_session(path)
    if looks_like_yolov9_e2e(session.get_inputs(), session.get_outputs()):
        return YOLOV9_E2E
    return CENTERNET


def recognizer_format(path: Path, plate_config: Path | None = None) -> str:
    """The recognizer format of ``path``: the manifest's, else fast-plate-ocr when a plate
    config YAML is given or lies beside the model, else ours."""
    declared = _manifest_for_dispatch(path).get("format")
    if declared is not None:
        if declared not in RECOGNIZER_FORMATS:
            raise ModelError(
                f"model {path}: manifest format {declared!r} is not a recognizer format "
                f"({', '.join(RECOGNIZER_FORMATS)})"
            )
        return str(declared)
    if plate_config is not None or plate_config_beside(path) is not None:
        return FAST_PLATE_OCR
    return CTC


def load_detector(
    path: Path,
    *,
    providers: Sequence[str] = ("cpu",),
    threads: int = 0,
    input_size: int | None = None,
    score_threshold: float = 0.3,
) -> Detector:
    if detector_format(path) == YOLOV9_E2E:
        return Yolov9PlateDetector(
            path,
            providers=providers,
            threads=threads,
            input_size=input_size,
            score_threshold=score_threshold,
        )
    return PlateDetector(
        path,
        providers=providers,
        threads=threads,
        input_size=input_size,
        score_threshold=score_threshold,
    )


def load_recognizer(
    path: Path,
    *,
    providers: Sequence[str] = ("cpu",),
    threads: int = 0,
    plate_config: Path | None = None,
) -> Recognizer:
    if recognizer_format(path, plate_config) == FAST_PLATE_OCR:
        return FastPlateOcrRecognizer(
            path, providers=providers, threads=threads, plate_config=plate_config
        )
    return PlateRecognizer(path, providers=providers, threads=threads)


def write_manifest(
    model: Path,
    fmt: str,
    *,
    plate_config: Path | None = None,
    input_size: int | None = None,
    name: str | None = None,
    replace: bool = False,
) -> Path:
    """Write the manifest of a foreign model, then load the model with it to prove it fits.

    On any failure the previous state is restored and ModelError raised. Returns the path.
    """
    if fmt not in FOREIGN_FORMATS:
        raise ModelError(f"format {fmt!r} is not one of {', '.join(FOREIGN_FORMATS)}")
    if not model.is_file():
        raise ModelError(f"model file {model} does not exist")
    target = manifest_path(model)
    if target.exists() and not replace:
        raise ModelError(f"manifest {target} exists; pass --force to replace it")
    manifest: dict[str, Any] = {
        "name": name or model.stem,
        "kind": "plate-recognizer" if fmt == FAST_PLATE_OCR else "plate-detector",
        "format": fmt,
        "sha256": sha256_file(model),
        "source": "foreign model; manifest written by scripts/make_manifest.py",
    }
    if fmt == FAST_PLATE_OCR:
        yaml_path = plate_config or plate_config_beside(model)
        if yaml_path is None:
            raise ModelError(
                f"model {model}: no plate config; put {model.stem}.yaml beside it or pass "
                "--plate-config"
            )
        manifest["plate_config_file"] = yaml_path.name
        manifest["plate_config"] = read_plate_config(yaml_path).to_json()
    elif input_size is not None:
        manifest["input_size"] = input_size
    previous = target.read_bytes() if target.exists() else None
    _write_atomic(target, (json.dumps(manifest, indent=2) + "\n").encode())
    try:
        if fmt == FAST_PLATE_OCR:
            FastPlateOcrRecognizer(model, plate_config=plate_config)
        else:
            Yolov9PlateDetector(model)
    except ModelError:
        if previous is None:
            target.unlink()
        else:
            _write_atomic(target, previous)
        raise
    return target


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o644)  # the service user reads it; mkstemp makes 0600
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
