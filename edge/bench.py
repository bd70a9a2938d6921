"""``alpr-edge bench VIDEO``: the daemon's per-frame pipeline on a clip, as fast as possible.

Decoding, the motion gate, detection, recognition, tracking and storing are timed per stage
(median milliseconds per call) with the same FrameProcessor the daemon runs; storing goes to
a throw-away SQLite store in a temporary directory. Nothing is published.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edge.camera import FrameSource, open_source
from edge.camera.capture import CaptureThread
from edge.config import CameraSettings, Settings, load_settings
from edge.errors import InputError
from edge.events import build_read_event
from edge.pipeline import PlateReader
from edge.processor import StageTimer
from edge.progress import Progress
from edge.store import ReadStore
from edge.types import Frame, VehiclePass

STAGE_ORDER = ("decode", "motion", "detect", "recognize", "attributes", "track", "store")


def _settings(config: Path | None, video: Path) -> tuple[Settings, CameraSettings]:
    camera = CameraSettings(id="bench", source=video.resolve().as_uri(), realtime=False)
    if config is not None:
        settings = load_settings(config)
        base = settings.cameras[0]
        camera = base.model_copy(update={"source": camera.source, "realtime": False, "loop": False})
    else:
        settings = Settings(device_id="bench", cameras=[camera])
    return settings, camera


class _TimedSource:
    """A frame source whose reads (decoding and colour conversion) are timed."""

    def __init__(self, inner: FrameSource, timer: StageTimer) -> None:
        self._inner = inner
        self._timer = timer

    fps = property(lambda self: self._inner.fps)
    size = property(lambda self: self._inner.size)
    is_live = property(lambda self: self._inner.is_live)
    description = property(lambda self: self._inner.description)

    def open(self) -> None:
        self._inner.open()

    def read(self) -> Frame | None:
        with self._timer.measure("decode"):
            return self._inner.read()

    def close(self) -> None:
        self._inner.close()


def _frame_count(video: Path) -> int:
    import cv2

    capture = cv2.VideoCapture(str(video))
    try:
        return max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        capture.release()


def bench(video: Path, config: Path | None = None) -> dict[str, Any]:
    from edge.processor import FrameProcessor

    if not video.is_file():
        raise InputError(f"video {video} does not exist")
    settings, camera = _settings(config, video)
    reader = PlateReader.from_settings(settings.models)
    reader.warm_up()
    timer = StageTimer(window=None)
    processor = FrameProcessor(camera, reader, settings, timer)

    def _store(store: ReadStore, passes: list[VehiclePass]) -> int:
        for vehicle_pass in passes:
            with timer.measure("store"):
                event = build_read_event(vehicle_pass, device_id=settings.device_id, camera=camera)
                store.add(event, vehicle_pass.crop_jpeg)
        return len(passes)

    source = _TimedSource(open_source(camera), timer)
    # Decoding runs in the capture thread, beside inference, exactly as in the daemon.
    capture = CaptureThread(source, queue_size=camera.queue_size, drop_when_full=False)
    capture.start()
    fps = source.fps or 25.0
    total = _frame_count(video)
    frames = reads = 0
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="alpr-bench-") as tmp:
        store = ReadStore(Path(tmp) / "reads.db")
        try:
            with Progress(total, "frames") as bar:
                while not capture.finished:
                    frame = capture.get(timeout=0.5)
                    if frame is None:
                        continue
                    frames += 1
                    reads += _store(store, processor.process(frame, frame.index / fps))
                    bar.advance()
            reads += _store(store, processor.flush())
        finally:
            store.close()
            capture.stop(timeout=5.0)
    wall = time.perf_counter() - wall0
    medians = timer.median_ms()
    totals = timer.total_ms()
    return {
        "video": str(video),
        "frames": frames,
        "frames_processed": processor.frames_processed,
        "frames_gated": processor.frames_gated,
        "frames_skipped": processor.frames_skipped,
        "fps": round(frames / wall, 2) if wall > 0 else 0.0,
        "realtime_factor": round(frames / fps / wall, 2) if wall > 0 else 0.0,
        "wall_s": round(wall, 2),
        "cpu_s": round(time.process_time() - cpu0, 2),
        "reads": reads,
        "stage_ms": {k: medians[k] for k in STAGE_ORDER if k in medians},
        "stage_total_ms": {k: totals[k] for k in STAGE_ORDER if k in totals},
        "stage_calls": {k: timer.count(k) for k in STAGE_ORDER},
        "stage_ms_per_processed_frame": {
            k: round(totals[k] / processor.frames_processed, 3)
            for k in STAGE_ORDER
            if k in totals and processor.frames_processed
        },
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "detector": reader.detector.version,
        "recognizer": reader.recognizer.version,
        "attributes": processor.attributes.versions(),
    }


def run_bench(args: argparse.Namespace) -> int:
    result = bench(args.video, args.config)
    out = sys.stdout
    print(
        f"{result['frames']} frames decoded, {result['frames_processed']} processed "
        f"({result['frames_gated']} skipped by the motion gate, {result['frames_skipped']} by "
        f"camera.process_fps) in {result['wall_s']} s: "
        f"{result['fps']} fps, {result['realtime_factor']}x real time",
        file=out,
    )
    print(f"reads emitted: {result['reads']}", file=out)
    print(
        f"CPU time: {result['cpu_s']} s; peak resident memory: {result['peak_rss_mb']} MB", file=out
    )
    print("stage       median ms   calls   total ms", file=out)
    for stage, ms in result["stage_ms"].items():
        print(
            f"{stage:<10} {ms:>10.2f} {result['stage_calls'][stage]:>7} "
            f"{result['stage_total_ms'][stage]:>10.0f}",
            file=out,
        )
    per_frame = result["stage_ms_per_processed_frame"]
    pipeline = sum(v for k, v in per_frame.items() if k not in ("decode", "store"))
    if pipeline > 0:
        share = per_frame.get("attributes", 0.0) / pipeline
        print(
            f"per processed frame: {pipeline:.2f} ms in motion..track, of which attributes "
            f"{per_frame.get('attributes', 0.0):.2f} ms ({share:.1%})",
            file=out,
        )
    if args.json:
        print(json.dumps(result, sort_keys=True), file=out)
    return 0
