"""Measure hot-list alerting on labelled reads: true alerts, missed alerts and false alerts.

The hot list holds half of the true plates, a one-character variant of *every* true plate
(one with a character OCR confuses, one with an unrelated character; neither may alert
unless the recognizer's evidence supports it), a wildcard pattern for one listed plate and
``--unrelated`` random plates. Alerts are raised exactly as the daemon raises them
(``edge.alerts.Alerter``: early alerts from frames, pass alerts from reads, one per pass per
entry).

Reads come from running the real pipeline on rendered clips::

    python scripts/measure_hotlist.py --clips 3 --vehicles 8 --save-reads reads.json

or from a saved run (the ``--save-reads`` file, a list of ``{"truth", "read", "frames"}``,
where ``read`` is a read payload as published on MQTT and ``frames`` the per-frame reads)::

    python scripts/measure_hotlist.py --reads reads.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.alerts import Alerter, AlertOutbox
from edge.config import CameraSettings, Settings
from edge.events import build_read_event, to_payload
from edge.hotlist import HotListKeeper, canonical_json
from edge.matching import CONFUSABLE_GROUPS, MIN_LITERALS, pattern_regex
from edge.store import ReadStore
from edge.types import (
    CharCandidate,
    CharSlot,
    Detection,
    Direction,
    PlateObservation,
    PlateStatus,
    Recognition,
    TextCandidate,
    VehiclePass,
)

ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
T0 = datetime(2026, 11, 29, tzinfo=UTC)


@dataclass(frozen=True)
class LabelledPass:
    truth: str
    vehicle_pass: VehiclePass
    frames: tuple[Recognition, ...]


def _confusable_variant(plate: str, rng: random.Random) -> str | None:
    spots = [
        (i, c)
        for i, ch in enumerate(plate)
        for group in CONFUSABLE_GROUPS
        if ch in group
        for c in group
        if c != ch
    ]
    if not spots:
        return None
    i, c = rng.choice(spots)
    return plate[:i] + c + plate[i + 1 :]


def _other_variant(plate: str, rng: random.Random) -> str:
    i = rng.randrange(len(plate))
    near = {c for g in CONFUSABLE_GROUPS if plate[i] in g for c in g}
    c = rng.choice([c for c in ALPHABET if c not in near and c != plate[i]])
    return plate[:i] + c + plate[i + 1 :]


def build_hotlist(truths: list[str], unrelated: int, seed: int) -> dict[str, str]:
    """Hot-list pattern -> category."""
    rng = random.Random(seed)
    distinct = sorted(t for t in set(truths) if len(t) >= MIN_LITERALS)
    listed = distinct[: (len(distinct) + 1) // 2]
    entries: dict[str, str] = {p: "true_plate" for p in listed}
    for plate in distinct:
        variant = _confusable_variant(plate, rng)
        if variant and variant not in distinct:
            entries.setdefault(variant, "variant_confusable")
        variant = _other_variant(plate, rng)
        if variant not in distinct:
            entries.setdefault(variant, "variant_other")
    if listed and len(listed[0]) >= 6:
        p = listed[0]
        entries.setdefault(p[:2] + "?" + p[3:5] + "*", "true_wildcard")
    while sum(1 for v in entries.values() if v == "unrelated") < unrelated:
        plate = "".join(rng.choice(ALPHABET) for _ in range(rng.choice((6, 7))))
        if plate not in distinct:
            entries.setdefault(plate, "unrelated")
    return entries


def _slots(data: list[dict[str, Any]]) -> tuple[CharSlot, ...]:
    return tuple(
        CharSlot(
            s["char"],
            s["prob"],
            tuple(CharCandidate(a["char"], a["prob"]) for a in s.get("alternatives", [])),
        )
        for s in data
    )


def _pass_from_payload(read: dict[str, Any]) -> VehiclePass:
    plate = read["plate"]
    return VehiclePass(
        camera_id="measure",
        text=plate["text"],
        confidence=plate["confidence"],
        candidates=tuple(TextCandidate(c["text"], c["confidence"]) for c in plate["candidates"]),
        status=PlateStatus(plate["status"]),
        first_seen=T0,
        last_seen=T0 + timedelta(seconds=1),
        best_seen=T0,
        frames_seen=read["frames_seen"],
        direction=Direction.UNKNOWN,
        chars=_slots(plate["chars"]),
    )


def _recognition_json(r: Recognition) -> dict[str, Any]:
    return {
        "text": r.text,
        "confidence": r.confidence,
        "status": str(r.status),
        "chars": [
            {
                "char": s.char,
                "prob": s.prob,
                "alternatives": [{"char": a.char, "prob": a.prob} for a in s.alternatives],
            }
            for s in r.chars
        ],
    }


def load_reads(path: Path) -> list[LabelledPass]:
    out = []
    for item in json.loads(path.read_text(encoding="utf-8")):
        frames = tuple(
            Recognition(f["text"], f["confidence"], _slots(f["chars"]), PlateStatus(f["status"]))
            for f in item.get("frames", [])
        )
        out.append(LabelledPass(item["truth"], _pass_from_payload(item["read"]), frames))
    return out


def save_reads(path: Path, passes: list[LabelledPass], camera: CameraSettings) -> None:
    items = []
    for p in passes:
        event = build_read_event(p.vehicle_pass, device_id="measure", camera=camera)
        items.append(
            {
                "truth": p.truth,
                "read": to_payload(event, seq=1),
                "frames": [_recognition_json(f) for f in p.frames],
            }
        )
    path.write_text(json.dumps(items, indent=1), encoding="utf-8")


def _edit(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def run_clips(clips: int, vehicles: int, seed: int) -> list[LabelledPass]:
    """Render clips and read them with the daemon's FrameProcessor and the shipped models."""
    from edge.camera import open_source
    from edge.pipeline import PlateReader
    from edge.processor import FrameProcessor
    from scripts.make_demo_clip import make_clip

    out: list[LabelledPass] = []
    with tempfile.TemporaryDirectory(prefix="alpr-hotlist-") as tmp:
        for k in range(clips):
            video = Path(tmp) / f"clip{k}.mp4"
            truth = make_clip(video, vehicles=vehicles, seed=seed + k)
            camera = CameraSettings(id="measure", source=video.resolve().as_uri(), realtime=False)
            settings = Settings(device_id="measure", cameras=[camera])
            reader = PlateReader.from_settings(settings.models)
            frame_of: dict[datetime, int] = {}
            seen: dict[datetime, list[Recognition]] = {}

            def hook(
                observations: list[PlateObservation],
                seen: dict[datetime, list[Recognition]] = seen,
            ) -> None:
                for o in observations:
                    seen.setdefault(o.captured_at, []).append(o.recognition)

            processor = FrameProcessor(camera, reader, settings, on_observations=hook)
            source = open_source(camera)
            source.open()
            fps = source.fps or 25.0
            passes: list[VehiclePass] = []
            try:
                while (frame := source.read()) is not None:
                    frame_of[frame.captured_at] = frame.index
                    passes += processor.process(frame, frame.index / fps)
            finally:
                source.close()
            passes += processor.flush()
            for vp in passes:
                first, last = frame_of[vp.first_seen], frame_of[vp.last_seen]
                overlapping = [
                    t for t in truth if t.first_frame <= last and first <= t.last_frame
                ] or truth
                best = min(overlapping, key=lambda t: _edit(t.text, vp.text))
                # A read far from every plate in view is a sign or a fragment: no plate.
                label = best.text if _edit(best.text, vp.text) <= len(best.text) // 2 else ""
                frames = tuple(
                    r
                    for at, rs in seen.items()
                    if first <= frame_of[at] <= last
                    for r in rs
                    if _edit(r.text, vp.text) <= max(2, len(vp.text) // 3)
                )
                out.append(LabelledPass(label, vp, frames))
            print(f"clip {k}: {len(truth)} vehicles, {len(passes)} reads", file=sys.stderr)
    return out


def measure(
    passes: list[LabelledPass], entries: dict[str, str], settings: Settings
) -> dict[str, Any]:
    camera = settings.cameras[0]
    with tempfile.TemporaryDirectory(prefix="alpr-hotlist-") as tmp:
        keeper = HotListKeeper(settings.hotlist, Path(tmp))
        body = {
            "version": "measure",
            "entries": [{"plate": p, "reason": c, "priority": "high"} for p, c in entries.items()],
        }
        if not keeper.apply("fleet", canonical_json(body)):
            raise SystemExit("the generated hot list was rejected (see the log line)")
        store = ReadStore(Path(tmp) / "reads.db")
        outbox = AlertOutbox(store)
        alerter = Alerter(settings, keeper, outbox)
        counts: Counter[str] = Counter()
        listed = {p for p, c in entries.items() if c == "true_plate"}
        wildcard = {p for p, c in entries.items() if c == "true_wildcard"}
        early_frames: list[int] = []
        false_alerts: list[dict[str, Any]] = []
        for n, lp in enumerate(passes):
            start = n * 100.0  # far apart: every labelled pass is its own pass
            at = T0 + timedelta(seconds=start)
            for i, frame in enumerate(lp.frames):
                obs = PlateObservation(
                    i,
                    at + timedelta(seconds=0.04 * i),
                    start + 0.04 * i,
                    Detection((0, 0, 100, 30), 1.0),
                    frame,
                )
                if alerter.check_frame(camera, [obs]):
                    early_frames.append(i + 1)
            end = at + timedelta(seconds=0.04 * max(len(lp.frames), 1))
            vp = replace(lp.vehicle_pass, first_seen=at, last_seen=end, best_seen=at)
            event = build_read_event(vp, device_id="measure", camera=camera)
            alerter.check_pass(camera, vp, event, alerter.match_pass(vp))
            raised = outbox.pending(1000)
            outbox.mark_published_many([a.alert_id for a in raised])
            details = [json.loads(a.payload) for a in raised]
            alerted = [d["entry"]["pattern"] for d in details]
            counts["duplicate_alerts"] += len(alerted) - len(set(alerted))
            for pattern in set(alerted):
                category = entries.get(pattern, "?")
                true = pattern == lp.truth or (
                    category == "true_wildcard" and _fits(pattern, lp.truth)
                )
                counts["true_alerts" if true else f"false_alerts.{category}"] += 1
                if not true:
                    d = next(d for d in details if d["entry"]["pattern"] == pattern)
                    false_alerts.append(
                        {
                            "truth": lp.truth,
                            "read": vp.text,
                            "entry": pattern,
                            "category": category,
                            "stage": d["stage"],
                            "kind": d["match"]["kind"],
                            "score": d["match"]["score"],
                            "differences": d["match"]["differences"],
                        }
                    )
            if lp.truth in listed or any(_fits(w, lp.truth) for w in wildcard):
                counts["passes_on_list"] += 1
                got = any(
                    p == lp.truth or (entries.get(p) == "true_wildcard" and _fits(p, lp.truth))
                    for p in alerted
                )
                counts["passes_alerted" if got else "missed_alerts"] += 1
            counts["reads_exact"] += int(vp.text == lp.truth)
        store.close()
    counts["reads"] = len(passes)
    counts["false_alerts"] = sum(v for k, v in counts.items() if k.startswith("false_alerts."))
    return {
        "entries": dict(Counter(entries.values())),
        "counts": dict(sorted(counts.items())),
        "false_alert_details": false_alerts,
        "early_alert_frame_median": sorted(early_frames)[len(early_frames) // 2]
        if early_frames
        else None,
    }


def _fits(pattern: str, text: str) -> bool:
    return bool(pattern_regex(pattern).match(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=Path, help="labelled reads saved by --save-reads")
    parser.add_argument("--clips", type=int, default=2, help="clips to render and read")
    parser.add_argument("--vehicles", type=int, default=8, help="vehicles per clip")
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--unrelated", type=int, default=1000, help="random plates listed")
    parser.add_argument("--save-reads", type=Path, help="write the labelled reads here")
    parser.add_argument("--fuzzy-min-score", type=float, default=None)
    args = parser.parse_args()
    camera = CameraSettings(id="measure", source="file:///measure.mp4")
    hotlist: dict[str, Any] = {}
    if args.fuzzy_min_score is not None:
        hotlist["fuzzy_min_score"] = args.fuzzy_min_score
    settings = Settings(device_id="measure", cameras=[camera], hotlist=hotlist)
    passes = (
        load_reads(args.reads) if args.reads else run_clips(args.clips, args.vehicles, args.seed)
    )
    if args.save_reads:
        save_reads(args.save_reads, passes, camera)
    entries = build_hotlist([p.truth for p in passes], args.unrelated, args.seed)
    result = measure(passes, entries, settings)
    result["fuzzy_min_score"] = settings.hotlist.fuzzy_min_score
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
