"""Per-device Ed25519 keys: every read leaves the pole signed, so the backend can prove
that it came from this device and was not changed on the way.

The key is made on first start (``device-signing.key`` in the storage directory, PEM
PKCS#8, mode 0600) unless ``signing_key_file`` names one, e.g. a systemd credential.
What exactly is signed is defined in ``edge.events.sign_payload`` and ``docs/events.md``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.config import Settings, credential_path
from edge.errors import ConfigError
from edge.events import SIGNATURE_KEY, signing_input
from edge.keyfiles import create_key_file, read_key_file

log = logging.getLogger(__name__)

DEFAULT_KEY_NAME = "device-signing.key"


@dataclass(frozen=True, slots=True)
class EventSigner:
    """Signs bytes with the device key. Ed25519 is deterministic: the same bytes always get
    the same signature, so a re-sent read is byte-identical to the first copy."""

    private_key: Ed25519PrivateKey = field(repr=False)

    def sign(self, data: bytes) -> str:
        """Base64 (standard alphabet, padded) of the 64-byte signature."""
        return base64.b64encode(self.private_key.sign(data)).decode("ascii")

    def public_key_pem(self) -> str:
        return public_key_pem(self.private_key.public_key())


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key(pem: bytes | str) -> Ed25519PublicKey:
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise TypeError("not an Ed25519 public key")
    return key


def verify_signature(public_key: Ed25519PublicKey, data: bytes, signature_b64: str) -> bool:
    try:
        public_key.verify(base64.b64decode(signature_b64, validate=True), data)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def verify_read(public_key: Ed25519PublicKey, wire: bytes) -> bool:
    """True when a received read's ``signature`` matches the rest of it under this key."""
    try:
        payload = json.loads(wire)
    except ValueError:
        return False
    signature = payload.get(SIGNATURE_KEY) if isinstance(payload, dict) else None
    if not isinstance(signature, str):
        return False
    return verify_signature(public_key, signing_input(payload), signature)


def signing_key_path(settings: Settings) -> Path:
    if settings.signing_key_file is not None:
        return credential_path(settings.signing_key_file)
    return settings.storage.dir / DEFAULT_KEY_NAME


def load_signer(settings: Settings) -> EventSigner:
    """The device's signer. A key named by ``signing_key_file`` must exist (it is provided,
    never made here); the default one is made on first start."""
    path = signing_key_path(settings)
    if settings.signing_key_file is None and not path.exists():
        _create_key(path)
    return EventSigner(_load_key(path))


def _load_key(path: Path) -> Ed25519PrivateKey:
    where = f"signing key {path}"
    data = read_key_file(path, where, "signing_key_file")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        # Never replaced here: the backend knows this device by the key's public half.
        raise ConfigError(f"{where}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{where}: not an Ed25519 key")
    return key


def _create_key(path: Path) -> None:
    """Write a new key atomically with mode 0600: a crash leaves either no key or a whole one."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    create_key_file(path, pem, f"signing key {path}")
    log.info("made a new device signing key in %s", path)
