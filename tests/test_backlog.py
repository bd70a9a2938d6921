"""After an outage the backlog drains oldest first at a bounded rate, while reads stored
since the reconnect go out at once (real mosquitto, real SQLite)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Collector, Mosquitto

from edge.config import MqttSettings
from edge.events import ReadEvent
from edge.lanes import LIVE_RESERVE, RateLimiter, lane_window
from edge.publisher import MqttPublisher
from edge.signing import EventSigner
from edge.store import ReadStore

MakeEvent = Callable[..., ReadEvent]
TOPIC = "alpr/pole-17/reads"
BACKLOG = 200
RATE = 100.0
LIVE = 5


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReadStore]:
    opened = ReadStore(tmp_path / "reads.db")
    yield opened
    opened.close()


def arrival_of(reads: Collector, event_id: str, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(json.loads(m.payload)["event_id"] == event_id for m in reads.messages):
            return time.monotonic()
        time.sleep(0.01)
    return None


def test_live_reads_overtake_a_backlog_that_drains_in_order_at_its_rate(
    mosquitto: Mosquitto, store: ReadStore, make_event: MakeEvent, signer: EventSigner
) -> None:
    for i in range(BACKLOG):  # stored during the outage
        store.add(make_event(f"OLD{i}"), b"")
    reads = mosquitto.subscribe(TOPIC)
    publisher = MqttPublisher(
        MqttSettings(host="127.0.0.1", port=mosquitto.port, backlog_rate_per_s=RATE),
        device_id="pole-17",
        store=store,
        signer=signer,
    )
    began = time.monotonic()
    publisher.start()
    try:
        latencies = []
        for i in range(LIVE):
            time.sleep(0.2)
            event = make_event(f"NEW{i}")
            store.add(event, b"")
            stored = time.monotonic()
            publisher.notify()
            arrived = arrival_of(reads, event.event_id, timeout=2.0)
            assert arrived is not None, f"live read {i} did not arrive"
            latencies.append(arrived - stored)
            assert store.pending_count() > 0  # the backlog was still draining meanwhile
        assert publisher.flush(timeout_s=10.0)
        drained = time.monotonic() - began
    finally:
        publisher.stop(timeout=5.0)

    assert max(latencies) < 1.0, latencies
    # The rate limit held: the bucket starts with half a second's worth, then RATE a second.
    assert drained >= 0.95 * (BACKLOG - RATE / 2) / RATE
    payloads = [json.loads(m.payload) for m in reads.wait_for(BACKLOG + LIVE)]
    seqs = [p["seq"] for p in payloads]
    assert sorted(set(seqs)) == list(range(1, BACKLOG + LIVE + 1))  # nothing missing
    backlog = [s for s in seqs if s <= BACKLOG]
    live = [s for s in seqs if s > BACKLOG]
    assert backlog == sorted(backlog)  # each lane in seq order
    assert live == sorted(live)
    assert seqs.index(BACKLOG + 1) < seqs.index(BACKLOG)  # the first live read overtook


def test_backlog_leaves_slots_for_live_reads() -> None:
    full_backlog = lane_window(
        window=20, live_in_flight=0, backlog_in_flight=20 - LIVE_RESERVE, backlog_tokens=100
    )
    assert full_backlog.backlog == 0
    assert full_backlog.live == LIVE_RESERVE
    no_tokens = lane_window(window=20, live_in_flight=0, backlog_in_flight=0, backlog_tokens=0)
    assert (no_tokens.live, no_tokens.backlog) == (20, 0)


def test_rate_limiter_refills_at_its_rate_and_zero_means_unlimited() -> None:
    limiter = RateLimiter(50.0, now=0.0)
    assert limiter.available(0.0) == 25  # half a second's worth to start
    limiter.take(25)
    assert limiter.available(0.1) == 5
    assert limiter.available(100.0) == 25  # never more than half a second's worth
    assert RateLimiter(0.0, now=0.0).available(0.0) == RateLimiter.UNLIMITED
