"""``alpr-edge evaluate``: how well the shipped models read a labelled dataset.

Two layouts, told apart automatically:

* OpenALPR benchmark layout: ``NAME.jpg`` (or .jpeg, .png) with ``NAME.txt`` beside it, one
  line ``NAME.jpg x y w h PLATE`` per plate (any whitespace between fields). Every image goes
  through ``PlateReader.read``, the code the daemon runs, so detection and reading are
  measured together.
* Plate crops with ``labels.csv`` (columns ``file`` and ``text``, optionally ``state``): the
  recognizer alone, in batches. ``--split holdout`` keeps only the crops the training scripts
  hold out (the file-name hash rule in ``is_holdout``), ``--split train`` only the others.
  With a ``state`` column the plate-region model is measured too (``state_*`` metrics).
* Vehicle crops with ``labels.csv`` (``file`` and ``vehicle_type`` and/or ``color``, optionally
  ``split``): the vehicle type and colour classifiers on whole images (``type_*``,
  ``colour_*`` metrics). Dataset labels are mapped to the models' (``LABEL_SYNONYMS``: bike
  -> motorcycle, silver -> grey, ...). ``--split holdout``: rows whose ``split`` is ``test``,
  or without that column the hash rule on the file's base name.

Texts are compared after normalising to upper-case A-Z0-9. The metrics:

``detection_recall``
    ground-truth boxes matched by a detection at IoU >= 0.5 (one-to-one, greedy by IoU),
    divided by the number of ground-truth boxes.
``detection_precision``
    matched detections / all detections; 0 when nothing was detected at all.
``exact_match``
    share of images where every ground-truth text is among the image's reads (for an image
    labelled with no plate: where nothing was read). For crops: the read equals the label.
``top1_exact_match``
    share of images that count for ``exact_match`` and whose most confident read is one of
    their ground-truth texts, so never above ``exact_match``. The same as exact for crops.
``char_accuracy``
    per ground-truth plate, ``1 - levenshtein(truth, read) / max(len(truth), len(read))``
    with the read of the detection matched to that plate, averaged over all plates. A plate no
    detection matched scores 0: a missed plate is an unread plate.
``state_accuracy``, ``type_accuracy``, ``colour_accuracy``
    share of labelled crops whose most likely class is the label.
``state_answered``, ``type_answered``, ``colour_answered``
    share at or above the configured threshold (the rest would be sent as null), and
    ``*_accuracy_answered`` the accuracy among those.
``ms_per_image_median``, ``ms_per_image_p95``
    wall time of ``PlateReader.read`` per image after a warm-up, decoding excluded. For crops,
    a batch's time divided by its size.

The models and their settings are the shipped defaults, or with ``--config`` the ``[models]``
table of a daemon config (so the figures are those of what that daemon runs); ``--detector``,
``--recognizer``, ``--detector-input-size``, ``--plate-patterns`` and ``--recognizer-views``
override either. The report names the model versions, the detector input size and recognizer
views used and any plate patterns. ``--misses`` first prints one ``miss`` line per image not
read exactly: its labelled text and what was read.

An image that cannot be decoded counts as a miss (nothing detected, nothing read) and is
named in one warning line on stderr; an image without a label file is skipped and counted.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import string
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge.errors import InputError, UsageError
from edge.imageio import load_image
from edge.model_flags import model_settings
from edge.progress import Progress
from edge.types import ImageArray, PlateResult, Recognition

if TYPE_CHECKING:
    from edge.config import ModelSettings
    from edge.pipeline import PlateReader

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
CROPS_LABELS = "labels.csv"
IOU_MATCH = 0.5
CROP_BATCH = 32
HOLDOUT_TENTHS = 3
WARN_MAX_NAMES = 10
SPLITS = ("all", "holdout", "train")
VEHICLE_COLUMNS = {"vehicle_type": "vehicle_type", "color": "vehicle_colour"}
"""labels.csv column -> the attribute classifier measured on it."""
LABEL_SYNONYMS = {
    "bike": "motorcycle",
    "motorbike": "motorcycle",
    "juggernaut": "truck",
    "minibus": "van",
    "silver": "grey",
    "gray": "grey",
    "beige": "brown",
    "gold": "yellow",
    "pink": "other",
}
"""Dataset labels (vehicle-type-crops, vehicle-colour) as the models name them."""
_PLATE_CHARS = frozenset(string.ascii_uppercase + string.digits)

Box = tuple[float, float, float, float]
"""x1, y1, x2, y2 in pixels."""
Metrics = dict[str, int | float]
Recognize = Callable[[list[ImageArray]], Sequence[Recognition]]


@dataclass(frozen=True, slots=True)
class PlateLabel:
    box: Box
    text: str


@dataclass(frozen=True, slots=True)
class SceneSample:
    image: Path
    plates: tuple[PlateLabel, ...]


@dataclass(frozen=True, slots=True)
class CropSample:
    file_name: str
    """As written in labels.csv; the held-out split is decided on it."""
    image: Path
    text: str
    state: str | None


@dataclass(frozen=True, slots=True)
class SceneScore:
    """How one image of an OpenALPR-layout dataset went."""

    image: str
    plates: int
    detections: int
    matched: int
    exact: bool
    top1_exact: bool
    char_scores: tuple[float, ...]
    ms: float | None
    """None when the image could not be decoded."""
    truths: tuple[str, ...] = ()
    reads: tuple[tuple[str, float], ...] = ()
    """What was read (normalised text, confidence), most confident first."""


@dataclass(frozen=True, slots=True)
class CropScore:
    """How one plate crop went."""

    image: str
    exact: bool
    char_score: float
    ms: float | None
    """None when the image could not be decoded."""
    truth: str = ""
    read: str = ""


Info = dict[str, str | int]
"""What was measured with what: layout, dataset, model versions, settings that matter."""


@dataclass(frozen=True, slots=True)
class Report:
    info: Info
    metrics: Metrics
    unreadable: tuple[str, ...]
    unlabelled: int = 0
    misses: tuple[str, ...] = ()
    """One line per image not read exactly: name, labelled text, what was read."""


# --------------------------------------------------------------------------- text and boxes


def normalize_text(text: str) -> str:
    """Plate text as compared: upper-case A-Z0-9 only."""
    return "".join(c for c in text.upper() if c in _PLATE_CHARS)


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def char_similarity(truth: str, read: str) -> float:
    """1 - normalised edit distance: 1.0 for equal texts, 0.0 for nothing in common."""
    longest = max(len(truth), len(read))
    return 1.0 - levenshtein(truth, read) / longest if longest else 1.0


def iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(truths: Sequence[Box], found: Sequence[Box]) -> dict[int, int]:
    """Ground-truth index -> detection index, one-to-one, greedily by IoU >= IOU_MATCH."""
    pairs = sorted(
        ((iou(t, f), ti, fi) for ti, t in enumerate(truths) for fi, f in enumerate(found)),
        reverse=True,
    )
    matched: dict[int, int] = {}
    for overlap, ti, fi in pairs:
        if overlap < IOU_MATCH:
            break
        if ti not in matched and fi not in matched.values():
            matched[ti] = fi
    return matched


def is_holdout(file_name: str) -> bool:
    """The split the training scripts hold out: three files in ten by file-name hash.

    Kept in step with ``scripts/synth/splits.py`` by hand: the edge package does not import
    the training scripts.
    """
    return int(hashlib.sha256(file_name.encode()).hexdigest(), 16) % 10 < HOLDOUT_TENTHS


# --------------------------------------------------------------------------- datasets


def detect_layout(root: Path) -> str:
    """``"crops"``, ``"vehicles"`` or ``"openalpr"``; InputError when the folder is neither."""
    if not root.is_dir():
        raise InputError(f"dataset {root}: not a directory")
    if (root / CROPS_LABELS).is_file():
        columns = _csv_columns(root / CROPS_LABELS)
        if "text" not in columns and columns & set(VEHICLE_COLUMNS):
            return "vehicles"
        return "crops"
    images = _images(root)
    if not images:
        raise InputError(f"dataset {root}: no {CROPS_LABELS} and no .jpg/.jpeg/.png images")
    if not any(p.with_suffix(".txt").is_file() for p in images):
        raise InputError(
            f"dataset {root}: neither layout: no {CROPS_LABELS} and no NAME.txt label file "
            "beside any image"
        )
    return "openalpr"


def _csv_columns(path: Path) -> set[str]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return {c.strip() for c in next(csv.reader(fh), [])}
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None


def _images(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def parse_label_line(line: str, where: str) -> PlateLabel:
    """One ``NAME x y w h PLATE`` line; ``where`` ("file, line N") prefixes any error.

    Tab-separated lines (the benchmark's own) split on tabs only, so an image name or a plate
    with spaces in it stays one field; other lines split on any whitespace. The box may be
    given in whole or decimal pixels."""
    if line.count("\t") >= 5:
        fields = [f.strip() for f in line.strip().split("\t")]
    else:
        fields = line.split()
    if len(fields) < 6:
        raise InputError(f"{where}: expected 'NAME x y w h PLATE', found {len(fields)} field(s)")
    try:
        x, y, w, h = (float(v) for v in fields[1:5])
    except ValueError:
        x = y = w = h = math.nan
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise InputError(f"{where}: box x y w h must be numbers, found {' '.join(fields[1:5])!r}")
    if w <= 0 or h <= 0:
        raise InputError(f"{where}: box width and height must be positive, found {w}x{h}")
    text = normalize_text("".join(fields[5:]))
    if not text:
        raise InputError(f"{where}: plate text {' '.join(fields[5:])!r} has no A-Z or 0-9")
    return PlateLabel((x, y, x + w, y + h), text)


def parse_label_file(path: Path) -> tuple[PlateLabel, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"label file {path}: cannot read: {exc}") from None
    return tuple(
        parse_label_line(line, f"label file {path}, line {number}")
        for number, line in enumerate(lines, start=1)
        if line.strip()
    )


def load_scenes(root: Path) -> tuple[list[SceneSample], int]:
    """Labelled images in name order, and how many images had no label file."""
    samples: list[SceneSample] = []
    unlabelled = 0
    for image in _images(root):
        label_file = image.with_suffix(".txt")
        if label_file.is_file():
            samples.append(SceneSample(image, parse_label_file(label_file)))
        else:
            unlabelled += 1
    return samples, unlabelled


def load_crops(root: Path, split: str) -> list[CropSample]:
    path = root / CROPS_LABELS
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = set(reader.fieldnames or ())
            if not {"file", "text"} <= columns:
                raise InputError(
                    f"{path}, line 1: header must name the columns file and text, "
                    f"found {', '.join(reader.fieldnames or ()) or 'none'}"
                )
            samples = [_crop_sample(root, row, f"{path}, line {reader.line_num}") for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    return [s for s in samples if split == "all" or is_holdout(s.file_name) == (split == "holdout")]


def _crop_sample(root: Path, row: dict[str, str | None], where: str) -> CropSample:
    file_name = (row.get("file") or "").strip()
    raw_text = row.get("text")
    if not file_name or raw_text is None:
        raise InputError(f"{where}: expected the columns file and text, found missing fields")
    text = normalize_text(raw_text)
    if not text:
        raise InputError(f"{where}: plate text {raw_text!r} has no A-Z or 0-9")
    state = (row.get("state") or "").strip() or None
    return CropSample(file_name, root / file_name, text, state)


# --------------------------------------------------------------------------- scoring


def score_reads(
    image: str, truths: Sequence[PlateLabel], results: Sequence[PlateResult], ms: float | None
) -> SceneScore:
    """Score what the pipeline found on one image against its labels."""
    matched = match_boxes([t.box for t in truths], [r.detection.box for r in results])
    reads = [(normalize_text(r.recognition.text), r.recognition.confidence) for r in results]
    texts = {t.text for t in truths}
    read_texts = {text for text, _ in reads if text}
    exact = texts <= read_texts if texts else not read_texts
    best = max(((c, t) for t, c in reads if t), default=None)
    top1 = exact and (best is None or best[1] in texts)
    chars = tuple(
        char_similarity(t.text, reads[matched[i]][0]) if i in matched else 0.0
        for i, t in enumerate(truths)
    )
    ranked = tuple(sorted(((t, c) for t, c in reads if t), key=lambda r: -r[1]))
    return SceneScore(
        image,
        len(truths),
        len(results),
        len(matched),
        exact,
        top1,
        chars,
        ms,
        truths=tuple(t.text for t in truths),
        reads=ranked,
    )


def score_scene(reader: PlateReader, sample: SceneSample) -> SceneScore:
    try:
        image = load_image(sample.image)
    except InputError:
        return score_reads(sample.image.name, sample.plates, [], None)
    start = time.perf_counter()
    results = reader.read(image)
    return score_reads(
        sample.image.name, sample.plates, results, (time.perf_counter() - start) * 1000.0
    )


def score_crop_batch(recognize: Recognize, batch: Sequence[CropSample]) -> list[CropScore]:
    images: dict[int, ImageArray] = {}
    for i, sample in enumerate(batch):
        try:
            images[i] = load_image(sample.image)
        except InputError:
            continue
    start = time.perf_counter()
    reads = recognize(list(images.values())) if images else []
    ms = (time.perf_counter() - start) * 1000.0 / max(len(images), 1)
    by_index = dict(zip(images, reads, strict=True))
    return [_score_crop(s, by_index.get(i), ms) for i, s in enumerate(batch)]


def _score_crop(sample: CropSample, read: Recognition | None, ms: float) -> CropScore:
    if read is None:
        return CropScore(sample.image.name, False, 0.0, None, truth=sample.text)
    text = normalize_text(read.text)
    return CropScore(
        sample.image.name,
        text == sample.text,
        char_similarity(sample.text, text),
        ms,
        truth=sample.text,
        read=text,
    )


def scene_misses(scores: Sequence[SceneScore]) -> tuple[str, ...]:
    """``NAME: labelled T1 T2; read R1 (0.97), R2 (0.12)`` for each image not read exactly."""
    return tuple(
        f"{s.image}: labelled {' '.join(s.truths) or '(no plate)'}; read "
        + (", ".join(f"{t} ({c:.2f})" for t, c in s.reads) or "nothing")
        + (" (image unreadable)" if s.ms is None else "")
        for s in scores
        if not s.exact
    )


def crop_misses(scores: Sequence[CropScore]) -> tuple[str, ...]:
    return tuple(
        f"{s.image}: labelled {s.truth}; read {s.read or 'nothing'}"
        + (" (image unreadable)" if s.ms is None else "")
        for s in scores
        if not s.exact
    )


def summarize_scenes(scores: Sequence[SceneScore]) -> Metrics:
    plates = sum(s.plates for s in scores)
    matched = sum(s.matched for s in scores)
    times = [s.ms for s in scores if s.ms is not None]
    return {
        "images": len(scores),
        "plates": plates,
        "detection_recall": _share(matched, plates),
        "detection_precision": _share(matched, sum(s.detections for s in scores)),
        "exact_match": _share(sum(s.exact for s in scores), len(scores)),
        "top1_exact_match": _share(sum(s.top1_exact for s in scores), len(scores)),
        "char_accuracy": _share(sum(sum(s.char_scores) for s in scores), plates),
        "ms_per_image_median": _percentile(times, 50),
        "ms_per_image_p95": _percentile(times, 95),
    }


def summarize_crops(scores: Sequence[CropScore]) -> Metrics:
    exact = _share(sum(s.exact for s in scores), len(scores))
    return {
        "images": len(scores),
        "exact_match": exact,
        "top1_exact_match": exact,
        "char_accuracy": _share(sum(s.char_score for s in scores), len(scores)),
        "ms_per_image_median": _percentile([s.ms for s in scores if s.ms is not None], 50),
    }


def _share(part: float, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _percentile(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else 0.0


# --------------------------------------------------------------------------- runs


def evaluate_openalpr(root: Path, settings: ModelSettings, limit: int) -> Report:
    samples, unlabelled = load_scenes(root)
    samples = samples[:limit] if limit else samples
    from edge.pipeline import PlateReader  # once the labels are known to be good

    reader = PlateReader.from_settings(settings)
    reader.warm_up()
    scores: list[SceneScore] = []
    with Progress(len(samples), "evaluate") as bar:
        for sample in samples:
            scores.append(score_scene(reader, sample))
            bar.advance()
    info: Info = {
        "layout": "openalpr",
        "dataset": str(root),
        "detector": str(reader.detector.version),
        "detector_input_size": reader.detector.input_size,
        "recognizer": str(reader.recognizer.version),
        "recognizer_views": reader.views,
        **_patterns_info(settings),
    }
    unreadable = tuple(s.image for s in scores if s.ms is None)
    return Report(info, summarize_scenes(scores), unreadable, unlabelled, scene_misses(scores))


def evaluate_crops(root: Path, settings: ModelSettings, limit: int, split: str) -> Report:
    samples = load_crops(root, split)
    samples = samples[:limit] if limit else samples
    from edge.inference.formats import load_recognizer  # once the labels are known to be good
    from edge.inference.patterns import PlatePatterns
    from edge.pipeline import finish_reads

    recognizer = load_recognizer(
        settings.recognizer, providers=settings.providers, threads=settings.threads
    )
    patterns = PlatePatterns(settings.plate_patterns) if settings.plate_patterns else None

    def recognize(crops: Sequence[ImageArray]) -> list[Recognition]:
        return finish_reads(recognizer.recognize(crops), patterns)  # as PlateReader does

    recognize([np.full((64, 128, 3), 200, dtype=np.uint8)])  # warm-up
    scores: list[CropScore] = []
    with Progress(len(samples), "evaluate") as bar:
        for start in range(0, len(samples), CROP_BATCH):
            batch = samples[start : start + CROP_BATCH]
            scores.extend(score_crop_batch(recognize, batch))
            bar.advance(len(batch))
    info: Info = {
        "layout": "crops",
        "dataset": str(root),
        "recognizer": str(recognizer.version),
        "split": split,
        **_patterns_info(settings),
    }
    metrics = summarize_crops(scores)
    states = [(s.image, s.state.upper()) for s in samples if s.state]
    if states and not settings.plate_region.is_file():
        print(
            f"alpr-edge: warning: no plate region model at {settings.plate_region}: "
            "state not measured",
            file=sys.stderr,
        )
    elif states:
        found = _classify_labelled(
            settings.plate_region, "plate_region", settings.plate_region_threshold, states, info
        )
        metrics.update({f"state_{k}": v for k, v in found.items()})
    unreadable = tuple(s.image for s in scores if s.ms is None)
    return Report(info, metrics, unreadable, misses=crop_misses(scores))


def evaluate_vehicles(root: Path, settings: ModelSettings, limit: int, split: str) -> Report:
    """Vehicle type and/or colour accuracy on whole labelled vehicle crops."""
    path = root / CROPS_LABELS
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    if any(not (row.get("file") or "").strip() for row in rows):
        raise InputError(f"{path}: every row needs a file")
    if split != "all":
        rows = [r for r in rows if _vehicle_holdout(r) == (split == "holdout")]
    rows = rows[:limit] if limit else rows
    info: Info = {"layout": "vehicles", "dataset": str(root), "split": split}
    metrics: Metrics = {"images": len(rows)}
    for column, attribute in VEHICLE_COLUMNS.items():
        labelled = [
            (root / str(r["file"]).strip(), _model_label(r[column]))
            for r in rows
            if (r.get(column) or "").strip()
        ]
        if not labelled:
            continue
        model_path: Path = getattr(settings, attribute)
        threshold: float = getattr(settings, f"{attribute}_threshold")
        prefix = "type" if column == "vehicle_type" else "colour"
        found = _classify_labelled(model_path, attribute, threshold, labelled, info)
        metrics.update({f"{prefix}_{k}": v for k, v in found.items()})
    return Report(info, metrics, ())


def _vehicle_holdout(row: dict[str, str | None]) -> bool:
    split = (row.get("split") or "").strip()
    if split:
        return split == "test"
    return is_holdout(Path((row.get("file") or "").strip()).name)


def _model_label(raw: str | None) -> str:
    label = (raw or "").strip().lower()
    return LABEL_SYNONYMS.get(label, label)


def _classify_labelled(
    model_path: Path,
    attribute: str,
    threshold: float,
    labelled: Sequence[tuple[Path, str]],
    info: Info,
) -> Metrics:
    """Top-1 accuracy of one attribute classifier over labelled images."""
    from edge.inference.attributes import AttributeClassifier

    classifier = AttributeClassifier(model_path, attribute=attribute)
    info[attribute] = classifier.version
    correct = answered = answered_correct = scored = 0
    times: list[float] = []
    with Progress(len(labelled), attribute) as bar:
        for start in range(0, len(labelled), CROP_BATCH):
            batch = []
            for image_path, label in labelled[start : start + CROP_BATCH]:
                try:
                    batch.append((load_image(image_path), label))
                except InputError:
                    continue
            if batch:
                t0 = time.perf_counter()
                results = classifier.classify([img for img, _ in batch])
                times.append((time.perf_counter() - t0) * 1000.0 / len(batch))
                for result, (_, label) in zip(results, batch, strict=True):
                    best, prob = result.scores[0]
                    scored += 1
                    correct += best.lower() == label.lower()
                    if prob >= threshold:
                        answered += 1
                        answered_correct += best.lower() == label.lower()
            bar.advance(len(labelled[start : start + CROP_BATCH]))
    return {
        "images": scored,
        "accuracy": _share(correct, scored),
        "answered": _share(answered, scored),
        "accuracy_answered": _share(answered_correct, answered),
        "ms_per_image_median": _percentile(times, 50),
    }


def _patterns_info(settings: ModelSettings) -> Info:
    """The plate formats the reads were held to, when any."""
    return {"plate_patterns": ",".join(settings.plate_patterns)} if settings.plate_patterns else {}


def run_evaluate(args: argparse.Namespace) -> int:
    root: Path = args.dataset
    limit: int = args.limit
    split: str = getattr(args, "split", "all")
    layout = detect_layout(root)
    if limit < 0:
        raise UsageError(f"--limit must be 0 (all) or more, not {limit}")
    if split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    if layout == "openalpr" and split != "all":
        raise UsageError(f"--split {split} applies to crops datasets with {CROPS_LABELS} only")
    if layout != "openalpr" and getattr(args, "detector_input_size", None) is not None:
        raise UsageError("--detector-input-size applies to OpenALPR-layout datasets only")
    settings = model_settings(args)
    if layout == "crops":
        report = evaluate_crops(root, settings, limit, split)
    elif layout == "vehicles":
        report = evaluate_vehicles(root, settings, limit, split)
    else:
        report = evaluate_openalpr(root, settings, limit)
    _warn(report)
    if getattr(args, "misses", False):
        for line in report.misses:
            print(f"miss {line}")
    print(_as_json(report) if args.json else _as_text(report))
    return 0


# --------------------------------------------------------------------------- output

_LABELS = {
    "images": "images",
    "plates": "plates",
    "detection_recall": "detection recall",
    "detection_precision": "detection precision",
    "exact_match": "exact match",
    "top1_exact_match": "top-1 exact match",
    "char_accuracy": "character accuracy",
    "ms_per_image_median": "ms per image, median",
    "ms_per_image_p95": "ms per image, p95",
}


def _as_json(report: Report) -> str:
    return json.dumps({**report.info, **report.metrics}, sort_keys=True)


def _as_text(report: Report) -> str:
    rows = [(key, value) for key, value in report.info.items()]
    rows += [(_LABELS.get(key, key), _format(value)) for key, value in report.metrics.items()]
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join(f"{label:<{width}}{value}" for label, value in rows)


def _format(value: int | float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def _warn(report: Report) -> None:
    if report.unlabelled:
        print(
            f"alpr-edge: warning: {report.unlabelled} image(s) without a .txt label file skipped",
            file=sys.stderr,
        )
    if report.unreadable:
        names = ", ".join(report.unreadable[:WARN_MAX_NAMES])
        more = len(report.unreadable) - WARN_MAX_NAMES
        names += f" and {more} more" if more > 0 else ""
        print(
            f"alpr-edge: warning: {len(report.unreadable)} unreadable image(s) counted as "
            f"misses: {names}",
            file=sys.stderr,
        )
