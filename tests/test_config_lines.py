"""A technician's typo in the config: one line per error that names the file's LINE to fix,
the key path, the bad value and what is allowed; exit code 78 from ``check`` and ``run``."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.cli import main
from edge.config import TomlLines, load_settings
from edge.errors import EX_CONFIG, ConfigError

TYPOS = """\
device_id = "pole-1"
log_level = "info"

[mqtt]
host = "127.0.0.1"
port = 1883

[mqtt.tls]
ca_file = "/etc/alpr-edge/ca.pem"
cert_fil = "/etc/alpr-edge/device.crt"

[tracking]
pass_timeout_s = 0.6
min_frames = -3

[[cameras]]
id = "north"
source = "file:///tmp/north.mp4"
roi = [
  [0.0, 0.3],  # a comment [with brackets]
  [1.0, 0.3],
  [1.0, 1.0],
]

[[cameras]]
id = "south"
source = "rtps://admin:hunter2@10.0.0.5/stream"
queue_size = 0
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_check_names_the_line_key_value_and_rule_of_each_typo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, TYPOS)
    assert main(["check", "--config", str(path)]) == EX_CONFIG
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4, err
    by_key = {line.split(": ")[3]: line for line in err}
    assert f"{path}:10: mqtt.tls.cert_fil: unknown key" in by_key["mqtt.tls.cert_fil"]
    assert f"{path}:14: tracking.min_frames: " in by_key["tracking.min_frames"]
    assert "greater than or equal to 1 (got -3)" in by_key["tracking.min_frames"]
    # The second [[cameras]] entry: its own lines, not the first camera's.
    assert f"{path}:27: cameras.1.source: " in by_key["cameras.1.source"]
    assert "must start with one of file://" in by_key["cameras.1.source"]
    assert f"{path}:28: cameras.1.queue_size: " in by_key["cameras.1.queue_size"]
    assert "(got 0)" in by_key["cameras.1.queue_size"]
    assert "hunter2" not in "\n".join(err), "credentials in a mistyped URL are never echoed"


def test_run_says_the_same_and_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, TYPOS.replace("min_frames = -3", "min_frames = 2"))
    assert main(["run", "--config", str(path)]) == EX_CONFIG
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split(": ")[2] for line in err] == [
        f"{path}:10",
        f"{path}:27",
        f"{path}:28",
    ]


def test_a_missing_key_points_at_its_table(tmp_path: Path) -> None:
    text = TYPOS.replace('id = "south"\n', "").replace("min_frames = -3", "min_frames = 2")
    text = text.replace('cert_fil = "/etc/alpr-edge/device.crt"\n', "")
    text = text.replace('"rtps://admin:hunter2@10.0.0.5/stream"', '"v4l2:///dev/video0"')
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text.replace("queue_size = 0", "queue_size = 2")))
    # The second [[cameras]] header, one line up now that cert_fil is gone.
    path = tmp_path / "config.toml"
    assert err.value.message == f"{path}:24: cameras.1.id: required key is missing"


def test_a_value_from_the_environment_names_no_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALPR_EDGE_MQTT__PORT", "70000")
    text = 'device_id = "p"\n[mqtt]\nport = 1883\n[[cameras]]\nid = "c"\nsource = "v4l2://x"\n'
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text))
    assert err.value.message.startswith(f"{tmp_path / 'config.toml'}: mqtt.port: ")


def test_lines_of_tables_arrays_and_dotted_keys() -> None:
    lines = TomlLines(
        'a = 1\nb.c = "x = [y]"\ns = """\n[fake]\nk = 2\n"""\n[t]\nu = [\n  [1],\n]\n'
        "[[cams]]\n[[cams]]\nid = 'two'\n"
    )
    assert lines.line(("a",)) == 1
    assert lines.line(("b", "c")) == 2
    assert lines.line(("fake",)) is None, "inside a multi-line string"
    assert lines.line(("t", "u", 0, 1)) == 8
    assert lines.line(("cams", 0, "id")) == 11
    assert lines.line(("cams", 1, "id")) == 13
    assert lines.line(("nowhere",)) is None


@given(st.lists(st.sampled_from(['k = "a]"', "k = [", "]", '"""', "[x]", "# [y", "k = '['"])))
def test_scanner_never_fails_on_odd_lines(rows: list[str]) -> None:
    TomlLines("\n".join(rows)).line(("x", "k"))
