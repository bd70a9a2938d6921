"""Nothing committed is lost: a publisher process killed with SIGKILL at random moments, a
broker outage, and a process killed in the middle of SQLite writes, each checked by the
reference backend subscriber (``scripts/backend_subscriber.py``, run as its own process)
against a real mosquitto.

The publisher process is ``tests/durability_worker.py``: the daemon's store and publisher,
wired as ``edge.app`` wires them, making reads itself instead of running models.

SIGKILL ends the process at an arbitrary instruction, which is what a crash does to SQLite;
a real power cut also loses the OS page cache, which the store covers with WAL and
``synchronous=FULL`` (every commit is fsynced) and which a test cannot pull the plug on.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from conftest import Mosquitto
from durability_worker import CROP, vehicle_pass

from edge.atrest import load_cipher
from edge.cli import main
from edge.config import load_settings
from edge.events import build_read_event
from edge.publisher import MqttPublisher
from edge.signing import load_signer
from edge.store import ReadStore

REPO = Path(__file__).resolve().parent.parent
WORKER = REPO / "tests" / "durability_worker.py"
SUBSCRIBER = REPO / "scripts" / "backend_subscriber.py"
DEVICE = "pole-17"
KILLS = 20
POWER_CUTS = 4


def write_config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""device_id = "{DEVICE}"
[mqtt]
host = "127.0.0.1"
port = {port}
[storage]
dir = "{tmp_path / "state"}"
[[cameras]]
id = "cam-north"
source = "v4l2:///dev/video0"
""",
        encoding="utf-8",
    )
    return path


def device_keys(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The keys directory a backend keeps: ``<device_id>.pem`` from ``alpr-edge device-key``.
    Also makes the storage key now, so no kill can land in the middle of making it."""
    assert main(["device-key", "--config", str(config)]) == 0
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / f"{DEVICE}.pem").write_text(capsys.readouterr().out, encoding="utf-8")
    load_cipher(load_settings(config))
    return keys


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def start_worker(config: Path, *options: str) -> subprocess.Popen[str]:
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), str(config), *options],
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=REPO,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "ready", "worker did not start"
    return worker


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    if process.stdout is not None:
        process.stdout.close()


@dataclass
class Received:
    lines: list[dict[str, Any]]
    summary: dict[str, Any]
    exit_code: int

    def reads(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["kind"] == "read"]


class BackendProcess:
    """``scripts/backend_subscriber.py`` in its own process; its JSON lines collected."""

    def __init__(self, mosquitto: Mosquitto, keys: Path) -> None:
        self._proc = subprocess.Popen(
            [
                sys.executable,
                str(SUBSCRIBER),
                *("--host", mosquitto.host, "--port", str(mosquitto.port)),
                *("--keys", str(keys), "--client-id", "backend-test", "--timeout", "120"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        self.lines: list[dict[str, Any]] = []
        self.log: list[str] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._collect, args=(self._proc.stdout,), daemon=True),
            threading.Thread(target=self._watch_log, args=(self._proc.stderr,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        if not self._subscribed.wait(15.0):
            self._proc.kill()
            raise AssertionError(f"subscriber did not subscribe: {self.log}")

    def _collect(self, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(json.loads(line))
                self._cond.notify_all()

    def _watch_log(self, stream: IO[str]) -> None:
        for line in stream:
            self.log.append(line.rstrip())
            if "subscribed to" in line:
                self._subscribed.set()

    def finish(self, reads: int, timeout: float = 20.0) -> Received:
        """Wait until ``reads`` distinct reads were accepted, then stop it (SIGTERM)."""
        with self._cond:
            self._cond.wait_for(
                lambda: sum(1 for line in self.lines if line["kind"] == "read") >= reads,
                timeout,
            )
        self._proc.terminate()
        exit_code = self._proc.wait(10)
        for thread in self._threads:
            thread.join(5)
        summaries = [line for line in self.lines if line["kind"] == "summary"]
        assert len(summaries) == 1, self.log
        return Received(self.lines, summaries[0], exit_code)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


@pytest.fixture
def backends() -> Iterator[list[BackendProcess]]:
    started: list[BackendProcess] = []
    yield started
    for backend in started:
        backend.close()


def committed_seqs(db: Path) -> tuple[list[int], int]:
    """Every stored read's seq, and the counter that hands them out."""
    with sqlite3.connect(db) as conn:
        seqs = [int(row[0]) for row in conn.execute("SELECT seq FROM reads ORDER BY seq")]
        counter = conn.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()[0]
    conn.close()
    return seqs, int(counter)


def pending(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        count = conn.execute("SELECT COUNT(*) FROM reads WHERE published_at IS NULL").fetchone()
    conn.close()
    return int(count[0])


def assert_every_read_arrived_once_verified(received: Received, last_seq: int) -> None:
    summary = received.summary
    assert summary["rejected"] == {}, summary  # every signature checked out
    assert summary["gaps_open"] == 0, summary
    assert summary["accepted"].get("read") == last_seq, summary
    assert summary["devices"][DEVICE]["read"] == {
        "first": 1,
        "last": last_seq,
        "received": last_seq,
        "missing": 0,
        "gaps": [],
    }
    assert sorted(line["seq"] for line in received.reads()) == list(range(1, last_seq + 1))
    assert received.exit_code == 0


def test_no_committed_read_is_lost_when_the_publisher_is_killed_at_random_moments(
    tmp_path: Path,
    mosquitto: Mosquitto,
    backends: list[BackendProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    config = write_config(tmp_path, mosquitto.port)
    backend = BackendProcess(mosquitto, device_keys(config, tmp_path, capsys))
    backends.append(backend)
    db = tmp_path / "state" / "reads.db"
    unsent_at_kill = []
    for _ in range(KILLS):
        worker = start_worker(config, "--interval", "0.01")
        time.sleep(rng.uniform(0.0, 0.4))
        kill(worker)
        unsent_at_kill.append(pending(db))

    assert main(["flush", "--config", str(config)]) == 0
    seqs, counter = committed_seqs(db)
    assert seqs == list(range(1, counter + 1))  # a killed add leaves no row and no number
    assert pending(db) == 0
    received = backend.finish(counter)
    assert_every_read_arrived_once_verified(received, counter)
    print(
        f"seed {seed}: {KILLS} kills, {counter} reads committed, unsent at each kill "
        f"{unsent_at_kill}, duplicates dropped {received.summary['duplicates']}"
    )


def test_broker_outage_every_read_arrives_in_order_per_lane(
    tmp_path: Path,
    mosquitto: Mosquitto,
    backends: list[BackendProcess],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edge.publisher")
    config = write_config(tmp_path, mosquitto.port)
    backend = BackendProcess(mosquitto, device_keys(config, tmp_path, capsys))
    backends.append(backend)
    settings = load_settings(config)
    camera = settings.cameras[0]
    store = ReadStore(settings.storage.dir / "reads.db", load_cipher(settings))
    publisher = MqttPublisher(
        settings.mqtt,
        device_id=DEVICE,
        store=store,
        signer=load_signer(settings),
        reconnect_min_s=0.1,
        reconnect_max_s=0.4,
        backlog_rate_per_s=100,
    )
    stop = threading.Event()

    def feed() -> None:  # a read every 20 ms, through the outage and after it
        number = 0
        while not stop.wait(0.02):
            event = build_read_event(
                vehicle_pass(camera.id, number), device_id=DEVICE, camera=camera
            )
            store.add(event, CROP)
            number += 1
            publisher.notify()

    feeder = threading.Thread(target=feed, daemon=True)
    publisher.start()
    try:
        deadline = time.monotonic() + 5.0
        while not publisher.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert publisher.connected
        feeder.start()
        time.sleep(0.5)
        mosquitto.stop()
        time.sleep(1.5)
        mosquitto.start()
        time.sleep(1.0)
        stop.set()
        feeder.join(5.0)
        assert publisher.flush(timeout_s=15.0)
        last_seq = store.last_seq()
    finally:
        stop.set()
        publisher.stop(timeout=5.0)
        store.close()

    received = backend.finish(last_seq)
    assert_every_read_arrived_once_verified(received, last_seq)
    boundaries = [
        int(record.args[0])  # type: ignore[index, arg-type]
        for record in caplog.records
        if record.msg.startswith("outbox backlog up to seq")
    ]
    assert len(boundaries) == 1, boundaries  # one reconnect, after the outage
    (boundary,) = boundaries
    arrived = [line["seq"] for line in received.reads()]  # first copies, in arrival order
    backlog = [seq for seq in arrived if seq <= boundary]
    live = [seq for seq in arrived if seq > boundary]
    assert backlog == sorted(backlog)
    assert live == sorted(live)
    assert 0 < boundary < last_seq
    print(f"{last_seq} reads, backlog up to seq {boundary} at the reconnect")


def test_kill_during_sqlite_writes_leaves_a_clean_database_and_the_outbox_resumes(
    tmp_path: Path,
    mosquitto: Mosquitto,
    backends: list[BackendProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    config = write_config(tmp_path, mosquitto.port)
    keys = device_keys(config, tmp_path, capsys)
    db = tmp_path / "state" / "reads.db"
    counts = []
    for _ in range(POWER_CUTS):
        worker = start_worker(config, "--interval", "0", "--no-publish")
        time.sleep(rng.uniform(0.05, 0.3))
        kill(worker)
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.close()
        seqs, counter = committed_seqs(db)
        assert seqs == list(range(1, counter + 1))
        counts.append(counter)
    assert counts[-1] > counts[0] > 0

    backend = BackendProcess(mosquitto, keys)
    backends.append(backend)
    # The publisher drains what was stored: up to a few thousand reads, each signed and sent,
    # which took 10-20 s alone and more than 30 s once on a loaded 2-core CI machine.
    resumed = start_worker(config, "--adds", "0", "--flush-timeout", "120")
    assert resumed.wait(150) == 0
    if resumed.stdout is not None:
        resumed.stdout.close()
    assert pending(db) == 0
    assert_every_read_arrived_once_verified(backend.finish(counts[-1]), counts[-1])
    print(f"seed {seed}: reads committed after each kill {counts}")
