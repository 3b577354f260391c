"""Settings: config.properties parsing, precedence, env mapping, addresses, model settings."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from torchwire.config import (
    IGNORED_KEYS,
    SETTING_KEYS,
    Address,
    ModelSettings,
    Settings,
    load_settings,
    model_settings_from_mapping,
    parse_address,
    parse_properties,
    warn_unknown_keys,
)
from torchwire.errors import ConfigError

# The multi-line `models` block exactly as TorchServe's configuration docs show it.
TORCHSERVE_MODELS_BLOCK = (
    "models={\\\n"
    '  "noop": {\\\n'
    '    "1.0": {\\\n'
    '        "defaultVersion": true,\\\n'
    '        "marName": "noop.mar",\\\n'
    '        "minWorkers": 1,\\\n'
    '        "maxWorkers": 1,\\\n'
    '        "batchSize": 4,\\\n'
    '        "maxBatchDelay": 100,\\\n'
    '        "responseTimeout": 120\\\n'
    "    }\\\n"
    "  }\\\n"
    "}\n"
)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.properties"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- properties


def test_properties_separators_comments_and_blanks() -> None:
    text = (
        "# a comment\n"
        "! another comment\n"
        "\n"
        "   inference_address=http://0.0.0.0:8080\n"
        "management_address : http://0.0.0.0:8081\n"
        "model_store /models\n"
        "\tload_models=all\n"
        "empty=\n"
        "bare\n"
    )
    assert parse_properties(text) == {
        "inference_address": "http://0.0.0.0:8080",
        "management_address": "http://0.0.0.0:8081",
        "model_store": "/models",
        "load_models": "all",
        "empty": "",
        "bare": "",
    }


def test_properties_later_key_wins_and_crlf() -> None:
    assert parse_properties("a=1\r\na=2\r\nb=3\r") == {"a": "2", "b": "3"}


def test_properties_escapes() -> None:
    text = "path=C:\\\\models\nkey\\ with\\=odd=v\\tx\nuni=caf\\u00e9\nkeep=\\q\n"
    assert parse_properties(text) == {
        "path": "C:\\models",
        "key with=odd": "v\tx",
        "uni": "café",
        "keep": "q",
    }


def test_properties_continuation_drops_leading_blanks_and_even_backslashes_end() -> None:
    text = "a=one \\\n    two\nb=ends\\\\\nc=3\n"
    assert parse_properties(text) == {"a": "one two", "b": "ends\\", "c": "3"}


def test_properties_hash_inside_continuation_is_not_a_comment() -> None:
    assert parse_properties("a=x\\\n#y\n") == {"a": "x#y"}


def test_properties_torchserve_models_block() -> None:
    props = parse_properties("inference_address=http://0.0.0.0:8080\n" + TORCHSERVE_MODELS_BLOCK)
    assert props["inference_address"] == "http://0.0.0.0:8080"
    assert props["models"].startswith('{"noop": {"1.0": {"defaultVersion": true,')


def test_models_block_loads_per_version(tmp_path: Path) -> None:
    path = write_config(tmp_path, TORCHSERVE_MODELS_BLOCK)
    settings = load_settings(env={}, config_path=path)
    assert settings.models == {
        "noop": {
            "1.0": ModelSettings(
                min_workers=1, max_workers=1, batch_size=4, max_batch_delay=100,
                response_timeout=120,
            )
        }
    }


def test_models_keeps_every_version_and_odd_version_keys() -> None:
    models = '{"a": {"1.0": {"batchSize": 2}, "v2-beta": {"batchSize": 8}}, "b": {"x": {}}}'
    settings = load_settings(env={}, cli={"models": models})
    assert settings.models["a"]["1.0"].batch_size == 2
    assert settings.models["a"]["v2-beta"].batch_size == 8
    assert settings.models["b"] == {"x": ModelSettings()}


# --------------------------------------------------------------------------- defaults


def test_defaults_match_torchserve() -> None:
    settings = load_settings(env={})
    assert settings == Settings()
    assert settings.inference_address == Address("http", "127.0.0.1", 8080)
    assert settings.management_address.url == "http://127.0.0.1:8081"
    assert settings.metrics_address.port == 8082
    assert settings.grpc_inference == Address("http", "127.0.0.1", 7070)
    assert settings.grpc_management.port == 7071
    assert settings.enable_grpc is True
    assert settings.model_store is None
    assert settings.load_models == []
    assert settings.models == {}
    assert settings.default_workers_per_model is None
    assert settings.job_queue_size == 100
    assert settings.max_request_size == settings.max_response_size == 6553500
    assert settings.default_response_timeout == settings.default_startup_timeout == 120
    assert settings.batch_size == 1
    assert settings.max_batch_delay == 100
    assert settings.number_of_gpu is None
    assert settings.metrics_mode == "log"  # TorchServe's default
    assert settings.enable_metrics_api is True
    assert settings.disable_token_authorization is False
    assert settings.enable_token_authorization is False
    assert settings.enable_model_api is False
    assert settings.allowed_urls == ["file://.*|http(s)?://.*"]
    assert settings.install_py_dep_per_model is False
    assert settings.unknown == {}


def test_setting_keys_are_the_settings_fields() -> None:
    fields = [f.name for f in dataclasses.fields(Settings) if f.name != "unknown"]
    assert list(SETTING_KEYS) == fields
    assert not set(SETTING_KEYS) & set(IGNORED_KEYS)


def test_no_env_read_without_a_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TS_JOB_QUEUE_SIZE", "7")
    assert Settings().job_queue_size == 100
    assert load_settings().job_queue_size == 7  # os.environ, read at call time


# --------------------------------------------------------------------------- precedence


def test_precedence_cli_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "job_queue_size=10\nbatch_size=2\nmax_batch_delay=30\nmax_request_size=999\n",
    )
    env = {"TS_BATCH_SIZE": "3", "TS_MAX_BATCH_DELAY": "40", "TS_JOB_QUEUE_SIZE": "20"}
    cli = {"job_queue_size": 30, "batch_size": None}
    settings = load_settings(cli=cli, env=env, config_path=path)
    assert settings.job_queue_size == 30  # cli
    assert settings.batch_size == 3  # env (cli None = not given)
    assert settings.max_batch_delay == 40  # env
    assert settings.max_request_size == 999  # file
    assert settings.max_response_size == 6553500  # default


def test_torchwire_prefix_wins_over_ts() -> None:
    env = {"TS_JOB_QUEUE_SIZE": "5", "TORCHWIRE_JOB_QUEUE_SIZE": "6"}
    assert load_settings(env=env).job_queue_size == 6


def test_ts_env_mapping_upper_cases_keys(tmp_path: Path) -> None:
    env = {
        "TS_INFERENCE_ADDRESS": "http://0.0.0.0:9080",
        "TS_MODEL_STORE": str(tmp_path),
        "TS_LOAD_MODELS": "a=a.mar, b.mar",
        "TS_ENABLE_MODEL_API": "YES",
        "TS_GRPC_INFERENCE_PORT": "9070",
        "TS_DEFAULT_WORKERS_PER_MODEL": "2",
    }
    settings = load_settings(env=env)
    assert settings.inference_address == Address("http", "0.0.0.0", 9080)
    assert settings.model_store == tmp_path
    assert settings.load_models == ["a=a.mar", "b.mar"]
    assert settings.enable_model_api is True
    assert settings.grpc_inference_port == 9070
    assert settings.default_workers_per_model == 2


def test_empty_env_value_counts_as_unset(tmp_path: Path) -> None:
    path = write_config(tmp_path, "job_queue_size=11\n")
    assert load_settings(env={"TS_JOB_QUEUE_SIZE": ""}, config_path=path).job_queue_size == 11


def test_config_file_from_ts_config_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "batch_size=9\n")
    assert load_settings(env={"TS_CONFIG_FILE": str(path)}).batch_size == 9


def test_explicit_config_path_beats_ts_config_file(tmp_path: Path) -> None:
    other = tmp_path / "other.properties"
    other.write_text("batch_size=5\n")
    path = write_config(tmp_path, "batch_size=9\n")
    assert load_settings(env={"TS_CONFIG_FILE": str(other)}, config_path=path).batch_size == 9


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file .*nope.properties"):
        load_settings(env={}, config_path=tmp_path / "nope.properties")


def test_cli_typed_values_and_strings(tmp_path: Path) -> None:
    cli = {
        "inference_address": Address("https", "0.0.0.0", 8443),
        "management_address": "http://[::1]:9081",
        "model_store": tmp_path,
        "enable_grpc": False,
        "load_models": ["all"],
        "models": {"m": {"2": ModelSettings(batch_size=3), "3": {"batch_size": "4"}}},
        "private_key_file": "key.pem",
        "certificate_file": "cert.pem",
        "number_of_gpu": "0",
    }
    settings = load_settings(cli=cli, env={})
    assert settings.inference_address.scheme == "https"
    assert settings.management_address == Address("http", "::1", 9081)
    assert settings.model_store == tmp_path
    assert settings.enable_grpc is False
    assert settings.load_models == ["all"]
    assert settings.models["m"]["2"] == ModelSettings(batch_size=3)
    assert settings.models["m"]["3"] == ModelSettings(batch_size=4)
    assert settings.number_of_gpu == 0


def test_cli_unknown_key_is_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'job_queue'"):
        load_settings(cli={"job_queue": 1}, env={})


def test_relative_paths_resolve_against_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    path = conf_dir / "config.properties"
    path.write_text("model_store=store\nlog_location=logs\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={}, config_path=path)
    assert settings.model_store == tmp_path / "store"
    assert settings.log_location == tmp_path / "logs"


def test_unknown_and_ignored_keys(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_config(tmp_path, "number_of_netty_threads=4\nworkflow_store=/w\nmystery=42\n")
    settings = load_settings(env={"TS_MYSTERY": "1"}, config_path=path)
    assert settings.unknown == {"mystery": "42"}
    with caplog.at_level(logging.WARNING, logger="torchwire.config"):
        warn_unknown_keys(settings)
    assert "mystery" in caplog.text
    assert "number_of_netty_threads" not in caplog.text


# --------------------------------------------------------------------------- value types


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("Yes", True),
     ("false", False), ("False", False), ("0", False), ("NO", False), (" true ", True)],
)
def test_booleans(text: str, expected: bool) -> None:
    assert load_settings(env={"TS_ENABLE_METRICS_API": text}).enable_metrics_api is expected


def test_lists_and_choices(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "load_models=ALL\nallowed_urls=https://s3.amazonaws.com/.*, file:///tmp/.*\n"
        "metrics_mode=LOG\n",
    )
    settings = load_settings(env={}, config_path=path)
    assert settings.load_models == ["all"]
    assert settings.allowed_urls == ["https://s3.amazonaws.com/.*", "file:///tmp/.*"]
    assert settings.metrics_mode == "log"


def test_blank_optional_value_in_file_means_none(tmp_path: Path) -> None:
    path = write_config(tmp_path, "number_of_gpu=\nmodel_store=\n")
    settings = load_settings(env={}, config_path=path)
    assert settings.number_of_gpu is None
    assert settings.model_store is None


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("job_queue_size", "abc", "an integer >= 1"),
        ("job_queue_size", "0", "an integer >= 1"),
        ("max_batch_delay", "-1", "an integer >= 0"),
        ("grpc_inference_port", "70000", "an integer 0-65535"),
        ("enable_grpc", "maybe", "true/false, 1/0 or yes/no"),
        ("inference_address", "ftp://1.2.3.4:21", "http://127.0.0.1:8080"),
        ("inference_address", "http://::1:8080", "IPv6 hosts go in brackets"),
        ("inference_address", "http://999.1.1.1:80", "HOST"),
        ("inference_address", "http://127.0.0.1:99999", "a port in 0-65535"),
        ("grpc_management_address", "bad host", "host name or IP address"),
        ("metrics_mode", "statsd", "one of prometheus, log"),
        ("load_models", "=x.mar", "NAME=ARCHIVE"),
        ("allowed_urls", "http://(", "regular expressions"),
        ("models", "{not json", "JSON object"),
        ("models", "[1]", "JSON object"),
    ],
)
def test_bad_values_name_source_key_value_and_expectation(
    tmp_path: Path, key: str, value: str, expected: str
) -> None:
    path = write_config(tmp_path, f"{key}={value}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, config_path=path)
    message = str(info.value)
    assert f"config file {path}" in message
    assert key in message
    assert repr(value) in message or value in message
    assert expected in message


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"TORCHWIRE_BATCH_SIZE": "big"})
    assert str(info.value) == (
        "environment variable TORCHWIRE_BATCH_SIZE: batch_size='big' is invalid;"
        " expected an integer >= 1"
    )


def test_bad_cli_value_type() -> None:
    with pytest.raises(ConfigError, match=r"command line: job_queue_size=True is invalid"):
        load_settings(cli={"job_queue_size": True}, env={})


def test_bad_model_value_inside_models_json(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'models={"noop": {"1.0": {"minWorkers": "many"}}}\n')
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, config_path=path)
    message = str(info.value)
    assert message.startswith(f"config file {path}: models['noop']['1.0']: minWorkers='many'")
    assert "an integer >= 0" in message


def test_models_version_must_be_an_object() -> None:
    with pytest.raises(ConfigError, match=r"models\['noop'\]=1 is invalid"):
        load_settings(cli={"models": '{"noop": 1}'}, env={})


def test_tls_needs_both_files() -> None:
    with pytest.raises(ConfigError, match="only certificate_file is set"):
        load_settings(cli={"certificate_file": "c.pem"}, env={})
    with pytest.raises(ConfigError, match="inference_address use https"):
        load_settings(cli={"inference_address": "https://0.0.0.0:8443"}, env={})


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://127.0.0.1:8080", Address("http", "127.0.0.1", 8080)),
        ("https://0.0.0.0:8443", Address("https", "0.0.0.0", 8443)),
        ("127.0.0.1:8080", Address("http", "127.0.0.1", 8080)),
        ("http://[::1]:8080", Address("http", "::1", 8080)),
        ("HTTP://localhost:80/", Address("http", "localhost", 80)),
        ("https://example.com", Address("https", "example.com", 443)),
        ("http://[::]:0", Address("http", "::", 0)),
    ],
)
def test_parse_address(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


def test_address_url_brackets_ipv6() -> None:
    assert parse_address("http://[::1]:8080").url == "http://[::1]:8080"
    assert str(parse_address("127.0.0.1:1")) == "http://127.0.0.1:1"


@pytest.mark.parametrize("text", ["", "http://", "http://:8080", "http://a b:1", "[::1", "x:y"])
def test_parse_address_rejects_with_key_in_message(text: str) -> None:
    with pytest.raises(ConfigError, match="inference_address="):
        parse_address(text, key="inference_address")


@pytest.mark.parametrize(
    ("text", "loopback"),
    [
        ("http://127.0.0.1:8080", True),
        ("http://127.5.6.7:8080", True),
        ("http://[::1]:8080", True),
        ("http://localhost:8080", True),
        ("http://LocalHost:8080", True),
        ("http://[::ffff:127.0.0.1]:8080", True),
        ("http://0.0.0.0:8080", False),
        ("http://[::]:8080", False),
        ("http://10.0.0.1:8080", False),
        ("http://example.com:8080", False),
    ],
)
def test_is_loopback(text: str, loopback: bool) -> None:
    assert parse_address(text).is_loopback is loopback


def test_grpc_host_accepts_ipv6() -> None:
    settings = load_settings(env={"TS_GRPC_INFERENCE_ADDRESS": "[::1]"})
    assert settings.grpc_inference_address == "::1"
    assert settings.grpc_inference.is_loopback


# --------------------------------------------------------------------------- model settings


def test_model_settings_camel_case() -> None:
    settings = model_settings_from_mapping(
        {
            "minWorkers": 1, "maxWorkers": 4, "batchSize": 8, "maxBatchDelay": 50,
            "responseTimeout": 30, "startupTimeout": 60, "jobQueueSize": 10,
            "deviceType": "GPU", "deviceIds": [0, 1], "handler": {"threshold": 0.5},
            "marName": "x.mar", "defaultVersion": True,
        },
        "model-config.yaml",
    )
    assert settings == ModelSettings(
        min_workers=1, max_workers=4, batch_size=8, max_batch_delay=50, response_timeout=30,
        startup_timeout=60, job_queue_size=10, device_type="gpu", gpu_ids=[0, 1],
    )


def test_model_settings_snake_case_and_aliases() -> None:
    settings = model_settings_from_mapping(
        {
            "initial_workers": 2, "max_worker": 3, "batch_size": "4", "max_batch_delay": 5,
            "response_timeout": 6, "startup_timeout": 7, "job_queue_size": 8,
            "device_type": "cpu", "gpu_ids": "2,3",
        },
        "register request",
    )
    assert settings == ModelSettings(
        min_workers=2, max_workers=3, batch_size=4, max_batch_delay=5, response_timeout=6,
        startup_timeout=7, job_queue_size=8, device_type="cpu", gpu_ids=[2, 3],
    )
    assert model_settings_from_mapping({"min_worker": 1, "max_workers": 1}, "s") == ModelSettings(
        min_workers=1, max_workers=1
    )


def test_model_settings_none_values_are_not_set() -> None:
    assert model_settings_from_mapping({"batchSize": None}, "s") == ModelSettings()


@pytest.mark.parametrize(
    ("mapping", "fragment"),
    [
        ({"batchSize": "four"}, "batchSize='four' is invalid; expected an integer >= 1"),
        ({"minWorkers": 1.5}, "minWorkers=1.5 is invalid"),
        ({"maxWorkers": True}, "maxWorkers=True is invalid"),
        ({"deviceType": "tpu"}, "deviceType='tpu' is invalid; expected one of cpu, gpu"),
        ({"deviceIds": [0, "x"]}, "deviceIds=[0, 'x'] is invalid"),
        ({"deviceIds": 3}, "deviceIds=3 is invalid"),
        ({"minWorkers": 3, "maxWorkers": 1}, "min_workers=3 is greater than max_workers=1"),
        ({"minWorkers": 1, "min_workers": 2}, "minWorkers=1 and min_workers=2 disagree"),
    ],
)
def test_model_settings_bad_values(mapping: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        model_settings_from_mapping(mapping, "digits/model-config.yaml")
    message = str(info.value)
    assert message.startswith("digits/model-config.yaml: ")
    assert fragment in message


def test_model_settings_merged_other_non_none_wins() -> None:
    base = ModelSettings(min_workers=1, max_workers=2, batch_size=4, device_type="cpu")
    override = ModelSettings(max_workers=8, batch_size=None, gpu_ids=[1])
    merged = base.merged(override)
    assert merged == ModelSettings(
        min_workers=1, max_workers=8, batch_size=4, device_type="cpu", gpu_ids=[1]
    )
    assert base.max_workers == 2  # frozen originals untouched
    assert ModelSettings().merged(base) == base
    assert base.merged(ModelSettings()) == base
