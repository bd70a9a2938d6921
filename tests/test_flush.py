"""``alpr-edge flush``: empties the outbox into a real broker and exits 0; with the broker
unreachable it exits 69 with one line and keeps every read; bad config is exit 78."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Mosquitto, free_port

from edge.cli import main
from edge.errors import EX_CONFIG, EX_UNAVAILABLE
from edge.events import ReadEvent
from edge.signing import load_public_key, verify_read
from edge.store import ReadStore

MakeEvent = Callable[..., ReadEvent]


def write_config(tmp_path: Path, port: int, mqtt_extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""device_id = "pole-17"
[mqtt]
host = "127.0.0.1"
port = {port}
{mqtt_extra}
[storage]
dir = "{tmp_path / "state"}"
[[cameras]]
id = "cam-north"
source = "v4l2:///dev/video0"
""",
        encoding="utf-8",
    )
    return path


def fill_outbox(tmp_path: Path, make_event: MakeEvent, count: int) -> list[ReadEvent]:
    store = ReadStore(tmp_path / "state" / "reads.db")
    events = [make_event(f"FL{i}") for i in range(count)]
    for event in events:
        store.add(event, b"\xff\xd8crop")
    store.close()
    return events


def pending_in(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "state" / "reads.db") as db:
        return int(
            db.execute("SELECT count(*) FROM reads WHERE published_at IS NULL").fetchone()[0]
        )


def test_flush_publishes_every_read_and_exits_0(
    tmp_path: Path,
    mosquitto: Mosquitto,
    make_event: MakeEvent,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events = fill_outbox(tmp_path, make_event, 40)
    config = write_config(tmp_path, mosquitto.port)
    reads = mosquitto.subscribe("alpr/pole-17/reads")
    status = mosquitto.subscribe("alpr/pole-17/status")

    assert main(["flush", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == "40 read(s) published; outbox empty"
    assert pending_in(tmp_path) == 0
    payloads = [m.payload for m in reads.wait_for(40)]
    assert {json.loads(p)["event_id"] for p in payloads} == {e.event_id for e in events}
    assert [json.loads(p)["seq"] for p in payloads] == list(range(1, 41))

    assert main(["device-key", "--config", str(config)]) == 0
    public_key = load_public_key(capsys.readouterr().out)
    assert all(verify_read(public_key, p) for p in payloads)
    assert status.messages == []  # flush never speaks for the device

    assert main(["flush", "--config", str(config)]) == 0
    assert "outbox empty" in capsys.readouterr().out


def test_flush_with_broker_unreachable_is_one_line_exit_69_and_keeps_reads(
    tmp_path: Path, make_event: MakeEvent, capsys: pytest.CaptureFixture[str]
) -> None:
    fill_outbox(tmp_path, make_event, 3)
    port = free_port()  # nothing listens there
    assert main(["flush", "--config", str(write_config(tmp_path, port))]) == EX_UNAVAILABLE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"127.0.0.1:{port}: connection refused" in err[0]
    assert pending_in(tmp_path) == 3


def test_malformed_config_value_is_one_line_exit_78_and_stored_reads_stay(
    tmp_path: Path, make_event: MakeEvent, capsys: pytest.CaptureFixture[str]
) -> None:
    fill_outbox(tmp_path, make_event, 2)
    config = write_config(tmp_path, 1883, "backlog_rate_per_s = -5")
    for command in ("flush", "run", "device-key"):
        assert main([command, "--config", str(config)]) == EX_CONFIG
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert "mqtt.backlog_rate_per_s" in err[0]
    assert pending_in(tmp_path) == 2
