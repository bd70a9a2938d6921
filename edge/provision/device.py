"""Provisioning the device this runs on (``alpr-edge provision``), and installing its signed
certificate (``alpr-edge provision --install-cert``).

Keys are made here, on the device, and never leave it: what goes to the backend is the CSR
(for the agency's CA) and the public half of the event-signing key. Keys that exist already
are kept, whatever else is redone: the backend knows the device by them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from edge.config import Settings, load_settings
from edge.errors import ConfigError, InputError
from edge.provision import pki
from edge.provision.files import DeviceRoot, Owner, ensure_dir, fix_owner_and_mode, write_atomic
from edge.provision.template import CSR_FILE, DeviceSpec, render_config
from edge.signing import load_signer, signing_key_path

log = logging.getLogger(__name__)

KEY_MODE = 0o600
CONFIG_MODE = 0o640
PUBLIC_MODE = 0o644
STATE_MODE = 0o700


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What the backend needs from a provisioned device."""

    device_id: str
    csr_pem: bytes
    signing_public_pem: str
    created: tuple[Path, ...] = field(default=())
    """Key files made by this run (empty when both keys existed already)."""


@dataclass(frozen=True, slots=True)
class DevicePaths:
    """The device files named by a config, mapped under a root."""

    config: Path
    ca: Path
    cert: Path
    key: Path
    csr: Path
    signing_key: Path
    state_dir: Path

    @classmethod
    def of(cls, settings: Settings, root: DeviceRoot, config: Path) -> DevicePaths:
        ca, cert, key = _tls_files(settings)
        return cls(
            config=config,
            ca=root.at(ca, "mqtt.tls.ca_file"),
            cert=root.at(cert, "mqtt.tls.cert_file"),
            key=root.at(key, "mqtt.tls.key_file"),
            csr=root.at(CSR_FILE, "device.csr"),
            signing_key=root.at(signing_key_path(settings), "signing_key_file"),
            state_dir=root.at(settings.storage.dir, "storage.dir"),
        )


def _tls_files(settings: Settings) -> tuple[Path, Path, Path]:
    tls = settings.mqtt.tls
    if tls is None or tls.ca_file is None or tls.cert_file is None or tls.key_file is None:
        raise ConfigError(
            "mqtt.tls: ca_file, cert_file and key_file are needed for a provisioned device"
        )
    return tls.ca_file, tls.cert_file, tls.key_file


def load_device_settings(config: Path) -> Settings:
    return load_settings(config)


def provision_device(
    spec: DeviceSpec,
    ca_file: Path,
    template: str,
    root: DeviceRoot,
    config: Path,
    *,
    force: bool = False,
) -> DeviceIdentity:
    """Write the config and the CA certificate, make the keys that are missing and the CSR."""
    cas_pem = _ca_pem(ca_file)
    text = render_config(template, spec)
    _refuse_other_device(config, spec.device_id, template, force)
    owner = root.service_owner()
    write_atomic(config, text.encode("utf-8"), CONFIG_MODE, group_only(owner))
    settings = load_device_settings(config)
    paths = DevicePaths.of(settings, root, config)
    write_atomic(paths.ca, cas_pem, PUBLIC_MODE)
    return ensure_identity(settings, paths, owner)


def _ca_pem(ca_file: Path) -> bytes:
    pki.load_ca_certificates(ca_file)
    return ca_file.read_bytes()


def _refuse_other_device(config: Path, device_id: str, template: str, force: bool) -> None:
    """A config that is not the untouched example and names another device is another pole's
    identity: replacing it needs --force."""
    if force or not config.is_file():
        return
    existing = config.read_text(encoding="utf-8", errors="replace")
    if existing == template:
        return
    try:
        other = load_settings(config).device_id
    except ConfigError:
        other = "(unreadable)"
    if other != device_id:
        raise ConfigError(
            f"{config} is the config of device {other}; give --force to replace it with {device_id}"
        )


def group_only(owner: Owner | None) -> Owner | None:
    """Config files: root's, readable by the daemon's group (as scripts/install.sh does)."""
    return None if owner is None else Owner(0, owner.gid)


def ensure_identity(
    settings: Settings,
    paths: DevicePaths,
    owner: Owner | None,
    *,
    given_tls_key: bytes | None = None,
    given_signing_key: bytes | None = None,
) -> DeviceIdentity:
    """Make (or, from a central-keys bundle, install) the keys that are missing, hand them
    to the daemon's user with mode 0600, and write the CSR (the one already there when it
    still fits the key, so that running again changes nothing)."""
    ensure_dir(paths.state_dir, STATE_MODE, owner)
    created: list[Path] = []
    if _install_key(paths.key, given_tls_key, owner):
        created.append(paths.key)
    elif not paths.key.exists():
        write_atomic(paths.key, pki.private_key_pem(pki.new_tls_key()), KEY_MODE, owner)
        created.append(paths.key)
    if _install_key(paths.signing_key, given_signing_key, owner):
        created.append(paths.signing_key)
    elif not paths.signing_key.exists():
        created.append(paths.signing_key)  # load_signer makes it
    key = pki.load_private_key(paths.key)
    fix_owner_and_mode(paths.key, KEY_MODE, owner)
    signer = load_signer(_signer_settings(settings, paths))
    fix_owner_and_mode(paths.signing_key, KEY_MODE, owner)
    csr = _ensure_csr(paths.csr, key, settings.device_id)
    return DeviceIdentity(settings.device_id, csr, signer.public_key_pem(), tuple(created))


def _install_key(path: Path, pem: bytes | None, owner: Owner | None) -> bool:
    """Put a centrally made key in place; a different key already there is never replaced."""
    if pem is None:
        return False
    if path.exists():
        if path.read_bytes() != pem:
            raise InputError(
                f"{path}: this device already has a different key; the bundle's would "
                "replace the identity the backend knows (remove the key by hand to re-key)"
            )
        return False
    return write_atomic(path, pem, KEY_MODE, owner)


def _signer_settings(settings: Settings, paths: DevicePaths) -> Settings:
    """The settings with the signing key's path under the root: load_signer then reads it,
    or makes it (0600, atomically) where the daemon will look for it."""
    storage = settings.storage.model_copy(update={"dir": paths.signing_key.parent})
    update: dict[str, object] = {"storage": storage}
    if settings.signing_key_file is not None:
        update["signing_key_file"] = paths.signing_key
    return settings.model_copy(update=update)


def _ensure_csr(path: Path, key: PrivateKeyTypes, device_id: str) -> bytes:
    if path.is_file() and pki.csr_fits(path.read_bytes(), key, device_id):
        return path.read_bytes()
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InputError(f"TLS key for {device_id}: an EC key is expected (P-256)")
    pem = pki.csr_pem(pki.make_csr(key, device_id))
    write_atomic(path, pem, PUBLIC_MODE)
    return pem


def install_certificate(cert_file: Path, root: DeviceRoot, config: Path) -> pki.CheckedCertificate:
    """Check a signed certificate against this device's key, its id and the configured CA;
    install it (mode 0644) only when every check passes."""
    settings = load_device_settings(config)
    paths = DevicePaths.of(settings, root, config)
    checked = check_certificate(cert_file, settings, paths)
    write_atomic(paths.cert, checked.pem, PUBLIC_MODE)
    return checked


def check_certificate(
    cert_file: Path, settings: Settings, paths: DevicePaths
) -> pki.CheckedCertificate:
    key = pki.load_private_key(paths.key)
    cas = pki.load_ca_certificates(paths.ca)
    return pki.check_device_certificate(cert_file, key, cas, settings.device_id)
