"""The installed console script starts and every command explains itself."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli import build_parser, main


def command_names() -> list[str]:
    """The sub-command names the parser offers, read from its sub-parsers action."""
    (commands,) = (
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    return sorted(commands.choices)


COMMANDS = command_names()


def test_console_script_is_installed_and_starts() -> None:
    exe = shutil.which("alpr-edge")
    assert exe is not None, "pip install -e . should put alpr-edge on PATH"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("alpr-edge ")


def test_daemon_imports_without_torch() -> None:
    code = (
        "import sys, edge.app, edge.cli, edge.pipeline, edge.bench, edge.evaluate;"
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: alpr-edge " + command in capsys.readouterr().out


def test_read_reports_an_unreadable_image_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(["read", str(bad)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert str(bad) in err[0]
