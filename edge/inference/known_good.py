"""The last known-good models: a model update that fails to load or warm up must not take a
pole off the air.

After the configured detector and recognizer have loaded and warmed up, they are copied (with
their manifests) to ``{storage.dir}/models/known-good/``. When the configured models later fail
their sha256 check, loading or warm-up, the daemon logs one error line and runs the known-good
copies instead, with a warning; without a known-good copy the ModelError stands (exit 65).

The copy is atomic as a pair: the files go into a fresh directory that is fsynced and then
becomes ``known-good`` through a symlink swapped with ``os.replace``, so a power cut leaves the
old pair or the new one, never a detector from one and a recognizer from the other.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from edge.config import ModelSettings
from edge.errors import ModelError
from edge.inference.session import load_manifest, manifest_path
from edge.pipeline import PlateReader

log = logging.getLogger(__name__)

KNOWN_GOOD = "known-good"
ROLES = ("detector", "recognizer")


def known_good_dir(state_dir: Path) -> Path:
    return state_dir / "models" / KNOWN_GOOD


def load_reader(models: ModelSettings, state_dir: Path) -> tuple[PlateReader, float]:
    """Load and warm the configured models, falling back to the known-good pair.

    Returns the reader and the warm-up time in ms. Raises ModelError when the configured
    models fail and there is no known-good pair that works.
    """
    try:
        reader, warm_ms = _load_and_warm(models)
    except ModelError as exc:
        fallback = _known_good_settings(models, state_dir)
        if fallback is None:
            raise
        log.error("configured models failed: %s", exc.message.splitlines()[0])  # noqa: TRY400
        try:
            reader, warm_ms = _load_and_warm(fallback)
        except ModelError as known_good_exc:
            raise ModelError(
                f"{exc.message}; the known-good copy in {known_good_dir(state_dir)} failed "
                f"too: {known_good_exc.message}"
            ) from None
        log.warning(
            "running the last known-good models from %s (%s, %s) until the configured ones "
            "are fixed",
            known_good_dir(state_dir),
            reader.detector.version,
            reader.recognizer.version,
        )
        return reader, warm_ms
    try:
        remember(reader, state_dir)
    except OSError as exc:  # the pole still runs; only the safety net is missing
        log.warning("cannot keep a known-good copy of the models: %s", exc)
    return reader, warm_ms


def _load_and_warm(models: ModelSettings) -> tuple[PlateReader, float]:
    reader = PlateReader.from_settings(models)
    try:
        warm_ms = reader.warm_up()
    except ModelError:
        raise
    except Exception as exc:  # onnxruntime raises untyped errors at run time too
        raise ModelError(
            f"models {models.detector.name}, {models.recognizer.name} failed to warm up: "
            f"{type(exc).__name__}: {str(exc).strip()[:200]}"
        ) from None
    return reader, warm_ms


def _known_good_settings(models: ModelSettings, state_dir: Path) -> ModelSettings | None:
    directory = known_good_dir(state_dir)
    paths = {role: directory / f"{role}.onnx" for role in ROLES}
    if not all(p.is_file() and manifest_path(p).is_file() for p in paths.values()):
        return None
    return models.model_copy(update=paths)


def remember(reader: PlateReader, state_dir: Path) -> None:
    """Make the reader's models the known-good pair (a no-op when they already are)."""
    sources = {"detector": reader.detector.model_path, "recognizer": reader.recognizer.model_path}
    shas = {role: str(load_manifest(path)["sha256"]) for role, path in sources.items()}
    models_dir = state_dir / "models"
    link = models_dir / KNOWN_GOOD
    name = f".{KNOWN_GOOD}-{shas['detector'][:12]}-{shas['recognizer'][:12]}"
    if link.is_symlink() and os.readlink(link) == name and _intact(models_dir / name, shas):
        return
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=models_dir))
    try:
        for role, source in sources.items():
            _copy_synced(source, staging / f"{role}.onnx")
            _copy_synced(manifest_path(source), staging / f"{role}.json")
        _fsync_dir(staging)
        target = models_dir / name
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if link.exists() and not link.is_symlink():
        shutil.rmtree(link)  # a hand-made directory: replaced once by the symlink
    tmp_link = models_dir / f".{KNOWN_GOOD}.link"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(name)
    tmp_link.replace(link)
    _fsync_dir(models_dir)
    for old in models_dir.glob(f".{KNOWN_GOOD}-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    log.info("known-good models are now %s", ", ".join(f"{r} {s[:12]}" for r, s in shas.items()))


def _intact(directory: Path, shas: dict[str, str]) -> bool:
    try:
        return all(
            load_manifest(directory / f"{role}.onnx")["sha256"] == sha for role, sha in shas.items()
        )
    except ModelError:
        return False


def _copy_synced(source: Path, target: Path) -> None:
    with source.open("rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.fsync(dst.fileno())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
