"""Errors the CLI turns into one clear line and a distinct exit code (sysexits.h)."""

from __future__ import annotations

EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_CONFIG = 78


class EdgeError(Exception):
    """An error with a message meant for the operator and an exit code."""

    exit_code = EX_SOFTWARE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(EdgeError):
    """A command-line argument that does not fit the command."""

    exit_code = EX_USAGE


class ConfigError(EdgeError):
    exit_code = EX_CONFIG


class ModelError(EdgeError):
    """A model file is missing, corrupt, of the wrong shape or fails its manifest check."""

    exit_code = EX_DATAERR


class CameraError(EdgeError):
    exit_code = EX_NOINPUT


class BrokerError(EdgeError):
    exit_code = EX_UNAVAILABLE


class InputError(EdgeError):
    """A bad image, label file or other user-supplied input."""

    exit_code = EX_DATAERR
