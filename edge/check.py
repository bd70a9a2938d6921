"""``alpr-edge check``: one table a technician can read on a bucket truck.

Without ``--connect`` it validates the config and the model manifests; with it, it also opens
every camera, loads and warms the models, connects to the broker, and checks the state
directory, free disk and clock. Exit code 0 only when every row passes (WARN counts as a pass:
it says what is risky, e.g. a broker without TLS on loopback).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TextIO

from edge.clock import clock_synchronised
from edge.config import CameraSettings, Settings
from edge.errors import EdgeError
from edge.inference.session import load_manifest

MIN_FREE_BYTES = 1 << 30
CAMERA_FRAME_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    warn: bool = False


def _guard(name: str, check: Callable[[], str | CheckResult]) -> CheckResult:
    try:
        outcome = check()
        return outcome if isinstance(outcome, CheckResult) else CheckResult(name, True, outcome)
    except EdgeError as exc:
        return CheckResult(name, False, exc.message.splitlines()[0])
    except Exception as exc:  # a check must report, never crash the table
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}")


def _manifests(settings: Settings) -> str:
    parts = []
    for path in (settings.models.detector, settings.models.recognizer):
        manifest = load_manifest(path)
        parts.append(f"{path.name} ({manifest.get('version', '?')})")
    return ", ".join(parts)


def _models(settings: Settings) -> str:
    import numpy as np

    from edge.pipeline import PlateReader

    reader = PlateReader.from_settings(settings.models)
    reader.warm_up()
    frame = np.full((720, 1280, 3), 127, np.uint8)
    crop = np.full((64, 128, 3), 200, np.uint8)
    detect_ms = _median_ms(lambda: reader.detector.detect(frame))
    recognize_ms = _median_ms(lambda: reader.recognizer.recognize([crop]))
    return (
        f"loaded and warm: detector {detect_ms:.0f} ms per 1280x720 frame, "
        f"recognizer {recognize_ms:.1f} ms per plate"
    )


def _median_ms(run: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000.0)
    return sorted(times)[len(times) // 2]


def _camera(camera: CameraSettings) -> str:
    from edge.camera import open_source

    source = open_source(camera)
    source.open()
    try:
        deadline = time.monotonic() + CAMERA_FRAME_TIMEOUT_S
        frames = 0
        start = time.monotonic()
        while frames < 10 and time.monotonic() < deadline:
            frame = source.read()
            if frame is None:
                break
            frames += 1
            height, width = frame.image.shape[:2]
        if frames == 0:
            raise EdgeError(f"{source.description}: opened but delivered no frame")
        elapsed = max(time.monotonic() - start, 1e-6)
        fps = source.fps
        declared = f", {fps:.1f} fps declared" if fps else ""
        return f"{width}x{height}, {frames / elapsed:.1f} fps read{declared}"
    finally:
        source.close()


def _broker(settings: Settings) -> CheckResult:
    from edge.publisher import connect_check

    connect_check(settings.mqtt, device_id=settings.device_id, timeout_s=5.0)
    where = f"{settings.mqtt.host}:{settings.mqtt.port}"
    tls = settings.mqtt.tls
    if tls is None:
        return CheckResult("broker", True, f"{where} reachable over plain TCP, no TLS", warn=True)
    verified = "host name not verified" if tls.insecure_skip_verify else "certificate verified"
    client = ", client certificate" if tls.cert_file is not None else ""
    return CheckResult("broker", True, f"{where} reachable over TLS ({verified}{client})")


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _state_dir(settings: Settings) -> str:
    directory = settings.storage.dir
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".check-"):
            pass
    except OSError as exc:
        raise EdgeError(f"{directory} is not writable: {exc.strerror}") from None
    return f"{directory} writable"


def _disk(settings: Settings) -> str:
    usage = shutil.disk_usage(_existing_parent(settings.storage.dir))
    free_gb = usage.free / 1e9
    if usage.free < MIN_FREE_BYTES:
        raise EdgeError(f"only {free_gb:.2f} GB free under {settings.storage.dir}")
    return f"{free_gb:.1f} GB free ({usage.free / usage.total:.0%})"


def _clock() -> str:
    synced = clock_synchronised()
    if synced is None:
        raise EdgeError("cannot tell: neither timedatectl nor chronyc answered")
    if not synced:
        raise EdgeError("not synchronised: reads would carry a wrong time (check NTP)")
    return "synchronised"


def run_checks(settings: Settings, *, connect: bool, out: TextIO) -> int:
    results = [
        CheckResult("config", True, f"valid, device {settings.device_id}"),
        _guard("model manifests", lambda: _manifests(settings)),
    ]
    if connect:
        results.append(_guard("models", lambda: _models(settings)))
        results.extend(
            _guard(f"camera {camera.id}", partial(_camera, camera)) for camera in settings.cameras
        )
        results.append(_guard("broker", lambda: _broker(settings)))
        results.append(_guard("state directory", lambda: _state_dir(settings)))
        results.append(_guard("disk", lambda: _disk(settings)))
        results.append(_guard("clock", _clock))
    width = max(len(r.name) for r in results)
    for r in results:
        status = "FAIL" if not r.ok else "WARN" if r.warn else "PASS"
        print(f"{r.name:<{width}}  {status}  {r.detail}", file=out)
    failed = sum(1 for r in results if not r.ok)
    print(f"{len(results) - failed} passed, {failed} failed", file=out)
    return 0 if failed == 0 else 1
