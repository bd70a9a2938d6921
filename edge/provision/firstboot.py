"""First boot of a flashed device (``alpr-edge firstboot``, run by
``alpr-edge-firstboot.service`` while ``/boot/firmware/alpr-edge`` exists).

The technician copies the device's bundle (``alpr-edge provision --batch``) to the boot
partition as ``alpr-edge/``. This step checks it against its manifest, installs the config
and the CA certificate, makes the device's keys (or installs centrally made ones) and then:

* with a signed certificate (``alpr-edge/device.crt``, checked against the key, the device id
  and the CA): installs it, enables and starts ``alpr-edge.service``;
* without one: leaves the CSR and the signing key's public half in ``alpr-edge-request/`` on
  the boot partition for the technician, and keeps the service off until a certificate is
  copied to ``alpr-edge/device.crt`` and the device boots again.

Either way the bundle is removed once applied. Every step leaves alone what is already right,
so running it again changes nothing; a failure leaves the bundle in place and writes the
reason to ``alpr-edge-request/error.txt`` (readable from any laptop).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from edge.errors import EdgeError, InputError
from edge.provision import batch, device
from edge.provision.files import (
    DeviceRoot,
    WriteError,
    fsync_dir,
    remove_tree,
    write_atomic,
)
from edge.provision.template import CONFIG_FILE

log = logging.getLogger(__name__)

BOOT_BUNDLE = Path("/boot/firmware/alpr-edge")
UNIT = "alpr-edge.service"
UNIT_FILE = Path("/etc/systemd/system") / UNIT
WANTS = Path("/etc/systemd/system/multi-user.target.wants") / UNIT
"""What ``systemctl enable`` makes for the unit's ``WantedBy=multi-user.target``."""
REQUEST_README = """\
Device {device_id} has made its own keys; its private keys never leave it.

1. Have the agency's CA sign device.csr (common name {device_id}, for TLS client
   authentication). Give device-signing.pub.pem to the backend: it verifies this pole's reads.
2. Copy the signed certificate (PEM; intermediates after it) to this partition as
   alpr-edge/device.crt (make the alpr-edge folder).
3. Put the card back and power on: the device checks the certificate, installs it and starts
   alpr-edge. This folder is removed then.
"""


class Outcome(StrEnum):
    NOTHING_TO_DO = "nothing to do"
    WAITING_FOR_CERTIFICATE = "waiting for a certificate"
    PROVISIONED = "provisioned"


@dataclass(frozen=True, slots=True)
class FirstbootResult:
    outcome: Outcome
    device_id: str | None
    notes: tuple[str, ...]


def request_dir_for(bundle_dir: Path) -> Path:
    return bundle_dir.with_name(f"{bundle_dir.name}-request")


def run_firstboot(root: DeviceRoot, bundle_dir: Path) -> FirstbootResult:
    """Apply the bundle in ``bundle_dir`` to the device under ``root``; on failure write the
    reason beside it for the technician and raise."""
    request_dir = request_dir_for(bundle_dir)
    try:
        result = _apply(root, bundle_dir, request_dir)
    except EdgeError as exc:
        _leave_error(request_dir, exc.message)
        raise
    (request_dir / "error.txt").unlink(missing_ok=True)
    return result


def _apply(root: DeviceRoot, bundle_dir: Path, request_dir: Path) -> FirstbootResult:
    config = root.at(CONFIG_FILE, "config")
    if not bundle_dir.is_dir():
        return FirstbootResult(Outcome.NOTHING_TO_DO, None, (f"no bundle in {bundle_dir}",))
    notes: list[str] = []
    owner = root.service_owner()
    manifest = bundle_dir / batch.MANIFEST
    files: dict[str, bytes] = {}
    if manifest.exists():
        files = _verified_files(bundle_dir, manifest)
        bundle_settings = device.load_device_settings(bundle_dir / batch.CONFIG)
        _refuse_other_device(root, config, bundle_settings.device_id)
        write_atomic(config, files[batch.CONFIG], device.CONFIG_MODE, device.group_only(owner))
        notes.append(f"config installed in {CONFIG_FILE}")
    elif not config.is_file():
        raise InputError(f"{bundle_dir}: no {batch.MANIFEST} and no config on this device")
    settings = device.load_device_settings(config)
    paths = device.DevicePaths.of(settings, root, config)
    if batch.CA in files:
        write_atomic(paths.ca, files[batch.CA], device.PUBLIC_MODE)
    identity = device.ensure_identity(
        settings,
        paths,
        owner,
        given_tls_key=files.get(batch.TLS_KEY),
        given_signing_key=files.get(batch.SIGNING_KEY),
    )
    notes += [f"made {path.name}" for path in identity.created]

    offered = bundle_dir / batch.CERT
    source = offered if offered.is_file() else paths.cert
    if not source.is_file():
        _write_request(request_dir, identity)
        remove_tree(bundle_dir, wipe=batch.PRIVATE_KEYS)
        notes.append(f"CSR and signing public key in {request_dir}; bundle removed")
        return FirstbootResult(Outcome.WAITING_FOR_CERTIFICATE, settings.device_id, tuple(notes))

    checked = device.check_certificate(source, settings, paths)
    notes += checked.warnings
    if write_atomic(paths.cert, checked.pem, device.PUBLIC_MODE):
        notes.append(f"certificate installed in {paths.cert.name}")
    _enable_and_start(root)
    remove_tree(bundle_dir, wipe=batch.PRIVATE_KEYS)
    if request_dir.is_dir():
        remove_tree(request_dir)
    notes.append(f"bundle removed; {UNIT} enabled")
    return FirstbootResult(Outcome.PROVISIONED, settings.device_id, tuple(notes))


def _verified_files(bundle_dir: Path, manifest: Path) -> dict[str, bytes]:
    """Every file the manifest lists, each matching its sha256; ``config.toml`` and
    ``ca.pem`` at least."""
    where = f"{manifest}"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{where}: not a readable bundle manifest ({exc})") from None
    listed = data.get("files") if isinstance(data, dict) else None
    if data.get("format") != batch.BUNDLE_FORMAT or not isinstance(listed, dict):
        raise InputError(f"{where}: not a {batch.BUNDLE_FORMAT} manifest")
    allowed = {batch.CONFIG, batch.CA, batch.TLS_KEY, batch.CSR, batch.SIGNING_KEY}
    allowed.add(batch.SIGNING_PUBLIC)
    files: dict[str, bytes] = {}
    for name, digest in sorted(listed.items()):
        if name not in allowed:
            raise InputError(f"{where}: lists {name!r}, which is no part of a bundle")
        try:
            content = (bundle_dir / name).read_bytes()
        except OSError as exc:
            raise InputError(f"{bundle_dir / name}: cannot read: {exc.strerror}") from None
        if hashlib.sha256(content).hexdigest() != digest:
            raise InputError(
                f"{bundle_dir / name}: sha256 does not match {batch.MANIFEST} (an incomplete "
                "copy? copy the bundle again)"
            )
        files[name] = content
    for name in (batch.CONFIG, batch.CA):
        if name not in files:
            raise InputError(f"{where}: does not list {name}")
    if data.get("device_id") is None:
        raise InputError(f"{where}: no device_id")
    return files


def _refuse_other_device(root: DeviceRoot, config: Path, device_id: str) -> None:
    """A device with keys is known to the backend by them: it is not silently renamed."""
    if not config.is_file():
        return
    try:
        current = device.load_device_settings(config)
        key = device.DevicePaths.of(current, root, config).key
    except EdgeError:
        return  # no usable config yet (the image's example): nothing to protect
    if key.exists() and current.device_id != device_id:
        raise InputError(
            f"this device is already provisioned as {current.device_id}; the bundle is for "
            f"{device_id} (reflash the card to give the device a new identity)"
        )


def _write_request(request_dir: Path, identity: device.DeviceIdentity) -> None:
    write_atomic(request_dir / "device.csr", identity.csr_pem, device.PUBLIC_MODE)
    write_atomic(
        request_dir / batch.SIGNING_PUBLIC,
        identity.signing_public_pem.encode("ascii"),
        device.PUBLIC_MODE,
    )
    readme = REQUEST_README.format(device_id=identity.device_id)
    write_atomic(request_dir / "README.txt", readme.encode("utf-8"), device.PUBLIC_MODE)


def _leave_error(request_dir: Path, message: str) -> None:
    try:
        write_atomic(request_dir / "error.txt", f"{message}\n".encode(), device.PUBLIC_MODE)
    except (EdgeError, OSError):
        log.warning("could not write %s/error.txt", request_dir)


def _enable_and_start(root: DeviceRoot) -> None:
    """Enable the unit as ``systemctl enable`` does; on the running device also start it
    without waiting (this runs ordered before it)."""
    unit = root.at(UNIT_FILE, UNIT)
    if not unit.is_file():
        raise InputError(f"{unit}: not installed (run scripts/install.sh first)")
    wants = root.at(WANTS, UNIT)
    if not (wants.is_symlink() and os.readlink(wants) == str(UNIT_FILE)):
        try:
            wants.parent.mkdir(parents=True, exist_ok=True)
            tmp = wants.with_name(f".{UNIT}.{os.getpid()}.tmp")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(UNIT_FILE)
            tmp.replace(wants)
            fsync_dir(wants.parent)
        except OSError as exc:
            raise WriteError(f"{wants}: cannot enable {UNIT}: {exc.strerror}") from None
    if root.is_live and Path("/run/systemd/system").is_dir():
        systemctl = shutil.which("systemctl") or "systemctl"
        for args in (["daemon-reload"], ["start", "--no-block", UNIT]):
            done = subprocess.run(  # noqa: S603 - fixed argv, binary found on PATH
                [systemctl, *args], check=False, timeout=60
            )
            if done.returncode != 0:
                log.warning("systemctl %s exited with %d", " ".join(args), done.returncode)
