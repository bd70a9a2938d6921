"""TLS to a real mosquitto with certificates made by the test: verified, host name checked."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Mosquitto
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.config import MqttSettings
from edge.errors import BrokerError, ConfigError
from edge.publisher import connect_check


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
