"""Config reload on SIGHUP: which changed settings apply live, and which need a restart.

Live: the hot-list file, the detector threshold, the tracking thresholds, the motion
threshold, the status (heartbeat) interval and the log level. The daemon builds the settings
in force (the running ones with the new live values) as one object and swaps it in; each
pipeline thread takes it at its next frame boundary. Any other change is named, one log
line per key, as needing a restart; an invalid file changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from edge.config import Settings

LIVE_KEYS = (
    "hotlist.file",
    "models.detector_threshold",
    "motion.threshold",
    "mqtt.status_interval_s",
    "log_level",
)
LIVE_TABLES = ("tracking.",)
"""Every key of these tables is live: the tracker reads its settings at each frame."""
_ABSENT = object()


@dataclass(frozen=True, slots=True)
class Change:
    key: str
    old: object
    new: object


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    settings: Settings
    """The settings to run with: the running ones with the live changes applied."""
    applied: tuple[Change, ...]
    restart_needed: tuple[str, ...]
    """Changed keys that only a restart applies (values not given: they may be secrets)."""


def plan_reload(running: Settings, new: Settings) -> ReloadPlan:
    before, after = _flatten(running), _flatten(new)
    applied: list[Change] = []
    restart: list[str] = []
    for key in sorted(before.keys() | after.keys(), key=_natural):
        old, value = before.get(key, _ABSENT), after.get(key, _ABSENT)
        if old == value:
            continue
        if key in LIVE_KEYS or key.startswith(LIVE_TABLES):
            applied.append(Change(key, old, value))
            continue
        name = _camera_entry(key, running, new) or key
        if name not in restart:
            restart.append(name)
    settings = running
    if applied:
        settings = running.model_copy(
            update={
                "log_level": new.log_level,
                "hotlist": running.hotlist.model_copy(update={"file": new.hotlist.file}),
                "models": running.models.model_copy(
                    update={"detector_threshold": new.models.detector_threshold}
                ),
                "tracking": new.tracking,
                "motion": running.motion.model_copy(update={"threshold": new.motion.threshold}),
                "mqtt": running.mqtt.model_copy(
                    update={"status_interval_s": new.mqtt.status_interval_s}
                ),
            }
        )
    return ReloadPlan(settings, tuple(applied), tuple(restart))


def describe(change: Change) -> str:
    return f"{change.key} {_value(change.old)} -> {_value(change.new)}"


def _value(value: object) -> str:
    return "(unset)" if value is _ABSENT or value is None else str(value)


def _flatten(model: BaseModel, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            flat.update(_flatten(value, f"{key}."))
        elif isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
            for index, item in enumerate(value):
                flat.update(_flatten(item, f"{key}.{index}."))
        else:
            flat[key] = value
    return flat


def _camera_entry(key: str, running: Settings, new: Settings) -> str | None:
    """A camera added or removed is one change (``cameras.2``), not one per key."""
    parts = key.split(".")
    if parts[0] != "cameras" or len(parts) < 3:
        return None
    index = int(parts[1])
    if index < min(len(running.cameras), len(new.cameras)):
        return None
    return f"cameras.{index}"


def _natural(key: str) -> tuple[tuple[int, str], ...]:
    return tuple((int(p), "") if p.isdigit() else (0, p) for p in key.split("."))
