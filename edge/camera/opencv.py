"""Live cameras read through OpenCV: RTSP (FFmpeg), USB/V4L2 devices and GStreamer pipelines."""

from __future__ import annotations

import math
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote, urlsplit

import cv2

from edge.camera.base import SourceBase, parse_options, redact_url
from edge.errors import CameraError
from edge.types import Frame, ImageArray

# FFmpeg reads this for every open. TCP because RTSP over UDP loses packets on busy links
# and smears the plate across broken macroblocks; an operator's own value wins.
_FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_RTSP_OVER_TCP = "rtsp_transport;tcp"


def capture_fps(cap: cv2.VideoCapture) -> float | None:
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    # Streams without timing report 0, NaN or a 90 kHz clock as their frame rate.
    return fps if math.isfinite(fps) and 0.0 < fps <= 1000.0 else None


def capture_size(cap: cv2.VideoCapture) -> tuple[int, int] | None:
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    return (width, height) if width > 0 and height > 0 else None


def grab_frame(cap: cv2.VideoCapture, camera_id: str, index: int) -> Frame | None:
    """Read one frame, stamped when it arrived (after grab, before the colour conversion)."""
    if not cap.grab():
        return None
    monotonic = time.monotonic()
    captured_at = datetime.now(UTC)
    ok, image = cap.retrieve()
    if not ok or image is None:
        return None
    return Frame(camera_id, index, captured_at, monotonic, _as_bgr(image))


def _as_bgr(image: cv2.typing.MatLike) -> ImageArray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)  # type: ignore[return-value]
    return image  # type: ignore[return-value]  # the stubs type every Mat as any-dtype


class VideoCaptureSource(SourceBase):
    """A source read through one cv2.VideoCapture, held while open."""

    def __init__(self, *, camera_id: str) -> None:
        self._camera_id = camera_id
        self._cap: cv2.VideoCapture | None = None
        self._fps = None
        self._size = None
        self._index = 0  # a live camera keeps counting across reconnects: indexes stay unique

    def _attach(self, cap: cv2.VideoCapture) -> None:
        """Hold an opened capture and take its frame rate and size."""
        self._cap = cap
        self._fps = capture_fps(cap)
        self._size = capture_size(cap)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class _OpenCVLiveSource(VideoCaptureSource):
    """A live camera behind cv2.VideoCapture; subclasses say how to open it."""

    is_live = True

    def __init__(self, source: str, *, camera_id: str) -> None:
        super().__init__(camera_id=camera_id)
        self._source = source

    def _label(self) -> str:
        return redact_url(self._source)

    def _capture(self) -> cv2.VideoCapture:
        raise NotImplementedError

    def _open_hint(self) -> str:
        raise NotImplementedError

    def open(self) -> None:
        if self._cap is not None:
            return
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"{self.description}: cannot open: {self._open_hint()}")
        self._attach(cap)

    def read(self) -> Frame | None:
        if self._cap is None:
            raise CameraError(f"{self.description}: read before open")
        frame = grab_frame(self._cap, self._camera_id, self._index)
        if frame is None:
            raise CameraError(f"{self.description}: no frame (stream dropped or timed out)")
        self._index += 1
        if self._size is None:
            self._size = (frame.image.shape[1], frame.image.shape[0])
        return frame


class RtspSource(_OpenCVLiveSource):
    """An IP camera over RTSP(S), decoded by OpenCV's FFmpeg backend, RTP over TCP."""

    def __init__(
        self,
        url: str,
        *,
        camera_id: str,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(url, camera_id=camera_id)
        self._open_timeout_ms = round(open_timeout_s * 1000)
        self._read_timeout_ms = round(read_timeout_s * 1000)

    def _capture(self) -> cv2.VideoCapture:
        os.environ.setdefault(_FFMPEG_OPTIONS_ENV, _RTSP_OVER_TCP)
        # Without timeouts a dead camera blocks grab() for FFmpeg's default of 30 s or more.
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self._open_timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, self._read_timeout_ms,
        ]  # fmt: skip
        return cv2.VideoCapture(self._source, cv2.CAP_FFMPEG, params)

    def _open_hint(self) -> str:
        return (
            f"no stream within {self._open_timeout_ms / 1000:g} s or it was refused; check the "
            "address, port, path and credentials, and that the camera is powered and reachable"
        )


class V4l2Source(_OpenCVLiveSource):
    """A USB or CSI camera as a V4L2 device: ``v4l2:///dev/video0?width=1920&height=1080``.

    Options: ``width``, ``height``, ``fps``, ``fourcc`` (e.g. MJPG; USB cameras default to
    640x480 YUYV, too coarse for plates).
    """

    _OPTIONS: ClassVar[dict[str, type[int] | type[float] | type[str]]] = {
        "width": int, "height": int, "fps": float, "fourcc": str,
    }  # fmt: skip

    def __init__(self, url: str, *, camera_id: str) -> None:
        super().__init__(url, camera_id=camera_id)
        parts = urlsplit(url)
        self._device = Path(unquote(parts.netloc + parts.path))
        self._options = parse_options(parts.query, self._OPTIONS, self.description)

    def _capture(self) -> cv2.VideoCapture:
        if not self._device.exists():
            raise CameraError(
                f"{self.description}: video device {self._device} does not exist; is the "
                "camera plugged in? List devices with `v4l2-ctl --list-devices`"
            )
        cap = cv2.VideoCapture(str(self._device), cv2.CAP_V4L2)
        # The fourcc goes first: the sizes a camera offers depend on the pixel format.
        fourcc = str(self._options.get("fourcc", ""))
        if len(fourcc) == 4:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*fourcc))
        for key, prop in (
            ("width", cv2.CAP_PROP_FRAME_WIDTH),
            ("height", cv2.CAP_PROP_FRAME_HEIGHT),
            ("fps", cv2.CAP_PROP_FPS),
        ):
            if key in self._options:
                cap.set(prop, float(self._options[key]))
        return cap

    def _open_hint(self) -> str:
        return (
            f"{self._device} exists but would not stream; is another process using it, and is "
            "this user in the 'video' group?"
        )


class GStreamerSource(_OpenCVLiveSource):
    """A GStreamer pipeline ending in appsink: ``gst:nvarguscamerasrc ! ... ! appsink``.

    OpenCV must be built with GStreamer. The opencv-python wheels from PyPI are not, so on a
    Jetson use the JetPack system OpenCV (``python3-opencv``) from a virtualenv created with
    ``--system-site-packages``, and do not install opencv-python into it. The pipeline must
    deliver BGR, e.g. ``... ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert !
    video/x-raw,format=BGR ! appsink drop=true max-buffers=1``.
    """

    def __init__(self, source: str, *, camera_id: str) -> None:
        super().__init__(source, camera_id=camera_id)
        self._pipeline = source.removeprefix("gst:").strip()

    def _capture(self) -> cv2.VideoCapture:
        if not cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
            raise CameraError(
                f"{self.description}: this OpenCV ({cv2.__version__}) is built without "
                "GStreamer (the PyPI wheels are); use the system OpenCV: apt install "
                "python3-opencv, a venv with --system-site-packages, and no opencv-python in it"
            )
        return cv2.VideoCapture(self._pipeline, cv2.CAP_GSTREAMER)

    def _open_hint(self) -> str:
        return (
            "the pipeline did not start; test it with `gst-launch-1.0` (fakesink in place of "
            "appsink) and check that it ends in appsink with BGR caps"
        )
