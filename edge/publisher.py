"""MQTT publisher: drains the outbox (``edge.store``) to the broker, QoS 1, signed.

The store is the only queue. paho's own queue lives in memory, so each connection gets a
fresh paho client and nothing is ever handed to paho while disconnected; a read is marked
published only when its PUBACK arrives. After a reconnect every unacknowledged read is sent
again from the store with the same bytes (so a receiver may see a duplicate ``event_id``,
never a changed payload, and never a gap that was not purged by retention). Reads stored
since the connect go out at once; older ones drain at a bounded rate (``edge.lanes``).

One thread does everything (connect, ``client.loop()``, publish, PUBACK handling), so the
in-flight map needs no lock and a refused CONNACK can never be mistaken for a connection.
PUBACKs are collected during ``client.loop()`` and committed to the store after it, in one
transaction per loop: paho holds its own lock while calling ``on_publish``.

It also owns the device status topic: the daemon offers ``online`` payloads, the publisher
sends the newest one retained (again after every reconnect), sets ``offline`` as the last
will, and publishes ``offline`` itself on a clean stop.

Alerts (``edge.alerts``) go out on their own topic ahead of every read, and audit log entries
(``edge.audit``) after them, each until its PUBACK, signed like reads. The same connection
subscribes to the hot-list topics and hands each message to ``on_hotlist``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.alerts import AlertOutbox
from edge.audit import AuditLog, audit_payload
from edge.config import MqttSettings
from edge.errors import BrokerError, ConfigError, EdgeError
from edge.events import encode_payload, reads_topic, status_topic, wire_payload
from edge.hotlist import Source
from edge.lanes import Lane, RateLimiter, lane_window
from edge.mqtt_link import (
    DEFAULT_WINDOW,
    LOOP_TICK_S,
    Backoff,
    Broker,
    LastWill,
    Link,
    connect_check,
    publish_packet_size,
    tls_context,
)
from edge.signing import EventSigner
from edge.status import offline_payload
from edge.store import ReadStore, StoredRead

__all__ = ["DEFAULT_WINDOW", "LastWill", "MqttPublisher", "connect_check", "tls_context"]

log = logging.getLogger(__name__)

QOS = 1
POLL_S = 5.0
"""Look at the store this often even without ``notify()`` (reads added by another process)."""
REJECTED_RETRY_S = 30.0
"""A read the broker refused (PUBACK reason >= 0x80), or one over the maximum packet size
its CONNACK announced, is offered again after this long (the limit may have been raised)."""
CONNECT_TIMEOUT_S = 5.0
GOODBYE_TIMEOUT_S = 2.0
"""How long a clean stop waits for the PUBACK of the retained ``offline``."""
AUDIT_IN_FLIGHT = 2
HotlistHandler = Callable[[Source, bytes], None]
"""Called with ``"fleet"`` or ``"device"`` and the message, on the publisher thread."""


def device_leaf_topic(prefix: str, device_id: str, leaf: str) -> str:
    """``{prefix}/{device_id}/{leaf}``, checked like the reads topic."""
    base = reads_topic(prefix, device_id)
    return f"{base[: -len('reads')]}{leaf}"


@dataclass(frozen=True, slots=True)
class _InFlight:
    event_id: str
    """The read's event_id, the alert's alert_id, or the audit entry's id."""
    lane: Lane


class MqttPublisher:
    """Publishes every stored read to ``{prefix}/{device_id}/reads`` until acknowledged."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        device_id: str,
        store: ReadStore,
        signer: EventSigner,
        window: int = DEFAULT_WINDOW,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 60.0,
        device_status: bool = True,
        client_id: str | None = None,
        backlog_rate_per_s: float | None = None,
        alerts: AlertOutbox | None = None,
        audit: AuditLog | None = None,
        on_hotlist: HotlistHandler | None = None,
    ) -> None:
        """``device_status=False`` (``alpr-edge flush``) leaves the status topic and the last
        will alone: only the daemon speaks for the device."""
        try:
            self.topic = reads_topic(settings.topic_prefix, device_id)
            self.status_topic = status_topic(settings.topic_prefix, device_id)
            self.alerts_topic = device_leaf_topic(settings.topic_prefix, device_id, "alerts")
            self.audit_topic = device_leaf_topic(settings.topic_prefix, device_id, "audit")
            self.hotlist_topics: dict[str, Source] = {
                f"{settings.topic_prefix}/hotlist": "fleet",
                device_leaf_topic(settings.topic_prefix, device_id, "hotlist"): "device",
            }
        except ValueError as exc:
            raise ConfigError(f"mqtt: {exc}") from None
        self._broker = Broker.from_settings(settings)
        self._client_id = client_id or settings.client_id or device_id
        self._device_id = device_id
        self._include_crop = settings.include_crop
        self._store = store
        self._signer = signer
        self._alerts = alerts
        self._audit = audit
        self._on_hotlist = on_hotlist
        self._alert_wake = threading.Event()
        self._window = window
        self._backoff = Backoff(reconnect_min_s, reconnect_max_s)
        self._device_status = device_status
        self._backlog_rate = (
            settings.backlog_rate_per_s if backlog_rate_per_s is None else backlog_rate_per_s
        )
        self._properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        self._properties.PayloadFormatIndicator = 1
        self._properties.ContentType = "application/json"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._connected = threading.Event()
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None
        self._status_offered: bytes | None = None
        self._connections = 0
        # Touched only by the publisher thread (paho callbacks run inside client.loop()).
        self._inflight: dict[int, _InFlight] = {}
        self._acked: list[_InFlight] = []
        self._held: dict[str, float] = {}
        self._refused: dict[str, str] = {}
        """Refused or too large, by id, until acknowledged; its size is read by other threads."""
        self._max_packet: int | None = None
        self._boundary = 0
        self._backlog_more = True
        self._status_sent: bytes | None = None
        self._goodbye_mid: int | None = None

    @property
    def connected(self) -> bool:
        """True only between a successful CONNACK and the loss of that connection."""
        return self._connected.is_set()

    @property
    def connections(self) -> int:
        """Successful connects so far; a change means a fresh status is due."""
        return self._connections

    @property
    def refused_count(self) -> int:
        """Reads, alerts and audit entries kept in the outbox because the broker refused them
        or they exceed its maximum packet size (``outbox.refused`` in the status)."""
        return len(self._refused)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("publisher already started")
        if self._broker.tls is None and self._broker.loopback:
            log.info("MQTT to %s over plain TCP (loopback)", self._broker.address)
        elif self._broker.tls is None:
            log.warning(
                "MQTT to %s is not encrypted (allow_insecure_plain): reads cross the network "
                "in clear",
                self._broker.address,
            )
        elif not self._broker.tls.check_hostname:
            log.warning("MQTT TLS: the broker's host name is not checked (insecure_skip_verify)")
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop sending, say ``offline`` (when connected) and disconnect. Unacknowledged
        reads stay in the store."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("MQTT publisher did not stop within %.1f s", timeout)

    def notify(self) -> None:
        """A read was stored: send it now rather than at the next poll."""
        self._wake.set()

    def notify_alert(self) -> None:
        """An alert was stored: send it before anything else."""
        self._alert_wake.set()

    def offer_status(self, payload: bytes) -> None:
        """The newest ``online`` status; sent retained as soon as connected."""
        self._status_offered = payload
        self._wake.set()

    def flush(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty; False if reads are still pending at the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self._store.has_pending() and not (
                self._alerts is not None and self._alerts.has_pending()
            ):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._progress:
                # Bounded wait: a PUBACK between the count and here is noticed next round.
                self._progress.wait(min(remaining, 0.2))

    def _will(self) -> LastWill | None:
        if not self._device_status:
            return None
        return LastWill(self.status_topic, offline_payload(self._device_id, "connection_lost"))

    def _run(self) -> None:
        last_reason = ""
        while not self._stop.is_set():
            link = Link(self._broker, self._client_id, self._window, self._will())
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
                self._acked.clear()
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

    def _session(self, link: Link) -> None:
        client = link.client
        client.on_publish = self._on_publish
        if self._on_hotlist is not None:
            client.on_message = self._on_message
            client.subscribe([(topic, QOS) for topic in self.hotlist_topics])
        self._boundary = self._store.last_seq()
        self._max_packet = link.max_packet_size
        self._backlog_more = True
        self._status_sent = None
        limiter = RateLimiter(self._backlog_rate, time.monotonic())
        self._connected.set()
        self._connections += 1
        if self._boundary and self._store.has_pending():
            log.info(
                "outbox backlog up to seq %d: draining at %s",
                self._boundary,
                f"{self._backlog_rate:g} reads/s" if self._backlog_rate > 0 else "full speed",
            )
        last_poll = float("-inf")
        while not self._stop.is_set():
            now = time.monotonic()
            poll = now - last_poll >= POLL_S
            if poll:
                last_poll = now
                self._backlog_more = True  # a held read may be due again
            if poll or self._alert_wake.is_set():
                self._send_alerts(client)
            self._send_status(client)
            self._send_reads(client, now, limiter, live=poll or self._wake.is_set())
            if poll:
                self._send_audit(client)
            if link.lost or client.loop(LOOP_TICK_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._commit_acks()
                return
            self._commit_acks()
        self._say_goodbye(link)

    def _send_status(self, client: mqtt.Client) -> None:
        offered = self._status_offered
        if not self._device_status or offered is None or offered is self._status_sent:
            return
        info = client.publish(self.status_topic, offered, qos=QOS, retain=True)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._status_sent = offered

    def _send_alerts(self, client: mqtt.Client) -> None:
        """Every stored, unacknowledged alert not already in flight, as far as slots allow."""
        if self._alerts is None:
            return
        self._alert_wake.clear()
        room = self._window - len(self._inflight)
        if room <= 0:
            self._alert_wake.set()  # a PUBACK will free a slot: look again next loop
            return
        busy = {f.event_id for f in self._inflight.values() if f.lane is Lane.ALERT}
        for alert in self._alerts.pending(len(busy) + room):
            if alert.alert_id in busy or alert.alert_id in self._held:
                continue
            wire = wire_payload(alert.payload, None, self._signer.sign)
            if self._too_large(self.alerts_topic, wire, alert.alert_id, Lane.ALERT):
                continue
            info = client.publish(self.alerts_topic, wire, qos=QOS, properties=self._properties)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            self._inflight[info.mid] = _InFlight(alert.alert_id, Lane.ALERT)
            room -= 1
            if room == 0:
                self._alert_wake.set()
                return

    def _send_audit(self, client: mqtt.Client) -> None:
        if self._audit is None:
            return
        busy = {f.event_id for f in self._inflight.values() if f.lane is Lane.AUDIT}
        room = min(AUDIT_IN_FLIGHT - len(busy), self._window - len(self._inflight))
        if room <= 0:
            return
        for entry in self._audit.pending(len(busy) + room):
            if str(entry.id) in busy or str(entry.id) in self._held:
                continue
            stored = encode_payload(audit_payload(entry, self._device_id))
            wire = wire_payload(stored, None, self._signer.sign)
            if self._too_large(self.audit_topic, wire, str(entry.id), Lane.AUDIT):
                continue
            info = client.publish(self.audit_topic, wire, qos=QOS, properties=self._properties)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            self._inflight[info.mid] = _InFlight(str(entry.id), Lane.AUDIT)
            room -= 1
            if room == 0:
                return

    def _send_reads(
        self, client: mqtt.Client, now: float, limiter: RateLimiter, *, live: bool
    ) -> None:
        live_in_flight = sum(1 for f in self._inflight.values() if f.lane is Lane.LIVE)
        backlog_in_flight = sum(1 for f in self._inflight.values() if f.lane is Lane.BACKLOG)
        others = len(self._inflight) - live_in_flight - backlog_in_flight
        allowed = lane_window(
            window=self._window - others,
            live_in_flight=live_in_flight,
            backlog_in_flight=backlog_in_flight,
            backlog_tokens=limiter.available(now) if self._backlog_more else 0,
        )
        self._held = {eid: t for eid, t in self._held.items() if t > now}
        busy = {f.event_id for f in self._inflight.values()} | self._held.keys()
        if live and allowed.live > 0:
            # Cleared before the fetch, so a notify() during it is not lost; left set while
            # the window is full, so the fetch happens as soon as a PUBACK frees a slot.
            self._wake.clear()
            sent = self._publish_lane(
                client, Lane.LIVE, allowed.live, busy, seq_from=self._boundary + 1
            )
            if sent == allowed.live:
                self._wake.set()  # the live lane may hold more: look again next loop
        if allowed.backlog > 0:
            room = min(allowed.backlog, self._window - len(self._inflight))
            sent = self._publish_lane(client, Lane.BACKLOG, room, busy, seq_to=self._boundary)
            limiter.take(sent)
            if sent < room:
                self._backlog_more = False

    def _publish_lane(
        self,
        client: mqtt.Client,
        lane: Lane,
        room: int,
        busy: set[str],
        *,
        seq_from: int = 1,
        seq_to: int | None = None,
    ) -> int:
        """Publish up to ``room`` reads of one lane, lowest ``seq`` first; how many went (a
        read held back as too large counts too: the lane may hold more behind it)."""
        if room <= 0:
            return 0
        reads = self._store.pending(
            len(busy) + room, with_crops=self._include_crop, seq_from=seq_from, seq_to=seq_to
        )
        sent = 0
        for read in reads:
            if read.event_id in busy:
                continue
            wire = self._wire(read)
            if self._too_large(self.topic, wire, read.event_id, lane):
                busy.add(read.event_id)
                sent += 1
                if sent == room:
                    break
                continue
            info = client.publish(self.topic, wire, qos=QOS, properties=self._properties)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return room  # the connection is going; client.loop() will tell
            self._inflight[info.mid] = _InFlight(read.event_id, lane)
            busy.add(read.event_id)
            sent += 1
            if sent == room:
                break
        return sent

    def _too_large(self, topic: str, wire: bytes, event_id: str, lane: Lane) -> bool:
        """Over the broker's maximum packet size: the broker would drop the connection, and
        every reconnect would send it again. Kept in the outbox, held like a refused read."""
        if self._max_packet is None:
            return False
        size = publish_packet_size(topic, wire, self._properties)
        if size <= self._max_packet:
            return False
        self._hold(
            event_id,
            lane,
            f"{size} bytes, over the broker's maximum packet size of {self._max_packet} "
            "(raise the broker's limit, or turn mqtt.include_crop off)",
        )
        return True

    def _hold(self, event_id: str, lane: Lane, reason: str) -> None:
        """Keep an unsendable message in the outbox and offer it again later; the error is
        logged once per message (later rounds at debug level) and counted in the status."""
        level = logging.DEBUG if self._refused.get(event_id) == reason else logging.ERROR
        log.log(
            level,
            "MQTT: %s %s not delivered: %s; kept in the outbox, offered again in %.0f s",
            "read" if lane in (Lane.LIVE, Lane.BACKLOG) else lane.value,
            event_id,
            reason,
            REJECTED_RETRY_S,
        )
        self._refused[event_id] = reason
        self._held[event_id] = time.monotonic() + REJECTED_RETRY_S

    def _wire(self, read: StoredRead) -> bytes:
        crop = read.crop_jpeg if self._include_crop else None
        return wire_payload(read.payload, crop, self._signer.sign)

    def _say_goodbye(self, link: Link) -> None:
        """Retained ``offline`` on a clean stop: the DISCONNECT that follows makes the broker
        drop the last will, so without this the topic would keep saying ``online``."""
        if not self._device_status or link.lost:
            return
        payload = offline_payload(self._device_id, "shutdown", datetime.now(UTC))
        info = link.client.publish(self.status_topic, payload, qos=QOS, retain=True)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return
        self._goodbye_mid = info.mid
        deadline = time.monotonic() + GOODBYE_TIMEOUT_S
        while self._goodbye_mid is not None and time.monotonic() < deadline:
            if link.client.loop(LOOP_TICK_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        self._commit_acks()

    def _commit_acks(self) -> None:
        if not self._acked:
            return
        acked, self._acked = self._acked, []
        for flight in acked:
            self._refused.pop(flight.event_id, None)
        self._store.mark_published_many(
            [f.event_id for f in acked if f.lane in (Lane.LIVE, Lane.BACKLOG)]
        )
        if self._alerts is not None:
            self._alerts.mark_published_many([f.event_id for f in acked if f.lane is Lane.ALERT])
        if self._audit is not None:
            self._audit.mark_published_many(
                [int(f.event_id) for f in acked if f.lane is Lane.AUDIT]
            )
        with self._progress:
            self._progress.notify_all()

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if mid == self._goodbye_mid:
            self._goodbye_mid = None
        flight = self._inflight.pop(mid, None)
        if flight is None:
            return
        if reason_code.is_failure:
            self._hold(flight.event_id, flight.lane, f"refused by the broker: {reason_code}")
        else:
            self._acked.append(flight)

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        source = self.hotlist_topics.get(msg.topic)
        if source is not None and self._on_hotlist is not None:
            self._on_hotlist(source, bytes(msg.payload))
