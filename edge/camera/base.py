"""What every camera source offers, and helpers the backends share."""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl

from edge.errors import CameraError
from edge.types import Frame

# Userinfo in any URL, also inside a GStreamer pipeline ("location=rtsp://u:p@host/...").
# Greedy up to the last "@" before whitespace, so a password holding an unescaped "@", "/"
# or quote is still hidden; over-redacting a path is harmless in a log line.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^\s@]*(?:@[^\s@]*)*@")
# Some cameras take credentials as query parameters instead.
_SECRET_PARAM = re.compile(
    r"(?P<key>[?&;](?:user|username|password|passwd|pass|pwd|token|auth|key)=)[^&;\s\"']*",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """``url`` (or a pipeline holding URLs) with user names, passwords and tokens masked."""
    redacted = _USERINFO.sub(r"\g<scheme>***@", url)
    return _SECRET_PARAM.sub(r"\g<key>***", redacted)


@runtime_checkable
class FrameSource(Protocol):
    """One camera or clip. Not thread-safe: one thread opens, reads and closes it."""

    @property
    def fps(self) -> float | None:
        """Frame rate the source reports; None before open() or when it does not say."""

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of delivered frames; None before open()."""

    @property
    def is_live(self) -> bool:
        """A camera (worth reopening when it drops), as opposed to a clip that ends."""

    @property
    def description(self) -> str:
        """Camera id and source, credentials stripped: safe for logs and errors."""

    def open(self) -> None:
        """Connect; a no-op when open. CameraError says what failed and how to fix it."""

    def read(self) -> Frame | None:
        """The next frame. None at the end of a clip; CameraError when a live camera drops."""

    def close(self) -> None:
        """Release the device or stream. Safe to call twice or before open()."""


class SourceBase:
    """The FrameSource properties every backend keeps alike; subclasses set the attributes."""

    _camera_id: str
    _fps: float | None
    _size: tuple[int, int] | None

    @property
    def fps(self) -> float | None:
        return self._fps

    @property
    def size(self) -> tuple[int, int] | None:
        return self._size

    @property
    def description(self) -> str:
        return f"camera {self._camera_id} ({self._label()})"

    def _label(self) -> str:
        """What the source is, credentials stripped: the part of description after the id."""
        raise NotImplementedError


def parse_options(
    query: str, allowed: dict[str, type[int] | type[float] | type[str]], where: str
) -> dict[str, int | float | str]:
    """Parse ``width=1920&fps=30`` style source options; unknown or bad ones are errors."""
    options: dict[str, int | float | str] = {}
    for key, raw in parse_qsl(query, keep_blank_values=True):
        kind = allowed.get(key)
        if kind is None:
            known = ", ".join(sorted(allowed)) or "none"
            raise CameraError(f"{where}: unknown source option {key!r} (known: {known})")
        try:
            options[key] = kind(raw)
        except ValueError:
            raise CameraError(
                f"{where}: source option {key}={raw!r} is not {kind.__name__}"
            ) from None
    return options
