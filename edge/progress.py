"""A one-line progress bar on stderr for long CLI runs, shown only to a person at a terminal.

When stderr is a pipe or a file (CI, ``2> log``) nothing at all is written, so logs and
machine-read output stay clean.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

BAR_WIDTH = 30
REDRAW_INTERVAL_S = 0.1


class Progress:
    """``with Progress(total, "images") as bar: ... bar.advance()``."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(total, 0)
        self.label = label
        self.done = 0
        self._stream = sys.stderr if stream is None else stream
        self._enabled = _is_tty(self._stream)
        self._last_draw = 0.0

    def __enter__(self) -> Progress:
        self._draw()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._enabled:
            self._draw(force=True)
            self._stream.write("\n")
            self._stream.flush()

    def advance(self, count: int = 1) -> None:
        self.done = min(self.done + count, self.total) if self.total else self.done + count
        self._draw()

    def _draw(self, *, force: bool = False) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if not force and self.done < self.total and now - self._last_draw < REDRAW_INTERVAL_S:
            return
        self._last_draw = now
        self._stream.write(f"\r{self._line()}")
        self._stream.flush()

    def _line(self) -> str:
        if not self.total:
            return f"{self.label} {self.done}"
        filled = BAR_WIDTH * self.done // self.total
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        return f"{self.label} [{bar}] {self.done}/{self.total}"


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or stand-in stream
        return False
