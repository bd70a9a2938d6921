"""``alpr-edge provision`` and ``alpr-edge firstboot``: argument parsing and output. The work
is imported when a command runs, so that ``alpr-edge --help`` stays fast."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from edge.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from edge.provision.template import BrokerAddress

T = TypeVar("T")

DEVICE_CONFIG = Path("/etc/alpr-edge/config.toml")
SINGLE_ONLY = ("device_id", "latitude", "longitude", "heading")


def add_provision_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    provision = sub.add_parser(
        "provision",
        help="give a device its config, keys and certificate; or make bundles for a batch",
        description="Three forms. (1) On a device: write its config from the example, make its "
        "TLS key, CSR and event-signing key (mode 0600; they never leave the device) and print "
        "the CSR and the signing public key for the backend. (2) --install-cert FILE: install "
        "the certificate the agency's CA signed, after checking it matches the key, the device "
        "id and the CA. (3) --batch CSV --out DIR: one first-boot bundle per CSV row "
        "(columns device_id, latitude, longitude, heading_deg; optional camera_source, broker) "
        "with no private key in it unless --central-keys.",
    )
    provision.add_argument("--device-id", help="this device's id (letters, digits, _ . -)")
    provision.add_argument("--broker", help="broker HOST[:PORT] (port 8883 when omitted)")
    provision.add_argument(
        "--camera-source", help="camera source (default picamera2:0), e.g. rtsp://host/stream"
    )
    provision.add_argument("--latitude", help="camera latitude, degrees")
    provision.add_argument("--longitude", help="camera longitude, degrees")
    provision.add_argument("--heading", help="direction the camera faces, degrees from north")
    provision.add_argument("--ca", type=Path, help="the agency's CA certificate (PEM)")
    provision.add_argument(
        "--config",
        type=Path,
        default=DEVICE_CONFIG,
        help=f"the device's config (default {DEVICE_CONFIG})",
    )
    provision.add_argument(
        "--root", type=Path, default=Path("/"), help="provision a tree as if it were / (tests)"
    )
    provision.add_argument(
        "--template", type=Path, help="example config to fill (default: config.example.toml)"
    )
    provision.add_argument(
        "--force", action="store_true", help="replace a config that names another device"
    )
    provision.add_argument(
        "--install-cert", type=Path, metavar="FILE", help="install this signed certificate"
    )
    provision.add_argument("--batch", type=Path, metavar="CSV", help="devices, one per row")
    provision.add_argument("--out", type=Path, help="--batch: directory for the bundles")
    provision.add_argument(
        "--central-keys",
        action="store_true",
        help="--batch: make the private keys here and put them in the bundles (not advised)",
    )
    provision.set_defaults(handler=_cmd_provision)

    firstboot = sub.add_parser(
        "firstboot",
        help="apply the bundle on the boot partition (run once by alpr-edge-firstboot.service)",
        description="Check the bundle in /boot/firmware/alpr-edge against its manifest, install "
        "the config and CA, make the device's keys, and with a signed certificate "
        "(alpr-edge/device.crt) enable and start alpr-edge; without one leave the CSR in "
        "alpr-edge-request/ on the boot partition. The bundle is removed once applied; running "
        "again changes nothing.",
    )
    firstboot.add_argument(
        "--bundle",
        type=Path,
        help="bundle directory (default /boot/firmware/alpr-edge under --root)",
    )
    firstboot.add_argument(
        "--root", type=Path, default=Path("/"), help="provision a tree as if it were / (tests)"
    )
    firstboot.set_defaults(handler=_cmd_firstboot)


def _cmd_provision(args: argparse.Namespace) -> int:
    single = [name for name in SINGLE_ONLY if getattr(args, name) is not None]
    if args.install_cert is not None:
        if args.batch is not None or single:
            raise UsageError("--install-cert goes alone (with --config, --root)")
        return _install_cert(args)
    if args.batch is not None:
        if single:
            flag = single[0].replace("_", "-")
            raise UsageError(f"--batch takes per-device values from the CSV, not --{flag}")
        return _batch(args)
    return _single(args)


def _need(args: argparse.Namespace, *names: str) -> None:
    missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is None]
    if missing:
        raise UsageError(f"provision needs {', '.join(missing)}")


def _single(args: argparse.Namespace) -> int:
    from edge.provision.device import provision_device
    from edge.provision.files import DeviceRoot
    from edge.provision.template import (
        DEFAULT_SOURCE,
        DeviceSpec,
        check_device_id,
        read_template,
    )

    _need(args, "device_id", "broker", "latitude", "longitude", "heading", "ca")
    source = args.camera_source or DEFAULT_SOURCE
    spec = DeviceSpec(
        device_id=_option("--device-id", check_device_id, args.device_id),
        broker=_option("--broker", _broker, args.broker),
        camera_source=_option("--camera-source", _source, source),
        latitude=_option("--latitude", _number("latitude"), args.latitude),
        longitude=_option("--longitude", _number("longitude"), args.longitude),
        heading_deg=_option("--heading", _number("heading_deg"), args.heading),
    )
    root = DeviceRoot(args.root)
    identity = provision_device(
        spec,
        args.ca,
        read_template(args.template),
        root,
        root.at(args.config, "--config"),
        force=args.force,
    )
    for path in identity.created:
        print(f"alpr-edge: made {path} (mode 0600)", file=sys.stderr)
    print(
        f"alpr-edge: {spec.device_id}: send the CSR to the agency's CA and the signing public "
        "key to the backend; then: alpr-edge provision --install-cert device.crt",
        file=sys.stderr,
    )
    sys.stdout.write(identity.csr_pem.decode("ascii"))
    sys.stdout.write(identity.signing_public_pem)
    return 0


def _install_cert(args: argparse.Namespace) -> int:
    from edge.provision.device import install_certificate
    from edge.provision.files import DeviceRoot

    root = DeviceRoot(args.root)
    checked = install_certificate(args.install_cert, root, root.at(args.config, "--config"))
    for warning in checked.warnings:
        print(f"alpr-edge: warning: {warning}", file=sys.stderr)
    leaf = checked.leaf
    print(
        f"installed {args.install_cert}: {leaf.subject.rfc4514_string()}, issued by "
        f"{leaf.issuer.rfc4514_string()}, valid until {leaf.not_valid_after_utc:%Y-%m-%d}"
    )
    return 0


def _batch(args: argparse.Namespace) -> int:
    from edge.provision.batch import CENTRAL_KEYS_WARNING, BatchDefaults, make_bundles, read_devices
    from edge.provision.template import DEFAULT_SOURCE, read_template

    _need(args, "out", "ca")
    defaults = BatchDefaults(
        broker=None if args.broker is None else _option("--broker", _broker, args.broker),
        camera_source=_option("--camera-source", _source, args.camera_source or DEFAULT_SOURCE),
    )
    specs = read_devices(args.batch, defaults)
    template = read_template(args.template)
    if args.central_keys:
        print(f"alpr-edge: {CENTRAL_KEYS_WARNING}", file=sys.stderr)
    bundles = make_bundles(specs, args.out, args.ca, template, central_keys=args.central_keys)
    for bundle in bundles:
        print(f"{bundle.path}: {', '.join(bundle.files)}")
    return 0


def _cmd_firstboot(args: argparse.Namespace) -> int:
    from edge.provision.files import DeviceRoot
    from edge.provision.firstboot import BOOT_BUNDLE, run_firstboot

    root = DeviceRoot(args.root)
    bundle = args.bundle or root.at(BOOT_BUNDLE, "--bundle")
    result = run_firstboot(root, bundle)
    for note in result.notes:
        print(f"alpr-edge firstboot: {note}")
    print(f"alpr-edge firstboot: {result.device_id or '-'}: {result.outcome}")
    return 0


def _option(flag: str, parse: Callable[[str], T], raw: str) -> T:
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {raw!r}: {exc}") from None


def _broker(raw: str) -> BrokerAddress:
    from edge.provision.template import BrokerAddress

    return BrokerAddress.parse(raw)


def _source(raw: str) -> str:
    from edge.provision.template import check_camera_field

    check_camera_field("source", raw)
    return raw


def _number(name: str) -> Callable[[str], float]:
    from edge.provision.template import parse_camera_number

    return partial(parse_camera_number, name)
