"""The daemon end to end with a hot list: a retained list on a real mosquitto, a rendered clip
in, an alert for the listed plate out (none for its one-character variant), the list saved for
the next start and reported in the status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import paho.mqtt.publish as mqtt_publish
from conftest import Mosquitto

from edge.alerts import alert_schema
from edge.hotlist import canonical_json
from scripts.make_demo_clip import make_clip

DEVICE = "test-pole"


def test_daemon_alerts_on_a_listed_plate_from_a_retained_hot_list(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    clip = tmp_path / "traffic.mp4"
    passes = make_clip(clip, vehicles=2, seed=11)
    wanted = passes[0].text
    # W and 3 are in no confusion group: only a misread of the last character could match.
    variant = wanted[:-1] + ("W" if wanted[-1] != "W" else "3")
    entries = [
        {"plate": wanted, "reason": "stolen vehicle", "priority": "high"},
        {"plate": variant, "reason": "one-character variant", "priority": "low"},
    ]
    mqtt_publish.single(
        "alpr/hotlist",
        canonical_json({"version": "e2e-1", "entries": entries}),
        qos=1,
        retain=True,
        hostname=mosquitto.host,
        port=mosquitto.port,
    )
    alerts = mosquitto.subscribe(f"alpr/{DEVICE}/alerts")
    status = mosquitto.subscribe(f"alpr/{DEVICE}/status")
    config = tmp_path / "config.toml"
    config.write_text(
        f"""device_id = "{DEVICE}"
[mqtt]
host = "127.0.0.1"
port = {mosquitto.port}
status_interval_s = 1
[storage]
dir = "{tmp_path / "state"}"
[[cameras]]
id = "cam1"
source = "{clip.as_uri()}"
realtime = false
""",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "edge", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    payloads = [json.loads(m.payload) for m in alerts.wait_for(1, timeout=10.0)]
    assert {p["entry"]["plate"] for p in payloads} == {wanted}, result.stderr[-2000:]
    assert len(payloads) == 1  # one alert per pass per entry
    jsonschema.validate(payloads[0], alert_schema())
    assert (tmp_path / "state" / "hotlist" / "fleet.json").exists()
    online = [json.loads(m.payload) for m in status.messages]
    versions = [s["version"] for p in online if "hotlist" in p for s in p["hotlist"]["sources"]]
    assert "e2e-1" in versions
    assert b"stolen vehicle" not in (tmp_path / "state" / "reads.db").read_bytes()
