"""The clock state on each read: a Pi booted without network keeps a saved time until NTP
synchronises, and each read says whether its times can be trusted (read schema 1.3)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import jsonschema
import pytest
from conftest import CAMERA, make_vehicle_pass

from edge.app import Daemon
from edge.clock import ClockWatch, clock_synchronised
from edge.config import Settings
from edge.events import (
    build_read_event,
    encode_payload,
    read_event_schema,
    to_payload,
    wire_payload,
)
from edge.publisher import MqttPublisher
from edge.signing import EventSigner
from edge.store import ReadStore


class Probe:
    """A clock answer that the test sets, counting how often it is asked."""

    def __init__(self, answer: bool | None) -> None:
        self.answer = answer
        self.calls = 0

    def __call__(self) -> bool | None:
        self.calls += 1
        return self.answer


def test_watch_reuses_an_answer_for_its_refresh_time_then_asks_again() -> None:
    probe, now = Probe(False), [100.0]
    watch = ClockWatch(probe, refresh_s=60.0, monotonic=lambda: now[0])
    assert watch.state() is False
    probe.answer = True
    now[0] += 59.9
    assert watch.state() is False and probe.calls == 1
    now[0] += 0.1
    assert watch.state() is True and probe.calls == 2


def test_watch_asks_once_when_many_threads_ask_at_once() -> None:
    probe = Probe(True)
    watch = ClockWatch(probe, refresh_s=60.0)
    answers: list[bool | None] = []
    threads = [threading.Thread(target=lambda: answers.append(watch.state())) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [True] * 16 and probe.calls == 1


def test_this_machine_answers_true_false_or_cannot_tell() -> None:
    assert clock_synchronised() in (True, False, None)
    assert ClockWatch().state() == clock_synchronised()


@pytest.mark.parametrize("state", [True, False, None])
def test_read_payload_carries_the_clock_state_and_validates(
    state: bool | None, signer: EventSigner
) -> None:
    event = build_read_event(
        make_vehicle_pass("AB12CDE"), device_id="pole-17", camera=CAMERA, clock_synchronised=state
    )
    payload = json.loads(wire_payload(encode_payload(to_payload(event, seq=1)), None, signer.sign))
    assert payload["clock_synchronised"] is state
    assert payload["schema_version"] == "1.3"
    jsonschema.validate(payload, read_event_schema())


def test_schema_requires_the_clock_state_from_1_3_only(signer: EventSigner) -> None:
    event = build_read_event(make_vehicle_pass("AB12CDE"), device_id="pole-17", camera=CAMERA)
    payload = json.loads(wire_payload(encode_payload(to_payload(event, seq=1)), None, signer.sign))
    validator = jsonschema.Draft202012Validator(read_event_schema())
    assert validator.is_valid(payload)
    payload["clock_synchronised"] = "yes"
    assert not validator.is_valid(payload)
    del payload["clock_synchronised"]
    assert not validator.is_valid(payload)  # a 1.3 read without it
    for older in ("1.0", "1.1", "1.2"):  # reads made before the upgrade, sent after it
        payload["schema_version"] = older
        assert validator.is_valid(payload)
    payload["schema_version"] = "1.10"
    assert not validator.is_valid(payload)


def test_daemon_stores_each_read_with_the_clock_state_when_it_was_made(
    tmp_path: Path, signer: EventSigner
) -> None:
    probe = Probe(False)
    settings = Settings(
        device_id="pole-17",
        storage={"dir": tmp_path, "encrypt": False},
        cameras=[CAMERA.model_dump()],
    )
    daemon = Daemon(settings, clock=probe)
    daemon.store = ReadStore(tmp_path / "reads.db")
    daemon.publisher = MqttPublisher(
        settings.mqtt, device_id="pole-17", store=daemon.store, signer=signer
    )
    daemon._emit(make_vehicle_pass("AB12CDE"), CAMERA)  # booted without network
    probe.answer = True  # NTP has synchronised
    daemon._emit(make_vehicle_pass("XY34ZZZ"), CAMERA)
    stored = {r.plate_text: json.loads(r.payload) for r in daemon.store.pending(10)}
    assert stored["AB12CDE"]["clock_synchronised"] is False
    assert stored["XY34ZZZ"]["clock_synchronised"] is True
    daemon.store.close()


def stand_in(bin_dir: Path, name: str, output: str, code: int = 0) -> None:
    """A PATH entry standing in for timedatectl or chronyc (not on every test machine, and
    their answer here is the machine's): it records its environment and prints ``output``."""
    script = bin_dir / name
    script.write_text(f"#!/bin/sh\nenv > '{bin_dir / name}.env'\necho '{output}'\nexit {code}\n")
    script.chmod(0o755)


@pytest.mark.parametrize(
    ("timedatectl", "chronyc", "expected"),
    [
        (("yes", 0), None, True),
        (("no", 0), None, False),
        (("", 1), ("Leap status     : Normal", 0), True),
        (("", 1), ("Leap status     : Not synchronised", 0), False),
        (("", 1), ("", 1), None),
    ],
)
def test_probe_reads_timedatectl_then_chronyc_and_keeps_systemd_channels_to_itself(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    timedatectl: tuple[str, int],
    chronyc: tuple[str, int] | None,
    expected: bool | None,
) -> None:
    stand_in(tmp_path, "timedatectl", *timedatectl)
    if chronyc is not None:
        stand_in(tmp_path, "chronyc", *chronyc)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    # Under systemd the daemon has these; a child systemd tool that fails would otherwise
    # send ERRNO=... to the service's notify socket in the daemon's name.
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "5000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert clock_synchronised() is expected
    seen = (tmp_path / "timedatectl.env").read_text()
    assert "PATH=" in seen
    assert "NOTIFY_SOCKET" not in seen and "WATCHDOG_" not in seen
