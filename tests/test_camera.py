"""Camera sources and the capture thread, on real video files made here."""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.camera import CaptureThread, FileSource, open_source, redact_url
from edge.camera.opencv import RtspSource
from edge.config import CameraSettings
from edge.errors import CameraError
from edge.types import Frame

CLIP_FPS = 20.0
CLIP_FRAMES = 20
CLIP_SIZE = (320, 240)
BITS = 8


def _index_image(index: int, size: tuple[int, int] = CLIP_SIZE) -> np.ndarray:
    """Frame ``index`` drawn as 8 black/white stripes, coarse enough to survive mp4v."""
    width, height = size
    image = np.zeros((height, width, 3), dtype=np.uint8)
    stripe = width // BITS
    for bit in range(BITS):
        if index >> bit & 1:
            image[:, bit * stripe : (bit + 1) * stripe] = 255
    return image


def _decode_index(image: np.ndarray) -> int:
    stripe = image.shape[1] // BITS
    middle = image.shape[0] // 2
    return sum(
        1 << bit
        for bit in range(BITS)
        if image[middle - 10 : middle + 10, bit * stripe + 8 : (bit + 1) * stripe - 8].mean() > 128
    )


def make_clip(path: Path, frames: int = CLIP_FRAMES, fps: float = CLIP_FPS) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, CLIP_SIZE)
    assert writer.isOpened(), "this OpenCV cannot write mp4v"
    for index in range(frames):
        writer.write(_index_image(index))
    writer.release()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4")


def camera_settings(camera_id: str, source: str, **fields: Any) -> CameraSettings:
    # model_validate: mypy without the pydantic plugin thinks every field is required.
    return CameraSettings.model_validate({"id": camera_id, "source": source, **fields})


def file_settings(path: Path, *, realtime: bool) -> CameraSettings:
    return camera_settings("gate", path.as_uri(), realtime=realtime)


def read_all(source: Any) -> list[Frame]:
    source.open()
    try:
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
        return frames
    finally:
        source.close()


# --- file sources ---------------------------------------------------------------------------


def test_file_source_yields_every_frame_in_order(clip: Path) -> None:
    source = open_source(file_settings(clip, realtime=False))
    assert isinstance(source, FileSource)
    assert not source.is_live
    before = datetime.now(UTC)
    frames = read_all(source)

    assert [f.index for f in frames] == list(range(CLIP_FRAMES))
    assert [_decode_index(f.image) for f in frames] == list(range(CLIP_FRAMES))
    assert all(f.camera_id == "gate" for f in frames)
    assert all(f.image.shape == (240, 320, 3) and f.image.dtype == np.uint8 for f in frames)
    monotonic = [f.monotonic for f in frames]
    assert monotonic == sorted(monotonic) and len(set(monotonic)) == len(monotonic)
    for frame in frames:
        assert frame.captured_at.utcoffset() == timedelta(0)
        assert before <= frame.captured_at <= datetime.now(UTC)
    assert source.fps == pytest.approx(CLIP_FPS)
    assert source.size == CLIP_SIZE


def test_realtime_file_plays_at_clip_rate_and_fast_file_does_not(clip: Path) -> None:
    duration = CLIP_FRAMES / CLIP_FPS

    started = time.monotonic()
    paced = read_all(open_source(file_settings(clip, realtime=True)))
    paced_s = time.monotonic() - started

    started = time.monotonic()
    fast = read_all(open_source(file_settings(clip, realtime=False)))
    fast_s = time.monotonic() - started

    assert len(paced) == len(fast) == CLIP_FRAMES
    assert paced_s >= 0.8 * duration
    assert fast_s < 0.3 * duration
    gaps = np.diff([f.monotonic for f in paced])
    assert float(np.median(gaps)) == pytest.approx(1 / CLIP_FPS, abs=0.01)


def test_looping_file_starts_again_with_indices_carrying_on(clip: Path) -> None:
    source = open_source(camera_settings("gate", clip.as_uri(), realtime=False, loop=True))
    assert isinstance(source, FileSource)
    source.open()
    try:
        frames = [source.read() for _ in range(2 * CLIP_FRAMES + 3)]
    finally:
        source.close()
    assert all(f is not None for f in frames)
    got = [f for f in frames if f is not None]
    assert [f.index for f in got] == list(range(2 * CLIP_FRAMES + 3))
    expected = [i % CLIP_FRAMES for i in range(2 * CLIP_FRAMES + 3)]
    assert [_decode_index(f.image) for f in got] == expected
    assert source.loops == 2


def test_missing_file_is_a_camera_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "clip.mp4"
    source = open_source(file_settings(missing, realtime=False))
    with pytest.raises(CameraError, match="does not exist") as caught:
        source.open()
    assert str(missing) in caught.value.message
    with pytest.raises(CameraError, match=str(missing)):
        CaptureThread(open_source(file_settings(missing, realtime=False))).start()


def test_a_file_that_is_not_video_is_a_camera_error(tmp_path: Path) -> None:
    junk = tmp_path / "notes.mp4"
    junk.write_text("not a video\n")
    with pytest.raises(CameraError, match="cannot decode"):
        open_source(file_settings(junk, realtime=False)).open()


# --- URLs and live sources ------------------------------------------------------------------


def test_redact_url_hides_credentials() -> None:
    redacted = redact_url("rtsp://user:secret@10.0.0.5/stream")
    assert "secret" not in redacted and "user" not in redacted
    assert redacted == "rtsp://***@10.0.0.5/stream"
    assert redact_url("rtsp://10.0.0.5:554/h264") == "rtsp://10.0.0.5:554/h264"
    assert "p@ss/word" not in redact_url("rtsp://admin:p@ss/word@cam.local/live")
    assert "hunter2" not in redact_url("http://cam/video.cgi?user=admin&password=hunter2&ch=1")
    pipeline = "rtspsrc location=rtsp://admin:hunter2@10.0.0.9/main latency=0 ! appsink"
    assert redact_url(pipeline) == "rtspsrc location=rtsp://***@10.0.0.9/main latency=0 ! appsink"


_URL_TEXT = st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"))


@given(user=st.text(_URL_TEXT, min_size=1), password=st.text(_URL_TEXT, min_size=4))
def test_redact_url_never_shows_the_password(user: str, password: str) -> None:
    url = f"rtsps://{user}:{password}@192.0.2.1:322/stream1"
    assert password not in redact_url(url)
    assert redact_url(url).endswith("@192.0.2.1:322/stream1")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: connecting is refused at once


def test_unreachable_rtsp_camera_is_a_camera_error_without_the_password() -> None:
    url = f"rtsp://admin:secret@127.0.0.1:{_closed_port()}/stream"
    source = RtspSource(url, camera_id="door", open_timeout_s=2, read_timeout_s=2)
    assert source.is_live
    started = time.monotonic()
    with pytest.raises(CameraError, match="cannot open") as caught:
        CaptureThread(source).start()
    assert time.monotonic() - started < 10
    assert "secret" not in caught.value.message
    assert "127.0.0.1" in caught.value.message
    assert "secret" not in source.description


def test_missing_v4l2_device_is_a_camera_error_naming_it() -> None:
    source = open_source(camera_settings("usb", "v4l2:///dev/video97?width=1920"))
    with pytest.raises(CameraError, match="/dev/video97 does not exist"):
        source.open()


def test_unknown_source_option_is_a_camera_error() -> None:
    with pytest.raises(CameraError, match="unknown source option 'zoom'"):
        open_source(camera_settings("usb", "v4l2:///dev/video0?zoom=2"))


@pytest.mark.skipif(
    cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER), reason="this OpenCV has GStreamer"
)
def test_gstreamer_without_backend_says_how_to_get_it() -> None:
    source = open_source(camera_settings("jetson", "gst:videotestsrc ! appsink"))
    with pytest.raises(CameraError, match=r"without GStreamer.*python3-opencv"):
        source.open()


# --- capture thread -------------------------------------------------------------------------


class GeneratedSource:
    """A live camera made of numbers: ``frames`` frames, then it fails or waits."""

    is_live = True
    fps = None
    size = (64, 48)
    description = "camera gen (rtsp://***@192.0.2.7/live)"

    def __init__(self, frames: int, *, interval_s: float = 0.0, fail_opens: int = 0) -> None:
        self.frames = frames
        self.interval_s = interval_s
        self.fail_opens = fail_opens
        self.opens = 0
        self.closes = 0
        self.index = 0
        self.release = threading.Event()
        self.is_open = False

    def open(self) -> None:
        if self.is_open:
            return
        self.opens += 1
        if self.opens > 1 and self.fail_opens > 0:
            self.fail_opens -= 1
            raise CameraError(f"{self.description}: connection refused")
        self.is_open = True

    def read(self) -> Frame | None:
        if self.index >= self.frames:
            # Out of frames: hold like a silent camera until the test lets go, then drop.
            self.release.wait(5.0)
            raise CameraError(f"{self.description}: stream dropped")
        time.sleep(self.interval_s)
        image = np.full((48, 64, 3), self.index % 256, dtype=np.uint8)
        frame = Frame("gen", self.index, datetime.now(UTC), time.monotonic(), image)
        self.index += 1
        return frame

    def close(self) -> None:
        self.closes += 1
        self.is_open = False


@pytest.fixture
def stopper() -> Iterator[list[CaptureThread]]:
    captures: list[CaptureThread] = []
    yield captures
    for capture in captures:
        for source_release in [getattr(capture.source, "release", None)]:
            if isinstance(source_release, threading.Event):
                source_release.set()
        assert capture.stop(timeout=5.0)


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_slow_consumer_loses_the_oldest_frames_and_they_are_counted(
    stopper: list[CaptureThread],
) -> None:
    source = GeneratedSource(frames=10)
    capture = CaptureThread(source, queue_size=2)
    stopper.append(capture)
    assert capture.drop_when_full
    capture.start()
    wait_until(lambda: capture.stats().frames_in == 10)

    kept = [capture.get(timeout=1.0), capture.get(timeout=1.0)]
    assert [f.index for f in kept if f is not None] == [8, 9]
    assert capture.get(timeout=0.05) is None
    assert not capture.finished  # a live camera does not end
    stats = capture.stats()
    assert (stats.frames_in, stats.frames_dropped, stats.reconnects) == (10, 8, 0)
    assert stats.last_frame_monotonic is not None
    assert stats.last_frame_monotonic <= time.monotonic()


def test_dropped_live_camera_is_reopened_with_backoff(
    stopper: list[CaptureThread], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.camera.capture")
    source = GeneratedSource(frames=3, fail_opens=2)
    source.release.set()  # after 3 frames every read fails at once
    capture = CaptureThread(source, queue_size=8, reconnect_initial_s=0.02, reconnect_max_s=0.1)
    stopper.append(capture)
    capture.start()
    wait_until(lambda: capture.stats().reconnects >= 1)

    assert source.opens >= 4  # start, two refused, one accepted
    failures = [r.getMessage() for r in caplog.records if "reopening in" in r.getMessage()]
    assert len(failures) >= 3  # one line per failure
    assert all("rtsp://***@192.0.2.7/live" in line for line in failures)
    heartbeat = capture.heartbeat
    wait_until(lambda: capture.heartbeat > heartbeat)  # reconnect tries count as progress


def test_stats_measure_the_incoming_frame_rate(stopper: list[CaptureThread]) -> None:
    source = GeneratedSource(frames=40, interval_s=0.02)
    capture = CaptureThread(source, queue_size=64)
    stopper.append(capture)
    capture.start()
    wait_until(lambda: capture.stats().frames_in >= 30)
    fps = capture.stats().fps_in
    assert fps is not None
    assert 15 < fps <= 55  # 50 fps requested; sleep() only oversleeps, more on a busy CI


def test_stop_ends_a_capture_blocked_on_a_silent_camera() -> None:
    source = GeneratedSource(frames=0)
    capture = CaptureThread(source, reconnect_initial_s=0.01)
    capture.start()
    time.sleep(0.05)
    source.release.set()
    started = time.monotonic()
    assert capture.stop(timeout=5.0)
    assert time.monotonic() - started < 2.0
    assert source.closes >= 1 and not source.is_open


def test_fast_clip_loses_no_frame_to_a_slow_consumer(clip: Path) -> None:
    capture = CaptureThread(open_source(file_settings(clip, realtime=False)), queue_size=2)
    assert not capture.drop_when_full
    capture.start()
    try:
        indexes = []
        while not capture.finished:
            frame = capture.get(timeout=1.0)
            if frame is not None:
                indexes.append(frame.index)
                time.sleep(0.01)
    finally:
        assert capture.stop(timeout=5.0)
    assert indexes == list(range(CLIP_FRAMES))
    assert capture.stats().frames_dropped == 0
    assert capture.error is None
    assert capture.get(timeout=0.01) is None


def test_realtime_clip_drops_like_a_camera(clip: Path) -> None:
    capture = CaptureThread(open_source(file_settings(clip, realtime=True)), queue_size=2)
    assert capture.drop_when_full
    capture.start()
    try:
        wait_until(lambda: capture.finished or capture.stats().frames_in == CLIP_FRAMES)
        wait_until(lambda: capture.stats().frames_in == CLIP_FRAMES)
        assert capture.stats().frames_dropped == CLIP_FRAMES - 2
        assert [f.index for f in (capture.get(0.5), capture.get(0.5)) if f] == [18, 19]
        wait_until(lambda: capture.finished)
    finally:
        assert capture.stop(timeout=5.0)


# --- picamera2, faked at its import boundary ------------------------------------------------


class FakeRequest:
    def __init__(self, camera: FakePicamera2, sensor_ns: int | None) -> None:
        self.camera = camera
        self.sensor_ns = sensor_ns

    def make_array(self, name: str) -> np.ndarray:
        assert name == "main"
        width, height = self.camera.config["main"]["size"]
        return np.full((height, width, 3), 7, dtype=np.uint8)

    def get_metadata(self) -> dict[str, Any]:
        return {} if self.sensor_ns is None else {"SensorTimestamp": self.sensor_ns}

    def release(self) -> None:
        self.camera.released += 1


class FakePicamera2:
    instances: list[FakePicamera2] = []  # noqa: RUF012  # test bookkeeping
    sensor_age_s: float | None = 0.04

    def __init__(self, camera_num: int = 0) -> None:
        if camera_num != 0:
            raise IndexError("list index out of range")
        self.config: dict[str, Any] = {}
        self.started = self.closed = False
        self.released = 0
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {"main": dict(main), **kwargs}

    def configure(self, config: dict[str, Any]) -> None:
        self.config = config

    def start(self) -> None:
        self.started = True

    def capture_request(self) -> FakeRequest:
        age = self.sensor_age_s
        if age is None:
            return FakeRequest(self, None)
        return FakeRequest(self, time.clock_gettime_ns(time.CLOCK_BOOTTIME) - int(age * 1e9))

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> type[FakePicamera2]:
    module = types.ModuleType("picamera2")
    monkeypatch.setattr(module, "Picamera2", FakePicamera2, raising=False)
    monkeypatch.setitem(sys.modules, "picamera2", module)
    FakePicamera2.instances = []
    return FakePicamera2


def test_picamera2_frames_have_the_configured_shape_and_sensor_time(
    fake_picamera2: type[FakePicamera2],
) -> None:
    source = open_source(camera_settings("pi", "picamera2:0?width=1280&height=720"))
    source.open()
    camera = fake_picamera2.instances[0]
    assert camera.started
    assert camera.config["main"] == {"size": (1280, 720), "format": "RGB888"}
    for i in range(3):
        frame = source.read()
        read_monotonic, read_at = time.monotonic(), datetime.now(UTC)
        assert frame is not None
        assert (frame.camera_id, frame.index) == ("pi", i)
        assert frame.image.shape == (720, 1280, 3)
        # The sensor saw the frame 40 ms before it was handed over.
        assert read_monotonic - frame.monotonic == pytest.approx(0.04, abs=0.015)
        age = (read_at - frame.captured_at).total_seconds()
        assert age == pytest.approx(0.04, abs=0.015)
    source.close()
    assert camera.released == 3 and camera.closed and not camera.started


def test_picamera2_without_sensor_timestamp_uses_arrival_time(
    fake_picamera2: type[FakePicamera2], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_picamera2, "sensor_age_s", None)
    source = open_source(camera_settings("pi", "picamera2:0"))
    source.open()
    frame = source.read()
    source.close()
    assert frame is not None and frame.image.shape == (1080, 1920, 3)
    assert time.monotonic() - frame.monotonic < 0.02


def test_picamera2_missing_camera_is_a_camera_error(fake_picamera2: type[FakePicamera2]) -> None:
    with pytest.raises(CameraError, match=r"no camera 1.*list-cameras"):
        open_source(camera_settings("pi", "picamera2:1")).open()


def test_picamera2_not_installed_says_to_apt_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import now raises ImportError
    source = open_source(camera_settings("pi", "picamera2:0"))
    with pytest.raises(CameraError, match="python3-picamera2") as caught:
        source.open()
    assert "--system-site-packages" in caught.value.message
