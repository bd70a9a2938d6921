"""``alpr-edge provision --batch``: one bundle per CSV row with a manifest and no private key;
``--central-keys`` only by explicit choice; a bad row names its row and column and nothing at
all is written."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from pki import TestCA

from edge.cli import main
from edge.config import load_settings
from edge.errors import EX_CONFIG

HEADER = "device_id,latitude,longitude,heading_deg,camera_source\n"
ROWS = (
    "pole-0001,33.8303,-116.5453,90,\n"
    "pole-0002,33.8251,-116.5380,180.5,rtsp://10.0.7.2/stream1\n"
    "pole-0003,33.8198,-116.5290,0,\n"
)


def batch(
    tmp_path: Path, csv_text: str, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str, str]:
    devices = tmp_path / "devices.csv"
    devices.write_text(csv_text, encoding="utf-8")
    ca_file = tmp_path / "ca.pem"
    if not ca_file.exists():
        TestCA.make().write(ca_file)
    code = main(
        [
            "provision",
            "--batch",
            str(devices),
            "--out",
            str(tmp_path / "bundles"),
            "--ca",
            str(ca_file),
            "--broker",
            "broker.palm-springs.example:8883",
            *extra,
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


def test_one_bundle_per_row_with_manifest_and_no_private_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = batch(tmp_path, HEADER + ROWS, capsys)
    assert code == 0, err
    bundles = tmp_path / "bundles"
    assert sorted(p.name for p in bundles.iterdir()) == ["pole-0001", "pole-0002", "pole-0003"]
    assert out.count("\n") == 3

    for bundle in bundles.iterdir():
        names = sorted(p.name for p in bundle.iterdir())
        assert names == ["bundle.json", "ca.pem", "config.toml"]
        manifest = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
        assert manifest["device_id"] == bundle.name and manifest["central_keys"] is False
        assert manifest["files"] == {
            name: hashlib.sha256((bundle / name).read_bytes()).hexdigest()
            for name in ("ca.pem", "config.toml")
        }
        assert (bundle / "ca.pem").read_bytes() == (tmp_path / "ca.pem").read_bytes()
        for path in bundle.iterdir():
            assert b"PRIVATE KEY" not in path.read_bytes(), path

    second = load_settings(bundles / "pole-0002/config.toml")
    assert second.device_id == "pole-0002"
    assert (second.mqtt.host, second.mqtt.port) == ("broker.palm-springs.example", 8883)
    camera = second.cameras[0]
    assert (camera.source, camera.latitude, camera.longitude, camera.heading_deg) == (
        "rtsp://10.0.7.2/stream1",
        33.8251,
        -116.538,
        180.5,
    )
    assert load_settings(bundles / "pole-0001/config.toml").cameras[0].source == "picamera2:0"


def test_central_keys_only_when_asked_with_a_warning_and_mode_0600(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = batch(tmp_path, HEADER + ROWS, capsys, "--central-keys")
    assert code == 0, err
    assert "WARNING: --central-keys: private keys are written into the bundles" in err
    bundle = tmp_path / "bundles/pole-0003"
    for key in ("device.key", "device-signing.key"):
        assert stat.S_IMODE((bundle / key).stat().st_mode) == 0o600
        assert b"PRIVATE KEY" in (bundle / key).read_bytes()
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
    csr = x509.load_pem_x509_csr((bundle / "device.csr").read_bytes())
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "pole-0003"
    manifest = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    assert manifest["central_keys"] is True
    assert set(manifest["files"]) == {
        "ca.pem",
        "config.toml",
        "device.key",
        "device.csr",
        "device-signing.key",
        "device-signing.pub.pem",
    }


@pytest.mark.parametrize(
    ("csv_text", "expected"),
    [
        (
            HEADER + ROWS + "pole-0002,33.81,-116.52,45,\n",
            "devices.csv row 5, column device_id: pole-0002 is already on row 3",
        ),
        (
            HEADER + ROWS.replace("33.8251", "338.251"),
            "devices.csv row 3, column latitude: '338.251': Input should be less than or "
            "equal to 90",
        ),
        (
            HEADER + ROWS.replace("-116.5290", "-116,5290"),
            "devices.csv row 4: 6 fields, the header has 5",
        ),
        (
            HEADER + ROWS.replace("180.5", "SE"),
            "devices.csv row 3, column heading_deg: 'SE': not a number",
        ),
        (
            HEADER
            + ROWS.replace("0,\n", "360,\n", 1).replace("pole-0003,33.8198", "pole 3,33.8198"),
            "devices.csv row 4, column device_id: 'pole 3': String should match pattern",
        ),
        (
            HEADER + ROWS.replace("33.8303", ""),
            "devices.csv row 2, column latitude: is empty",
        ),
        (
            "device_id,latitude,longitude,camera_source\npole-0001,33.8,-116.5,\n",
            "devices.csv row 1: column heading_deg is missing",
        ),
        (
            "device_id,latitude,longitude,heading_deg,lattitude\npole-0001,33.8,-116.5,0,1\n",
            "devices.csv row 1: column lattitude is not one of device_id",
        ),
    ],
    ids=[
        "duplicate-id",
        "bad-latitude",
        "extra-field",
        "bad-heading",
        "bad-id",
        "empty-cell",
        "missing-column",
        "unknown-column",
    ],
)
def test_bad_csv_names_row_and_column_and_provisions_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], csv_text: str, expected: str
) -> None:
    code, out, err = batch(tmp_path, csv_text, capsys)
    assert code == EX_CONFIG
    assert out == ""
    assert expected in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "bundles").exists()


def test_every_problem_is_reported_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = ROWS.replace("33.8303", "north").replace("-116.5290", "-200")
    code, _, err = batch(tmp_path, HEADER + bad, capsys)
    assert code == EX_CONFIG
    assert "row 2, column latitude" in err and "row 4, column longitude" in err
    assert err.count("\n") == 2


def test_existing_bundles_are_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert batch(tmp_path, HEADER + ROWS, capsys)[0] == 0
    before = {p: p.read_bytes() for p in (tmp_path / "bundles").rglob("*") if p.is_file()}
    more = ROWS + "pole-0004,33.81,-116.52,45,\n"
    code, _, err = batch(tmp_path, HEADER + more, capsys)
    assert code == EX_CONFIG
    assert "bundles exist already for pole-0001, pole-0002, pole-0003" in err
    assert not (tmp_path / "bundles/pole-0004").exists()
    after = {p: p.read_bytes() for p in (tmp_path / "bundles").rglob("*") if p.is_file()}
    assert after == before


def test_broker_must_come_from_a_column_or_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    devices = tmp_path / "devices.csv"
    devices.write_text(HEADER + ROWS, encoding="utf-8")
    ca_file = TestCA.make().write(tmp_path / "ca.pem")
    args = ["provision", "--batch", str(devices), "--out", str(tmp_path / "b"), "--ca"]
    assert main([*args, str(ca_file)]) == EX_CONFIG
    assert (
        "row 1: column broker is missing (or give --broker HOST[:PORT])" in capsys.readouterr().err
    )
