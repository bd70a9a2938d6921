"""The demo: a synthetic traffic clip, a local mosquitto, the daemon, and the reads it sends.

    python scripts/demo.py [--vehicles 6] [--realtime]

Renders demo/clip.mp4, starts mosquitto on a free loopback port, subscribes to
alpr/demo-pole/reads, runs `alpr-edge run` on the clip and prints each read that arrives
next to the plate that was really on the vehicle.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.make_demo_clip import make_clip  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        raise SystemExit("mosquitto is not installed: sudo apt-get install -y mosquitto")
    return found


def write_config(
    path: Path,
    *,
    device_id: str,
    clip: Path,
    state: Path,
    port: int = 1883,
    models: str = "",
    camera: str = "",
) -> Path:
    """A daemon config for a local broker on ``port``, its data in ``state``, one camera
    reading ``clip``; ``models`` and ``camera`` are extra TOML lines for those tables."""
    path.write_text(
        f"""device_id = "{device_id}"
[mqtt]
host = "127.0.0.1"
port = {port}
[storage]
dir = "{state}"
[models]
{models}
[[cameras]]
id = "cam1"
source = "{clip.resolve().as_uri()}"
latitude = 33.8303
longitude = -116.5453
heading_deg = 90.0
{camera}""",
        encoding="utf-8",
    )
    return path


def start_broker(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A private mosquitto on a free loopback port (anonymous, no persistence), up and
    accepting connections; its config file goes in ``workdir``."""
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n", encoding="utf-8"
    )
    proc = subprocess.Popen(
        [mosquitto_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
        except OSError:
            time.sleep(0.05)
        else:
            return proc, port
    proc.kill()
    raise SystemExit("mosquitto did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description="alpr-edge demo on a synthetic clip")
    parser.add_argument("--vehicles", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--realtime", action="store_true", help="play the clip at its fps")
    parser.add_argument("--dir", type=Path, default=REPO / "demo")
    args = parser.parse_args()

    workdir: Path = args.dir
    shutil.rmtree(workdir / "state", ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    clip = workdir / "clip.mp4"
    passes = make_clip(clip, vehicles=args.vehicles, seed=args.seed)
    print(f"rendered {clip}: {len(passes)} vehicles: {' '.join(p.text for p in passes)}")

    broker, port = start_broker(workdir)
    config = write_config(
        workdir / "config.toml",
        device_id="demo-pole",
        state=workdir / "state",
        port=port,
        clip=clip,
        camera=f"realtime = {'true' if args.realtime else 'false'}\n",
    )
    received: list[dict[str, Any]] = []  # decoded JSON read events
    lock = threading.Lock()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        payload = json.loads(msg.payload)
        with lock:
            received.append(payload)
        plate = payload["plate"]
        region = (plate.get("region") or {}).get("code")
        vehicle = payload.get("vehicle") or {}
        print(
            f"  <- {msg.topic} seq={payload.get('seq')} plate={plate['text']!r} "
            f"conf={plate['confidence']:.2f} status={plate['status']} region={region} "
            f"vehicle={vehicle.get('color')}/{vehicle.get('type')} "
            f"direction={payload['direction']} clock_synced={payload.get('clock_synchronised')} "
            f"signed={'signature' in payload}",
            flush=True,
        )

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    try:
        for _ in range(50):
            try:
                client.connect("127.0.0.1", port)
                break
            except OSError:
                time.sleep(0.1)
        client.subscribe("alpr/demo-pole/reads", qos=1)
        client.loop_start()
        print(f"mosquitto on 127.0.0.1:{port}; running: alpr-edge run --config {config}")
        code = subprocess.call([sys.executable, "-m", "edge", "run", "--config", str(config)])
        time.sleep(1.0)
    finally:
        client.loop_stop()
        broker.terminate()
        broker.wait(timeout=5)
    truth = [p.text for p in passes]
    with lock:
        texts = [str(r["plate"]["text"]) for r in received]
    exact = sum(1 for t in truth if t in texts)
    print(
        f"\n{len(received)} read(s) for {len(truth)} vehicle passes; "
        f"{exact}/{len(truth)} plates read exactly; daemon exit code {code}"
    )
    return code


if __name__ == "__main__":
    raise SystemExit(main())
