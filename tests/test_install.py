"""scripts/install.sh into a fake root: user, directories, models, config, unit; a second run
changes nothing; --uninstall keeps config and reads, --purge removes them. And the unit itself:
every field operations setting present, exposure 2.0 or less with and without the Jetson
drop-in."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from tiny_detector import write_models

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "install.sh"
UNIT = REPO / "systemd" / "alpr-edge.service"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="install.sh creates users and chowns: root only"),
    pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="needs systemd-sysusers"),
]


@pytest.fixture
def models(tmp_path: Path) -> Path:
    write_models(tmp_path / "models")
    return tmp_path / "models"


def install(root: Path, models: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", str(SCRIPT), "--root", str(root), "--skip-venv", "--models", str(models), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path under ``root`` with type, mode, owner, and content hash and mtime for files."""
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


def account(root: Path, database: str, name: str) -> list[str] | None:
    for line in (root / "etc" / database).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    return None


def test_install_creates_everything_and_a_second_run_changes_nothing(
    tmp_path: Path, models: Path
) -> None:
    root = tmp_path / "root"
    install(root, models, "--platform", "pi")
    user = account(root, "passwd", "alpr-edge")
    assert user is not None and user[5:] == ["/var/lib/alpr-edge", "/usr/sbin/nologin"]
    uid, gid = int(user[2]), int(user[3])
    for group in ("video", "render"):
        members = account(root, "group", group)
        assert members is not None and "alpr-edge" in members[3].split(","), group

    config = root / "etc/alpr-edge/config.toml"
    assert config.read_bytes() == (REPO / "config.example.toml").read_bytes()
    assert (config.stat().st_mode & 0o777, config.stat().st_gid) == (0o640, gid)
    state = (root / "var/lib/alpr-edge").stat()
    assert (state.st_mode & 0o777, state.st_uid, state.st_gid) == (0o700, uid, gid)
    for name in ("plate-detector.onnx", "plate-detector.json", "plate-recognizer.onnx"):
        assert (root / "opt/alpr-edge/models" / name).read_bytes() == (models / name).read_bytes()
    assert (root / "etc/systemd/system/alpr-edge.service").read_bytes() == UNIT.read_bytes()
    wants = root / "etc/systemd/system/multi-user.target.wants/alpr-edge.service"
    assert os.readlink(wants) == "/etc/systemd/system/alpr-edge.service", "enabled"
    assert not (root / "etc/systemd/system/alpr-edge.service.d").exists(), "no Jetson drop-in"
    assert (root / "etc/alpr-edge/credentials/mqtt-password").stat().st_size == 0

    before = tree(root)
    second = install(root, models, "--platform", "pi")
    assert tree(root) == before
    assert "installed" not in second.stdout


def test_an_existing_config_is_never_overwritten(tmp_path: Path, models: Path) -> None:
    root = tmp_path / "root"
    install(root, models, "--platform", "pi")
    config = root / "etc/alpr-edge/config.toml"
    config.write_text('device_id = "pole-0042"\n', encoding="utf-8")
    install(root, models, "--platform", "pi")
    assert config.read_text(encoding="utf-8") == 'device_id = "pole-0042"\n'


def test_uninstall_keeps_config_and_reads_and_purge_removes_them(
    tmp_path: Path, models: Path
) -> None:
    root = tmp_path / "root"
    install(root, models, "--platform", "pi")
    reads = root / "var/lib/alpr-edge/reads.db"
    reads.write_bytes(b"SQLite format 3\0")

    install(root, models, "--uninstall")
    assert not (root / "opt/alpr-edge").exists()
    assert not (root / "etc/systemd/system/alpr-edge.service").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/alpr-edge.service").exists()
    assert reads.read_bytes() == b"SQLite format 3\0"
    assert (root / "etc/alpr-edge/config.toml").is_file()
    assert account(root, "passwd", "alpr-edge") is not None, "the user still owns the reads"

    install(root, models, "--uninstall", "--purge")
    assert not (root / "var/lib/alpr-edge").exists()
    assert not (root / "etc/alpr-edge").exists()
    assert account(root, "passwd", "alpr-edge") is None
    assert account(root, "group", "alpr-edge") is None


def test_a_model_that_fails_its_manifest_is_not_installed(tmp_path: Path, models: Path) -> None:
    (models / "plate-detector.onnx").write_bytes(b"not the model the manifest describes")
    result = subprocess.run(
        [
            "bash",
            str(SCRIPT),
            "--root",
            str(tmp_path / "root"),
            "--skip-venv",
            "--models",
            str(models),
            "--platform",
            "pi",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "plate-detector.onnx: sha256 does not match its manifest" in result.stderr
    assert not (tmp_path / "root/opt").exists(), "checked before anything is installed"


def exposure(*args: str) -> float:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Unknown" not in result.stderr and "Failed" not in result.stderr, result.stderr
    match = re.search(r"Overall exposure level for alpr-edge\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match[1])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_is_hardened_on_a_pi_and_with_the_jetson_drop_in(tmp_path: Path, models: Path) -> None:
    text = UNIT.read_text(encoding="utf-8")
    for setting in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "StartLimitIntervalSec=0",
        "RestartPreventExitStatus=78",
        "User=alpr-edge",
        "StateDirectory=alpr-edge",
        "ConfigurationDirectory=alpr-edge",
        "LoadCredential=",
        "DevicePolicy=closed",
        "DeviceAllow=char-video4linux rw",
        "DeviceAllow=char-media rw",
        "DeviceAllow=char-dma_heap rw",
        "SystemCallErrorNumber=EPERM",
    ):
        assert re.search(rf"^{re.escape(setting)}", text, re.MULTILINE), setting
    assert exposure(str(UNIT)) <= 2.0

    root = tmp_path / "root"
    install(root, models, "--platform", "jetson")
    dropin = root / "etc/systemd/system/alpr-edge.service.d/jetson.conf"
    assert "BindPaths=-/tmp/argus_socket" in dropin.read_text(encoding="utf-8")
    assert exposure(f"--root={root}", "alpr-edge.service") <= 2.0
