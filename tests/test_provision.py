"""``alpr-edge provision`` on one device, into a root directory made by the test: the config
from the example (comments kept) that the daemon's loader accepts, keys 0600 that the daemon
finds, the CSR and signing key printed; ``--install-cert`` with certificates signed by a test
CA, refused with the reason when they do not fit; the result connects to a mutual-TLS broker."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from conftest import Mosquitto
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pki import TestCA

from edge.cli import main
from edge.config import MqttSettings, Settings, TlsSettings, load_settings
from edge.errors import EX_CONFIG, EX_DATAERR
from edge.provision.pki import csr_pem, make_csr
from edge.publisher import connect_check
from edge.signing import load_public_key, load_signer

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.toml"
DEVICE = "pole-0007"


@pytest.fixture
def ca() -> TestCA:
    return TestCA.make()


def provision(
    root: Path, ca_file: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str, str]:
    code = main(
        [
            "provision",
            "--root",
            str(root),
            "--device-id",
            DEVICE,
            "--broker",
            "broker.palm-springs.example",
            "--camera-source",
            "rtsp://cam.local/stream1",
            "--latitude",
            "33.8236",
            "--longitude",
            "-116.5301",
            "--heading",
            "271.5",
            "--ca",
            str(ca_file),
            *extra,
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


def under(root: Path, device_path: Path | None) -> Path:
    assert device_path is not None
    return root / device_path.relative_to("/")


def settings_in(root: Path) -> Settings:
    return load_settings(root / "etc/alpr-edge/config.toml")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_provision_writes_config_and_keys_and_prints_csr_and_signing_key(
    tmp_path: Path, ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    code, out, err = provision(root, ca.write(tmp_path / "ca.pem"), capsys)
    assert code == 0, err

    config = root / "etc/alpr-edge/config.toml"
    settings = settings_in(root)
    assert settings.device_id == DEVICE
    assert (settings.mqtt.host, settings.mqtt.port) == ("broker.palm-springs.example", 8883)
    camera = settings.cameras[0]
    assert (camera.source, camera.latitude, camera.longitude, camera.heading_deg) == (
        "rtsp://cam.local/stream1",
        33.8236,
        -116.5301,
        271.5,
    )
    tls = settings.mqtt.tls
    assert tls is not None
    # Every line of the example but the filled-in ones is still there, comments included.
    example = EXAMPLE.read_text(encoding="utf-8").splitlines()
    written = config.read_text(encoding="utf-8").splitlines()
    assert len(written) == len(example)
    changed = [new for old, new in zip(example, written, strict=True) if old != new]
    assert len(changed) == 11, changed  # 10 values + the [mqtt.tls] header
    assert "# Broker host name or address, and port (8883 is usual for TLS)." in written

    tls_key = under(root, tls.key_file)
    signing_key = root / "var/lib/alpr-edge/device-signing.key"
    for key in (tls_key, signing_key):
        assert mode(key) == 0o600, key
    assert mode(config) == 0o640
    assert under(root, tls.ca_file).read_bytes() == (tmp_path / "ca.pem").read_bytes()
    assert not under(root, tls.cert_file).exists(), "the certificate comes from the CA"

    # stdout: the CSR for this key and device, then the public key the daemon signs with.
    csr = x509.load_pem_x509_csr(out.encode())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == DEVICE
    private = serialization.load_pem_private_key(tls_key.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.curve.name == "secp256r1"
    assert csr.public_key() == private.public_key()
    printed_public = out[out.index("-----BEGIN PUBLIC KEY-----") :]
    daemon_view = settings.model_copy(
        update={"storage": settings.storage.model_copy(update={"dir": signing_key.parent})}
    )
    assert load_signer(daemon_view).public_key_pem() == printed_public
    load_public_key(printed_public)
    assert "--install-cert" in err


def test_provision_again_keeps_keys_and_csr(
    tmp_path: Path, ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    ca_file = ca.write(tmp_path / "ca.pem")
    _, first, _ = provision(root, ca_file, capsys)
    keys = {p: p.read_bytes() for p in (root / "var/lib/alpr-edge").iterdir()}
    code, second, err = provision(root, ca_file, capsys)
    assert code == 0, err
    assert second == first, "same CSR and public key: the backend's copies stay valid"
    assert {p: p.read_bytes() for p in (root / "var/lib/alpr-edge").iterdir()} == keys


def test_config_of_another_device_is_replaced_only_with_force(
    tmp_path: Path, ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    ca_file = ca.write(tmp_path / "ca.pem")
    config = root / "etc/alpr-edge/config.toml"
    config.parent.mkdir(parents=True)
    other = EXAMPLE.read_text(encoding="utf-8").replace('"pole-0001"', '"pole-0099"')
    config.write_text(other, encoding="utf-8")

    code, out, err = provision(root, ca_file, capsys)
    assert out == ""
    assert code == EX_CONFIG
    assert err.count("\n") == 1 and "config of device pole-0099" in err and "--force" in err
    assert config.read_text(encoding="utf-8") == other
    assert not (root / "var/lib").exists()

    code, _, err = provision(root, ca_file, capsys, "--force")
    assert code == 0, err
    assert settings_in(root).device_id == DEVICE


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("--latitude", "95", "--latitude: '95': Input should be less than or equal to 90"),
        ("--heading", "north", "--heading: 'north': not a number"),
        ("--device-id", "pole 7", "--device-id: 'pole 7': String should match pattern"),
        ("--broker", "broker:99999", "--broker: 'broker:99999': '99999' is not a port"),
        ("--camera-source", "/dev/video0", "--camera-source: '/dev/video0': Value error"),
    ],
)
def test_bad_option_is_one_line_and_exit_78(
    tmp_path: Path,
    ca: TestCA,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    reason: str,
) -> None:
    root = tmp_path / "root"
    code, out, err = provision(root, ca.write(tmp_path / "ca.pem"), capsys, option, value)
    assert code == EX_CONFIG
    assert out == "" and err.count("\n") == 1 and reason in err, err
    assert not root.exists(), "nothing written"


def test_a_ca_file_that_is_no_ca_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("hello\n", encoding="utf-8")
    code, _, err = provision(tmp_path / "root", not_pem, capsys)
    assert code == EX_DATAERR and "not a PEM certificate" in err and err.count("\n") == 1


@pytest.fixture
def provisioned(tmp_path: Path, ca: TestCA, capsys: pytest.CaptureFixture[str]) -> Path:
    root = tmp_path / "root"
    code, _, err = provision(root, ca.write(tmp_path / "ca.pem"), capsys)
    assert code == 0, err
    return root


def install_cert(root: Path, cert: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["provision", "--root", str(root), "--install-cert", str(cert)])
    out, err = capsys.readouterr()
    return code, out + err


def test_install_cert_accepts_the_ca_signed_certificate_and_the_daemon_loads_it(
    provisioned: Path, ca: TestCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signed = tmp_path / "device.crt"
    signed.write_bytes(ca.sign((provisioned / "etc/alpr-edge/device.csr").read_bytes()))
    code, output = install_cert(provisioned, signed, capsys)
    assert code == 0, output
    assert f"CN={DEVICE}, issued by CN=Test Agency CA" in output
    installed = provisioned / "etc/alpr-edge/device.crt"
    assert installed.read_bytes() == signed.read_bytes() and mode(installed) == 0o644


@pytest.mark.parametrize(
    "mistake", ["another key", "another CA", "another device", "expired", "server only"]
)
def test_install_cert_refuses_a_certificate_that_does_not_fit(
    provisioned: Path,
    ca: TestCA,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mistake: str,
) -> None:
    csr = (provisioned / "etc/alpr-edge/device.csr").read_bytes()
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    signed, reason = {
        "another key": (
            ca.sign(csr_pem(make_csr(ec.generate_private_key(ec.SECP256R1()), DEVICE))),
            "does not match this device's private key",
        ),
        "another CA": (
            TestCA.make("Other CA").sign(csr),
            "is issued by 'CN=Other CA', not by the configured CA ('CN=Test Agency CA')",
        ),
        "another device": (
            ca.sign(csr, common_name="pole-0008"),
            "is issued to pole-0008, not to this device pole-0007",
        ),
        "expired": (ca.sign(csr, valid_from=past), "expired on"),
        "server only": (
            ca.sign(csr, usage=ExtendedKeyUsageOID.SERVER_AUTH),
            "not for TLS client authentication",
        ),
    }[mistake]
    cert = tmp_path / "device.crt"
    cert.write_bytes(signed)
    code, output = install_cert(provisioned, cert, capsys)
    assert code == EX_DATAERR
    assert output.count("\n") == 1 and reason in output, output
    assert not (provisioned / "etc/alpr-edge/device.crt").exists()


def test_a_ca_with_the_same_name_but_another_key_is_refused(
    provisioned: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    impostor = TestCA.make("Test Agency CA")
    cert = tmp_path / "device.crt"
    cert.write_bytes(impostor.sign((provisioned / "etc/alpr-edge/device.csr").read_bytes()))
    code, output = install_cert(provisioned, cert, capsys)
    assert code == EX_DATAERR and "signature does not verify against the CA" in output


def test_provisioned_device_connects_to_a_mutual_tls_broker(
    provisioned: Path,
    ca: TestCA,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mosquitto: Mosquitto,
) -> None:
    """The end of the routine: the broker's certificate and the device's both from the
    agency's CA, and the broker requires a client certificate."""
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    )
    server_csr = server_csr.add_extension(
        x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
    )
    server_pem = ca.sign(
        server_csr.sign(server_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM),
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    (tmp_path / "server.crt").write_bytes(server_pem)
    (tmp_path / "server.key").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    port = mosquitto.add_listener(
        f"cafile {tmp_path / 'ca.pem'}\ncertfile {tmp_path / 'server.crt'}\n"
        f"keyfile {tmp_path / 'server.key'}\nrequire_certificate true\n"
        "use_identity_as_username true"
    )
    signed = tmp_path / "device.crt"
    signed.write_bytes(ca.sign((provisioned / "etc/alpr-edge/device.csr").read_bytes()))
    assert install_cert(provisioned, signed, capsys)[0] == 0

    tls = settings_in(provisioned).mqtt.tls
    assert tls is not None
    rooted = TlsSettings(
        ca_file=under(provisioned, tls.ca_file),
        cert_file=under(provisioned, tls.cert_file),
        key_file=under(provisioned, tls.key_file),
    )
    connect_check(
        MqttSettings(host="localhost", port=port, tls=rooted, client_id=DEVICE), timeout_s=3.0
    )
