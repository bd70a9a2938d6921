"""Video files, played in real time (as a stand-in for a camera) or as fast as they decode."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import cv2

from edge.camera.opencv import VideoCaptureSource, grab_frame
from edge.errors import CameraError
from edge.types import Frame

log = logging.getLogger(__name__)


def path_from_file_url(url: str) -> Path:
    """``file:///abs/clip.mp4`` -> /abs/clip.mp4; ``file://clip.mp4`` -> clip.mp4 (relative)."""
    parts = urlsplit(url)
    host = "" if parts.netloc in ("", "localhost") else parts.netloc
    return Path(unquote(host + parts.path))


class FileSource(VideoCaptureSource):
    """A clip decoded by OpenCV's FFmpeg backend. read() returns None at its end.

    With ``realtime`` frame ``i`` is not handed out before ``start + i / fps``, ``start``
    being the first read, so a slow start (model warm-up) does not cause a burst. A reader
    that falls behind is not slowed further; it is the capture queue's job to drop frames.

    With ``loop`` the clip starts again at its end and never runs out (soak tests, demo
    stands); frame indices and the real-time schedule carry on across the restarts.
    """

    is_live = False

    def __init__(
        self, path: Path, *, camera_id: str, realtime: bool = True, loop: bool = False
    ) -> None:
        super().__init__(camera_id=camera_id)
        self.path = path
        self.realtime = realtime
        self.loop = loop
        self.loops = 0
        """How many times the clip has started again."""
        self._start: float | None = None

    def _label(self) -> str:
        return f"file {self.path}"

    def open(self) -> None:
        if self._cap is not None:
            return
        if not self.path.is_file():
            raise CameraError(f"{self.description}: video file {self.path} does not exist")
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise CameraError(
                f"{self.description}: cannot decode {self.path}; is it a video file "
                "(mp4, mkv, avi) with a codec FFmpeg knows?"
            )
        self._attach(cap)
        self._index = 0
        self._start = None
        if self.realtime and self._fps is None:
            log.warning(
                "%s: the clip has no frame rate; playing it as fast as it decodes", self.description
            )

    def read(self) -> Frame | None:
        if self._cap is None:
            raise CameraError(f"{self.description}: read before open")
        if self.realtime and self._fps is not None:
            now = time.monotonic()
            if self._start is None:
                self._start = now
            delay = self._start + self._index / self._fps - now
            if delay > 0:
                time.sleep(delay)
        frame = grab_frame(self._cap, self._camera_id, self._index)
        if frame is None and self.loop and self._index > 0:
            frame = self._restart()
        if frame is None:
            return None
        self._index += 1
        return frame

    def _restart(self) -> Frame | None:
        """Open the clip again at its first frame, keeping the index and the schedule."""
        if self._cap is not None:
            self._cap.release()
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"{self.description}: cannot reopen {self.path} to loop it")
        self._attach(cap)
        self.loops += 1
        log.info("%s: end of clip, looping (%d)", self.description, self.loops)
        return grab_frame(cap, self._camera_id, self._index)
