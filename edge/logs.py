"""Log lines: JSON objects for journald, the human format on a terminal.

Under systemd stderr is the journal, so ``log_format = "auto"`` (the default) writes one JSON
object per line (``time``, ``level``, ``logger``, ``message`` and any ``extra=`` fields such
as ``camera_id`` and ``seq``) whenever stderr is not a terminal, and the usual one-line text
on a terminal. When stderr is the journal's stream (``$JOURNAL_STREAM``), each line starts
with its syslog priority (``<4>``), which journald strips and keeps as the entry's priority,
so ``journalctl -p warning`` works.

What is never logged: secrets (passwords, keys, credentials in camera URLs; see
``edge.camera.base.redact_url``) and, above DEBUG, plate text.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

LogFormat = Literal["auto", "json", "text"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_STANDARD = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)
_OURS = "_alpr_edge_handler"
_SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``extra=`` fields become keys of their own."""

    def __init__(self, *, priority_prefix: bool = False) -> None:
        super().__init__()
        self._prefix = priority_prefix

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        line = json.dumps(entry, ensure_ascii=False)
        if not self._prefix:
            return line
        level = max((lv for lv in _SYSLOG_PRIORITY if lv <= record.levelno), default=10)
        return f"<{_SYSLOG_PRIORITY.get(level, 7)}>{line}"


def setup_logging(level: str, fmt: LogFormat = "auto", stream: TextIO | None = None) -> None:
    """Configure the root logger for the process, replacing a handler set here before. Like
    ``logging.basicConfig``, it leaves a root logger that others configured alone (pytest's
    capture, an embedding program)."""
    root = logging.getLogger()
    if any(not getattr(h, _OURS, False) for h in root.handlers):
        return
    out = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(out)
    setattr(handler, _OURS, True)
    if _wants_json(fmt, out):
        handler.setFormatter(JsonFormatter(priority_prefix=_is_journal(out)))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(getattr(logging, level.upper(), logging.INFO))


def _wants_json(fmt: LogFormat, stream: TextIO) -> bool:
    if fmt != "auto":
        return fmt == "json"
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):
        return True


def _is_journal(stream: TextIO) -> bool:
    """stderr is journald's stream: ``$JOURNAL_STREAM`` names its device and inode."""
    expected = os.environ.get("JOURNAL_STREAM")
    if not expected:
        return False
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"
