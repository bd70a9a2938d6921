"""``alpr-edge firstboot`` against a fake root: a bundle from ``provision --batch`` goes onto
the boot partition; config, keys (0600, the daemon's user) and the CSR come out, then with
the signed certificate an enabled unit; the bundle is removed and running again changes
nothing. Bad bundles and certificates are refused with the reason and leave the bundle."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest
from pki import TestCA

from edge.cli import main
from edge.config import load_settings
from edge.errors import EX_DATAERR

REPO = Path(__file__).resolve().parent.parent
UID = GID = 997
DEVICE = "pole-0002"
WANTS = "etc/systemd/system/multi-user.target.wants/alpr-edge.service"


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path under ``root``: type and mode, owner, content hash and mtime of files,
    target of links."""
    listing: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        entry: tuple[object, ...] = (st.st_mode, st.st_uid, st.st_gid)
        if path.is_symlink():
            entry += (os.readlink(path),)
        elif path.is_file():
            entry += (hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns)
        listing[str(path.relative_to(root))] = entry
    return listing


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    ca = TestCA.make()
    ca.write(tmp_path / "ca.pem")
    return ca


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """What the image holds before first boot: the unit installed but not enabled, the
    daemon's user, an empty boot partition."""
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(REPO / "systemd/alpr-edge.service", root / "etc/systemd/system")
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\n"
        f"alpr-edge:x:{UID}:{GID}::/var/lib/alpr-edge:/usr/sbin/nologin\n",
        encoding="utf-8",
    )
    (root / "etc/group").write_text(f"root:x:0:\nalpr-edge:x:{GID}:\n", encoding="utf-8")
    (root / "boot/firmware").mkdir(parents=True)
    return root


def make_bundle(tmp_path: Path, *extra: str) -> Path:
    devices = tmp_path / "devices.csv"
    devices.write_text(
        "device_id,latitude,longitude,heading_deg\n"
        "pole-0001,33.8303,-116.5453,90\n"
        f"{DEVICE},33.8251,-116.5380,180\n",
        encoding="utf-8",
    )
    out = tmp_path / "bundles"
    args = ["--out", str(out), "--ca", str(tmp_path / "ca.pem"), "--broker", "broker.example"]
    assert main(["provision", "--batch", str(devices), *args, *extra]) == 0
    return out / DEVICE


def firstboot(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["firstboot", "--root", str(root)])
    out, err = capsys.readouterr()
    return code, out, err


def check_owned_key(path: Path) -> None:
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600, path
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (UID, GID), path


def test_first_boot_makes_keys_on_the_device_then_installs_the_certificate(
    tmp_path: Path, root: Path, ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_bundle(tmp_path)
    boot = root / "boot/firmware"
    shutil.copytree(bundle, boot / "alpr-edge")
    capsys.readouterr()

    code, out, err = firstboot(root, capsys)
    assert code == 0, err
    assert f"{DEVICE}: waiting for a certificate" in out
    config = root / "etc/alpr-edge/config.toml"
    assert config.read_bytes() == (bundle / "config.toml").read_bytes()
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert load_settings(config).device_id == DEVICE
    assert (root / "etc/alpr-edge/ca.pem").read_bytes() == (tmp_path / "ca.pem").read_bytes()
    for key in ("device.key", "device-signing.key"):
        check_owned_key(root / "var/lib/alpr-edge" / key)
    state = (root / "var/lib/alpr-edge").stat()
    assert stat.S_IMODE(state.st_mode) == 0o700
    assert not (boot / "alpr-edge").exists(), "bundle removed"
    request = boot / "alpr-edge-request"
    assert sorted(p.name for p in request.iterdir()) == [
        "README.txt",
        "device-signing.pub.pem",
        "device.csr",
    ]
    assert not (root / WANTS).exists(), "no certificate yet: the service stays off"

    before = tree(root)
    code, out, _ = firstboot(root, capsys)
    assert code == 0 and "nothing to do" in out
    assert tree(root) == before

    # The technician has the CSR signed and copies the certificate to the boot partition.
    (boot / "alpr-edge").mkdir()
    (boot / "alpr-edge/device.crt").write_bytes(ca.sign((request / "device.csr").read_bytes()))
    code, out, err = firstboot(root, capsys)
    assert code == 0, err
    assert f"{DEVICE}: provisioned" in out
    assert os.readlink(root / WANTS) == "/etc/systemd/system/alpr-edge.service"
    assert (root / "etc/alpr-edge/device.crt").is_file()
    assert not (boot / "alpr-edge").exists() and not request.exists()

    before = tree(root)
    assert firstboot(root, capsys)[0] == 0
    assert tree(root) == before


def test_central_keys_bundle_with_certificate_provisions_in_one_boot(
    tmp_path: Path, root: Path, ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_bundle(tmp_path, "--central-keys")
    (bundle / "device.crt").write_bytes(ca.sign((bundle / "device.csr").read_bytes()))
    boot = root / "boot/firmware"
    shutil.copytree(bundle, boot / "alpr-edge")
    capsys.readouterr()

    code, out, err = firstboot(root, capsys)
    assert code == 0, err
    assert f"{DEVICE}: provisioned" in out
    for key in ("device.key", "device-signing.key"):
        installed = root / "var/lib/alpr-edge" / key
        assert installed.read_bytes() == (bundle / key).read_bytes()
        check_owned_key(installed)
    assert os.readlink(root / WANTS) == "/etc/systemd/system/alpr-edge.service"
    assert not (boot / "alpr-edge").exists() and not (boot / "alpr-edge-request").exists()

    before = tree(root)
    assert firstboot(root, capsys)[0] == 0
    assert tree(root) == before


def test_a_changed_bundle_file_is_refused_and_nothing_installed(
    tmp_path: Path, root: Path, ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = root / "boot/firmware/alpr-edge"
    shutil.copytree(make_bundle(tmp_path), bundle)
    with (bundle / "config.toml").open("a", encoding="utf-8") as fh:
        fh.write("# edited after the manifest was made\n")
    capsys.readouterr()

    code, _, err = firstboot(root, capsys)
    assert code == EX_DATAERR
    assert err.count("\n") == 1 and "config.toml: sha256 does not match bundle.json" in err
    assert not (root / "etc/alpr-edge").exists() and not (root / "var").exists()
    assert (bundle / "bundle.json").exists(), "left for the technician"
    error = root / "boot/firmware/alpr-edge-request/error.txt"
    assert "sha256 does not match" in error.read_text(encoding="utf-8")


def test_a_certificate_for_another_pole_is_refused_and_the_service_stays_off(
    tmp_path: Path, root: Path, ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    boot = root / "boot/firmware"
    shutil.copytree(make_bundle(tmp_path), boot / "alpr-edge")
    assert firstboot(root, capsys)[0] == 0
    csr = (boot / "alpr-edge-request/device.csr").read_bytes()
    (boot / "alpr-edge").mkdir()
    (boot / "alpr-edge/device.crt").write_bytes(ca.sign(csr, common_name="pole-0001"))

    code, _, err = firstboot(root, capsys)
    assert code == EX_DATAERR
    assert "is issued to pole-0001, not to this device pole-0002" in err
    assert not (root / WANTS).exists() and not (root / "etc/alpr-edge/device.crt").exists()
    assert (boot / "alpr-edge/device.crt").exists()
    assert "pole-0001" in (boot / "alpr-edge-request/error.txt").read_text(encoding="utf-8")


def test_a_provisioned_device_is_not_renamed_by_another_bundle(
    tmp_path: Path, root: Path, ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    boot = root / "boot/firmware"
    shutil.copytree(make_bundle(tmp_path), boot / "alpr-edge")
    assert firstboot(root, capsys)[0] == 0
    shutil.copytree(tmp_path / "bundles/pole-0001", boot / "alpr-edge")
    before = tree(root / "etc")

    code, _, err = firstboot(root, capsys)
    assert code == EX_DATAERR
    assert "already provisioned as pole-0002; the bundle is for pole-0001" in err
    assert tree(root / "etc") == before
