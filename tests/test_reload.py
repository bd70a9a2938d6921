"""Config reload on SIGHUP, on a running daemon: live settings take effect without a
restart, the others say that a restart is needed, and an invalid file changes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Mosquitto

from edge.config import load_settings
from edge.reload import plan_reload
from scripts.make_demo_clip import make_clip

Entry = dict[str, Any]


def config_text(tmp_path: Path, clip: Path, port: int, **changes: str) -> str:
    values = {
        "prefix": "alpr",
        "interval": "3600",
        "hotlist": str(tmp_path / "hot-v1.json"),
        "threshold": "0.35",
        "queue": "4",
        "tracking": "",
    } | changes
    return f"""device_id = "pole-hup"
[mqtt]
host = "127.0.0.1"
port = {port}
topic_prefix = "{values["prefix"]}"
status_interval_s = {values["interval"]}
[storage]
dir = "{tmp_path / "state"}"
[hotlist]
subscribe = false
file = "{values["hotlist"]}"
[models]
threads = 1
detector_threshold = {values["threshold"]}
[tracking]
pass_timeout_s = 0.6
{values["tracking"]}
[[cameras]]
id = "cam1"
source = "{clip.as_uri()}"
realtime = true
queue_size = {values["queue"]}
"""


class Daemon:
    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        self._out = log.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "run", "--config", str(config)],
            stderr=self._out,
            stdout=subprocess.DEVNULL,
        )

    def entries(self) -> list[Entry]:
        text = self.log.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def wait_for(self, test: Callable[[Entry], bool], timeout: float = 60.0) -> Entry:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.entries() if test(e)]
            if found:
                return found[-1]
            assert self.proc.poll() is None, self.log.read_text(encoding="utf-8")[-3000:]
            time.sleep(0.2)
        raise AssertionError(self.log.read_text(encoding="utf-8")[-3000:])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self._out.close()
        return code


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "long.mp4"
    make_clip(path, vehicles=2, seed=4, width=640, height=360, gap_s=50.0)
    return path


@pytest.fixture
def hotlists(tmp_path: Path) -> Iterator[None]:
    for version in ("v1", "v2"):
        entries = [{"plate": "ZZ12345", "reason": f"list {version}"}]
        (tmp_path / f"hot-{version}.json").write_text(
            json.dumps({"version": version, "entries": entries}), encoding="utf-8"
        )
    yield


def message(text: str) -> Callable[[Entry], bool]:
    return lambda e: text in str(e["message"])


@pytest.mark.usefixtures("hotlists")
def test_sighup_applies_live_settings_and_names_the_others(
    tmp_path: Path, mosquitto: Mosquitto, clip: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(config_text(tmp_path, clip, mosquitto.port), encoding="utf-8")
    status = mosquitto.subscribe("alpr/pole-hup/status")
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        daemon.wait_for(message("running with 1 camera(s)"), timeout=120)
        daemon.wait_for(message("hot list from file: version v1"))
        first = json.loads(status.wait_for(1, timeout=10)[0].payload)
        assert first["interval_s"] == 3600

        config.write_text(
            config_text(
                tmp_path,
                clip,
                mosquitto.port,
                prefix="other",
                interval="1",
                hotlist=str(tmp_path / "hot-v2.json"),
                threshold="0.5",
                queue="8",
                tracking="min_frames = 3",
            ),
            encoding="utf-8",
        )
        os.kill(daemon.proc.pid, signal.SIGHUP)
        applied = daemon.wait_for(message("config reloaded:"))
        for change in (
            "hotlist.file",
            "models.detector_threshold 0.35 -> 0.5",
            "tracking.min_frames 2 -> 3",
            "mqtt.status_interval_s 3600.0 -> 1.0",
        ):
            assert change in applied["message"]
        restart = [e for e in daemon.entries() if "restart alpr-edge to apply it" in e["message"]]
        assert sorted(e["message"].split()[2] for e in restart) == [
            "cameras.0.queue_size",
            "mqtt.topic_prefix",
        ]
        assert all(e["level"] == "warning" for e in restart)
        # In force: the new hot-list file is read, the pipeline took the thresholds at a frame
        # boundary, and heartbeats come every second now, under the old topic prefix.
        daemon.wait_for(message("hot list from file: version v2"))
        daemon.wait_for(lambda e: e["message"] == "camera cam1: reloaded settings in force")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            payloads = [json.loads(m.payload) for m in status.messages]
            if sum(1 for p in payloads if p.get("interval_s") == 1) >= 2:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no 1 s heartbeats: {status.messages}")

        good = config.read_text(encoding="utf-8")
        config.write_text(good.replace("min_frames = 3", "min_frame = 3"), encoding="utf-8")
        os.kill(daemon.proc.pid, signal.SIGHUP)
        rejected = daemon.wait_for(message("config reload rejected:"))
        line = good.splitlines().index("min_frames = 3") + 1
        assert f"{config}:{line}: tracking.min_frame: unknown key" in rejected["message"]
        assert rejected["level"] == "error"
        daemon.wait_for(message("the running config stays"))
        assert daemon.proc.poll() is None, "still running"
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log.read_text(encoding="utf-8")[-3000:]


def test_plan_keeps_running_values_for_keys_that_need_a_restart(tmp_path: Path) -> None:
    base = 'device_id = "p"\n[[cameras]]\nid = "a"\nsource = "v4l2:///dev/video0"\n'
    path = tmp_path / "c.toml"
    path.write_text(base, encoding="utf-8")
    running = load_settings(path)
    path.write_text(
        'device_id = "q"\nlog_level = "debug"\n[motion]\nthreshold = 0.01\n'
        "[tracking]\nrepeat_window_s = 9\n"
        + base.split("\n", 1)[1]
        + '[[cameras]]\nid = "b"\nsource = "v4l2:///dev/video1"\n',
        encoding="utf-8",
    )
    plan = plan_reload(running, load_settings(path))
    assert plan.restart_needed == ("cameras.1", "device_id")
    assert [c.key for c in plan.applied] == [
        "log_level",
        "motion.threshold",
        "tracking.repeat_window_s",
    ]
    assert plan.settings.tracking.repeat_window_s == 9
    assert plan.settings.device_id == "p"
    assert len(plan.settings.cameras) == 1
    assert plan.settings.log_level == "debug"
    assert plan.settings.motion.threshold == 0.01
