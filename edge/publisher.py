"""MQTT publisher: drains the outbox (``edge.store``) to the broker, QoS 1, in seq order.

The store is the only queue. paho's own queue lives in memory, so each connection gets a
fresh paho client and nothing is ever handed to paho while disconnected; a read is marked
published only when its PUBACK arrives. After a reconnect every unacknowledged read is sent
again from the store with the same bytes (so a receiver may see a duplicate ``event_id``,
never a changed payload, and never a gap that was not purged by retention).

One thread does everything (connect, ``client.loop()``, publish, PUBACK handling), so the
in-flight map needs no lock and a refused CONNACK can never be mistaken for a connection.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import MqttSettings, TlsSettings
from edge.errors import BrokerError, ConfigError, EdgeError
from edge.events import attach_crop, reads_topic
from edge.store import ReadStore

log = logging.getLogger(__name__)

QOS = 1
DEFAULT_WINDOW = 20
LOOP_TICK_S = 0.05
"""Longest a new read waits for the publisher thread to notice ``notify()``."""
POLL_S = 5.0
"""Look at the store this often even without ``notify()`` (reads added by another process)."""
REJECTED_RETRY_S = 30.0
"""A read the broker refused (PUBACK reason >= 0x80) is offered again after this long."""
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class LastWill:
    """Hook for the device status topic (a later issue): sent by the broker if we vanish."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class _Broker:
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

    @classmethod
    def from_settings(cls, settings: MqttSettings) -> _Broker:
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
            ssl.Purpose.SERVER_AUTH, cafile=None if tls.ca_file is None else str(tls.ca_file)
        )
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if tls.cert_file is not None and tls.key_file is not None:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except FileNotFoundError as exc:
        raise ConfigError(f"mqtt.tls: {exc.filename}: no such file") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"mqtt.tls: cannot load the CA, certificate or key: {exc}") from None
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
    return ctx


class _Link:
    """One connection: a fresh paho client and what its callbacks have seen."""

    def __init__(self, broker: _Broker, client_id: str, window: int, will: LastWill | None):
        self.broker = broker
        self.connack: ReasonCode | None = None
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
        _properties: Properties | None,
    ) -> None:
        self.connack = reason_code

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
                raise BrokerError(
                    f"MQTT broker {where}: connection closed before CONNACK "
                    "(TLS on one side only, or not an MQTT port?)"
                )
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
    link = _Link(
        _Broker.from_settings(settings),
        client_id or f"{base}-check-{uuid.uuid4().hex[:8]}",
        DEFAULT_WINDOW,
        None,
    )
    link.open(timeout_s)
    link.close()


class _Backoff:
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


class MqttPublisher:
    """Publishes every stored read to ``{prefix}/{device_id}/reads`` until acknowledged."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        device_id: str,
        store: ReadStore,
        window: int = DEFAULT_WINDOW,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 60.0,
        will: LastWill | None = None,
    ) -> None:
        try:
            self.topic = reads_topic(settings.topic_prefix, device_id)
        except ValueError as exc:
            raise ConfigError(f"mqtt: {exc}") from None
        self._broker = _Broker.from_settings(settings)
        self._client_id = settings.client_id or device_id
        self._include_crop = settings.include_crop
        self._store = store
        self._window = window
        self._backoff = _Backoff(reconnect_min_s, reconnect_max_s)
        self._will = will
        self._properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        self._properties.PayloadFormatIndicator = 1
        self._properties.ContentType = "application/json"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._connected = threading.Event()
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None
        # Touched only by the publisher thread (paho callbacks run inside client.loop()).
        self._inflight: dict[int, str] = {}
        self._held: dict[str, float] = {}
        self._backlog = True

    @property
    def connected(self) -> bool:
        """True only between a successful CONNACK and the loss of that connection."""
        return self._connected.is_set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("publisher already started")
        if self._broker.tls is None:
            log.warning(
                "MQTT to %s is not encrypted (no [mqtt.tls]): reads cross the network in clear",
                self._broker.address,
            )
        elif not self._broker.tls.check_hostname:
            log.warning("MQTT TLS: the broker's host name is not checked (insecure_skip_verify)")
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop sending and disconnect. Unacknowledged reads stay in the store."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("MQTT publisher did not stop within %.1f s", timeout)

    def notify(self) -> None:
        """A read was stored: send it now rather than at the next poll."""
        self._wake.set()

    def flush(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty; False if reads are still pending at the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._store.pending_count() == 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._progress:
                # Bounded wait: a PUBACK between the count and here is noticed next round.
                self._progress.wait(min(remaining, 0.2))

    def _run(self) -> None:
        last_reason = ""
        while not self._stop.is_set():
            link = _Link(self._broker, self._client_id, self._window, self._will)
            try:
                link.open(CONNECT_TIMEOUT_S, self._stop)
            except BrokerError as exc:
                delay = self._backoff.next()
                level = logging.DEBUG if exc.message == last_reason else logging.WARNING
                log.log(level, "%s; reads are kept, retrying in %.1f s", exc.message, delay)
                last_reason = exc.message
                self._stop.wait(delay)
                continue
            log.info("MQTT connected to %s as %s", self._broker.address, self._client_id)
            last_reason = ""
            self._backoff.reset()
            try:
                self._session(link)
            except EdgeError as exc:  # the store failed under us; keep the thread alive
                log.error("MQTT publisher: %s", exc.message)  # noqa: TRY400 - one clear line
            except Exception:
                log.exception("MQTT publisher: unexpected error; reconnecting")
            finally:
                self._connected.clear()
                self._inflight.clear()
                link.close()
            if not self._stop.is_set():
                delay = self._backoff.next()
                log.warning(
                    "MQTT connection to %s lost; %d read(s) pending, reconnecting in %.1f s",
                    self._broker.address,
                    self._store.pending_count(),
                    delay,
                )
                self._stop.wait(delay)

    def _session(self, link: _Link) -> None:
        link.client.on_publish = self._on_publish
        self._connected.set()
        self._backlog = True
        last_fetch = float("-inf")
        while not self._stop.is_set():
            now = time.monotonic()
            due = self._wake.is_set() or self._backlog or now - last_fetch >= POLL_S
            if due and len(self._inflight) < self._window:
                self._wake.clear()
                self._send_more(link.client, now)
                last_fetch = now
            if link.lost or link.client.loop(LOOP_TICK_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return

    def _send_more(self, client: mqtt.Client, now: float) -> None:
        self._held = {eid: t for eid, t in self._held.items() if t > now}
        busy = set(self._inflight.values()) | self._held.keys()
        room = self._window - len(self._inflight)
        limit = len(busy) + room
        reads = self._store.pending(limit, with_crops=self._include_crop)
        self._backlog = False
        for read in reads:
            if read.event_id in busy:
                continue
            payload = (
                attach_crop(read.payload, read.crop_jpeg) if self._include_crop else read.payload
            )
            info = client.publish(self.topic, payload, qos=QOS, properties=self._properties)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return  # the connection is going; client.loop() will tell
            self._inflight[info.mid] = read.event_id
            room -= 1
            if room == 0:
                # There may be more behind these; fetch again as soon as a PUBACK frees room.
                self._backlog = len(reads) == limit
                return

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        event_id = self._inflight.pop(mid, None)
        if event_id is None:
            return
        if reason_code.is_failure:
            log.error(
                "MQTT broker refused read %s: %s; will offer it again in %.0f s",
                event_id,
                reason_code,
                REJECTED_RETRY_S,
            )
            self._held[event_id] = time.monotonic() + REJECTED_RETRY_S
        else:
            self._store.mark_published(event_id)
        with self._progress:
            self._progress.notify_all()
