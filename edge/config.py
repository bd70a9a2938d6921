"""Daemon configuration: a closed, validated schema read from TOML and the environment.

Environment variables override the file: prefix ``ALPR_EDGE_``, ``__`` between nested keys
(``ALPR_EDGE_MQTT__HOST=broker.example``). Unknown keys anywhere are errors.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from edge.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
ENV_PREFIX = "ALPR_EDGE_"
INSTALLED_MODELS_DIR = Path("/opt/alpr-edge/models")
"""Where scripts/install.sh puts the models (they are not package data: a wheel stays small
and a model can be replaced on a pole without reinstalling the package)."""


def default_models_dir() -> Path:
    """The models used when the config names none.

    ``$ALPR_EDGE_MODELS_DIR`` if set; else ``models/`` of the source checkout this package runs
    from (an editable install, the tests, the demo); else ``/opt/alpr-edge/models``, where
    ``scripts/install.sh`` installs them beside the non-editable package in its venv.
    """
    override = os.environ.get(f"{ENV_PREFIX}MODELS_DIR")
    if override:
        return Path(override)
    checkout = PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "models").is_dir():
        return checkout / "models"
    return INSTALLED_MODELS_DIR


DEFAULT_MODELS_DIR = default_models_dir()


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsSettings(_Closed):
    ca_file: Path | None = Field(None, description="CA bundle that signed the broker's certificate")
    cert_file: Path | None = Field(None, description="this device's client certificate (PEM)")
    key_file: Path | None = Field(None, description="this device's client private key (PEM)")
    insecure_skip_verify: bool = Field(
        False, description="do not verify the broker's host name (never in production)"
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class MqttSettings(_Closed):
    host: str = Field("localhost", min_length=1, description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = Field("alpr", min_length=1, description="first topic level")
    client_id: str | None = Field(None, description="MQTT client id; default: the device id")
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = Field(
        None, description="file holding the password, e.g. a systemd credential"
    )
    tls: TlsSettings | None = Field(None, description="TLS settings; omit for plain TCP")
    keepalive_s: int = Field(30, ge=5, le=3600)
    include_crop: bool = Field(True, description="embed the plate crop JPEG in each read")
    offline_grace_s: float = Field(
        10.0,
        ge=0,
        description="with file cameras only: how long to wait for the broker before exiting "
        "with reads left in the outbox",
    )

    require_at_start: bool = Field(
        True, description="exit at start when the broker is unreachable (else buffer reads)"
    )
    allow_insecure_plain: bool = Field(
        False,
        description="allow plain TCP (no [mqtt.tls]) to a broker that is not on this host",
    )
    status_interval_s: float = Field(
        30.0, ge=1, le=3600, description="seconds between 'online' heartbeats on the status topic"
    )
    backlog_rate_per_s: float = Field(
        50.0,
        ge=0,
        description="most reads per second sent from a backlog after an outage; 0 = no limit",
    )

    @field_validator("topic_prefix")
    @classmethod
    def _topic_is_plain(cls, value: str) -> str:
        if any(ch in value for ch in "#+\0") or value.startswith("/") or value.endswith("/"):
            raise ValueError("must not contain '#', '+' or NUL, nor start or end with '/'")
        return value

    @model_validator(mode="after")
    def _one_password_source(self) -> Self:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        return self

    @model_validator(mode="after")
    def _plain_tcp_only_when_explicit(self) -> Self:
        if self.tls is None and not self.allow_insecure_plain and not is_loopback(self.host):
            raise ValueError(
                f"plain TCP to {self.host} would send reads in clear: add a [mqtt.tls] table "
                "(ca_file, cert_file, key_file), or set allow_insecure_plain = true"
            )
        return self

    def resolved_password(self) -> str | None:
        """The password, from the config or from its file (systemd credentials dir aware)."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is None:
            return None
        path = credential_path(self.password_file)
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"mqtt.password_file: cannot read {path}: {exc.strerror}") from None


def credential_path(path: Path) -> Path:
    """A relative path is looked up in ``$CREDENTIALS_DIRECTORY`` (systemd LoadCredential=)
    when that is set; anything else is taken as given."""
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if not path.is_absolute() and cred_dir:
        return Path(cred_dir) / path
    return path


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address: traffic that never leaves this machine."""
    if host.lower().rstrip(".") in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class StorageSettings(_Closed):
    dir: Path = Field(Path("/var/lib/alpr-edge"), description="database and plate crops")
    retention_days: float = Field(
        30,
        gt=0,
        le=3650,
        description="delete reads that matched no hot-list entry, and their crops, older than "
        "this; fractions allowed (0.0021 = about 3 minutes)",
    )
    hit_retention_days: float = Field(
        365, gt=0, le=3650, description="delete hot-list hits and alerts older than this"
    )
    max_db_mb: float | None = Field(
        None, gt=0, description="cap on the reads database; the oldest reads go first"
    )
    purge_interval_s: float = Field(
        3600, ge=1, le=3600, description="seconds between purges of expired data (hourly at most)"
    )
    encrypt: bool = Field(
        True, description="encrypt plate text, payloads and crops in the database (AES-GCM)"
    )
    encryption_key_file: Path | None = Field(
        None,
        description="32-byte key, base64; relative names are looked up in "
        "$CREDENTIALS_DIRECTORY. Default: storage.key in storage.dir, made on first start",
    )


class PrivacySettings(_Closed):
    keep_images: bool = Field(True, description="keep (and send) the plate crop of each read")
    hits_only: bool = Field(False, description="keep and send only reads that match the hot list")


class HotlistSettings(_Closed):
    subscribe: bool = Field(
        True, description="take the hot list from {prefix}/hotlist and {prefix}/{device}/hotlist"
    )
    file: Path | None = Field(None, description="a local hot-list file, re-read when it changes")
    public_key_file: Path | None = Field(
        None, description="backend's Ed25519 public key (PEM); when set, lists must be signed"
    )
    max_entries: int = Field(200_000, ge=1, le=10_000_000)
    max_bytes: int = Field(32 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    fuzzy_min_score: float = Field(
        0.2, gt=0, le=1, description="least score of a near (fuzzy) match that alerts"
    )
    max_fuzzy_chars: int = Field(
        2, ge=0, le=3, description="most differing characters in a near match"
    )
    early_min_score: float = Field(
        0.8, gt=0, le=1, description="score a single frame's match needs for an early alert"
    )
    early_min_frames: int = Field(
        2, ge=1, le=30, description="frames of one pass that must match before an early alert"
    )


class AuditSettings(_Closed):
    retention_days: float = Field(
        365, gt=0, le=36500, description="delete audit entries older than this"
    )


class CameraSettings(_Closed):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    source: str = Field(
        min_length=1,
        description="file:///clip.mp4, rtsp://..., v4l2:///dev/video0, gst:<pipeline>, picamera2:0",
    )
    realtime: bool = Field(True, description="file sources: play at the clip's frame rate")
    loop: bool = Field(False, description="file sources: start again at the end (soak tests)")
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)
    heading_deg: float | None = Field(None, ge=0, lt=360, description="direction the camera faces")
    roi: list[tuple[float, float]] | None = Field(
        None, description="region-of-interest polygon, [[x, y], ...] in 0..1 frame fractions"
    )
    queue_size: int = Field(4, ge=1, le=256, description="frames buffered before dropping")
    process_fps: float | None = Field(
        None,
        gt=0,
        le=240,
        description="run the models on at most this many frames a second (the rest are "
        "decoded and skipped); none: every frame the motion gate passes",
    )

    @field_validator("source")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        schemes = ("file://", "rtsp://", "rtsps://", "v4l2://", "gst:", "picamera2:")
        if not value.startswith(schemes):
            raise ValueError(f"must start with one of {', '.join(schemes)}")
        return value

    @field_validator("roi")
    @classmethod
    def _roi_polygon(
        cls, value: list[tuple[float, float]] | None
    ) -> list[tuple[float, float]] | None:
        if value is None:
            return None
        if len(value) < 3:
            raise ValueError("needs at least 3 points")
        for x, y in value:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError("points are frame fractions between 0 and 1")
        return value


Provider = Literal["cpu", "cuda", "tensorrt"]
PLATE_PATTERN = re.compile(r"^[LN?]{2,10}$")


def check_plate_pattern(pattern: str) -> str:
    """A plate format (``L`` letter, ``N`` digit, ``?`` any; 2 to 10 long) as given;
    ValueError naming it otherwise."""
    if not PLATE_PATTERN.match(pattern):
        raise ValueError(
            f"plate pattern {pattern!r}: use L (letter), N (digit) and ? (any), 2 to 10 long"
        )
    return pattern


def _cpu_only() -> list[Provider]:
    return ["cpu"]


class ModelSettings(_Closed):
    detector: Path = Field(DEFAULT_MODELS_DIR / "plate-detector.onnx")
    recognizer: Path = Field(DEFAULT_MODELS_DIR / "plate-recognizer.onnx")
    providers: list[Provider] = Field(
        default_factory=_cpu_only, min_length=1, description="onnxruntime providers, in order"
    )
    threads: int = Field(0, ge=0, le=64, description="onnxruntime threads; 0 = automatic")
    detector_threshold: float = Field(0.35, gt=0, lt=1)
    detector_input_size: int | None = Field(
        None,
        ge=160,
        le=3840,
        multiple_of=32,
        description="long side of the frame as the detector sees it; default: the model's",
    )
    plate_patterns: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="known plate formats, L = letter, N = digit, ? = any (e.g. LLLNLNN): "
        "each read of a listed length is held to the best-fitting one; empty = off",
    )
    recognizer_views: Literal[1, 3] = Field(
        3,
        description="crops read per plate and voted into one read: 3 (as detected, wider, "
        "wider and taller) reads more plates right, 1 costs a third of the recognizer time",
    )
    vehicle_type: Path = Field(
        DEFAULT_MODELS_DIR / "vehicle-type.onnx",
        description="vehicle type classifier; when the file is missing vehicle.type stays null",
    )
    vehicle_colour: Path = Field(
        DEFAULT_MODELS_DIR / "vehicle-colour.onnx",
        description="vehicle colour classifier; when the file is missing vehicle.color stays null",
    )
    plate_region: Path = Field(
        DEFAULT_MODELS_DIR / "plate-region.onnx",
        description="plate state/country classifier; when missing plate.region stays null",
    )
    make_model: Path | None = Field(
        None, description="optional make/model classifier (ONNX + manifest); off when unset"
    )
    make_model_labels: Path | None = Field(
        None, description="the make/model classifier's labels, one 'Make|Model' per line"
    )
    vehicle_type_threshold: float = Field(
        0.5, ge=0, le=1, description="voted confidence below which vehicle.type is null"
    )
    vehicle_colour_threshold: float = Field(
        0.5, ge=0, le=1, description="voted confidence below which vehicle.color is null"
    )
    plate_region_threshold: float = Field(
        0.5, ge=0, le=1, description="voted confidence below which plate.region is null"
    )
    make_model_threshold: float = Field(
        0.5, ge=0, le=1, description="voted confidence below which make and model are null"
    )
    attributes_every: int = Field(
        2,
        ge=1,
        le=100,
        description="run the attribute classifiers on every Nth processed frame with plates",
    )

    @field_validator("plate_patterns")
    @classmethod
    def _patterns_are_formats(cls, value: list[str]) -> list[str]:
        return [check_plate_pattern(p) for p in value]

    @model_validator(mode="after")
    def _make_model_with_labels(self) -> Self:
        if (self.make_model is None) != (self.make_model_labels is None):
            raise ValueError("make_model and make_model_labels must be given together")
        return self


class TrackingSettings(_Closed):
    pass_timeout_s: float = Field(
        0.6, gt=0, le=10, description="a pass ends when its plate is unseen this long"
    )
    min_frames: int = Field(2, ge=1, le=100, description="passes seen fewer times are dropped")
    max_candidates: int = Field(5, ge=1, le=20)
    max_pass_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="a plate in view longer than this (a parked car) is read once, then ignored",
    )
    repeat_window_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="the same plate at the same place within this time is the same pass",
    )


class MotionSettings(_Closed):
    enabled: bool = True
    threshold: float = Field(
        0.002, ge=0, le=1, description="share of changed pixels that counts as motion"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    device_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "text"] = Field(
        "auto",
        description="json: one JSON object per line (for journald); text: the human format; "
        "auto: json unless stderr is a terminal",
    )
    signing_key_file: Path | None = Field(
        None,
        description="Ed25519 private key (PEM, PKCS#8) that signs every read; relative names "
        "are looked up in $CREDENTIALS_DIRECTORY. Default: device-signing.key in storage.dir, "
        "made on first start",
    )
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    hotlist: HotlistSettings = Field(default_factory=HotlistSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    motion: MotionSettings = Field(default_factory=MotionSettings)
    cameras: list[CameraSettings] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_camera_ids(self) -> Self:
        ids = [c.id for c in self.cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"camera ids must be unique; repeated: {', '.join(dupes)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _TOML_FILE.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


_TOML_FILE: ContextVar[Path | None] = ContextVar("alpr_edge_toml_file", default=None)
"""The TOML file ``load_settings`` is reading, for ``settings_customise_sources``: pydantic
builds the sources from the class, so the path travels beside the call, per thread/context
(a reload on one thread cannot hand its file to a load on another)."""


def _format_errors(exc: ValidationError, origin: str, lines_of: TomlLines | None = None) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against config.example.toml)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        value = err.get("input")
        # Show scalar values only: a table's value could hold a secret.
        scalar = isinstance(value, str | int | float | bool)
        shown = f" (got {_shown(value)!r})" if scalar and "password" not in where else ""
        if err["type"] in ("missing", "extra_forbidden"):
            shown = ""
        line = None if lines_of is None or _from_environment(loc) else lines_of.line(loc)
        at = origin if line is None else f"{origin}:{line}"
        lines.append(f"{at}: {where}: {msg}{shown}")
    return "\n".join(lines)


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/{0,2}")


def _shown(value: object) -> object:
    """A bad value as it may be echoed: everything before the last ``@`` of a URL (user
    and password, also of a mistyped one) hidden."""
    if isinstance(value, str) and "@" in value:
        scheme = _SCHEME.match(value)
        return f"{scheme.group(0) if scheme else ''}***@{value.rsplit('@', 1)[1]}"
    return value


def _from_environment(loc: tuple[int | str, ...]) -> bool:
    """The value (or a table above it) came from an ``ALPR_EDGE_`` variable, not the file."""
    names = {name.upper() for name in os.environ}
    keys = [str(part) for part in loc]
    return any(
        f"{ENV_PREFIX}{'__'.join(keys[:depth])}".upper() in names
        for depth in range(1, len(keys) + 1)
    )


class TomlLines:
    """Where each key of a TOML file is written: key path -> line number (1-based).

    A line scanner, not a parser (the file has already parsed): ``[a.b]`` tables,
    ``[[cameras]]`` arrays of tables counted from 0, ``key = value`` and dotted keys. Lines
    inside a multi-line array or string are skipped. An error for a key that is not written
    (a missing one, a table rule) points at the nearest table or key above it that is.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[int | str, ...], int] = {}
        arrays: dict[tuple[int | str, ...], int] = {}
        table: tuple[int | str, ...] = ()
        depth = 0  # open brackets of a multi-line value
        in_string = False  # inside a multi-line """ or ''' string
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if in_string or depth > 0:
                in_string, depth = _continue_value(line, in_string, depth)
                continue
            if not line or line.startswith("#"):
                continue
            if line.startswith("[["):
                name = _dotted(line[2 : line.find("]]")])
                index = arrays.get(name, -1) + 1
                arrays[name] = index
                table = (*name, index)
                self._lines.setdefault(name, number)
                self._lines[table] = number
            elif line.startswith("["):
                table = _dotted(line[1 : line.find("]")])
                self._lines[table] = number
            elif "=" in line:
                key, value = line.split("=", 1)
                self._lines[(*table, *_dotted(key))] = number
                in_string, depth = _continue_value(value.strip(), False, 0)

    def line(self, loc: tuple[int | str, ...]) -> int | None:
        """The line of ``loc``, else of the nearest written key or table above it."""
        for end in range(len(loc), 0, -1):
            found = self._lines.get(loc[:end])
            if found is not None:
                return found
        return None

    @classmethod
    def of_file(cls, path: Path) -> TomlLines | None:
        try:
            return cls(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return None


def _dotted(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in key.split("."))


def _continue_value(text: str, in_string: bool, depth: int) -> tuple[bool, int]:
    """Whether a value goes on past this line: an open multi-line string, or brackets."""
    i = 0
    while i < len(text):
        if in_string:
            ends = [e for e in (text.find('"""', i), text.find("'''", i)) if e >= 0]
            if not ends:
                return True, depth
            in_string, i = False, min(ends) + 3
            continue
        ch = text[i]
        if text.startswith(('"""', "'''"), i):
            in_string, i = True, i + 3
            continue
        if ch in "\"'":
            close = i + 1
            while close < len(text) and text[close] != ch:
                close += 2 if ch == '"' and text[close] == "\\" else 1
            i = close + 1
            continue
        if ch == "#":
            break
        depth += (ch in "[{") - (ch in "]}")
        i += 1
    return in_string, max(depth, 0)


def load_settings(path: Path | None, **overrides: Any) -> Settings:
    """Read and validate the config; raise ConfigError with one line per problem."""
    origin = str(path) if path is not None else "environment"
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist (copy config.example.toml)")
        try:
            with path.open("rb") as fh:
                tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    token = _TOML_FILE.set(path)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines_of = None if path is None else TomlLines.of_file(path)
        raise ConfigError(_format_errors(exc, origin, lines_of)) from None
    finally:
        _TOML_FILE.reset(token)
