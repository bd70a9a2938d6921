"""Log lines for journald: one JSON object per line when stderr is not a terminal, the human
format on one; plate text only at DEBUG; no secret from the config in any line."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Mosquitto

from edge.logs import JsonFormatter, setup_logging
from scripts.make_demo_clip import make_clip

PASSWORD = "pw-Zq81-never-logged"  # noqa: S105 - a test secret that must stay out of logs


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("edge.app", logging.INFO, __file__, 1, message, args, None)
    rec.__dict__.update(extra)
    return rec


def test_json_line_has_time_level_logger_message_and_extra_fields() -> None:
    line = JsonFormatter().format(record("read %s seq=%d", "e1", 7, camera_id="north", seq=7))
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["logger"] == "edge.app"
    assert entry["message"] == "read e1 seq=7"
    assert entry["camera_id"] == "north"
    assert entry["seq"] == 7
    assert entry["time"].endswith("+00:00")


def test_journal_stream_gets_the_syslog_priority_prefix() -> None:
    line = JsonFormatter(priority_prefix=True).format(record("x"))
    assert line.startswith("<6>{")


def test_auto_is_text_on_a_terminal_and_json_elsewhere() -> None:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    for handler in saved[0]:
        root.removeHandler(handler)
    try:
        terminal, pipe = Terminal(), io.StringIO()
        setup_logging("info", "auto", terminal)
        logging.getLogger("edge.test").info("hello %s", "there")
        setup_logging("info", "auto", pipe)
        logging.getLogger("edge.test").info("hello %s", "there")
        assert " INFO edge.test: hello there" in terminal.getvalue()
        assert json.loads(pipe.getvalue())["message"] == "hello there"
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "traffic.mp4"
    make_clip(path, vehicles=2, seed=3, width=640, height=360)
    return path


def test_daemon_logs_json_with_plate_text_only_at_debug_and_no_password(
    tmp_path: Path, mosquitto: Mosquitto, clip: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""device_id = "pole-logs"
log_level = "debug"
[mqtt]
host = "127.0.0.1"
port = {mosquitto.port}
username = "pole-logs"
password = "{PASSWORD}"
[storage]
dir = "{tmp_path / "state"}"
[models]
threads = 1
[[cameras]]
id = "cam1"
source = "{clip.as_uri()}"
realtime = false
""",
        encoding="utf-8",
    )
    reads = mosquitto.subscribe("alpr/pole-logs/reads")
    result = subprocess.run(
        [sys.executable, "-m", "edge", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    texts = {json.loads(m.payload)["plate"]["text"] for m in reads.wait_for(1, timeout=10.0)}
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    read_lines = [e for e in entries if e["level"] == "info" and e["message"].startswith("read ")]
    assert read_lines, "an INFO line per read"
    assert all(e["camera_id"] == "cam1" and isinstance(e["seq"], int) for e in read_lines)
    with_plate = [e for e in entries if any(t in json.dumps(e) for t in texts)]
    assert with_plate, "the plate text is logged at DEBUG"
    assert {e["level"] for e in with_plate} == {"debug"}, with_plate
    assert PASSWORD not in result.stderr
