"""Soak test: the whole daemon on a looping 1080p clip in real time, resident memory over time.

Renders a 1080p clip (a vehicle every few seconds on an otherwise empty road, the usual
picture at a city pole), starts a private mosquitto on a free loopback port, runs
``alpr-edge run`` on the clip with ``loop = true`` and ``realtime = true`` (so it behaves
like a camera: frames arrive at the clip's rate, forever), subscribes to the reads and
samples the daemon's resident memory (``VmRSS`` from /proc) every few seconds::

    python3 scripts/measure_soak.py --minutes 60            # the one-hour run
    python3 scripts/measure_soak.py --minutes 3 --json      # a quick look

It prints one line per report interval (minute, RSS, peak, reads so far) and a summary:
RSS after warm-up, at the end and at its peak, the least-squares slope of RSS over the
run after warm-up (MiB per hour), reads received and whether the daemon stayed up. With
``--json`` the last line is one JSON object. The whole pipeline runs: capture, motion gate,
detector, recognizer, attributes, tracker, SQLite store, signing, MQTT delivery, retention.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.demo import start_broker, write_config  # noqa: E402
from scripts.make_demo_clip import make_clip  # noqa: E402

WARM_UP_S = 300.0
"""Memory before this is start-up (models loading, arenas growing), not a trend."""


def rss_kib(pid: int, field: str = "VmRSS") -> int | None:
    """``VmRSS`` (or ``VmHWM``, the peak) of a process in KiB; None once it has exited."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def is_error_line(line: str) -> bool:
    """A daemon log line (JSON, or text before logging is set up) at error level or worse."""
    try:
        record = json.loads(line)
    except ValueError:
        return "Traceback" in line or " ERROR " in line or " CRITICAL " in line
    return isinstance(record, dict) and record.get("level") in ("error", "critical")


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per hour (0 for < 2 samples)."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (m - mean_m) for t, m in samples)
    return cov / var * 3600.0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=60.0, help="how long the daemon runs")
    ap.add_argument("--sample-s", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--report-min", type=float, default=5.0, help="minutes between report lines")
    ap.add_argument("--vehicles", type=int, default=10, help="vehicles in the looped clip")
    ap.add_argument("--gap-s", type=float, default=6.0, help="empty road between vehicles")
    ap.add_argument("--clip", type=Path, default=None, help="use this clip instead of rendering")
    ap.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="alpr-soak-") as tmp:
        workdir = Path(tmp)
        clip: Path = args.clip or workdir / "soak1080.mp4"
        truth: set[str] = set()
        if args.clip is None:
            passes = make_clip(
                clip, vehicles=args.vehicles, seed=11, width=1920, height=1080, gap_s=args.gap_s
            )
            truth = {p.text for p in passes}
            print(f"rendered {clip}: 1920x1080, {len(passes)} vehicles, looped", flush=True)
        broker, port = start_broker(workdir)
        reads: list[dict[str, Any]] = []
        lock = threading.Lock()

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            with lock:
                reads.append(json.loads(msg.payload))

        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_message = on_message
        for _ in range(50):
            try:
                client.connect("127.0.0.1", port)
                break
            except OSError:
                time.sleep(0.1)
        client.subscribe("alpr/soak-pole/reads", qos=1)
        client.loop_start()
        config = write_config(
            workdir / "config.toml",
            device_id="soak-pole",
            clip=clip,
            state=workdir / "state",
            port=port,
            camera="realtime = true\nloop = true\n",
        )
        log = (workdir / "daemon.log").open("wb")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "edge", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started = time.monotonic()
        budget = args.minutes * 60.0
        samples: list[tuple[float, float]] = []
        peak_kib = 0
        next_report = args.report_min * 60.0
        exit_code: int | None = None
        try:
            while (elapsed := time.monotonic() - started) < budget:
                exit_code = daemon.poll()
                if exit_code is not None:
                    break
                rss = rss_kib(daemon.pid)
                peak_kib = max(peak_kib, rss_kib(daemon.pid, "VmHWM") or 0)
                if rss is not None:
                    samples.append((elapsed, rss / 1024))
                if elapsed >= next_report and samples:
                    with lock:
                        n_reads = len(reads)
                    print(
                        f"{elapsed / 60:6.1f} min  RSS {samples[-1][1]:6.1f} MiB  "
                        f"peak {peak_kib / 1024:6.1f} MiB  reads {n_reads}",
                        flush=True,
                    )
                    next_report += args.report_min * 60.0
                time.sleep(args.sample_s)
        finally:
            stayed_up = daemon.poll() is None
            if stayed_up:
                daemon.send_signal(signal.SIGTERM)
                try:
                    exit_code = daemon.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    exit_code = daemon.wait()
            time.sleep(1.0)
            client.loop_stop()
            broker.terminate()
            broker.wait(timeout=5)
            log.close()
        tail = (workdir / "daemon.log").read_text(encoding="utf-8", errors="replace")
        errors = [ln for ln in tail.splitlines() if is_error_line(ln)]

    steady = [(t, m) for t, m in samples if t >= WARM_UP_S]
    result = {
        "minutes": round((samples[-1][0] if samples else 0.0) / 60, 1),
        "samples": len(samples),
        "rss_mib_after_warm_up": round(steady[0][1], 1) if steady else None,
        "rss_mib_end": round(samples[-1][1], 1) if samples else None,
        "rss_mib_min_steady": round(min(m for _, m in steady), 1) if steady else None,
        "rss_mib_max_steady": round(max(m for _, m in steady), 1) if steady else None,
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "slope_mib_per_hour": round(slope_per_hour(steady), 2),
        "reads": len(reads),
        "reads_matching_a_plate_in_the_clip": (
            sum(1 for r in reads if str(r["plate"]["text"]) in truth) if truth else None
        ),
        "daemon_stayed_up": stayed_up,
        "daemon_exit_code": exit_code,
        "error_log_lines": len(errors),
    }
    print(
        f"\n{result['minutes']} min: RSS {result['rss_mib_after_warm_up']} MiB after warm-up, "
        f"{result['rss_mib_end']} MiB at the end (steady range {result['rss_mib_min_steady']}"
        f"-{result['rss_mib_max_steady']}), peak {result['peak_rss_mib']} MiB, slope "
        f"{result['slope_mib_per_hour']} MiB/h; {result['reads']} reads "
        f"({result['reads_matching_a_plate_in_the_clip']} exact); daemon "
        f"{'stayed up' if stayed_up else 'exited early'} (exit {exit_code}), "
        f"{len(errors)} error log lines"
    )
    for line in errors[:5]:
        print("  " + line[:300])
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0 if stayed_up and not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
