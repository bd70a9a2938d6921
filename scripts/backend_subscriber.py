"""Reference backend subscriber: the backend team's starting point, and what the tests use.

Subscribes to every device's reads, alerts and status (optionally through an MQTT 5 shared
subscription, so several copies of this process split the load), and for each message:

* checks the Ed25519 signature of every read and alert against the device's public key
  (``KEYS_DIR/<device_id>.pem``, as printed by ``alpr-edge device-key``), and that the
  ``device_id`` inside matches the topic;
* drops duplicates by ``event_id`` (``alert_id`` for alerts);
* tracks ``seq`` per device and stream and reports gaps that stay open past a grace period
  (the backlog and live lanes interleave after an outage, so a hole often fills a moment
  later), and every gap still open at exit;
* counts the reads and alerts a device made before its clock was synchronised
  (``clock_synchronised: false``: their times may be off);
* prints one JSON line per accepted event on stdout, then a summary line at exit.

::

    python3 scripts/backend_subscriber.py --host broker --port 8883 --cafile ca.pem \\
        --keys /etc/alpr-backend/device-keys [--share backend] [--once-count N] [--timeout S]

Exit status: 0 when every event verified and no gap was open at exit (and ``--once-count``
was reached, if given); 1 otherwise; 69 when the broker cannot be reached or refuses the
subscription; 78 when a key file cannot be read. ``ReadVerifier`` holds the logic without
any MQTT and is what tests import.

Only ``paho-mqtt`` and ``cryptography`` are needed: nothing from the device package.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import json
import logging
import queue
import signal
import ssl
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal, TextIO

import paho.mqtt.client as mqtt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger("backend_subscriber")

Stream = Literal["read", "alert"]
Kind = Literal["read", "alert", "status"]
LEAVES: dict[str, Kind] = {"reads": "read", "alerts": "alert", "status": "status"}
ID_KEY: dict[Stream, str] = {"read": "event_id", "alert": "alert_id"}
DEDUP_SIZE = 200_000
"""Event ids remembered for deduplication: about 35 MB (measured), an hour of reads from
3 000 poles at one read a minute each. A copy that comes back after more distinct events
than this is still caught by the ``seq`` tracker (counted as ``duplicates.seq``)."""
GAP_GRACE_S = 60.0
EX_UNAVAILABLE = 69
EX_CONFIG = 78
RECEIVE_MAXIMUM = 100
"""Unacknowledged messages the broker may have in flight to us (we ack after handling)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    kind: Kind
    device_id: str
    seq: int | None
    event_id: str | None
    payload: dict[str, Any]
    filled_reported_gap: bool = False
    """This ``seq`` had already been reported missing: it arrived late, not lost."""


@dataclass(frozen=True, slots=True)
class Rejected:
    topic: str
    reason: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    device_id: str
    event_id: str
    by: Literal["event_id", "seq"]


Outcome = Accepted | Rejected | Duplicate


@dataclass(frozen=True, slots=True)
class Gap:
    device_id: str
    stream: Stream
    first: int
    last: int
    open_s: float

    @property
    def missing(self) -> int:
        return self.last - self.first + 1


@dataclass(slots=True)
class _Hole:
    first: int
    last: int
    since: float
    reported: bool = False


@dataclass(slots=True)
class SeqTracker:
    """The ``seq`` numbers seen from one device's stream: the range from the lowest to the
    highest, and the holes in it. Memory grows with the number of holes, not of reads."""

    low: int = 0
    high: int = 0
    received: int = 0
    holes: list[_Hole] = field(default_factory=list)
    """Sorted by ``first``; never overlapping."""

    def add(self, seq: int, now: float) -> Literal["new", "seen", "late"]:
        """``late``: new, and it fills part of a gap that was already reported."""
        if self.received == 0:
            self.low = self.high = seq
        elif seq > self.high:
            if seq > self.high + 1:
                self.holes.append(_Hole(self.high + 1, seq - 1, now))
            self.high = seq
        elif seq < self.low:
            # The first read seen need not be the oldest: a backlog may still be draining.
            if seq < self.low - 1:
                self.holes.insert(0, _Hole(seq + 1, self.low - 1, now))
            self.low = seq
        else:
            index = bisect.bisect_right([h.first for h in self.holes], seq) - 1
            if index < 0 or self.holes[index].last < seq:
                return "seen"
            hole = self.holes.pop(index)
            parts = [
                _Hole(first, last, hole.since, hole.reported)
                for first, last in ((hole.first, seq - 1), (seq + 1, hole.last))
                if first <= last
            ]
            self.holes[index:index] = parts
            self.received += 1
            return "late" if hole.reported else "new"
        self.received += 1
        return "new"

    def missing(self) -> int:
        return sum(h.last - h.first + 1 for h in self.holes)


class ReadVerifier:
    """Verifies, deduplicates and sequence-checks messages; no MQTT, no clock of its own.

    Not thread-safe: feed it from one thread (the subscriber's main loop does).
    """

    def __init__(
        self,
        keys: Mapping[str, Ed25519PublicKey],
        *,
        prefix: str = "alpr",
        dedup_size: int = DEDUP_SIZE,
        gap_grace_s: float = GAP_GRACE_S,
    ) -> None:
        self.keys = dict(keys)
        self.prefix = prefix.rstrip("/")
        self.gap_grace_s = gap_grace_s
        self._dedup_size = dedup_size
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._trackers: dict[tuple[str, Stream], SeqTracker] = {}
        self._outbox_depth: dict[str, int] = {}
        self.accepted: Counter[str] = Counter()
        self.duplicates: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.clock_unsynchronised: Counter[str] = Counter()
        """Accepted reads and alerts made while the device's clock was not synchronised
        (``clock_synchronised: false``): their times may be off, flag them as evidence."""

    @classmethod
    def keys_from_dir(cls, directory: Path) -> dict[str, Ed25519PublicKey]:
        """``<device_id>.pem`` files, each the output of ``alpr-edge device-key``."""
        keys: dict[str, Ed25519PublicKey] = {}
        for path in sorted(directory.glob("*.pem")):
            key = load_pem_public_key(path.read_bytes())
            if not isinstance(key, Ed25519PublicKey):
                raise TypeError(f"{path}: not an Ed25519 public key")
            keys[path.stem] = key
        return keys

    def handle(self, topic: str, payload: bytes, now: float) -> Outcome:
        where = self._parse_topic(topic)
        if where is None:
            return self._reject(topic, "unexpected topic")
        device_id, kind = where
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return self._reject(topic, "not JSON")
        if not isinstance(body, dict):
            return self._reject(topic, "not a JSON object")
        if body.get("device_id") != device_id:
            return self._reject(topic, "device_id does not match the topic")
        if kind == "status":
            outbox = body.get("outbox")
            if isinstance(outbox, dict) and isinstance(outbox.get("depth"), int):
                self._outbox_depth[device_id] = outbox["depth"]
            self.accepted["status"] += 1
            return Accepted("status", device_id, None, None, body)
        return self._handle_event(topic, device_id, kind, body, now)

    def _handle_event(
        self, topic: str, device_id: str, stream: Stream, body: dict[str, Any], now: float
    ) -> Outcome:
        key = self.keys.get(device_id)
        if key is None:
            return self._reject(topic, "no public key for this device")
        if not _signature_valid(key, body):
            return self._reject(topic, "bad signature")
        event_id, seq = body.get(ID_KEY[stream]), body.get("seq")
        if not isinstance(event_id, str) or not isinstance(seq, int) or seq < 1:
            return self._reject(topic, f"no {ID_KEY[stream]} or seq")
        if event_id in self._seen:
            self._seen.move_to_end(event_id)
            self.duplicates["event_id"] += 1
            return Duplicate(device_id, event_id, "event_id")
        self._remember(event_id)
        tracker = self._trackers.setdefault((device_id, stream), SeqTracker())
        result = tracker.add(seq, now)
        if result == "seen":
            # Older than the dedup window, or the device reused a seq: a real backend's
            # unique index on (device_id, seq) tells which.
            self.duplicates["seq"] += 1
            return Duplicate(device_id, event_id, "seq")
        self.accepted[stream] += 1
        if body.get("clock_synchronised") is False:
            self.clock_unsynchronised[stream] += 1
        return Accepted(stream, device_id, seq, event_id, body, result == "late")

    def _remember(self, event_id: str) -> None:
        self._seen[event_id] = None
        if len(self._seen) > self._dedup_size:
            self._seen.popitem(last=False)

    def _reject(self, topic: str, reason: str) -> Rejected:
        self.rejected[reason] += 1
        return Rejected(topic, reason)

    def _parse_topic(self, topic: str) -> tuple[str, Kind] | None:
        head = f"{self.prefix}/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head) :].split("/")
        if len(parts) != 2 or parts[1] not in LEAVES or not parts[0]:
            return None
        return parts[0], LEAVES[parts[1]]

    def overdue_gaps(self, now: float) -> list[Gap]:
        """Gaps open for at least the grace period and not reported before (each once)."""
        due: list[Gap] = []
        for (device_id, stream), tracker in self._trackers.items():
            for hole in tracker.holes:
                if not hole.reported and now - hole.since >= self.gap_grace_s:
                    hole.reported = True
                    due.append(Gap(device_id, stream, hole.first, hole.last, now - hole.since))
        return due

    def open_gaps(self, now: float) -> list[Gap]:
        return [
            Gap(device_id, stream, hole.first, hole.last, now - hole.since)
            for (device_id, stream), tracker in self._trackers.items()
            for hole in tracker.holes
        ]

    def outbox_depth(self, device_id: str) -> int | None:
        """The device's own count of unsent reads, from its latest status."""
        return self._outbox_depth.get(device_id)

    def summary(self, now: float) -> dict[str, Any]:
        devices: dict[str, dict[str, Any]] = {}
        for (device_id, stream), tracker in sorted(self._trackers.items()):
            devices.setdefault(device_id, {})[stream] = {
                "first": tracker.low,
                "last": tracker.high,
                "received": tracker.received,
                "missing": tracker.missing(),
                "gaps": [[h.first, h.last] for h in tracker.holes],
            }
        return {
            "kind": "summary",
            "accepted": dict(self.accepted),
            "duplicates": dict(self.duplicates),
            "rejected": dict(self.rejected),
            "clock_unsynchronised": dict(self.clock_unsynchronised),
            "gaps_open": len(self.open_gaps(now)),
            "devices": devices,
        }


def _signature_valid(key: Ed25519PublicKey, body: dict[str, Any]) -> bool:
    """The rule of docs/events.md: sorted keys, no whitespace, non-ASCII as itself."""
    signature = body.get("signature")
    if not isinstance(signature, str):
        return False
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    signed = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        key.verify(base64.b64decode(signature, validate=True), signed.encode("utf-8"))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def topics(prefix: str, share: str | None) -> list[str]:
    """``{prefix}/+/reads`` etc., as ``$share/GROUP/...`` when sharing the load."""
    plain = [f"{prefix}/+/{leaf}" for leaf in LEAVES]
    return plain if share is None else [f"$share/{share}/{t}" for t in plain]


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    mid: int
    qos: int


class BackendSubscriber:
    """The MQTT side: paho's thread queues messages, the main loop handles them and only
    then acknowledges them (manual ack), so a crash never loses an acknowledged read."""

    def __init__(self, args: argparse.Namespace, verifier: ReadVerifier, out: TextIO) -> None:
        self.args = args
        self.verifier = verifier
        self.out = out
        self.stop = threading.Event()
        self._queue: queue.Queue[_Message] = queue.Queue()
        self._subscribed = threading.Event()
        self._refused: str | None = None
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        args = self.args
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=args.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.reconnect_delay_set(1, 30)
        if args.username is not None:
            password = None
            if args.password_file is not None:
                password = Path(args.password_file).read_text(encoding="utf-8").strip()
            client.username_pw_set(args.username, password)
        if args.cafile is not None:
            ctx = ssl.create_default_context(cafile=args.cafile)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if args.cert is not None:
                ctx.load_cert_chain(args.cert, args.key)
            client.tls_set_context(ctx)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._refused = f"connection refused: {reason}"
            log.error("MQTT broker %s:%d: %s", self.args.host, self.args.port, self._refused)
            return
        if flags.session_present:  # the broker kept our subscriptions (and queued messages)
            self._subscribed.set()
        else:
            client.subscribe([(t, 1) for t in topics(self.args.prefix, self.args.share)])

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _mid: int,
        reasons: list[ReasonCode],
        _props: Properties | None,
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            self._refused = f"subscription refused: {', '.join(refused)}"
            log.error("MQTT broker %s:%d: %s", self.args.host, self.args.port, self._refused)
        self._subscribed.set()

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        self._queue.put(_Message(msg.topic, bytes(msg.payload), msg.mid, msg.qos))

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if not self.stop.is_set():
            log.warning("MQTT connection lost (%s); reconnecting", reason)

    def connect(self, timeout_s: float = 10.0) -> None:
        args = self.args
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        if args.session_expiry > 0:
            props.SessionExpiryInterval = args.session_expiry
        self._client.connect(
            args.host,
            args.port,
            keepalive=30,
            clean_start=args.session_expiry == 0,
            properties=props,
        )
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s) or self._refused is not None:
            self._client.loop_stop()
            raise ConnectionError(self._refused or f"no SUBACK within {timeout_s:g} s")
        log.info("subscribed to %s", ", ".join(topics(args.prefix, args.share)))

    def run(self) -> int:
        args = self.args
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        reached = args.once_count is None
        while not self.stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            try:
                message = self._queue.get(timeout=0.2)
            except queue.Empty:
                message = None
            now = time.monotonic()
            if message is not None:
                self._emit_outcome(self.verifier.handle(message.topic, message.payload, now))
                if message.qos > 0:
                    self._client.ack(message.mid, message.qos)
            for gap in self.verifier.overdue_gaps(now):
                self._emit_gap(gap, "gap")
            if args.once_count is not None and self.verifier.accepted["read"] >= args.once_count:
                reached = True
                break
        self._client.disconnect()
        self._client.loop_stop()
        now = time.monotonic()
        open_gaps = self.verifier.open_gaps(now)
        for gap in open_gaps:
            self._emit_gap(gap, "gap_at_exit")
        self._emit(self.verifier.summary(now))
        clean = reached and not open_gaps and not self.verifier.rejected
        return 0 if clean else 1

    def _emit_outcome(self, outcome: Outcome) -> None:
        if isinstance(outcome, Rejected):
            log.warning("rejected message on %s: %s", outcome.topic, outcome.reason)
            self._emit({"kind": "rejected", "topic": outcome.topic, "reason": outcome.reason})
        elif isinstance(outcome, Duplicate):
            log.debug(
                "duplicate %s from %s (by %s)", outcome.event_id, outcome.device_id, outcome.by
            )
        else:
            payload = outcome.payload
            if not self.args.crops and "plate_crop_jpeg" in payload:
                payload = {k: v for k, v in payload.items() if k != "plate_crop_jpeg"}
            self._emit(
                {
                    "kind": outcome.kind,
                    "device_id": outcome.device_id,
                    "seq": outcome.seq,
                    "id": outcome.event_id,
                    "late": outcome.filled_reported_gap,
                    "payload": payload,
                }
            )

    def _emit_gap(self, gap: Gap, kind: str) -> None:
        log.warning(
            "%s: %s seq %d..%d missing (%d) for %.0f s",
            gap.device_id,
            gap.stream,
            gap.first,
            gap.last,
            gap.missing,
            gap.open_s,
        )
        self._emit(
            {
                "kind": kind,
                "device_id": gap.device_id,
                "stream": gap.stream,
                "first": gap.first,
                "last": gap.last,
                "missing": gap.missing,
                "open_s": round(gap.open_s, 1),
                # Non-zero: most likely a backlog still draining, not a lost read.
                "device_outbox_depth": self.verifier.outbox_depth(gap.device_id),
            }
        )

    def _emit(self, line: Mapping[str, Any]) -> None:
        self.out.write(json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n")
        self.out.flush()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--prefix", default="alpr", help="the devices' mqtt.topic_prefix")
    p.add_argument("--keys", type=Path, required=True, help="directory of <device_id>.pem")
    p.add_argument("--share", metavar="GROUP", help="subscribe as $share/GROUP/... (MQTT 5)")
    p.add_argument("--client-id", default="alpr-backend")
    p.add_argument(
        "--session-expiry",
        type=int,
        default=86_400,
        metavar="S",
        help="keep the broker session (and messages for us) this long while we are away; "
        "0 = clean session (reads published meanwhile are lost to us)",
    )
    p.add_argument("--gap-grace", type=float, default=GAP_GRACE_S, metavar="S")
    p.add_argument("--dedup-size", type=int, default=DEDUP_SIZE, metavar="N")
    p.add_argument("--once-count", type=int, metavar="N", help="exit after N distinct reads")
    p.add_argument("--timeout", type=float, metavar="S", help="exit after S seconds")
    p.add_argument("--crops", action="store_true", help="keep plate_crop_jpeg in the output")
    p.add_argument("--cafile", help="CA certificate: connect with TLS")
    p.add_argument("--cert", help="client certificate (mutual TLS)")
    p.add_argument("--key", help="client certificate's key")
    p.add_argument("--username")
    p.add_argument("--password-file")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        keys = ReadVerifier.keys_from_dir(args.keys)
    except (OSError, ValueError, TypeError) as exc:
        log.error("device keys in %s: %s", args.keys, exc)  # noqa: TRY400 - one clear line
        return EX_CONFIG
    verifier = ReadVerifier(
        keys,
        prefix=args.prefix,
        dedup_size=args.dedup_size,
        gap_grace_s=args.gap_grace,
    )
    log.info("%d device key(s) from %s", len(verifier.keys), args.keys)
    subscriber = BackendSubscriber(args, verifier, sys.stdout)

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        subscriber.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        subscriber.connect()
    except (OSError, ssl.SSLError) as exc:
        log.error("MQTT broker %s:%d: %s", args.host, args.port, exc)  # noqa: TRY400
        return EX_UNAVAILABLE
    return subscriber.run()


if __name__ == "__main__":
    sys.exit(main())
