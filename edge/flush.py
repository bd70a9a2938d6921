"""``alpr-edge flush``: send everything in the outbox now, for a technician after a network
repair (and for tests). Exit 0 once the outbox is empty; 69 with one line when the broker
cannot be reached or stops taking reads.

It may run beside the daemon: it connects with its own client id (``<id>-flush``), leaves
the status topic alone, and any read both send arrives twice with the same bytes, which
receivers drop by ``event_id``. The backlog rate limit does not apply: nothing live waits
behind this process's reads.
"""

from __future__ import annotations

import time
from typing import TextIO

from edge.alerts import AlertOutbox
from edge.atrest import load_cipher
from edge.config import Settings
from edge.errors import BrokerError
from edge.publisher import MqttPublisher, connect_check
from edge.signing import load_signer
from edge.store import ReadStore

STALL_S = 30.0
"""Give up when the outbox has not shrunk for this long."""
CONNECT_TIMEOUT_S = 10.0


def flush_outbox(settings: Settings, *, out: TextIO, stall_s: float = STALL_S) -> int:
    mqtt = settings.mqtt
    client_id = f"{mqtt.client_id or settings.device_id}-flush"
    store = ReadStore(settings.storage.dir / "reads.db", load_cipher(settings))
    alerts = AlertOutbox(store)
    try:
        signer = load_signer(settings)
        connect_check(mqtt, timeout_s=CONNECT_TIMEOUT_S, client_id=client_id)
        pending = store.pending_count()
        if pending == 0 and not alerts.has_pending():
            print("outbox empty: nothing to publish", file=out)
            return 0
        publisher = MqttPublisher(
            mqtt,
            device_id=settings.device_id,
            store=store,
            signer=signer,
            device_status=False,
            client_id=client_id,
            backlog_rate_per_s=0,
            reconnect_min_s=0.5,
            reconnect_max_s=5.0,
            alerts=alerts,
        )
        publisher.start()
        try:
            _wait_until_empty(publisher, store, stall_s, f"{mqtt.host}:{mqtt.port}")
        finally:
            publisher.stop(timeout=5.0)
        print(f"{pending} read(s) published; outbox empty", file=out)
        return 0
    finally:
        store.close()


def _wait_until_empty(
    publisher: MqttPublisher, store: ReadStore, stall_s: float, address: str
) -> None:
    smallest = store.pending_count()
    progress_at = time.monotonic()
    while not publisher.flush(timeout_s=1.0):
        left = store.pending_count()
        if left < smallest:
            smallest, progress_at = left, time.monotonic()
        elif time.monotonic() - progress_at > stall_s:
            raise BrokerError(
                f"MQTT broker {address}: no read acknowledged for {stall_s:g} s; "
                f"{left} read(s) still in the outbox"
            )
