"""Memory of the read store as it grows: the SQLite page cache fills once, then stays.

Adds N reads (each with a crop of the usual size) one at a time through the daemon's own
``ReadStore.add`` into a fresh database and prints the process's anonymous resident memory
(``RssAnon``) above its starting point every ``--every`` reads::

    python3 scripts/measure_store_memory.py                 # 12000 reads, 6 KB crops
    python3 scripts/measure_store_memory.py --reads 3000 --json

A daemon at a city pole stores a few hundred reads an hour, so a soak run of an hour sees this
cache still filling (a slow, steady rise of a few MiB); this shows where it stops. With
``--json`` the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.events import build_read_event  # noqa: E402
from edge.store import ReadStore  # noqa: E402
from scripts.measure_backlog import CAMERA, rss_kib, sample_pass  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--reads", type=int, default=12_000)
    ap.add_argument("--every", type=int, default=1_000, help="reads between report lines")
    ap.add_argument("--crop-bytes", type=int, default=6_000)
    ap.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = ap.parse_args()
    crop = os.urandom(args.crop_bytes)  # incompressible, like a JPEG
    growth: dict[int, int] = {}
    with tempfile.TemporaryDirectory(prefix="store-memory-") as tmp:
        store = ReadStore(Path(tmp) / "reads.db")
        start = rss_kib("RssAnon")
        try:
            for i in range(1, args.reads + 1):
                vehicle_pass = sample_pass(f"AB{i % 100_000:05d}", datetime.now(UTC))
                store.add(build_read_event(vehicle_pass, device_id="m", camera=CAMERA), crop)
                if i % args.every == 0 or i == args.reads:
                    growth[i] = rss_kib("RssAnon") - start
                    print(f"{i:7d} reads: RssAnon +{growth[i] / 1024:.2f} MiB", flush=True)
        finally:
            store.close()
    values = list(growth.values())
    middle = values[len(values) // 2] if values else 0
    result = {
        "reads": args.reads,
        "growth_mib_end": round(values[-1] / 1024, 2) if values else 0.0,
        "growth_mib_second_half": round((values[-1] - middle) / 1024, 2) if values else 0.0,
    }
    print(
        f"RssAnon grew {result['growth_mib_end']} MiB over {args.reads} reads, "
        f"{result['growth_mib_second_half']} MiB of it in the second half"
    )
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
