"""Signed reads: the device key is made once with mode 0600, every read on a real broker
verifies with the PEM that ``alpr-edge device-key`` prints, and a changed read does not."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Mosquitto
from cryptography.hazmat.primitives import serialization

from edge.cli import main
from edge.config import Settings, load_settings
from edge.errors import EX_CONFIG, ConfigError
from edge.events import ReadEvent, encode_payload, to_payload, wire_payload
from edge.publisher import MqttPublisher
from edge.signing import (
    DEFAULT_KEY_NAME,
    EventSigner,
    load_public_key,
    load_signer,
    verify_read,
)
from edge.store import ReadStore

MakeEvent = Callable[..., ReadEvent]
CROP = b"\xff\xd8\xff\xe0crop\xff\xd9"


def write_config(tmp_path: Path, port: int = 1883, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""device_id = "pole-17"
{extra}
[mqtt]
host = "127.0.0.1"
port = {port}
[storage]
dir = "{tmp_path / "state"}"
[[cameras]]
id = "cam-north"
source = "v4l2:///dev/video0"
""",
        encoding="utf-8",
    )
    return path


def settings_at(tmp_path: Path, extra: str = "") -> Settings:
    return load_settings(write_config(tmp_path, extra=extra))


def test_key_is_made_on_first_start_with_mode_0600_and_then_reused(tmp_path: Path) -> None:
    settings = settings_at(tmp_path)
    first = load_signer(settings)
    key_file = settings.storage.dir / DEFAULT_KEY_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert load_signer(settings).public_key_pem() == first.public_key_pem()
    assert [p.name for p in settings.storage.dir.iterdir()] == [DEFAULT_KEY_NAME]


def test_key_from_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (tmp_path / "elsewhere").mkdir()
    made = load_signer(settings_at(tmp_path / "elsewhere"))
    pem = made.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (creds / "signing.key").write_bytes(pem)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    settings = settings_at(tmp_path, 'signing_key_file = "signing.key"')
    assert load_signer(settings).public_key_pem() == made.public_key_pem()
    assert not (settings.storage.dir / DEFAULT_KEY_NAME).exists()


def test_named_key_that_is_missing_is_not_made(tmp_path: Path) -> None:
    settings = settings_at(tmp_path, f'signing_key_file = "{tmp_path / "absent.key"}"')
    with pytest.raises(ConfigError, match=r"absent\.key: no such file"):
        load_signer(settings)
    assert not (tmp_path / "absent.key").exists()


def test_corrupt_key_is_a_config_error_and_left_in_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    key_file = tmp_path / "state" / DEFAULT_KEY_NAME
    key_file.parent.mkdir()
    key_file.write_bytes(b"not a key")
    assert main(["device-key", "--config", str(config)]) == EX_CONFIG
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert str(key_file) in err[0]
    assert key_file.read_bytes() == b"not a key"


def test_signature_is_deterministic_and_covers_the_crop(
    make_event: MakeEvent, signer: EventSigner
) -> None:
    stored = encode_payload(to_payload(make_event(), seq=1))
    sent = wire_payload(stored, CROP, signer.sign)
    assert wire_payload(stored, CROP, signer.sign) == sent  # retries are byte-identical
    key = signer.private_key.public_key()
    assert verify_read(key, sent)
    payload = json.loads(sent)
    payload["plate_crop_jpeg"] = base64.b64encode(b"another picture").decode()
    assert not verify_read(key, encode_payload(payload))


def test_documented_verification_recipe_with_non_ascii_text(
    make_event: MakeEvent, signer: EventSigner
) -> None:
    sent = wire_payload(encode_payload(to_payload(make_event("ÄÖ12ß"), seq=1)), None, signer.sign)
    assert "ÄÖ12ß".encode() in sent  # not \\u-escaped
    # The snippet in docs/events.md, verbatim in substance.
    payload = json.loads(sent)
    signature = base64.b64decode(payload.pop("signature"))
    signed = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    signer.private_key.public_key().verify(signature, signed.encode("utf-8"))
    # Language-neutral route: the wire bytes minus the signature member are the signed bytes.
    member = b'"signature":"' + base64.b64encode(signature) + b'",'
    assert sent.replace(member, b"") == signed.encode("utf-8")


def test_reads_on_a_real_broker_verify_with_the_printed_public_key(
    tmp_path: Path,
    mosquitto: Mosquitto,
    make_event: MakeEvent,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(tmp_path, mosquitto.port)
    assert main(["device-key", "--config", str(config)]) == 0
    pem = capsys.readouterr().out
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    public_key = load_public_key(pem)

    settings = load_settings(config)
    reads = mosquitto.subscribe("alpr/pole-17/reads")
    store = ReadStore(settings.storage.dir / "reads.db")
    publisher = MqttPublisher(
        settings.mqtt, device_id="pole-17", store=store, signer=load_signer(settings)
    )
    try:
        for i in range(3):
            store.add(make_event(f"SIG{i}"), CROP)
        publisher.start()
        messages = reads.wait_for(3)
    finally:
        publisher.stop(timeout=5.0)
        store.close()
    for message in messages:
        assert verify_read(public_key, message.payload)
        tampered = json.loads(message.payload)
        tampered["plate"]["text"] = "FORGED"
        assert not verify_read(public_key, encode_payload(tampered))
        replayed = json.loads(message.payload)
        replayed["seq"] += 1
        assert not verify_read(public_key, encode_payload(replayed))
