"""``alpr-edge check --connect`` against a real mosquitto (TLS), a rendered clip and the
machine's own clock, disk and state directory: one table, exit code 0 only when all pass."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Mosquitto, free_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tiny_detector import write_models

from edge.clock import clock_synchronised
from scripts.make_demo_clip import make_clip

ROW = re.compile(r"^(?P<name>.+?)\s+(?P<status>PASS|FAIL|WARN)  (?P<detail>.*)$")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "pole.mp4"
    make_clip(path, vehicles=1, seed=5, width=640, height=360)
    return path


@pytest.fixture
def tls_port(mosquitto: Mosquitto, tmp_path: Path) -> tuple[int, Path]:
    """A TLS listener for "localhost" signed by a CA made here; (port, ca_file)."""
    now = dt.datetime.now(dt.UTC)

    def cert(name: str, key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey,
             issuer: x509.Name | None) -> x509.Certificate:  # fmt: skip
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer or subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
            .sign(ca_key, hashes.SHA256())
        )

    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = cert("test CA", ca_key, ca_key, None)
    server = cert("localhost", server_key, ca_key, ca.subject)
    files = {name: tmp_path / name for name in ("ca.pem", "server.pem", "server.key")}
    files["ca.pem"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["server.pem"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files["server.key"].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    port = mosquitto.add_listener(
        f"cafile {files['ca.pem']}\ncertfile {files['server.pem']}\n"
        f"keyfile {files['server.key']}\nallow_anonymous true"
    )
    return port, files["ca.pem"]


def write_config(tmp_path: Path, clip: Path, port: int, ca_file: Path) -> Path:
    detector, recognizer = write_models(tmp_path / "models")
    config = tmp_path / "config.toml"
    config.write_text(
        f"""device_id = "pole-check"
[mqtt]
host = "localhost"
port = {port}
[mqtt.tls]
ca_file = "{ca_file}"
[storage]
dir = "{tmp_path / "state"}"
[models]
detector = "{detector}"
recognizer = "{recognizer}"
threads = 1
[[cameras]]
id = "north"
source = "{clip.as_uri()}"
realtime = false
""",
        encoding="utf-8",
    )
    return config


def run_check(
    config: Path, path_prefix: Path | None = None
) -> tuple[int, dict[str, re.Match[str]]]:
    env = dict(os.environ)
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    result = subprocess.run(
        [sys.executable, "-m", "edge", "check", "--connect", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    lines = result.stdout.splitlines()
    rows = {m["name"]: m for m in map(ROW.match, lines[:-1]) if m is not None}
    assert len(rows) == len(lines) - 1, result.stdout + result.stderr
    assert re.fullmatch(r"\d+ passed, \d+ failed", lines[-1])
    return result.returncode, rows


def fake_timedatectl(tmp_path: Path, answer: str) -> Path:
    """A ``timedatectl`` on PATH that answers as a host with NTP would."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "timedatectl"
    tool.write_text(f"#!/bin/sh\necho {answer}\n", encoding="utf-8")
    tool.chmod(0o755)
    return bindir


EXPECTED = ["config", "model manifests", "models", "camera north", "broker",
            "state directory", "disk", "clock"]  # fmt: skip


def test_every_row_is_measured_and_the_clock_is_told_honestly(
    tmp_path: Path, clip: Path, tls_port: tuple[int, Path]
) -> None:
    code, rows = run_check(write_config(tmp_path, clip, *tls_port))
    assert list(rows) == EXPECTED
    for name in EXPECTED[:-1]:
        assert rows[name]["status"] == "PASS", rows[name].string
    assert re.search(r"detector \d+ ms per 1280x720 frame, recognizer [\d.]+ ms per plate",
                     rows["models"]["detail"])  # fmt: skip
    assert re.match(r"640x360, [\d.]+ fps read, 25\.0 fps declared", rows["camera north"]["detail"])
    assert "over TLS (certificate verified)" in rows["broker"]["detail"]
    assert re.match(r"[\d.]+ GB free", rows["disk"]["detail"])
    # This container has no NTP daemon to ask, so the clock row fails here, and so does the
    # whole check: the truth, not a pass granted for want of an answer.
    synced = clock_synchronised()
    assert rows["clock"]["status"] == ("PASS" if synced else "FAIL")
    assert code == (0 if synced else 1)


def test_exit_code_0_when_all_rows_pass(
    tmp_path: Path, clip: Path, tls_port: tuple[int, Path]
) -> None:
    code, rows = run_check(
        write_config(tmp_path, clip, *tls_port), fake_timedatectl(tmp_path, "yes")
    )
    assert [r["status"] for r in rows.values()] == ["PASS"] * len(EXPECTED)
    assert code == 0


def test_closed_broker_port_fails_the_check(
    tmp_path: Path, clip: Path, tls_port: tuple[int, Path]
) -> None:
    closed = free_port()
    config = write_config(tmp_path, clip, closed, tls_port[1])
    code, rows = run_check(config, fake_timedatectl(tmp_path, "yes"))
    assert rows["broker"]["status"] == "FAIL"
    assert f"localhost:{closed}" in rows["broker"]["detail"], rows["broker"].string
    others = [r["status"] for name, r in rows.items() if name != "broker"]
    assert others == ["PASS"] * (len(EXPECTED) - 1)
    assert code == 1


def test_unsynchronised_clock_fails_the_check(tmp_path: Path, clip: Path) -> None:
    config = write_config(tmp_path, clip, free_port(), tmp_path / "ca.pem")
    _, rows = run_check(config, fake_timedatectl(tmp_path, "no"))
    assert rows["clock"]["status"] == "FAIL" and "not synchronised" in rows["clock"]["detail"]
