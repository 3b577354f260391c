"""The server's :class:`Settings` and how they are layered from their sources."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchwire.config.addresses import Address, to_address, to_host
from torchwire.config.models import ModelSettings, to_models
from torchwire.config.properties import parse_properties
from torchwire.config.values import (
    choice,
    converters,
    int_at_least,
    optional,
    setting,
    to_allowed_urls,
    to_bool,
    to_key,
    to_load_models,
    to_path,
    to_port,
    to_text,
    with_source,
)
from torchwire.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_ALLOWED_URLS = "file://.*|http(s)?://.*"


@dataclass(frozen=True)
class Settings:
    """The whole server configuration; field names are TorchServe's key names."""

    inference_address: Address = setting(to_address, Address("http", "127.0.0.1", 8080))
    management_address: Address = setting(to_address, Address("http", "127.0.0.1", 8081))
    metrics_address: Address = setting(to_address, Address("http", "127.0.0.1", 8082))
    grpc_inference_address: str = setting(to_host, "127.0.0.1")
    grpc_inference_port: int = setting(to_port, 7070)
    grpc_management_address: str = setting(to_host, "127.0.0.1")
    grpc_management_port: int = setting(to_port, 7071)
    enable_grpc: bool = setting(to_bool, True)
    enable_grpc_ssl: bool = setting(to_bool, False)
    # bytes; gRPC takes the larger of this and max_request_size (max_response_size for answers)
    grpc_max_message_size: int = setting(int_at_least(1), 64 * 1024 * 1024)
    grpc_inference_max_connection_age_ms: int | None = setting(optional(int_at_least(1)))
    grpc_management_max_connection_age_ms: int | None = setting(optional(int_at_least(1)))
    grpc_inference_max_connection_age_grace_ms: int | None = setting(optional(int_at_least(0)))
    grpc_management_max_connection_age_grace_ms: int | None = setting(optional(int_at_least(0)))
    # a gRPC connection with no call in progress for this long gets a GOAWAY (clients
    # reconnect on their next call), as HTTP keep-alive closes after 120 s
    grpc_max_connection_idle_ms: int = setting(int_at_least(1), 120_000)
    grpc_max_concurrent_streams: int = setting(int_at_least(1), 128)  # calls per connection
    model_store: Path | None = setting(optional(to_path))
    workflow_store: Path | None = setting(optional(to_path))  # .war files; None: model_store
    load_models: list[str] = setting(to_load_models, factory=list)
    models: dict[str, dict[str, ModelSettings]] = setting(to_models, factory=dict)
    # None: decide from the hardware
    default_workers_per_model: int | None = setting(optional(int_at_least(0)))
    job_queue_size: int = setting(int_at_least(1), 100)
    max_request_size: int = setting(int_at_least(1), 6553500)
    max_response_size: int = setting(int_at_least(1), 6553500)
    default_response_timeout: int = setting(int_at_least(1), 120)  # seconds
    default_startup_timeout: int = setting(int_at_least(1), 120)  # seconds
    batch_size: int = setting(int_at_least(1), 1)
    max_batch_delay: int = setting(int_at_least(0), 100)  # milliseconds
    number_of_gpu: int | None = setting(optional(int_at_least(0)))  # None: detect
    log_location: Path | None = setting(optional(to_path))
    metrics_mode: str = setting(choice("prometheus", "log", "legacy"), "log")  # TorchServe's
    metrics_config: Path | None = setting(optional(to_path))  # None: TorchServe's default set
    # None: on without metrics_config (torchwire's habit), off with one (TorchServe's)
    model_metrics_auto_detect: bool | None = setting(optional(to_bool))
    metric_time_interval: int = setting(int_at_least(1), 60)  # s between logged system metrics
    # a snapshot's model_snapshot JSON: its models are restored at start
    model_snapshot: str | None = setting(optional(to_text))
    enable_metrics_api: bool = setting(to_bool, True)
    disable_token_authorization: bool = setting(to_bool, False)
    enable_token_authorization: bool = setting(to_bool, False)
    # None: keys do not expire (TorchServe: 60)
    token_expiration_min: int | None = setting(optional(int_at_least(1)))
    enable_model_api: bool = setting(to_bool, False)
    allowed_urls: list[str] = setting(to_allowed_urls, factory=lambda: [DEFAULT_ALLOWED_URLS])
    install_py_dep_per_model: bool = setting(to_bool, False)
    private_key_file: Path | None = setting(optional(to_path))
    certificate_file: Path | None = setting(optional(to_path))
    # per worker; None: cores // workers (OMP_NUM_THREADS sets it)
    torch_threads: int | None = setting(optional(int_at_least(1)))
    # scheduling (docs/scheduling.md); each is also a per model key (batchPolicy, ...)
    batch_policy: str = setting(choice("adaptive", "torchserve"), "adaptive")
    elastic_workers: bool = setting(to_bool, True)
    scale_up_wait_ms: int = setting(int_at_least(0), 100)  # beyond max_batch_delay
    scale_down_after: int = setting(int_at_least(1), 30)  # seconds of quiet
    # SIGTERM: s with readiness failing before the listeners close (a balancer notices) ...
    drain_delay: int = setting(int_at_least(0), 0)
    # ... then s for accepted requests to be answered and the workers to stop
    drain_timeout: int = setting(int_at_least(1), 30)
    key_file: Path | None = setting(optional(to_path))  # a key_file.json to read (a Secret)
    management_key: str | None = setting(optional(to_key))  # keys given (e.g. from a Secret)
    inference_key: str | None = setting(optional(to_key))
    api_key: str | None = setting(optional(to_key))
    # Limits against hostile clients (docs/limits.md): what a connection, a download or an
    # archive may cost the server, and how long a silent worker is trusted.
    max_header_count: int = setting(int_at_least(1), 100)  # request headers; more: 431
    # bytes of all header names and values (Netty's 8 KB); more: 431
    max_header_size: int = setting(int_at_least(256), 8192)
    # s from a connection (or a request's first byte) to the end of its headers
    header_read_timeout: int = setting(int_at_least(1), 5)
    body_read_timeout: int = setting(int_at_least(1), 30)  # s from headers to the body's end
    max_download_size: int = setting(int_at_least(1), 4 * 1024**3)  # bytes of one download
    download_timeout: int = setting(int_at_least(1), 600)  # s for one whole download
    max_extracted_size: int = setting(int_at_least(1), 16 * 1024**3)  # bytes unpacked
    max_compression_ratio: int = setting(int_at_least(1), 100)  # unpacked per archive byte
    # None: what the machine runs (cores // torch_threads, or GPUs where more)
    max_workers_per_model: int | None = setting(optional(int_at_least(1)))
    # None: one worker per 512 MiB of physical memory
    max_workers_total: int | None = setting(optional(int_at_least(1)))
    worker_heartbeat_timeout: int = setting(int_at_least(1), 5)  # s without a heartbeat
    unknown: dict[str, str] = field(default_factory=dict)  # unrecognised file keys

    @property
    def grpc_inference(self) -> Address:
        return Address("http", self.grpc_inference_address, self.grpc_inference_port)

    @property
    def grpc_management(self) -> Address:
        return Address("http", self.grpc_management_address, self.grpc_management_port)


_CONVERTERS = converters(Settings)

SETTING_KEYS: tuple[str, ...] = tuple(_CONVERTERS)
"""TorchServe key names that are read (each is a :class:`Settings` field)."""

IGNORED_KEYS: tuple[str, ...] = (
    "number_of_netty_threads",
    "netty_client_threads",
    "cors_allowed_origin",
    "cors_allowed_methods",
    "cors_allowed_headers",
    "default_service_handler",
    "enable_envvars_config",
    "async_logging",
    "vmargs",
    "keystore",
    "keystore_pass",
    "keystore_type",
    "tsConfigFile",
)
"""TorchServe keys accepted in config.properties without effect (not kept in ``unknown``)."""

_CONFIG_FILE_VARS = ("TORCHWIRE_CONFIG_FILE", "TS_CONFIG_FILE")
_CONFIG_SEARCH_VAR = "TORCHWIRE_CONFIG_SEARCH"

Layer = dict[str, tuple[Any, str]]  # key -> (raw value, where it came from)


def load_settings(
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_path: Path | None = None,
) -> Settings:
    """Build :class:`Settings`: ``cli`` > ``env`` (default ``os.environ``) > file > defaults.

    ``cli`` keys are :class:`Settings` field names; ``None`` values mean not given.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    path = config_path if config_path is not None else _config_path_from_env(environ)
    layer, unknown = _file_layer(path) if path is not None else ({}, {})
    layer.update(_env_layer(environ))
    layer.update(_cli_layer(cli or {}))
    values = {
        key: with_source(source, _CONVERTERS[key], raw, key)
        for key, (raw, source) in layer.items()
    }
    settings = Settings(**values, unknown=unknown)
    _check_tls(settings)
    return settings


def config_file_from_env(env: Mapping[str, str] | None = None) -> Path | None:
    """The config file that TORCHWIRE_CONFIG_FILE / TS_CONFIG_FILE name, else the first
    existing one of TORCHWIRE_CONFIG_SEARCH, if any (a file found so counts as given:
    the server starts from it, not from the last snapshot)."""
    return _config_path_from_env(os.environ if env is None else env)


def _config_path_from_env(environ: Mapping[str, str]) -> Path | None:
    """The named config file, else the first existing one of ``TORCHWIRE_CONFIG_SEARCH``.

    The search list (``:``-separated) is how the container image finds KServe's
    ``/mnt/models/config/config.properties`` or TorchServe's
    ``/home/model-server/config.properties`` without flags.
    """
    for name in _CONFIG_FILE_VARS:
        value = environ.get(name, "").strip()
        if value:
            return Path(value)
    candidates = environ.get(_CONFIG_SEARCH_VAR, "").split(":")
    return next((Path(c) for c in candidates if c.strip() and Path(c).is_file()), None)


def _file_layer(path: Path) -> tuple[Layer, dict[str, str]]:
    source = f"config file {path}"
    layer: Layer = {}
    unknown: dict[str, str] = {}
    for key, value in parse_properties(_read_text(path)).items():
        if key in _CONVERTERS:
            layer[key] = (value, source)
        elif key not in IGNORED_KEYS:
            unknown[key] = value
    return layer, unknown


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # what Java's Properties.load(InputStream) assumes


def _env_layer(environ: Mapping[str, str]) -> Layer:
    layer: Layer = {}
    for key in SETTING_KEYS:
        for name in (f"TORCHWIRE_{key.upper()}", f"TS_{key.upper()}"):
            value = environ.get(name)
            if value is not None and value.strip():
                layer[key] = (value, f"environment variable {name}")
                break
    omp = environ.get("OMP_NUM_THREADS", "").strip()
    if "torch_threads" not in layer and omp:
        layer["torch_threads"] = (omp, "environment variable OMP_NUM_THREADS")
    return layer


def _cli_layer(cli: Mapping[str, Any]) -> Layer:
    layer: Layer = {}
    for key, value in cli.items():
        if value is None:
            continue
        if key not in _CONVERTERS:
            known = ", ".join(SETTING_KEYS)
            raise ConfigError(f"command line: unknown setting {key!r}; expected one of {known}")
        layer[key] = (value, "command line")
    return layer


def _check_tls(settings: Settings) -> None:
    has_key = settings.private_key_file is not None
    has_cert = settings.certificate_file is not None
    if has_key != has_cert:
        given = "private_key_file" if has_key else "certificate_file"
        raise ConfigError(
            f"only {given} is set; expected both private_key_file and certificate_file for TLS"
        )
    https = [
        key
        for key in ("inference_address", "management_address", "metrics_address")
        if getattr(settings, key).scheme == "https"
    ]
    if https and not has_cert:
        raise ConfigError(
            f"{', '.join(https)} use https; expected certificate_file and private_key_file"
        )
    if settings.enable_grpc_ssl and not has_cert:
        raise ConfigError(
            "enable_grpc_ssl=true; expected certificate_file and private_key_file"
        )


def warn_unknown_keys(settings: Settings) -> None:
    """Log one warning per config.properties key that torchwire does not recognise."""
    for key, value in sorted(settings.unknown.items()):
        logger.warning("config.properties: unknown key %s=%r is ignored", key, value)
