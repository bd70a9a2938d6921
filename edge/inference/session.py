"""Load an ONNX model safely: manifest check, sha256 check, provider choice, clear errors.

Every model file ``NAME.onnx`` ships with a manifest ``NAME.json`` beside it. The manifest's
``sha256`` must match the file before onnxruntime ever sees it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.errors import ModelError

if TYPE_CHECKING:
    import onnxruntime as ort

log = logging.getLogger(__name__)

PROVIDER_NAMES: Mapping[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def load_manifest(model_path: Path, *, verify_sha256: bool = True) -> dict[str, Any]:
    """Read the manifest beside ``model_path`` and check the model file against it."""
    if not model_path.is_file():
        raise ModelError(f"model file {model_path} does not exist")
    mpath = manifest_path(model_path)
    if not mpath.is_file():
        raise ModelError(f"model {model_path}: manifest {mpath} is missing")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model manifest {mpath} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise ModelError(f"model manifest {mpath} must be a JSON object")
    if verify_sha256:
        expected = manifest.get("sha256")
        if not isinstance(expected, str):
            raise ModelError(f"model manifest {mpath} has no sha256")
        actual = sha256_file(model_path)
        if actual != expected:
            raise ModelError(
                f"model {model_path}: sha256 {actual[:12]}… does not match manifest "
                f"{expected[:12]}… (file corrupt or replaced; reinstall the model)"
            )
    return manifest


def resolve_providers(requested: Sequence[str]) -> list[str]:
    """Map config names (cpu, cuda, tensorrt) to onnxruntime providers that exist here."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    chosen: list[str] = []
    for name in requested:
        ort_name = PROVIDER_NAMES.get(name.lower(), name)
        if ort_name in available:
            chosen.append(ort_name)
        else:
            log.warning("execution provider %s is not available here; skipping it", name)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def create_session(
    model_path: Path,
    *,
    providers: Sequence[str] = ("cpu",),
    threads: int = 0,
) -> ort.InferenceSession:
    """Open an ONNX model with onnxruntime, turning every failure into a ModelError.

    Worker threads do not spin between calls: onnxruntime's default busy-wait buys little
    latency and cost 25-30 % more CPU time for the whole daemon on a real-time 1080p feed
    (11.0 vs 8.2 CPU seconds for the same 20 s clip and the same reads), CPU a Pi shares with
    decoding, the tracker, and whatever else runs on it.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    chosen = resolve_providers(providers)
    try:
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=chosen)
    except Exception as exc:  # onnxruntime raises several untyped errors for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"model {model_path} cannot be loaded by onnxruntime: {first}") from None
    log.info("loaded %s with providers %s", model_path.name, session.get_providers())
    return session


def model_version(model_path: Path, manifest: Mapping[str, Any]) -> str:
    """``name@sha256-prefix``: how reads and logs name a model (the file's stem without a name)."""
    return f"{manifest.get('name', model_path.stem)}@{str(manifest['sha256'])[:12]}"


def check_kind_format(
    manifest: Mapping[str, Any], kind: str, fmt: str, fail: Callable[[str], ModelError]
) -> None:
    """Raise ``fail(...)`` unless the manifest's kind and format are ``kind`` and ``fmt``."""
    if manifest.get("kind") != kind or manifest.get("format") != fmt:
        raise fail(
            f"manifest kind/format is {manifest.get('kind')!r}/"
            f"{manifest.get('format')!r}, expected {kind!r}/{fmt!r}"
        )


def probe_run(
    session: ort.InferenceSession,
    names: Sequence[str],
    feed: Mapping[str, Any],
    fail: Callable[[str], ModelError],
) -> list[Any]:
    """One test inference at load time, so a wrong model fails there, not on the first frame."""
    try:
        return list(session.run(list(names), dict(feed)))
    except Exception as exc:  # onnxruntime raises several untyped errors for broken graphs
        raise fail(f"test inference failed: {str(exc).strip()[:200]}") from None
