"""Config: TOML plus environment overrides, closed schema, clear errors, exit code 78."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from edge.cli import main
from edge.config import Settings, load_settings
from edge.errors import EX_CONFIG, ConfigError

REPO = Path(__file__).resolve().parents[1]
MINIMAL = """
device_id = "pole-1"
[mqtt]
host = "broker.local"
allow_insecure_plain = true
[[cameras]]
id = "c1"
source = "file:///tmp/clip.mp4"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_is_valid() -> None:
    settings = load_settings(REPO / "config.example.toml")
    assert settings.mqtt.topic_prefix == "alpr"
    assert settings.storage.retention_days == 30


def _keys(model: type[BaseModel]) -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        for arg in (*getattr(field.annotation, "__args__", ()), field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                keys |= _keys(arg)
    return keys


def test_example_config_documents_every_key() -> None:
    text = (REPO / "config.example.toml").read_text(encoding="utf-8")
    missing = [k for k in sorted(_keys(Settings)) if not re.search(rf"\b{k}\b", text)]
    assert missing == []


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPR_EDGE_MQTT__HOST", "from-env")
    monkeypatch.setenv("ALPR_EDGE_MQTT__PORT", "8883")
    monkeypatch.setenv("ALPR_EDGE_STORAGE__RETENTION_DAYS", "7")
    settings = load_settings(write(tmp_path, MINIMAL))
    assert settings.mqtt.host == "from-env"
    assert settings.mqtt.port == 8883
    assert settings.storage.retention_days == 7
    assert settings.cameras[0].id == "c1"


def test_unknown_keys_are_errors_with_their_path(tmp_path: Path) -> None:
    bad = MINIMAL.replace('host = "broker.local"', 'hots = "broker.local"')
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, bad))
    assert "mqtt.hots: unknown key" in err.value.message


def test_bad_values_name_key_value_and_reason(tmp_path: Path) -> None:
    bad = MINIMAL.replace('host = "broker.local"', "port = 70000")
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, bad))
    assert "mqtt.port" in err.value.message
    assert "70000" in err.value.message


def test_password_is_never_echoed(tmp_path: Path) -> None:
    bad = MINIMAL.replace('host = "broker.local"', 'password = "s3cret"\npassword_file = "x"')
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, bad))
    assert "s3cret" not in err.value.message


def test_password_file_from_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mqtt-password").write_text("hunter2\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    cfg = MINIMAL.replace('host = "broker.local"', 'password_file = "mqtt-password"')
    settings = load_settings(write(tmp_path, cfg))
    assert settings.mqtt.resolved_password() == "hunter2"


def test_duplicate_camera_ids_rejected(tmp_path: Path) -> None:
    cfg = MINIMAL + '[[cameras]]\nid = "c1"\nsource = "v4l2:///dev/video0"\n'
    with pytest.raises(ConfigError, match="repeated: c1"):
        load_settings(write(tmp_path, cfg))


def test_cli_exits_78_with_one_line_per_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, MINIMAL.replace('source = "file:///tmp/clip.mp4"', 'source = "ftp://x"'))
    assert main(["check", "--config", str(path)]) == EX_CONFIG
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "cameras.0.source" in err[0]
    assert "Traceback" not in err[0]


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "device_id = "))


@given(st.text(min_size=0, max_size=6), st.sampled_from(["#", "+", "\0"]))
def test_topic_prefix_rejects_wildcards(text: str, wildcard: str) -> None:
    with pytest.raises(ConfigError, match="topic_prefix"):
        load_settings(
            None,
            device_id="d",
            cameras=[{"id": "c", "source": "v4l2:///dev/video0"}],
            mqtt={"topic_prefix": text + wildcard},
        )


def test_configs_loaded_at_once_on_threads_each_get_their_own_file(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    paths = []
    for i in range(4):
        folder = tmp_path / str(i)
        folder.mkdir()
        paths.append(write(folder, MINIMAL.replace("pole-1", f"pole-{i}")))

    def device_of(i: int) -> tuple[int, str]:
        return i % 4, load_settings(paths[i % 4]).device_id

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so a shared path would be seen
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(device_of, range(200)))
    finally:
        sys.setswitchinterval(interval)
    assert all(device == f"pole-{i}" for i, device in results)
