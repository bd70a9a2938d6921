"""TLS to a real mosquitto with certificates made by the test: verified, host name checked,
mutual TLS with client certificates; plain TCP only to loopback or when explicitly allowed."""

from __future__ import annotations

import datetime as dt
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Mosquitto
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.cli import main
from edge.config import MqttSettings, load_settings
from edge.errors import EX_CONFIG, BrokerError, ConfigError
from edge.events import ReadEvent
from edge.publisher import MqttPublisher, connect_check, tls_context
from edge.signing import EventSigner
from edge.store import ReadStore


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    san: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name if issuer is None else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def tls_broker(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS listener whose certificate names only "localhost"; yields (port, ca_file)."""
    ca_key, server_key = _key(), _key()
    ca = _cert("test CA", ca_key, None, ca_key)
    server = _cert("localhost", server_key, ca, ca_key, [x509.DNSName("localhost")])
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file = tmp_path / "server.pem"
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file = _write_key(server_key, tmp_path / "server.key")
    port = mosquitto.add_listener(
        f"cafile {ca_file}\ncertfile {cert_file}\nkeyfile {key_file}\nallow_anonymous true"
    )
    yield port, ca_file


def _settings(host: str, port: int, ca_file: Path, **tls: object) -> MqttSettings:
    return MqttSettings.model_validate(
        {"host": host, "port": port, "tls": {"ca_file": str(ca_file), **tls}}
    )


def test_tls_connects_with_trusted_ca_and_matching_name(tls_broker: tuple[int, Path]) -> None:
    port, ca_file = tls_broker
    connect_check(_settings("localhost", port, ca_file), timeout_s=3.0)


def test_tls_host_name_is_checked(tls_broker: tuple[int, Path]) -> None:
    port, ca_file = tls_broker
    with pytest.raises(BrokerError, match=rf"127\.0\.0\.1:{port}: TLS certificate not accepted"):
        connect_check(_settings("127.0.0.1", port, ca_file), timeout_s=3.0)
    connect_check(_settings("127.0.0.1", port, ca_file, insecure_skip_verify=True), timeout_s=3.0)


def test_tls_untrusted_ca_is_refused(tls_broker: tuple[int, Path], tmp_path: Path) -> None:
    port, _ = tls_broker
    other_key = _key()
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(
        _cert("other CA", other_key, None, other_key).public_bytes(serialization.Encoding.PEM)
    )
    with pytest.raises(BrokerError, match="TLS certificate not accepted"):
        connect_check(_settings("localhost", port, other_ca), timeout_s=3.0)


def test_plain_client_on_tls_port_fails_clearly(tls_broker: tuple[int, Path]) -> None:
    port, _ = tls_broker
    settings = MqttSettings.model_validate({"host": "127.0.0.1", "port": port})
    with pytest.raises(BrokerError, match=rf"127\.0\.0\.1:{port}: "):
        connect_check(settings, timeout_s=2.0)


def test_tls_client_on_plain_port_fails_clearly(
    mosquitto: Mosquitto, tls_broker: tuple[int, Path]
) -> None:
    _, ca_file = tls_broker
    with pytest.raises(BrokerError, match=rf":{mosquitto.port}: connection (reset|closed)"):
        connect_check(_settings("localhost", mosquitto.port, ca_file), timeout_s=2.0)


def test_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        connect_check(_settings("localhost", 8883, tmp_path / "absent.pem"), timeout_s=1.0)


def test_tls_context_refuses_anything_older_than_tls_1_2(tmp_path: Path) -> None:
    ca_key = _key()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(_cert("CA", ca_key, None, ca_key).public_bytes(serialization.Encoding.PEM))
    tls = _settings("localhost", 8883, ca_file).tls
    assert tls is not None
    ctx = tls_context(tls)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname


@dataclass(frozen=True)
class MutualTls:
    port: int
    ca_file: Path
    client_cert: Path
    client_key: Path
    make_client: Callable[[str, ec.EllipticCurvePrivateKey, x509.Certificate], tuple[Path, Path]]


@pytest.fixture
def mtls_broker(mosquitto: Mosquitto, tmp_path: Path) -> MutualTls:
    """A listener with ``require_certificate true``: only clients whose certificate the test
    CA signed get in."""
    ca_key, server_key, client_key = _key(), _key(), _key()
    ca = _cert("test CA", ca_key, None, ca_key)
    server = _cert("localhost", server_key, ca, ca_key, [x509.DNSName("localhost")])
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_key(server_key, tmp_path / "server.key")

    def make_client(
        name: str, issuer_key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate
    ) -> tuple[Path, Path]:
        key = _key()
        cert = tmp_path / f"{name}.pem"
        cert.write_bytes(
            _cert(name, key, issuer, issuer_key).public_bytes(serialization.Encoding.PEM)
        )
        return cert, _write_key(key, tmp_path / f"{name}.key")

    client_cert = tmp_path / "pole-17.pem"
    client_cert.write_bytes(
        _cert("pole-17", client_key, ca, ca_key).public_bytes(serialization.Encoding.PEM)
    )
    port = mosquitto.add_listener(
        f"cafile {ca_file}\ncertfile {tmp_path / 'server.pem'}\n"
        f"keyfile {tmp_path / 'server.key'}\nrequire_certificate true\nallow_anonymous true"
    )
    return MutualTls(
        port, ca_file, client_cert, _write_key(client_key, tmp_path / "pole-17.key"), make_client
    )


def test_mutual_tls_client_with_certificate_delivers_reads(
    mtls_broker: MutualTls,
    mosquitto: Mosquitto,
    tmp_path: Path,
    make_event: Callable[..., ReadEvent],
    signer: EventSigner,
) -> None:
    reads = mosquitto.subscribe("alpr/pole-17/reads")
    settings = _settings(
        "localhost",
        mtls_broker.port,
        mtls_broker.ca_file,
        cert_file=str(mtls_broker.client_cert),
        key_file=str(mtls_broker.client_key),
    )
    store = ReadStore(tmp_path / "reads.db")
    publisher = MqttPublisher(settings, device_id="pole-17", store=store, signer=signer)
    try:
        event = make_event()
        store.add(event, b"")
        publisher.start()
        assert publisher.flush(timeout_s=5.0)
        (message,) = reads.wait_for(1)
        assert json.loads(message.payload)["event_id"] == event.event_id
    finally:
        publisher.stop(timeout=5.0)
        store.close()


def test_mutual_tls_client_without_certificate_is_refused(mtls_broker: MutualTls) -> None:
    with pytest.raises(BrokerError, match=rf":{mtls_broker.port}: .*client certificate"):
        connect_check(_settings("localhost", mtls_broker.port, mtls_broker.ca_file), timeout_s=3.0)


def test_mutual_tls_certificate_from_another_ca_is_refused(mtls_broker: MutualTls) -> None:
    rogue_key = _key()
    rogue_ca = _cert("rogue CA", rogue_key, None, rogue_key)
    cert, key = mtls_broker.make_client("intruder", rogue_key, rogue_ca)
    settings = _settings(
        "localhost", mtls_broker.port, mtls_broker.ca_file, cert_file=str(cert), key_file=str(key)
    )
    with pytest.raises(BrokerError, match=rf":{mtls_broker.port}: .*client certificate"):
        connect_check(settings, timeout_s=3.0)


PLAIN = """device_id = "pole-17"
[mqtt]
host = "{host}"
{extra}
[[cameras]]
id = "c1"
source = "v4l2:///dev/video0"
"""


def _config(tmp_path: Path, host: str, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(PLAIN.format(host=host, extra=extra), encoding="utf-8")
    return path


def test_plain_tcp_to_another_host_is_a_config_error_saying_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_config(tmp_path, "broker.example.org"))
    message = err.value.message
    assert "\n" not in message
    assert "mqtt" in message
    assert "[mqtt.tls]" in message
    assert "allow_insecure_plain" in message


def test_plain_tcp_config_error_is_one_line_and_exit_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["device-key", "--config", str(_config(tmp_path, "10.0.0.5"))]) == EX_CONFIG
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "allow_insecure_plain" in err[0]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.1.1", "::1"])
def test_plain_tcp_to_loopback_is_allowed(tmp_path: Path, host: str) -> None:
    assert load_settings(_config(tmp_path, host)).mqtt.tls is None


def test_plain_tcp_to_another_host_when_explicitly_allowed(tmp_path: Path) -> None:
    path = _config(tmp_path, "broker.example.org", "allow_insecure_plain = true")
    assert load_settings(path).mqtt.allow_insecure_plain


def test_publisher_with_untrusted_client_certificate_retries_and_never_counts_as_connected(
    mtls_broker: MutualTls,
    tmp_path: Path,
    make_event: Callable[..., ReadEvent],
    signer: EventSigner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="edge.publisher")
    rogue_key = _key()
    cert, key = mtls_broker.make_client(
        "intruder", rogue_key, _cert("rogue", rogue_key, None, rogue_key)
    )
    settings = _settings(
        "localhost", mtls_broker.port, mtls_broker.ca_file, cert_file=str(cert), key_file=str(key)
    )
    store = ReadStore(tmp_path / "reads.db")
    store.add(make_event(), b"")
    publisher = MqttPublisher(
        settings,
        device_id="pole-17",
        store=store,
        signer=signer,
        reconnect_min_s=0.1,
        reconnect_max_s=0.3,
    )
    publisher.start()
    try:
        ever_connected = False
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            ever_connected = ever_connected or publisher.connected
            time.sleep(0.002)
        assert not ever_connected
        assert publisher.connections == 0
        assert store.pending_count() == 1
        failures = [r for r in caplog.records if f"localhost:{mtls_broker.port}:" in r.getMessage()]
        assert len(failures) >= 2, caplog.text  # retried
        assert failures[0].levelno == logging.WARNING
        assert "client certificate" in failures[0].getMessage() or "TLS" in failures[0].getMessage()
    finally:
        publisher.stop(timeout=5.0)
        store.close()
