"""Camera sources (frames in) and the thread that reads each one into a bounded queue."""

from __future__ import annotations

from edge.camera.base import FrameSource, redact_url
from edge.camera.capture import CaptureStats, CaptureThread
from edge.camera.file import FileSource, path_from_file_url
from edge.camera.opencv import GStreamerSource, RtspSource, V4l2Source
from edge.camera.picamera import PicameraSource
from edge.config import CameraSettings
from edge.errors import CameraError

__all__ = [
    "CaptureStats",
    "CaptureThread",
    "FileSource",
    "FrameSource",
    "GStreamerSource",
    "PicameraSource",
    "RtspSource",
    "V4l2Source",
    "open_source",
    "redact_url",
]


def open_source(settings: CameraSettings) -> FrameSource:
    """The source for ``settings.source``, chosen by its scheme; not yet opened.

    Creating a source touches no hardware; open() (or CaptureThread.start()) does.
    """
    source, camera_id = settings.source, settings.id
    scheme = source.split(":", 1)[0].lower()
    if scheme == "file":
        path = path_from_file_url(source)
        return FileSource(path, camera_id=camera_id, realtime=settings.realtime, loop=settings.loop)
    if scheme in ("rtsp", "rtsps"):
        return RtspSource(source, camera_id=camera_id)
    if scheme == "v4l2":
        return V4l2Source(source, camera_id=camera_id)
    if scheme == "gst":
        return GStreamerSource(source, camera_id=camera_id)
    if scheme == "picamera2":
        return PicameraSource(source, camera_id=camera_id)
    raise CameraError(
        f"camera {camera_id}: unknown source scheme {scheme!r} in {redact_url(source)}; use "
        "file://, rtsp://, rtsps://, v4l2://, gst: or picamera2:"
    )
