"""Audited local access: ``alpr-edge reads search`` refuses without a reason and user, logs
before it answers; the hash chain shows tampering; entries are published."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Mosquitto

from edge.atrest import load_cipher
from edge.audit import AuditLog
from edge.cli import main
from edge.config import MqttSettings, load_settings
from edge.errors import EX_DATAERR, EX_USAGE
from edge.events import ReadEvent
from edge.publisher import MqttPublisher
from edge.signing import EventSigner, verify_read
from edge.store import ReadStore

MakeEvent = Callable[..., ReadEvent]


@pytest.fixture
def config(tmp_path: Path, make_event: MakeEvent) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'device_id = "pole-17"\n[storage]\ndir = "{tmp_path / "state"}"\n'
        '[[cameras]]\nid = "cam-north"\nsource = "file:///clip.mp4"\n',
        encoding="utf-8",
    )
    settings = load_settings(path)
    store = ReadStore(settings.storage.dir / "reads.db", load_cipher(settings))
    for text in ("ABC1234", "ABC1234", "ABD1234", "XYZ9876"):
        store.add(make_event(text), b"")
    store.close()
    return path


def search(config: Path, *extra: str) -> list[str]:
    return ["reads", "search", "--config", str(config), *extra]


def test_search_without_reason_or_user_is_refused_and_logs_nothing(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(search(config, "--plate", "ABC1234", "--user", "kim"))
    assert exit_info.value.code == 2  # argparse: --reason is required
    assert main(search(config, "--plate", "ABC1234", "--reason", "  ", "--user", "kim")) == (
        EX_USAGE
    )
    assert "--reason is required" in capsys.readouterr().err
    audit = AuditLog(config.parent / "state" / "audit.db")
    assert audit.entries() == []
    audit.close()


def test_search_is_logged_before_results_and_finds_exact_and_wildcard(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--plate", "ABC1234", "--reason", "case 24-1234", "--user", "kim", "--json"]
    assert main(search(config, *args)) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["plate"] for r in out] == ["ABC1234", "ABC1234"]
    args = ["--plate", "AB?1234", "--reason", "case 24-1235", "--user", "lee", "--json"]
    assert main(search(config, *args)) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(r["plate"] for r in out) == ["ABC1234", "ABC1234", "ABD1234"]
    settings = load_settings(config)
    audit = AuditLog(settings.storage.dir / "audit.db", load_cipher(settings))
    first, second = audit.entries()
    assert (first.user, first.reason, first.action, first.results) == (
        "kim",
        "case 24-1234",
        "reads.search",
        2,
    )
    assert audit.open_query(first)["plate"] == "ABC1234"
    assert b"ABC1234" not in (settings.storage.dir / "audit.db").read_bytes()  # sealed
    assert second.prev_hash == first.hash
    assert audit.verify().ok
    audit.close()


def test_a_dragnet_pattern_is_refused(config: Path) -> None:
    assert main(search(config, "--plate", "A*", "--reason", "r", "--user", "kim")) == EX_USAGE


def test_audit_verify_finds_a_changed_entry(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for user in ("kim", "lee", "max"):
        main(search(config, "--plate", "XYZ9876", "--reason", "case 7", "--user", user))
    capsys.readouterr()
    assert main(["audit", "verify", "--config", str(config)]) == 0
    assert "3 entries, chain intact" in capsys.readouterr().out
    db = sqlite3.connect(config.parent / "state" / "audit.db")
    db.execute("UPDATE audit SET user = 'nobody' WHERE id = 2")
    db.commit()
    db.close()
    assert main(["audit", "verify", "--config", str(config)]) == EX_DATAERR
    assert "broken at entry 2: content changed" in capsys.readouterr().err
    db = sqlite3.connect(config.parent / "state" / "audit.db")
    db.execute("UPDATE audit SET user = 'lee' WHERE id = 2")
    db.execute("DELETE FROM audit WHERE id = 2")
    db.commit()
    db.close()
    assert main(["audit", "verify", "--config", str(config)]) == EX_DATAERR
    assert "broken at entry 3: does not follow" in capsys.readouterr().err


def test_audit_list_shows_who_why_and_what(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(search(config, "--plate", "XYZ9876", "--reason", "case 7", "--user", "kim"))
    capsys.readouterr()
    assert main(["audit", "list", "--config", str(config)]) == 0
    line = capsys.readouterr().out
    assert "user=kim" in line
    assert '"plate": "XYZ9876"' in line
    assert "results=1" in line


def test_audit_entries_are_published_signed(
    mosquitto: Mosquitto, tmp_path: Path, signer: EventSigner
) -> None:
    audit = AuditLog(tmp_path / "audit.db")
    audit.append(
        user="kim", reason="case 1", action="reads.search", query={"plate": "A"}, results=0
    )
    store = ReadStore(tmp_path / "reads.db")
    collector = mosquitto.subscribe("alpr/pole-17/audit")
    publisher = MqttPublisher(
        MqttSettings(host=mosquitto.host, port=mosquitto.port),
        device_id="pole-17",
        store=store,
        signer=signer,
        audit=audit,
    )
    publisher.start()
    try:
        (message,) = collector.wait_for(1, timeout=5.0)
        deadline = time.monotonic() + 3
        while audit.pending(10) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert audit.pending(10) == []
    finally:
        publisher.stop(5)
        store.close()
    payload = json.loads(message.payload)
    assert verify_read(signer.private_key.public_key(), message.payload)
    assert (payload["user"], payload["reason"], payload["id"]) == ("kim", "case 1", 1)
    assert payload["hash"] == audit.entries()[0].hash
    audit.close()
