"""One device's config, written from config.example.toml by editing its text, so that every
comment that documents a key stays in the file the technician may open on the pole.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import TypeAdapter, ValidationError

from edge.config import PACKAGE_DIR, CameraSettings, Settings
from edge.errors import ConfigError, InputError

CONFIG_FILE = Path("/etc/alpr-edge/config.toml")
"""Where the unit reads its config (``${CONFIGURATION_DIRECTORY}/config.toml``)."""
CA_FILE = Path("/etc/alpr-edge/ca.pem")
CERT_FILE = Path("/etc/alpr-edge/device.crt")
CSR_FILE = Path("/etc/alpr-edge/device.csr")
KEY_FILE = Path("/var/lib/alpr-edge/device.key")
"""The TLS key lives in the state directory: readable by the daemon's user only (0700)."""
DEFAULT_PORT = 8883
DEFAULT_SOURCE = "picamera2:0"
TEMPLATE_NAME = "config.example.toml"
INSTALLED_TEMPLATE = Path("/opt/alpr-edge") / TEMPLATE_NAME
"""Where scripts/install.sh puts the example config next to the program."""

_DEVICE_ID: TypeAdapter[str] = TypeAdapter(Annotated[str, Settings.model_fields["device_id"]])
_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?$")
_COMMENTED_HEADER = r"^#\s*(\[\[?\s*{table}\s*\]\]?)\s*$"


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> BrokerAddress:
        """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address; port 8883 when
        none is given."""
        value = text.strip()
        host, port_text = value, ""
        if value.startswith("["):
            host, _, rest = value[1:].partition("]")
            port_text = rest.removeprefix(":")
        elif value.count(":") == 1:
            host, port_text = value.split(":")
        if not host or any(ch.isspace() or ch in "/@" for ch in host):
            raise ValueError(f"{text!r} is not a host name or address")
        if not port_text:
            return cls(host, DEFAULT_PORT)
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{port_text!r} is not a port (1..65535)")
        return cls(host, int(port_text))


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """What makes one pole different from the next."""

    device_id: str
    broker: BrokerAddress
    camera_source: str
    latitude: float
    longitude: float
    heading_deg: float


def check_device_id(value: str) -> str:
    """The config's own rule for device ids; ValueError with the reason."""
    try:
        return _DEVICE_ID.validate_python(value)
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"]) from None


def check_camera_field(name: str, value: object) -> None:
    """One camera field (source, latitude, longitude, heading_deg) by the config's rules;
    ValueError with the reason."""
    fields: dict[str, object] = {"id": "cam1", "source": DEFAULT_SOURCE, name: value}
    try:
        CameraSettings.model_validate(fields)
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"]) from None


def parse_camera_number(name: str, raw: str) -> float:
    """A coordinate or heading as typed by a person; ValueError with the reason."""
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("not a number") from None
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    check_camera_field(name, value)
    return value


def default_template() -> Path:
    """config.example.toml of the source checkout this runs from, else the installed copy."""
    checkout = PACKAGE_DIR.parent / TEMPLATE_NAME
    return checkout if checkout.is_file() else INSTALLED_TEMPLATE


def read_template(path: Path | None) -> str:
    source = path or default_template()
    try:
        return source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{source}: no such file (name the example config: --template)") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read: {exc.strerror}") from None


def render_config(template: str, spec: DeviceSpec) -> str:
    """The template with this device's values and mutual TLS turned on; checked by parsing
    the result back."""
    values: list[tuple[str, str, object]] = [
        ("", "device_id", spec.device_id),
        ("mqtt", "host", spec.broker.host),
        ("mqtt", "port", spec.broker.port),
        ("mqtt.tls", "ca_file", str(CA_FILE)),
        ("mqtt.tls", "cert_file", str(CERT_FILE)),
        ("mqtt.tls", "key_file", str(KEY_FILE)),
        ("cameras", "source", spec.camera_source),
        ("cameras", "latitude", spec.latitude),
        ("cameras", "longitude", spec.longitude),
        ("cameras", "heading_deg", spec.heading_deg),
    ]
    text = _uncomment_table(template, "mqtt.tls")
    for table, key, value in values:
        text = set_value(text, table, key, value)
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the config template does not give valid TOML: {exc}") from None
    for table, key, value in values:
        if _lookup(parsed, table, key) != value:
            raise ConfigError(f"config template: could not set {table or '(top)'}.{key}")
    return text


def set_value(text: str, table: str, key: str, value: object) -> str:
    """Replace the first ``key = ...`` line (commented out or not) of ``table`` ("" for the
    top level; the first of an array of tables) with ``key = value``."""
    lines = text.splitlines(keepends=True)
    current = ""
    seen: set[str] = set()
    entry = re.compile(rf"^\s*(#\s*)?{re.escape(key)}\s*=")
    for i, line in enumerate(lines):
        header = _HEADER.match(line)
        if header:
            current = header[1]
            if current in seen:  # the second [[cameras]]: only the first is filled
                current = f"{current}#"
            seen.add(current)
            continue
        if current == table and entry.match(line):
            ending = "\n" if line.endswith("\n") else ""
            lines[i] = f"{key} = {_toml_value(value)}{ending}"
            return "".join(lines)
    raise ConfigError(f"config template has no {key} in [{table or 'top level'}]")


def _uncomment_table(text: str, table: str) -> str:
    if re.search(rf"^\s*\[{re.escape(table)}\]", text, re.MULTILINE):
        return text
    pattern = re.compile(_COMMENTED_HEADER.format(table=re.escape(table)), re.MULTILINE)
    result, count = pattern.subn(r"\1", text, count=1)
    if count == 0:
        raise ConfigError(f"config template has no [{table}] table, not even commented out")
    return result


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string: same quotes and escapes.
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _lookup(parsed: dict[str, object], table: str, key: str) -> object:
    node: object = parsed
    for part in table.split(".") if table else []:
        if isinstance(node, dict):
            node = node.get(part)
        if isinstance(node, list):
            node = node[0] if node else None
    return node.get(key) if isinstance(node, dict) else None
