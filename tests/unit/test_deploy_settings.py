"""What a pod configures from its environment: config search, drain times, given keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from torchwire.auth import API, INFERENCE, MANAGEMENT, key_ring
from torchwire.config import load_settings
from torchwire.errors import ConfigError, KeyIsFixed
from torchwire.snapshot import settings_properties


def test_config_search_takes_the_first_existing_file(tmp_path: Path) -> None:
    kserve = tmp_path / "mnt" / "config.properties"
    home = tmp_path / "home" / "config.properties"
    home.parent.mkdir()
    home.write_text("job_queue_size=7\n")
    search = f"{kserve}:{home}"
    assert load_settings(env={"TORCHWIRE_CONFIG_SEARCH": search}).job_queue_size == 7
    kserve.parent.mkdir()
    kserve.write_text("job_queue_size=9\n")
    assert load_settings(env={"TORCHWIRE_CONFIG_SEARCH": search}).job_queue_size == 9
    named = {"TORCHWIRE_CONFIG_SEARCH": search, "TS_CONFIG_FILE": str(home)}
    assert load_settings(env=named).job_queue_size == 7  # a named file wins over the search


def test_drain_times_come_from_ts_variables() -> None:
    settings = load_settings(env={"TS_DRAIN_DELAY": "5", "TS_DRAIN_TIMEOUT": "40"})
    assert (settings.drain_delay, settings.drain_timeout) == (5, 40)
    assert (load_settings(env={}).drain_delay, load_settings(env={}).drain_timeout) == (0, 30)
    with pytest.raises(ConfigError, match="drain_timeout"):
        load_settings(env={"TS_DRAIN_TIMEOUT": "0"})


def test_keys_from_the_environment_are_used_and_cannot_rotate(tmp_path: Path) -> None:
    settings = load_settings(env={"TS_INFERENCE_KEY": "infer-secret"})
    ring = key_ring(settings, tmp_path / "key_file.json")
    assert ring.matches((INFERENCE,), b"infer-secret")
    assert not ring.matches((MANAGEMENT,), b"infer-secret")
    with pytest.raises(KeyIsFixed, match="TS_INFERENCE_KEY"):
        ring.rotate(INFERENCE)
    ring.rotate(MANAGEMENT)  # a generated key still rotates
    ring.write()
    written = json.loads((tmp_path / "key_file.json").read_text())
    assert written[INFERENCE]["key"] == "infer-secret"


def test_a_mounted_key_file_is_read_and_never_written(tmp_path: Path) -> None:
    mounted = tmp_path / "secret" / "key_file.json"
    mounted.parent.mkdir()
    text = json.dumps({MANAGEMENT: {"key": "m"}, INFERENCE: {"key": "i"}, API: {"key": "a"}})
    mounted.write_text(text)
    settings = load_settings(env={"TS_KEY_FILE": str(mounted), "TS_API_KEY": "a2"})
    ring = key_ring(settings, tmp_path / "key_file.json")
    assert ring.matches((MANAGEMENT,), b"m") and ring.matches((API,), b"a2")
    ring.write()
    ring.remove()
    assert mounted.read_text() == text
    assert not (tmp_path / "key_file.json").exists()


@pytest.mark.parametrize("content", ["not json", '{"management": {"key": "m"}}'])
def test_a_bad_key_file_is_refused_without_showing_keys(tmp_path: Path, content: str) -> None:
    path = tmp_path / "key_file.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="key_file") as caught:
        key_ring(load_settings(env={"TS_KEY_FILE": str(path)}), tmp_path / "other.json")
    assert '"m"' not in str(caught.value)


def test_a_key_with_blanks_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError, match="management_key") as caught:
        load_settings(env={"TS_MANAGEMENT_KEY": "two words"})
    assert "two words" not in str(caught.value)


def test_config_snapshots_never_hold_given_keys() -> None:
    env = {"TS_MANAGEMENT_KEY": "m-secret", "TS_INFERENCE_KEY": "i-secret",
           "TS_API_KEY": "a-secret", "TS_DRAIN_DELAY": "5"}
    written = settings_properties(load_settings(env=env))
    assert written["drain_delay"] == "5"
    assert not any("secret" in value for value in written.values())
