"""Secret key files the daemon reads, or makes on first start: mode 0600, written atomically.

Where a configured key file lives (a systemd credential under ``$CREDENTIALS_DIRECTORY``)
is ``edge.config.credential_path``'s business; this module reads and writes the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from edge.errors import ConfigError

log = logging.getLogger(__name__)


def read_key_file(path: Path, where: str, setting: str) -> bytes:
    """The file's bytes; a warning when other users may read it. ``where`` names the key in
    messages, ``setting`` the config key that names a missing file."""
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file ({setting})") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by other users (mode %o); chmod 600 it", where, mode & 0o777)
    return data


def create_key_file(path: Path, data: bytes, where: str) -> None:
    """Write a new key atomically with mode 0600, directory entry synced: a power cut leaves
    either no key or a whole one, never data encrypted or signed with a key that is gone."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ConfigError(f"{where}: cannot create: {exc.strerror}") from None
