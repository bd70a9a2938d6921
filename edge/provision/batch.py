"""A batch of poles from a CSV: one bundle per device for the technician to copy onto its SD
card's boot partition (``alpr-edge/``), where ``alpr-edge firstboot`` applies it.

A bundle holds the device's config, the agency's CA certificate and ``bundle.json`` (the
sha256 of each file). No private key is ever in a bundle: the device makes its keys at first
boot. Only ``--central-keys`` (the agency's explicit choice) puts keys made here into the
bundles, mode 0600.

The whole CSV is checked before anything is written: one bad row and no bundle is made, with
one line per problem naming the row (as a spreadsheet numbers it, header = 1) and column.
"""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from edge.config import load_settings
from edge.errors import ConfigError, InputError
from edge.provision import pki
from edge.provision.files import WriteError, fsync_dir, remove_tree, write_atomic
from edge.provision.template import (
    DEFAULT_SOURCE,
    BrokerAddress,
    DeviceSpec,
    check_camera_field,
    check_device_id,
    parse_camera_number,
    render_config,
)
from edge.signing import DEFAULT_KEY_NAME, public_key_pem

REQUIRED = ("device_id", "latitude", "longitude", "heading_deg")
OPTIONAL = ("camera_source", "broker")
BUNDLE_FORMAT = "alpr-edge-bundle/1"
MANIFEST = "bundle.json"
CONFIG = "config.toml"
CA = "ca.pem"
CERT = "device.crt"
"""A signed certificate the technician may add to a bundle; checked by its chain, not by
the manifest."""
TLS_KEY = "device.key"
CSR = "device.csr"
SIGNING_KEY = DEFAULT_KEY_NAME
SIGNING_PUBLIC = "device-signing.pub.pem"
PRIVATE_KEYS = (TLS_KEY, SIGNING_KEY)
T = TypeVar("T")
BUNDLE_MODE = 0o644
KEY_MODE = 0o600

CENTRAL_KEYS_WARNING = (
    "WARNING: --central-keys: private keys are written into the bundles. Anyone who copies "
    "a bundle or an SD card before first boot can impersonate that pole and sign reads as "
    "it. Keep the output directory encrypted, delete it once the poles are up, and prefer "
    "keys made on the device (the default)."
)


@dataclass(frozen=True, slots=True)
class BatchDefaults:
    """Values from the command line for columns a CSV leaves out."""

    broker: BrokerAddress | None
    camera_source: str = DEFAULT_SOURCE


@dataclass(frozen=True, slots=True)
class Bundle:
    device_id: str
    path: Path
    files: tuple[str, ...]


def read_devices(path: Path, defaults: BatchDefaults) -> list[DeviceSpec]:
    """Every row as a DeviceSpec, or ConfigError with one line per problem in the file."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # spreadsheets write a BOM
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as UTF-8 text: {exc}") from None
    reader = csv.reader(text.splitlines())
    header = [name.strip() for name in next(reader, [])]
    problems = _check_header(path, header, defaults)
    if problems:
        raise ConfigError("\n".join(problems))
    specs: list[DeviceSpec] = []
    first_row: dict[str, int] = {}
    for cells in reader:
        row = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        where = f"{path} row {row}"
        if len(cells) != len(header):
            problems.append(f"{where}: {len(cells)} fields, the header has {len(header)}")
            continue
        values = dict(zip(header, (cell.strip() for cell in cells), strict=True))
        parsed = _parse_row(values, defaults, where)
        device_id = values["device_id"]
        if device_id in first_row:
            problems.append(
                f"{where}, column device_id: {device_id} is already on row {first_row[device_id]}"
            )
        elif device_id:
            first_row[device_id] = row
        problems += parsed.problems
        if parsed.spec is not None:
            specs.append(parsed.spec)
    if not specs and not problems:
        problems.append(f"{path}: no devices (only a header)")
    if problems:
        raise ConfigError("\n".join(problems))
    return specs


def _check_header(path: Path, header: list[str], defaults: BatchDefaults) -> list[str]:
    where = f"{path} row 1"
    problems = [f"{where}: column {name} is missing" for name in REQUIRED if name not in header]
    if defaults.broker is None and "broker" not in header:
        problems.append(f"{where}: column broker is missing (or give --broker HOST[:PORT])")
    known = REQUIRED + OPTIONAL
    problems += [
        f"{where}: column {name or '(empty)'} is not one of {', '.join(known)}"
        for name in header
        if name not in known
    ]
    problems += [
        f"{where}: column {name} appears twice"
        for name in sorted(set(header))
        if header.count(name) > 1
    ]
    return problems


def _parse_row(values: dict[str, str], defaults: BatchDefaults, where: str) -> _Row:
    problems: list[str] = []

    def take(column: str, parse: Callable[[str], T]) -> T | None:
        raw = values.get(column, "")
        if not raw:
            problems.append(f"{where}, column {column}: is empty")
            return None
        try:
            return parse(raw)
        except ValueError as exc:
            problems.append(f"{where}, column {column}: {raw!r}: {exc}")
            return None

    device_id = take("device_id", check_device_id)
    latitude = take("latitude", partial(parse_camera_number, "latitude"))
    longitude = take("longitude", partial(parse_camera_number, "longitude"))
    heading = take("heading_deg", partial(parse_camera_number, "heading_deg"))
    source: str | None = defaults.camera_source
    if values.get("camera_source"):
        source = take("camera_source", _camera_source)
    broker = defaults.broker
    if values.get("broker") or broker is None:
        broker = take("broker", BrokerAddress.parse)
    if (
        device_id is None
        or latitude is None
        or longitude is None
        or heading is None
        or source is None
        or broker is None
    ):
        return _Row(None, tuple(problems))
    spec = DeviceSpec(device_id, broker, source, latitude, longitude, heading)
    return _Row(spec, ())


@dataclass(frozen=True, slots=True)
class _Row:
    spec: DeviceSpec | None
    problems: tuple[str, ...]


def _camera_source(raw: str) -> str:
    check_camera_field("source", raw)
    return raw


def make_bundles(
    specs: list[DeviceSpec],
    out: Path,
    ca_file: Path,
    template: str,
    *,
    central_keys: bool = False,
) -> list[Bundle]:
    """One bundle directory per device under ``out``. Every config is rendered and loaded
    with the daemon's own loader, and no bundle may exist yet, before the first is written."""
    pki.load_ca_certificates(ca_file)
    ca_pem = ca_file.read_bytes()
    configs = {spec.device_id: render_config(template, spec) for spec in specs}
    _check_configs(configs)
    taken = [spec.device_id for spec in specs if (out / spec.device_id).exists()]
    if taken:
        raise ConfigError(
            f"{out}: bundles exist already for {', '.join(taken)} (nothing was written; "
            "use a new output directory)"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"{out}: cannot create: {exc.strerror}") from None
    return [
        _write_bundle(out, spec, configs[spec.device_id], ca_pem, central_keys) for spec in specs
    ]


def _check_configs(configs: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory(prefix="alpr-edge-batch-") as tmp:
        for device_id, text in configs.items():
            path = Path(tmp) / f"{device_id}.toml"
            path.write_text(text, encoding="utf-8")
            load_settings(path)


def _write_bundle(
    out: Path, spec: DeviceSpec, config: str, ca_pem: bytes, central_keys: bool
) -> Bundle:
    """Written into a hidden directory and renamed into place: a bundle is whole or absent."""
    final = out / spec.device_id
    staging = out / f".{spec.device_id}.partial"
    if staging.exists():
        remove_tree(staging, wipe=PRIVATE_KEYS)
    files: dict[str, tuple[bytes, int]] = {
        CONFIG: (config.encode("utf-8"), BUNDLE_MODE),
        CA: (ca_pem, BUNDLE_MODE),
    }
    if central_keys:
        files.update(_central_keys(spec.device_id))
    manifest = {
        "format": BUNDLE_FORMAT,
        "device_id": spec.device_id,
        "central_keys": central_keys,
        "files": {name: hashlib.sha256(data).hexdigest() for name, (data, _) in files.items()},
    }
    files[MANIFEST] = (
        (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"),
        BUNDLE_MODE,
    )
    try:
        staging.mkdir(mode=0o700 if central_keys else 0o755)
        for name, (data, mode) in files.items():
            write_atomic(staging / name, data, mode)
        staging.rename(final)
        fsync_dir(out)
    except OSError as exc:
        raise WriteError(f"{final}: cannot write the bundle: {exc.strerror}") from None
    return Bundle(spec.device_id, final, tuple(sorted(files)))


def _central_keys(device_id: str) -> dict[str, tuple[bytes, int]]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    tls_key = pki.new_tls_key()
    signing_key = Ed25519PrivateKey.generate()
    return {
        TLS_KEY: (pki.private_key_pem(tls_key), KEY_MODE),
        CSR: (pki.csr_pem(pki.make_csr(tls_key, device_id)), BUNDLE_MODE),
        SIGNING_KEY: (pki.private_key_pem(signing_key), KEY_MODE),
        SIGNING_PUBLIC: (public_key_pem(signing_key.public_key()).encode("ascii"), BUNDLE_MODE),
    }
