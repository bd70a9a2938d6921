"""Files as a provisioned device needs them.

Every file is written atomically (temporary file, fsync, ``os.replace``, fsync of the
directory) with its final mode and owner already set, so a power cut during first boot leaves
either the old file or the whole new one, and a key is never readable by others even for a
moment. A file whose content, mode and owner are already right is left alone: running a step
again changes nothing.

Paths inside the config are device paths (``/etc/alpr-edge/...``); ``DeviceRoot`` maps them
under a root directory, ``/`` on a device, a tree in tests and image builds.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from edge.errors import EX_IOERR, ConfigError, EdgeError

SERVICE_USER = "alpr-edge"


class WriteError(EdgeError):
    """A file or directory of the device could not be written."""

    exit_code = EX_IOERR


@dataclass(frozen=True, slots=True)
class Owner:
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class DeviceRoot:
    """The directory that stands for ``/`` of the device being provisioned."""

    path: Path

    @property
    def is_live(self) -> bool:
        """True on the device itself (root ``/``): systemd may be asked to act."""
        return self.path.resolve() == Path("/")

    def at(self, device_path: Path, what: str) -> Path:
        if not device_path.is_absolute():
            raise ConfigError(f"{what}: {device_path} must be an absolute path for provisioning")
        return self.path / device_path.relative_to("/")

    def service_owner(self) -> Owner | None:
        """The daemon's user and group in this root's account database, when this process
        may hand files to it (root only; elsewhere files stay the caller's)."""
        if os.geteuid() != 0:
            return None
        uid = _account_id(self.path / "etc/passwd", SERVICE_USER)
        gid = _account_id(self.path / "etc/group", SERVICE_USER)
        if uid is None or gid is None:
            return None
        return Owner(uid, gid)


def _account_id(database: Path, name: str) -> int | None:
    try:
        lines = database.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) > 2 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    return None


def write_atomic(path: Path, data: bytes, mode: int, owner: Owner | None = None) -> bool:
    """Make ``path`` hold ``data`` with ``mode`` (and ``owner``); False when it already did."""
    if _already(path, data, mode, owner):
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            if owner is not None:
                os.fchown(fd, owner.uid, owner.gid)
            os.fchmod(fd, mode)  # after the chown, which may clear set-id bits
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise WriteError(f"{path}: cannot write: {exc.strerror}") from None
    return True


def _already(path: Path, data: bytes, mode: int, owner: Owner | None) -> bool:
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != mode:
            return False
        if owner is not None and (st.st_uid, st.st_gid) != (owner.uid, owner.gid):
            return False
        return path.read_bytes() == data
    except OSError:
        return False


def fix_owner_and_mode(path: Path, mode: int, owner: Owner | None) -> bool:
    """Set mode and owner of an existing file; False when both were right already."""
    st = path.lstat()
    changed = False
    if owner is not None and (st.st_uid, st.st_gid) != (owner.uid, owner.gid):
        os.chown(path, owner.uid, owner.gid)
        changed = True
    if changed or stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
        changed = True
    return changed


def ensure_dir(path: Path, mode: int, owner: Owner | None = None) -> None:
    """Create ``path`` (and parents) when missing; an existing directory is left as it is
    (scripts/install.sh owns modes of the directories it makes)."""
    if path.is_dir():
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            os.chown(path, owner.uid, owner.gid)
        os.chmod(path, mode)
    except OSError as exc:
        raise WriteError(f"{path}: cannot create: {exc.strerror}") from None


def remove_tree(path: Path, *, wipe: tuple[str, ...] = ()) -> None:
    """Remove a directory; the files named in ``wipe`` are overwritten with zeros first (best
    effort: flash storage may keep old blocks, which is why private keys should not travel)."""
    for name in wipe:
        target = path / name
        with contextlib.suppress(OSError):
            size = target.stat().st_size
            with target.open("r+b") as fh:
                fh.write(b"\0" * size)
                fh.flush()
                os.fsync(fh.fileno())
    try:
        shutil.rmtree(path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise WriteError(f"{path}: cannot remove: {exc.strerror}") from None


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (some file systems, e.g. FAT, do not support it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)
