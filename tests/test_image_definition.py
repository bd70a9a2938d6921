"""The Raspberry Pi image definition (pi-gen stage in scripts/image/) as far as it can be
checked without building it (that needs pi-gen, Docker, qemu-user-static, loop devices and the
Raspberry Pi archive): stage layout, shell syntax, SSH off, pinned packages, the first-boot
unit wired to the command, and install.sh --firstboot into a fake root followed by a first
boot on it."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
from pki import TestCA
from tiny_detector import write_models

from edge.cli import build_parser, main
from edge.provision.firstboot import BOOT_BUNDLE

REPO = Path(__file__).resolve().parent.parent
IMAGE = REPO / "scripts/image"
STAGE = IMAGE / "stage-alpr-edge"
FIRSTBOOT_UNIT = REPO / "systemd/alpr-edge-firstboot.service"


def unit_settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_stage_has_the_pi_gen_layout() -> None:
    files = sorted(str(p.relative_to(STAGE)) for p in STAGE.rglob("*") if p.is_file())
    assert files == [
        "00-install/00-packages-nr",
        "00-install/01-run.sh",
        "EXPORT_IMAGE",
        "prerun.sh",
    ]
    for script in ("prerun.sh", "00-install/01-run.sh"):
        assert (STAGE / script).stat().st_mode & stat.S_IXUSR, f"{script} must be executable"
    packages = (STAGE / "00-install/00-packages-nr").read_text(encoding="utf-8").split()
    assert {"python3-venv", "python3-picamera2"} <= set(packages)
    assert "copy_previous" in (STAGE / "prerun.sh").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "script",
    [
        "scripts/image/build.sh",
        "scripts/image/stage-alpr-edge/prerun.sh",
        "scripts/image/stage-alpr-edge/00-install/01-run.sh",
        "scripts/install.sh",
    ],
)
def test_shell_scripts_parse(script: str) -> None:
    result = subprocess.run(
        ["bash", "-n", str(REPO / script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def pi_gen_config() -> dict[str, str]:
    """The config as pi-gen reads it: sourced by bash."""
    names = ("ENABLE_SSH", "STAGE_LIST", "RELEASE", "FIRST_USER_PASS", "IMG_NAME")
    printer = "; ".join(f'echo "{name}=${{{name}:-}}"' for name in names)
    result = subprocess.run(
        ["bash", "-c", f"set -eu; source {IMAGE / 'config'}; {printer}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def test_image_is_lite_bookworm_with_ssh_off_and_no_baked_password() -> None:
    config = pi_gen_config()
    assert config["ENABLE_SSH"] == "0"
    assert config["RELEASE"] == "bookworm"
    assert config["STAGE_LIST"].split() == ["stage0", "stage1", "stage2", "stage-alpr-edge"]
    assert config["FIRST_USER_PASS"] == ""
    build = (IMAGE / "build.sh").read_text(encoding="utf-8")
    assert re.search(r"^PI_GEN_REF=\d{4}-\d\d-\d\d-raspios-bookworm-arm64$", build, re.M)


def test_stage_installs_with_firstboot_and_pinned_packages() -> None:
    run = (STAGE / "00-install/01-run.sh").read_text(encoding="utf-8")
    assert "scripts/install.sh --platform pi --firstboot" in run
    assert "PIP_CONSTRAINT=${SRC}/scripts/image/constraints.txt" in run

    pins = {}
    for line in (IMAGE / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name] = version
    with (REPO / "pyproject.toml").open("rb") as fh:
        dependencies = tomllib.load(fh)["project"]["dependencies"]
    for requirement in dependencies:
        name = re.split(r"[<>=!~ ]", requirement, maxsplit=1)[0]
        assert name in pins, f"{name} is not pinned for the image"
    assert int(pins["numpy"].split(".")[0]) < 2, "apt's picamera2 needs numpy 1.x"


def test_firstboot_unit_runs_the_command_while_a_bundle_is_there() -> None:
    unit = unit_settings(FIRSTBOOT_UNIT)
    assert unit["Type"] == ["oneshot"]
    assert unit["ExecStart"] == ["/opt/alpr-edge/venv/bin/alpr-edge firstboot"]
    assert unit["ConditionPathExists"] == [str(BOOT_BUNDLE)]
    assert unit["Before"] == ["alpr-edge.service"]
    assert unit["WantedBy"] == ["multi-user.target"]
    assert build_parser().parse_args(["firstboot"]).command == "firstboot"


@pytest.mark.skipif(os.geteuid() != 0, reason="install.sh creates users and chowns: root only")
@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="needs systemd-sysusers")
def test_image_install_then_first_boot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What the stage does in the image (install.sh --firstboot), then what the first boot
    does with a bundle from provision --batch."""
    root = tmp_path / "root"
    write_models(tmp_path / "models")
    result = subprocess.run(
        [
            "bash",
            str(REPO / "scripts/install.sh"),
            "--root",
            str(root),
            "--skip-venv",
            "--models",
            str(tmp_path / "models"),
            "--platform",
            "pi",
            "--firstboot",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    units = root / "etc/systemd/system"
    wants = units / "multi-user.target.wants"
    assert os.readlink(wants / "alpr-edge-firstboot.service") == (
        "/etc/systemd/system/alpr-edge-firstboot.service"
    )
    assert (units / "alpr-edge.service").is_file()
    assert not (wants / "alpr-edge.service").exists(), "enabled by first boot, not the image"
    template = root / "opt/alpr-edge/config.example.toml"
    assert template.read_bytes() == (REPO / "config.example.toml").read_bytes()

    TestCA.make().write(tmp_path / "ca.pem")
    (tmp_path / "devices.csv").write_text(
        "device_id,latitude,longitude,heading_deg\npole-0011,33.8,-116.5,45\n", encoding="utf-8"
    )
    args = [
        "--out",
        str(tmp_path / "out"),
        "--ca",
        str(tmp_path / "ca.pem"),
        "--broker",
        "b.example",
    ]
    assert main(["provision", "--batch", str(tmp_path / "devices.csv"), *args]) == 0
    shutil.copytree(tmp_path / "out/pole-0011", root / "boot/firmware/alpr-edge")
    assert main(["firstboot", "--root", str(root)]) == 0
    assert "pole-0011: waiting for a certificate" in capsys.readouterr().out
    uid = next(
        int(line.split(":")[2])
        for line in (root / "etc/passwd").read_text(encoding="utf-8").splitlines()
        if line.startswith("alpr-edge:")
    )
    key = (root / "var/lib/alpr-edge/device.key").stat()
    assert (key.st_uid, stat.S_IMODE(key.st_mode)) == (uid, 0o600)
    config = (root / "etc/alpr-edge/config.toml").stat()
    assert stat.S_IMODE(config.st_mode) == 0o640
