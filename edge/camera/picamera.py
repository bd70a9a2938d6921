"""Raspberry Pi cameras through picamera2 (libcamera): ``picamera2:0?width=1920&height=1080``.

picamera2 is not on PyPI in a usable form (it needs the system libcamera bindings), so it is
imported inside open(): the rest of the daemon, and its tests, run where it is missing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

import numpy as np

from edge.camera.base import SourceBase, parse_options
from edge.errors import CameraError
from edge.types import Frame

# libcamera stamps SensorTimestamp on CLOCK_BOOTTIME; time.monotonic() is CLOCK_MONOTONIC.
# Converting through the frame's age keeps both clocks right whatever their offset.
_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)
# An older or negative age means a clock we do not understand: keep the arrival time.
_MAX_SENSOR_AGE_S = 2.0


class PicameraSource(SourceBase):
    """Options: ``width``, ``height`` (default 1920x1080), ``fps``."""

    is_live = True
    _OPTIONS: ClassVar[dict[str, type[int] | type[float] | type[str]]] = {
        "width": int, "height": int, "fps": float,
    }  # fmt: skip
    _size: tuple[int, int]  # always known: from the options or the default

    def __init__(self, source: str, *, camera_id: str) -> None:
        self._source = source
        self._camera_id = camera_id
        parts = urlsplit(source)
        try:
            self._camera_num = int(parts.path or "0")
        except ValueError:
            raise CameraError(f"{self.description}: camera number must be 0, 1, ...") from None
        options = parse_options(parts.query, self._OPTIONS, self.description)
        self._size = (int(options.get("width", 1920)), int(options.get("height", 1080)))
        fps = options.get("fps")
        self._fps = float(fps) if fps is not None else None
        self._camera: Any = None  # picamera2 ships no type information
        self._index = 0

    def _label(self) -> str:
        return self._source

    def open(self) -> None:
        if self._camera is not None:
            return
        try:
            from picamera2 import Picamera2  # needs libcamera: only on a Pi
        except ImportError as exc:
            raise CameraError(
                f"{self.description}: picamera2 is not importable ({exc}); on Raspberry Pi OS "
                "run `sudo apt install python3-picamera2` and create the virtualenv with "
                "`python3 -m venv --system-site-packages`"
            ) from None
        try:
            camera = Picamera2(self._camera_num)
        except Exception as exc:  # picamera2 raises IndexError or RuntimeError, by version
            raise CameraError(
                f"{self.description}: no camera {self._camera_num} ({exc}); check the ribbon "
                "cable and list cameras with `rpicam-hello --list-cameras`"
            ) from None
        controls = {"FrameRate": self._fps} if self._fps is not None else {}
        try:
            # libcamera's RGB888 is B, G, R in memory: what OpenCV calls BGR.
            config = camera.create_video_configuration(
                main={"size": self._size, "format": "RGB888"}, controls=controls
            )
            camera.configure(config)
            camera.start()
        except Exception as exc:
            camera.close()
            raise CameraError(
                f"{self.description}: cannot start at {self._size[0]}x{self._size[1]} ({exc}); "
                "try a size the sensor supports"
            ) from None
        self._camera = camera

    def read(self) -> Frame | None:
        if self._camera is None:
            raise CameraError(f"{self.description}: read before open")
        try:
            request = self._camera.capture_request()
        except Exception as exc:
            raise CameraError(f"{self.description}: capture failed ({exc})") from None
        try:
            image = np.ascontiguousarray(request.make_array("main")[:, :, :3])
            metadata = request.get_metadata()
        finally:
            request.release()  # hand the buffer back to libcamera at once, or capture stalls
        captured_at, monotonic = _capture_time(metadata.get("SensorTimestamp"))
        frame = Frame(self._camera_id, self._index, captured_at, monotonic, image)
        self._index += 1
        return frame

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            try:
                camera.stop()
            finally:
                camera.close()


def _capture_time(sensor_ns: object) -> tuple[datetime, float]:
    """Wall-clock and monotonic capture time, from the sensor timestamp when it is usable."""
    monotonic = time.monotonic()
    now = datetime.now(UTC)
    if isinstance(sensor_ns, int) and _BOOTTIME is not None:
        age = (time.clock_gettime_ns(_BOOTTIME) - sensor_ns) / 1e9
        if 0.0 <= age <= _MAX_SENSOR_AGE_S:
            return now - timedelta(seconds=age), monotonic - age
    return now, monotonic
