"""Encryption at rest of what identifies a vehicle: plate text, read payloads and crops.

Each value is sealed with AES-256-GCM (``cryptography``) under a 96-bit random nonce, with the
row's id and the column name as associated data, so a sealed value moved to another row or
column no longer opens. A stolen SD card then shows times, camera ids and sequence numbers,
never a plate. An exact plate search needs no decryption: ``plate_index`` is an HMAC-SHA256
of the plate text under a key derived from the same key (a "blind index"), useless without it.

The key is 32 random bytes, base64, read from ``storage.encryption_key_file`` (a systemd
credential, ideally ``LoadCredentialEncrypted=`` bound to the TPM) or made on first start as
``storage.dir/storage.key`` (mode 0600). Destroying the key is the real erase: flash wear
levelling can keep old copies of overwritten pages, but without the key they are noise.
The key never reaches a log line or a message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edge.config import Settings, credential_path
from edge.errors import ConfigError
from edge.keyfiles import create_key_file, read_key_file

log = logging.getLogger(__name__)

DEFAULT_KEY_NAME = "storage.key"
TEXT_PREFIX = "enc1:"
BYTES_PREFIX = b"enc1\x00"
NONCE_BYTES = 12
KEY_BYTES = 32


class SealError(ValueError):
    """A sealed value that does not open with this key (another key, or tampered)."""


@dataclass(frozen=True, slots=True)
class StorageCipher:
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise ValueError(f"storage key must be {KEY_BYTES} bytes")

    def _aead(self) -> AESGCM:
        return AESGCM(_derive(self.key, b"alpr-edge storage v1 aead"))

    def seal_bytes(self, value: bytes, context: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return BYTES_PREFIX + nonce + self._aead().encrypt(nonce, value, context.encode())

    def open_bytes(self, value: bytes, context: str) -> bytes:
        """A sealed value opened; an unsealed one (written before encryption) as it is."""
        if not value.startswith(BYTES_PREFIX):
            return value
        body = value[len(BYTES_PREFIX) :]
        try:
            return self._aead().decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], context.encode())
        except InvalidTag:
            raise SealError(f"{context}: does not open with this storage key") from None

    def seal_text(self, value: str, context: str) -> str:
        sealed = self.seal_bytes(value.encode("utf-8"), context)[len(BYTES_PREFIX) :]
        return TEXT_PREFIX + base64.b64encode(sealed).decode("ascii")

    def open_text(self, value: str, context: str) -> str:
        if not value.startswith(TEXT_PREFIX):
            return value
        try:
            body = base64.b64decode(value[len(TEXT_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise SealError(f"{context}: damaged sealed value") from None
        return self.open_bytes(BYTES_PREFIX + body, context).decode("utf-8")

    def blind_index(self, plate: str) -> str:
        mac_key = _derive(self.key, b"alpr-edge storage v1 plate index")
        return hmac.new(mac_key, plate.encode("utf-8"), hashlib.sha256).hexdigest()


def _derive(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


def storage_key_path(settings: Settings) -> Path:
    if settings.storage.encryption_key_file is not None:
        return credential_path(settings.storage.encryption_key_file)
    return settings.storage.dir / DEFAULT_KEY_NAME


def load_cipher(settings: Settings) -> StorageCipher | None:
    """The storage cipher, or None when ``storage.encrypt`` is off. A key named in the config
    must exist; the default one is made on first start."""
    if not settings.storage.encrypt:
        return None
    path = storage_key_path(settings)
    if settings.storage.encryption_key_file is None and not path.exists():
        _create_key(path)
    where = f"storage key {path}"
    text = read_key_file(path, where, "storage.encryption_key_file")
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{where}: must hold {KEY_BYTES} random bytes, base64-encoded")
    return StorageCipher(key)


def _create_key(path: Path) -> None:
    data = base64.b64encode(os.urandom(KEY_BYTES)) + b"\n"
    create_key_file(path, data, f"storage key {path}")
    log.info("made a new storage encryption key in %s", path)
