"""One MQTT connection at a time, opened and checked by hand.

``Link`` wraps a fresh paho client per connection: it waits for a successful CONNACK (a
refused connect is never counted as connected), turns socket and TLS failures into one
line naming host and port, and frees its sockets at once. ``tls_context`` builds the TLS
settings (TLS 1.2 at least, the broker's certificate and host name checked, optional client
certificate for mutual TLS).
"""

from __future__ import annotations

import random
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import MappingProxyType

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import MqttSettings, TlsSettings, credential_path, is_loopback
from edge.errors import BrokerError, ConfigError

DEFAULT_WINDOW = 20
"""Reads in flight (published, PUBACK not yet in) at most."""
LOOP_TICK_S = 0.05
"""Longest a new read waits for the publisher thread to notice ``notify()``."""
PACKET_TOO_LARGE = 0x95


def _accept_packet_too_large_in_puback() -> None:
    """mosquitto 2.0 answers a PUBLISH over its ``message_size_limit`` with PUBACK reason
    0x95 (Packet too large), a code MQTT 5 lists for CONNACK and DISCONNECT only. paho then
    calls the PUBACK malformed and drops the connection, and the same read would be sent
    again after every reconnect, forever. Accepted here, it is an ordinary refused PUBACK."""
    names = dict(ReasonCode.names)
    entry = {name: list(packets) for name, packets in names[PACKET_TOO_LARGE].items()}
    for packets in entry.values():
        if PacketTypes.PUBACK not in packets:
            packets.append(PacketTypes.PUBACK)
    names[PACKET_TOO_LARGE] = entry
    ReasonCode.names = MappingProxyType(names)


_accept_packet_too_large_in_puback()


def publish_packet_size(topic: str, payload: bytes, properties: Properties | None) -> int:
    """Bytes of a QoS 1 PUBLISH on the wire, as a broker's maximum packet size counts them."""
    props = len(properties.pack()) if properties is not None else 1  # type: ignore[no-untyped-call]
    remaining = 2 + len(topic.encode("utf-8")) + 2 + props + len(payload)
    return 1 + _varint_size(remaining) + remaining


def _varint_size(value: int) -> int:
    size = 1
    while value >= 128:
        value >>= 7
        size += 1
    return size


@dataclass(frozen=True, slots=True)
class LastWill:
    """What the broker publishes for us if the connection ends without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Broker:
    """Everything needed to open one connection; the password never reaches a log line."""

    host: str
    port: int
    keepalive_s: int
    username: str | None
    password: str | None = field(repr=False)
    tls: ssl.SSLContext | None = field(repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @classmethod
    def from_settings(cls, settings: MqttSettings) -> Broker:
        return cls(
            host=settings.host,
            port=settings.port,
            keepalive_s=settings.keepalive_s,
            username=settings.username,
            password=settings.resolved_password(),
            tls=None if settings.tls is None else tls_context(settings.tls),
        )


def tls_context(tls: TlsSettings) -> ssl.SSLContext:
    """TLS 1.2 or newer, the broker's certificate checked against ``ca_file`` (or the system
    store) and, unless ``insecure_skip_verify``, its host name too."""
    try:
        ctx = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=None if tls.ca_file is None else str(credential_path(tls.ca_file)),
        )
        # paho leaves the minimum to the context; the default still allows TLS 1.0 on some
        # OpenSSL builds.
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if tls.cert_file is not None and tls.key_file is not None:
            ctx.load_cert_chain(
                str(credential_path(tls.cert_file)), str(credential_path(tls.key_file))
            )
    except FileNotFoundError as exc:
        raise ConfigError(f"mqtt.tls: {exc.filename}: no such file") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"mqtt.tls: cannot load the CA, certificate or key: {exc}") from None
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
    return ctx


class Link:
    """One connection: a fresh paho client and what its callbacks have seen."""

    def __init__(self, broker: Broker, client_id: str, window: int, will: LastWill | None):
        self.broker = broker
        self.connack: ReasonCode | None = None
        self.max_packet_size: int | None = None
        """The broker's limit from its CONNACK; a bigger PUBLISH would get us disconnected."""
        self.lost = False
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        self.client.max_inflight_messages_set(window)
        if broker.username is not None:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls is not None:
            self.client.tls_set_context(broker.tls)
        if will is not None:
            self.client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connack = reason_code
        limit = getattr(properties, "MaximumPacketSize", None)
        self.max_packet_size = limit if isinstance(limit, int) else None

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        _reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self.lost = True

    def open(self, timeout_s: float, stop: threading.Event | None = None) -> None:
        """Connect and wait for a successful CONNACK, or raise BrokerError with the reason.
        ``stop`` cuts the wait for the CONNACK short (the TCP connect itself is bounded
        by ``timeout_s``)."""
        where = self.broker.address
        self.client.connect_timeout = timeout_s
        deadline = time.monotonic() + timeout_s
        try:
            # clean_start: the store, not a broker session, holds what is unacknowledged.
            self.client.connect(
                self.broker.host, self.broker.port, self.broker.keepalive_s, clean_start=True
            )
        except (OSError, ValueError) as exc:
            reason = _describe(exc, timeout_s)
            if isinstance(exc, ConnectionResetError) and self.broker.tls is not None:
                reason += " during the TLS handshake (is this a plain MQTT port?)"
            raise BrokerError(f"MQTT broker {where}: {reason}") from None
        while True:
            rc = self.client.loop(LOOP_TICK_S)
            # Look at the CONNACK first: a refusing broker closes the socket right after it.
            if self.connack is not None:
                break
            if self.lost or rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self.close()
                # With TLS 1.3 the server checks the client certificate after the client
                # thinks the handshake is done, so a refused certificate looks like this.
                hint = (
                    "client certificate missing or not trusted by the broker, or not an MQTT port?"
                    if self.broker.tls is not None
                    else "TLS on one side only, or not an MQTT port?"
                )
                raise BrokerError(f"MQTT broker {where}: connection closed before CONNACK ({hint})")
            if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                self.close()
                raise BrokerError(f"MQTT broker {where}: no CONNACK within {timeout_s:g} s")
        if self.connack.is_failure:
            self.close()
            raise BrokerError(f"MQTT broker {where}: connection refused: {self.connack}")

    def close(self) -> None:
        """Say goodbye if still connected (so the broker drops any last will), then free the
        sockets now rather than at garbage collection."""
        if not self.lost and self.client.is_connected():
            self.client.disconnect()
            for _ in range(4):
                if self.client.loop(LOOP_TICK_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
        self.lost = True
        # paho frees its sockets only in __del__, and the callbacks make a reference cycle,
        # so a reconnect loop would hold file descriptors until a GC pass; free them now.
        self.client._reset_sockets()


def _describe(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host name: {exc.strerror}"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the broker"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running, and on this port?)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def connect_check(
    settings: MqttSettings,
    *,
    device_id: str | None = None,
    timeout_s: float = 5.0,
    client_id: str | None = None,
) -> None:
    """Open one connection and close it; raise BrokerError (one line: host:port and reason).

    The client id is derived from the daemon's, not equal to it: connecting with the
    daemon's own id would make the broker drop the running daemon's connection.
    """
    base = settings.client_id or device_id or "alpr-edge"
    link = Link(
        Broker.from_settings(settings),
        client_id or f"{base}-check-{uuid.uuid4().hex[:8]}",
        DEFAULT_WINDOW,
        None,
    )
    link.open(timeout_s)
    link.close()


class Backoff:
    """Exponential delays with jitter, so a fleet of poles does not reconnect in step after
    a broker restart. Each delay is drawn from [d/2, d], d doubling up to the maximum."""

    def __init__(self, min_s: float, max_s: float) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self._attempt = 0
        self._random = random.Random()  # noqa: S311 - jitter, not cryptography

    def next(self) -> float:
        ceiling = min(self.max_s, self.min_s * 2.0**self._attempt)
        self._attempt = min(self._attempt + 1, 32)
        return self._random.uniform(ceiling / 2.0, ceiling)

    def reset(self) -> None:
        self._attempt = 0
