"""One thread per camera: read frames into a small bounded queue, reconnect live cameras.

The camera is never blocked by a slow pipeline. A live camera (or a clip played in real time)
that finds the queue full drops the oldest frame, so the pipeline always works on the newest
view. A clip read as fast as possible waits for room instead: no frame of it is lost.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass

from edge.camera.base import FrameSource, redact_url
from edge.camera.file import FileSource
from edge.errors import CameraError
from edge.types import Frame

log = logging.getLogger(__name__)

_FPS_WINDOW = 30  # frames; about a second at camera rates
_JITTER = 0.2  # +-20 %, so cameras behind one switch do not all retry in step


@dataclass(frozen=True, slots=True)
class CaptureStats:
    frames_in: int
    """Frames read from the source, dropped ones included."""
    frames_dropped: int
    """Frames thrown away, oldest first, because the queue was full."""
    reconnects: int
    """Successful reopens of a live source after it failed."""
    last_frame_monotonic: float | None
    fps_in: float | None
    """Frame rate measured over the last frames read; None before two frames."""


class CaptureThread:
    """Owns one FrameSource: opens it in start(), reads it in its own thread, closes it."""

    def __init__(
        self,
        source: FrameSource,
        *,
        queue_size: int = 4,
        drop_when_full: bool | None = None,
        reconnect_initial_s: float = 1.0,
        reconnect_max_s: float = 30.0,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self._source = source
        self._queue_size = queue_size
        if drop_when_full is None:
            paced = isinstance(source, FileSource) and source.realtime
            drop_when_full = source.is_live or paced
        self._drop_when_full = drop_when_full
        self._reconnect_initial_s = reconnect_initial_s
        self._reconnect_max_s = reconnect_max_s

        self._frames: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ended = False
        self._error: CameraError | None = None
        self._frames_in = 0
        self._frames_dropped = 0
        self._reconnects = 0
        self._recent: deque[float] = deque(maxlen=_FPS_WINDOW)
        self._heartbeat = time.monotonic()

    @property
    def drop_when_full(self) -> bool:
        """True for sources that will not wait (live, or a clip in real time): drop oldest."""
        return self._drop_when_full

    @property
    def source(self) -> FrameSource:
        return self._source

    @property
    def description(self) -> str:
        return self._source.description

    @property
    def heartbeat(self) -> float:
        """time.monotonic() of the thread's last progress: a frame, a reconnect try, or a
        wait for queue room. It stands still when a read hangs or the source has ended."""
        return self._heartbeat

    @property
    def running(self) -> bool:
        """The reading thread has started and not yet ended."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def finished(self) -> bool:
        """The source has ended (clip over, or stopped) and every frame has been taken."""
        with self._cond:
            return self._ended and not self._frames

    @property
    def error(self) -> CameraError | None:
        """Why a clip ended before its last frame, if it did."""
        return self._error

    def start(self) -> None:
        """Open the source (if not yet open) here, so a missing camera raises CameraError
        in the caller, then start reading. A live camera that fails later is reopened."""
        if self._thread is not None:
            raise RuntimeError(f"{self.description}: capture already started")
        self._source.open()
        self._heartbeat = time.monotonic()
        self._thread = threading.Thread(
            target=self._run,
            name=f"capture {self.description}",
            # A read hung in a camera driver must not keep the process alive at exit.
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the thread to end and wait up to ``timeout`` s; False if it did not."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("%s: capture did not stop within %.1f s", self.description, timeout)
            return False
        return True

    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest queued frame; None after ``timeout`` s without one, or when finished."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._frames or self._ended, timeout):
                return None
            if not self._frames:
                return None
            frame = self._frames.popleft()
            self._cond.notify_all()  # a blocked clip reader may go on
            return frame

    def stats(self) -> CaptureStats:
        with self._cond:
            recent = self._recent
            fps = None
            if len(recent) >= 2 and recent[-1] > recent[0]:
                fps = (len(recent) - 1) / (recent[-1] - recent[0])
            return CaptureStats(
                frames_in=self._frames_in,
                frames_dropped=self._frames_dropped,
                reconnects=self._reconnects,
                last_frame_monotonic=recent[-1] if recent else None,
                fps_in=fps,
            )

    def _run(self) -> None:
        try:
            if self._source.is_live:
                self._read_live()
            else:
                self._read_clip()
        except CameraError as exc:
            self._error = exc
            log.warning("%s", exc.message)
        except Exception:
            log.exception("%s: capture failed", self.description)
        finally:
            try:
                self._source.close()
            except Exception:
                log.exception("%s: close failed", self.description)
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _read_clip(self) -> None:
        while not self._stop.is_set():
            frame = self._source.read()
            if frame is None:
                log.info("%s: end of clip after %d frames", self.description, self._frames_in)
                return
            self._put(frame)

    def _read_live(self) -> None:
        delay = self._reconnect_initial_s
        while not self._stop.is_set():
            try:
                frame = self._source.read()
                if frame is None:
                    raise CameraError(f"{self.description}: the stream ended")  # noqa: TRY301
            except Exception as exc:  # cv2.error and driver errors too: any failure reconnects
                delay = self._reconnect(exc, delay)
                continue
            delay = self._reconnect_initial_s  # it works again: the next outage starts short
            self._put(frame)

    def _reconnect(self, failure: Exception, delay: float) -> float:
        """Reopen the source with capped exponential backoff; return the next delay."""
        self._source.close()
        while not self._stop.is_set():
            wait = min(_jittered(delay), self._reconnect_max_s)
            log.warning("%s; reopening in %.1f s", _describe(failure, self.description), wait)
            delay = min(delay * 2, self._reconnect_max_s)
            if self._stop.wait(wait):
                break
            self._heartbeat = time.monotonic()
            try:
                self._source.open()
            except Exception as exc:
                failure = exc
                continue
            with self._cond:
                self._reconnects += 1
            log.info("%s: reopened", self.description)
            break
        return delay

    def _put(self, frame: Frame) -> None:
        with self._cond:
            self._frames_in += 1
            self._recent.append(frame.monotonic)
            self._heartbeat = time.monotonic()
            if len(self._frames) >= self._queue_size:
                if self._drop_when_full:
                    self._frames.popleft()
                    self._frames_dropped += 1
                else:
                    while len(self._frames) >= self._queue_size and not self._stop.is_set():
                        self._cond.wait(0.5)
                        self._heartbeat = time.monotonic()
                    if self._stop.is_set():
                        return
            self._frames.append(frame)
            self._cond.notify_all()


def _jittered(delay: float) -> float:
    return delay * random.uniform(1 - _JITTER, 1 + _JITTER)  # noqa: S311  # spread, not secrecy


def _describe(failure: Exception, description: str) -> str:
    """One log line for a failure; our own errors already name the source."""
    if isinstance(failure, CameraError):
        return failure.message
    return redact_url(f"{description}: {type(failure).__name__}: {failure}")
