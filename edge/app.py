"""The daemon: builds every part in order, runs the camera pipelines, stops in reverse.

Order of start: storage (reads, audit log, first purge) -> hot list (saved copies, file)
-> models (warmed; the last known-good pair if the configured ones fail) -> publisher ->
cameras -> pipelines -> first frame from every camera -> READY.
Order of stop: cameras (producers) -> pipelines (flush open passes) -> publisher -> storage.

The main loop also applies hot-list messages (handed over by the publisher thread), re-reads
``hotlist.file`` when it changes, purges expired data (``edge.retention``), sends status, and
re-reads the config file after SIGHUP (``edge.reload``).
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from edge import __version__, sdnotify
from edge.alerts import Alerter, AlertOutbox
from edge.atrest import load_cipher
from edge.audit import AuditLog
from edge.camera import FrameSource, open_source
from edge.camera.capture import CaptureThread
from edge.clock import ClockWatch
from edge.config import CameraSettings, Settings, load_settings
from edge.errors import CameraError, ConfigError, EdgeError
from edge.events import build_read_event
from edge.hotlist import HotListKeeper, Source
from edge.inference.known_good import load_reader
from edge.logs import set_level
from edge.pipeline import PlateReader
from edge.processor import FrameProcessor
from edge.publisher import MqttPublisher, connect_check
from edge.reload import describe, plan_reload
from edge.retention import Purger
from edge.signing import load_signer
from edge.status import CameraProbe, Extras, ModelVersions, StatusCollector, online_payload
from edge.store import ReadStore
from edge.types import Frame, PlateObservation, VehiclePass

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_CONNECTED_S = 120.0
SIGNAL_DRAIN_S = 10.0
"""Well inside the unit's TimeoutStopSec."""
FIRST_FRAME_TIMEOUT_S = 30.0
"""READY waits this long for every camera's first frame; then start fails (exit 66)."""
HOTLIST_FILE_POLL_S = 2.0


class CameraPipeline:
    """One camera's thread: takes frames from the capture queue into a FrameProcessor."""

    def __init__(
        self,
        camera: CameraSettings,
        capture: CaptureThread,
        reader: PlateReader,
        settings: Settings,
        emit: Callable[[VehiclePass, CameraSettings], None],
        stop: threading.Event,
        observe: Callable[[CameraSettings, list[PlateObservation]], object] | None = None,
    ) -> None:
        self.camera = camera
        self.capture = capture
        self.emit = emit
        self.stop_event = stop
        hook = None
        if observe is not None:

            def hook(observations: list[PlateObservation]) -> None:
                observe(camera, observations)

        self.processor = FrameProcessor(camera, reader, settings, on_observations=hook)
        self.reads = 0
        self._pending: Settings | None = None
        self._pending_lock = threading.Lock()
        self.heartbeat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"pipeline-{camera.id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def reconfigure(self, settings: Settings) -> None:
        """New live settings (SIGHUP); the thread takes them before its next frame."""
        with self._pending_lock:
            self._pending = settings

    def _take_settings(self) -> None:
        with self._pending_lock:
            settings, self._pending = self._pending, None
        if settings is not None:
            self.processor.reconfigure(settings)
            log.info(
                "camera %s: reloaded settings in force",
                self.camera.id,
                extra={"camera_id": self.camera.id},
            )

    def _stream_time(self, frame: Frame) -> float:
        """Seconds on the stream's own clock: a clip read faster than real time keeps its
        pacing, so a pass timeout means the same on a file as on a live camera."""
        fps = self.capture.source.fps
        if not self.capture.source.is_live and not self.camera.realtime and fps:
            return frame.index / fps
        return frame.monotonic

    def _run(self) -> None:
        processor = self.processor
        try:
            while not self.stop_event.is_set():
                self._take_settings()
                frame = self.capture.get(timeout=0.2)
                self.heartbeat = time.monotonic()
                if frame is None:
                    if self.capture.finished:
                        break
                    if self.capture.source.is_live or self.camera.realtime:
                        self._emit_all(processor.idle(time.monotonic()))
                    continue
                self._emit_all(processor.process(frame, self._stream_time(frame)))
        except Exception:
            log.exception("camera %s: pipeline failed", self.camera.id)
            raise
        finally:
            self._emit_all(processor.flush())

    def _emit_all(self, passes: list[VehiclePass]) -> None:
        for vehicle_pass in passes:
            self.reads += 1
            self.emit(vehicle_pass, self.camera)


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        open_camera: Callable[[CameraSettings], FrameSource] = open_source,
        config_path: Path | None = None,
        clock: Callable[[], bool | None] | None = None,
    ) -> None:
        self.settings = settings
        self._open_camera = open_camera
        self._config_path = config_path
        self.clock = clock if clock is not None else ClockWatch().state
        """Whether the system clock is synchronised; one cached answer for reads and status."""
        self._reload_requested = threading.Event()
        self.stop_event = threading.Event()
        self.signalled = False
        self.store: ReadStore | None = None
        self.publisher: MqttPublisher | None = None
        self.captures: list[CaptureThread] = []
        self.pipelines: list[CameraPipeline] = []
        self.status: StatusCollector | None = None
        self.audit: AuditLog | None = None
        self.hotlist: HotListKeeper | None = None
        self.alerter: Alerter | None = None
        self.purger: Purger | None = None
        self.reads_dropped = 0
        """Reads not kept because they matched nothing (``privacy.hits_only``)."""
        self._hotlist_inbox: queue.SimpleQueue[tuple[Source, bytes]] = queue.SimpleQueue()
        self._hotlist_file_due = 0.0
        self._status_due = 0.0
        self._status_connections = 0

    def install_signal_handlers(self) -> None:
        def _handle(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            self.signalled = True
            self.stop_event.set()

        def _reload(_signum: int, _frame: FrameType | None) -> None:
            self._reload_requested.set()

        signal.signal(signal.SIGTERM, _handle)
        signal.signal(signal.SIGINT, _handle)
        signal.signal(signal.SIGHUP, _reload)

    def start(self) -> None:
        s = self.settings
        s.storage.dir.mkdir(parents=True, exist_ok=True)
        cipher = load_cipher(s)
        self.store = ReadStore(s.storage.dir / "reads.db", cipher)
        self.audit = AuditLog(s.storage.dir / "audit.db", cipher)
        self.purger = Purger(s, self.store, self.audit)
        self.purger.run_if_due()
        self.hotlist = HotListKeeper(s.hotlist, s.storage.dir)
        self.hotlist.load_persisted()
        self.hotlist.poll_file()
        alerts = AlertOutbox(self.store)
        reader, warm_ms = load_reader(s.models, s.storage.dir)
        log.info(
            "models warm in %.0f ms: %s, %s",
            warm_ms,
            reader.detector.version,
            reader.recognizer.version,
        )
        if s.mqtt.require_at_start:
            connect_check(s.mqtt, device_id=s.device_id, timeout_s=10.0)
        self.publisher = MqttPublisher(
            s.mqtt,
            device_id=s.device_id,
            store=self.store,
            signer=load_signer(s),
            alerts=alerts,
            audit=self.audit,
            on_hotlist=self._hotlist_received if s.hotlist.subscribe else None,
        )
        self.alerter = Alerter(
            s,
            self.hotlist,
            alerts,
            notify=self.publisher.notify_alert,
            clock_synchronised=self.clock,
        )
        self.publisher.start()
        for camera in s.cameras:
            capture = CaptureThread(self._open_camera(camera), queue_size=camera.queue_size)
            self.captures.append(capture)
            self.pipelines.append(
                CameraPipeline(
                    camera,
                    capture,
                    reader,
                    s,
                    self._emit,
                    self.stop_event,
                    observe=self.alerter.check_frame,
                )
            )
        for capture in self.captures:
            capture.start()
        for pipeline in self.pipelines:
            pipeline.start()
        publisher = self.publisher
        self.status = StatusCollector(
            device_id=s.device_id,
            interval_s=s.mqtt.status_interval_s,
            store=self.store,
            storage_dir=s.storage.dir,
            cameras=[_probe(pipeline) for pipeline in self.pipelines],
            models=ModelVersions(reader.detector.version, reader.recognizer.version),
            clock=self.clock,
            extras=Extras(
                hotlist=self.hotlist.status,
                alerts_depth=alerts.pending_count,
                retention=lambda: None if self.purger is None else self.purger.last,
                outbox_refused=lambda: publisher.refused_count,
            ),
        )
        self.clock()  # the first answer costs a command: ask it now, not in a read's path
        self._await_first_frames(FIRST_FRAME_TIMEOUT_S)
        sdnotify.notify("READY=1")
        log.info("alpr-edge %s running with %d camera(s)", __version__, len(self.pipelines))

    def _hotlist_received(self, source: Source, payload: bytes) -> None:
        """On the publisher thread: hand over, apply on the main thread (parsing and
        checking a large list must not stall the network loop)."""
        self._hotlist_inbox.put((source, payload))

    def _emit(self, vehicle_pass: VehiclePass, camera: CameraSettings) -> None:
        store, publisher = self._started()
        privacy = self.settings.privacy
        hits = [] if self.alerter is None else self.alerter.match_pass(vehicle_pass)
        if privacy.hits_only and not hits:
            self.reads_dropped += 1
            return
        event = build_read_event(
            vehicle_pass,
            device_id=self.settings.device_id,
            camera=camera,
            clock_synchronised=self.clock(),
        )
        if self.alerter is not None and hits:
            # Alerts first: they are what someone is waiting for.
            self.alerter.check_pass(camera, vehicle_pass, event, hits)
        crop = vehicle_pass.crop_jpeg if privacy.keep_images else b""
        seq = store.add(event, crop, hit=bool(hits))
        publisher.notify()
        # Plate text at DEBUG only: INFO lines end up in the journal of every pole.
        fields = {"event_id": event.event_id, "camera_id": camera.id, "seq": seq}
        log.info(
            "read %s camera=%s seq=%d conf=%.2f status=%s frames=%d dir=%s",
            event.event_id,
            camera.id,
            seq,
            vehicle_pass.confidence,
            vehicle_pass.status,
            vehicle_pass.frames_seen,
            vehicle_pass.direction,
            extra=fields,
        )
        log.debug("read %s text=%s", event.event_id, vehicle_pass.text, extra=fields)

    def _started(self) -> tuple[ReadStore, MqttPublisher]:
        if self.store is None or self.publisher is None:
            raise RuntimeError("daemon used before start()")
        return self.store, self.publisher

    def wait(self) -> None:
        """Block until a signal arrives or, with file cameras only, every clip has ended."""
        interval = sdnotify.watchdog_interval_s()
        last_ping = 0.0
        while not self.stop_event.wait(0.2):
            if all(not p.alive for p in self.pipelines):
                break
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self.reload()
            self._housekeeping()
            self._report_status()
            if interval is not None and time.monotonic() - last_ping >= interval:
                if self._making_progress(interval * 2):
                    sdnotify.notify("WATCHDOG=1")
                last_ping = time.monotonic()

    def reload(self) -> None:
        """Re-read the config file: apply what can change live, name what cannot, and keep
        the running config when the new one is invalid."""
        if self._config_path is None:
            log.warning("config reload: no config file to re-read")
            return
        sdnotify.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            self._reload_from(self._config_path)
        finally:
            sdnotify.notify("READY=1")

    def _reload_from(self, path: Path) -> None:
        try:
            new = load_settings(path)
        except ConfigError as exc:
            errors = exc.message.splitlines()
            for line in errors:
                log.error("config reload rejected: %s", line)  # noqa: TRY400 - one clear line
            log.warning("config not reloaded (%d error(s)); the running config stays", len(errors))
            return
        plan = plan_reload(self.settings, new)
        for key in plan.restart_needed:
            log.warning("config reload: %s changed; restart alpr-edge to apply it", key)
        if not plan.applied:
            log.info("config reload: no live setting changed")
            return
        settings = plan.settings
        self.settings = settings
        set_level(settings.log_level)
        if self.hotlist is not None:
            self.hotlist.use_file(settings.hotlist.file)
            self._hotlist_file_due = 0.0
        if self.alerter is not None:
            self.alerter.reconfigure(settings)
        if self.status is not None:
            self.status.interval_s = settings.mqtt.status_interval_s
        self._status_due = min(self._status_due, time.monotonic() + settings.mqtt.status_interval_s)
        for pipeline in self.pipelines:
            pipeline.reconfigure(settings)
        log.info("config reloaded: %s", ", ".join(describe(c) for c in plan.applied))

    def _housekeeping(self) -> None:
        """Hot-list updates, the hot-list file, and the purge when it is due."""
        if self.hotlist is not None:
            while not self._hotlist_inbox.empty():
                source, payload = self._hotlist_inbox.get_nowait()
                self.hotlist.apply(source, payload)
            now = time.monotonic()
            if now >= self._hotlist_file_due:
                self._hotlist_file_due = now + HOTLIST_FILE_POLL_S
                self.hotlist.poll_file()
        if self.purger is not None:
            try:
                self.purger.run_if_due()
            except EdgeError as exc:
                log.error("purge failed: %s", exc.message)  # noqa: TRY400 - one clear line

    def _report_status(self) -> None:
        """An ``online`` heartbeat every ``mqtt.status_interval_s``, and a fresh one at once
        after each reconnect. Gathered here, not on the publisher thread: the clock check
        may run a subprocess."""
        if self.status is None or self.publisher is None:
            return
        now = time.monotonic()
        connections = self.publisher.connections
        if now < self._status_due and connections == self._status_connections:
            return
        self._status_connections = connections
        self._status_due = now + self.settings.mqtt.status_interval_s
        try:
            self.publisher.offer_status(online_payload(self.status.collect()))
        except EdgeError as exc:
            log.warning("device status not sent: %s", exc.message)

    def _await_first_frames(self, timeout_s: float) -> None:
        """READY means frames flow: wait until every camera has delivered one (or its clip
        has already ended)."""
        deadline = time.monotonic() + timeout_s
        waiting = list(self.captures)
        while waiting and not self.stop_event.is_set():
            waiting = [c for c in waiting if c.running and c.stats().frames_in == 0]
            if waiting and time.monotonic() >= deadline:
                raise CameraError(
                    f"{waiting[0].description}: opened but delivered no frame in {timeout_s:g} s"
                )
            self.stop_event.wait(0.05)

    def _making_progress(self, horizon_s: float) -> bool:
        """Every stage moved within ``horizon_s``: each running capture thread (a read hung
        in a camera driver stops its heartbeat), each pipeline thread (so does a hung
        inference), and the publisher thread is alive."""
        now = time.monotonic()
        captures = all(now - c.heartbeat < horizon_s for c in self.captures if c.running)
        pipelines = all(now - p.heartbeat < horizon_s for p in self.pipelines if p.alive)
        publisher = self.publisher is None or self.publisher.alive
        return captures and pipelines and publisher

    def stop(self) -> None:
        sdnotify.notify("STOPPING=1")
        self.stop_event.set()
        for capture in self.captures:
            capture.stop(timeout=5.0)
        for pipeline in self.pipelines:
            pipeline.join(timeout=10.0)
        if self.publisher is not None:
            self._drain(self.publisher)
            self.publisher.stop(timeout=5.0)
        if self.store is not None:
            self.store.close()
        if self.audit is not None:
            self.audit.close()

    def _drain(self, publisher: MqttPublisher) -> None:
        grace = self.settings.mqtt.offline_grace_s
        # Asked to stop (systemd, Ctrl-C): finish quickly, the outbox survives the restart.
        budget = SIGNAL_DRAIN_S if self.signalled else DRAIN_TIMEOUT_CONNECTED_S
        deadline = time.monotonic() + budget
        offline_since: float | None = None
        while time.monotonic() < deadline:
            if publisher.flush(timeout_s=0.5):
                return
            if publisher.connected:
                offline_since = None
            elif offline_since is None:
                offline_since = time.monotonic()
            elif time.monotonic() - offline_since >= grace:
                break
        log.warning(
            "%d read(s) left in the outbox; they will be sent on the next start",
            self._started()[0].pending_count(),
        )


def _probe(pipeline: CameraPipeline) -> CameraProbe:
    def frames_processed() -> int:
        return pipeline.processor.frames_processed

    return CameraProbe(pipeline.camera.id, pipeline.capture.stats, frames_processed)


def run_daemon(settings: Settings, *, config_path: Path | None = None) -> int:
    daemon = Daemon(settings, config_path=config_path)
    daemon.install_signal_handlers()
    try:
        daemon.start()
        daemon.wait()
    finally:
        daemon.stop()
    return 0
