"""The reference backend subscriber: signatures, duplicates, seq gaps with a grace period
(``ReadVerifier``, no broker), and the script itself on a real mosquitto through a shared
subscription."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.publish as publish
import pytest
from conftest import CAMERA, Mosquitto, make_vehicle_pass
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.events import ReadEvent, build_read_event, encode_payload, to_payload, wire_payload
from edge.signing import EventSigner
from scripts.backend_subscriber import Accepted, Duplicate, ReadVerifier, Rejected, topics

MakeEvent = Callable[..., ReadEvent]
TOPIC = "alpr/pole-17/reads"
REPO = Path(__file__).resolve().parent.parent


def signed_read(make_event: MakeEvent, signer: EventSigner, seq: int) -> bytes:
    return wire_payload(
        encode_payload(to_payload(make_event(f"S{seq}"), seq=seq)), None, signer.sign
    )


@pytest.fixture
def verifier(signer: EventSigner) -> ReadVerifier:
    return ReadVerifier({"pole-17": signer.private_key.public_key()}, gap_grace_s=10.0)


def test_valid_read_is_accepted_and_its_copy_dropped(
    verifier: ReadVerifier, make_event: MakeEvent, signer: EventSigner
) -> None:
    wire = signed_read(make_event, signer, 1)
    accepted = verifier.handle(TOPIC, wire, now=0.0)
    assert isinstance(accepted, Accepted)
    assert (accepted.kind, accepted.seq) == ("read", 1)
    again = verifier.handle(TOPIC, wire, now=0.1)
    assert isinstance(again, Duplicate) and again.by == "event_id"
    assert verifier.accepted["read"] == 1


def test_reads_made_before_the_clock_synchronised_are_counted(
    verifier: ReadVerifier, signer: EventSigner
) -> None:
    for seq, state in enumerate((False, True, None, False), start=1):
        event = build_read_event(
            make_vehicle_pass(f"S{seq}"),
            device_id="pole-17",
            camera=CAMERA,
            clock_synchronised=state,
        )
        wire = wire_payload(encode_payload(to_payload(event, seq=seq)), None, signer.sign)
        assert isinstance(verifier.handle(TOPIC, wire, now=0.0), Accepted)
    assert verifier.summary(now=1.0)["clock_unsynchronised"] == {"read": 2}


def test_forged_unknown_and_misplaced_reads_are_rejected(
    verifier: ReadVerifier, make_event: MakeEvent, signer: EventSigner
) -> None:
    forged = json.loads(signed_read(make_event, signer, 1))
    forged["plate"]["text"] = "FORGED"
    other_key = EventSigner(Ed25519PrivateKey.generate())
    cases = {
        "bad signature": (TOPIC, encode_payload(forged)),
        "no public key for this device": (
            "alpr/pole-99/reads",
            signed_read(make_event, signer, 2).replace(b'"pole-17"', b'"pole-99"'),
        ),
        "device_id does not match the topic": (
            "alpr/pole-18/reads",
            signed_read(make_event, other_key, 3),
        ),
        "not JSON": (TOPIC, b"\xff not json"),
        "unexpected topic": ("alpr/pole-17/reads/extra", signed_read(make_event, signer, 4)),
    }
    for reason, (topic, payload) in cases.items():
        outcome = verifier.handle(topic, payload, now=0.0)
        assert isinstance(outcome, Rejected) and outcome.reason == reason, (reason, outcome)
    assert verifier.accepted["read"] == 0


def test_interleaved_lanes_are_no_gap_but_a_persistent_hole_is_reported_once(
    verifier: ReadVerifier, make_event: MakeEvent, signer: EventSigner
) -> None:
    wires = {seq: signed_read(make_event, signer, seq) for seq in range(1, 13)}
    # Backlog 1..6 draining while live reads 10..12 overtake it.
    for t, seq in enumerate([1, 2, 10, 3, 11, 4, 5, 12, 6]):
        verifier.handle(TOPIC, wires[seq], now=float(t))
    assert verifier.overdue_gaps(now=9.0) == []  # 7..9 missing, but not for long yet
    (gap,) = verifier.overdue_gaps(now=12.5)
    assert (gap.first, gap.last, gap.missing) == (7, 9, 3)
    assert verifier.overdue_gaps(now=20.0) == []  # reported once
    late = verifier.handle(TOPIC, wires[8], now=21.0)
    assert isinstance(late, Accepted) and late.filled_reported_gap
    assert [(g.first, g.last) for g in verifier.open_gaps(now=22.0)] == [(7, 7), (9, 9)]
    summary = verifier.summary(now=22.0)
    assert summary["devices"]["pole-17"]["read"]["gaps"] == [[7, 7], [9, 9]]
    assert summary["gaps_open"] == 2


def test_duplicate_older_than_the_dedup_window_is_caught_by_seq(
    signer: EventSigner, make_event: MakeEvent
) -> None:
    small = ReadVerifier({"pole-17": signer.private_key.public_key()}, dedup_size=2)
    wires = [signed_read(make_event, signer, seq) for seq in (1, 2, 3)]
    for wire in wires:
        small.handle(TOPIC, wire, now=0.0)
    outcome = small.handle(TOPIC, wires[0], now=1.0)  # its event_id was forgotten
    assert isinstance(outcome, Duplicate) and outcome.by == "seq"
    assert small.accepted["read"] == 3


def test_shared_subscription_topics() -> None:
    assert topics("alpr", None) == ["alpr/+/reads", "alpr/+/alerts", "alpr/+/status"]
    assert topics("agency/alpr", "backend")[0] == "$share/backend/agency/alpr/+/reads"


def test_script_verifies_reads_through_a_shared_subscription(
    tmp_path: Path, mosquitto: Mosquitto, make_event: MakeEvent, signer: EventSigner
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "pole-17.pem").write_text(signer.public_key_pem(), encoding="utf-8")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "scripts" / "backend_subscriber.py"),
            *("--port", str(mosquitto.port), "--keys", str(keys), "--share", "backend"),
            *("--once-count", "3", "--timeout", "20", "--session-expiry", "0"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # wait for the SUBACK before publishing
        if "subscribed to $share/backend/alpr/+/reads" in line:
            break
    wires = [signed_read(make_event, signer, seq) for seq in (1, 2, 3)]
    publish.multiple(
        [{"topic": TOPIC, "payload": w, "qos": 1} for w in [wires[0], wires[0], *wires[1:]]],
        hostname=mosquitto.host,
        port=mosquitto.port,
    )
    out, _ = proc.communicate(timeout=20)
    lines = [json.loads(line) for line in out.splitlines()]
    assert proc.returncode == 0, lines
    assert [line["seq"] for line in lines if line["kind"] == "read"] == [1, 2, 3]
    assert lines[-1]["kind"] == "summary"
    assert lines[-1]["duplicates"] == {"event_id": 1}
