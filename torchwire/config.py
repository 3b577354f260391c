"""One typed settings tree: command line > environment > config.properties > defaults.

Key names are TorchServe's ``config.properties`` keys, and each is also the name of
a :class:`Settings` field.  The environment is read only when :func:`load_settings`
is called: ``TORCHWIRE_<KEY>`` wins over ``TS_<KEY>`` (key upper-cased, e.g.
``TS_INFERENCE_ADDRESS``); empty variables count as not set.  The config file is
``config_path``, else ``TORCHWIRE_CONFIG_FILE`` / ``TS_CONFIG_FILE``, else none.
Relative paths are resolved against the working directory, as TorchServe does.
Every invalid value raises :class:`~torchwire.errors.ConfigError` naming the source,
the key, the value and what was expected.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchwire.errors import ConfigError

logger = logging.getLogger(__name__)

Converter = Callable[[Any, str], Any]
"""Turns a raw value (a string, or an already typed value) for ``key`` into its type."""

DEFAULT_ALLOWED_URLS = "file://.*|http(s)?://.*"

# --------------------------------------------------------------------------- properties

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BLANKS = " \t\f"
_ENTRY = re.compile(r"(?P<key>(?:\\.|[^\\=: \t\f])*)[ \t\f]*[=:]?[ \t\f]*(?P<value>.*)", re.DOTALL)
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_ESCAPED_CHARS = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def parse_properties(text: str) -> dict[str, str]:
    """Parse Java ``.properties`` text the way TorchServe reads ``config.properties``.

    ``key=value``, ``key: value`` and ``key value``; ``#``/``!`` comment lines; leading
    blanks ignored; a line ending in an odd number of backslashes continues on the
    next one (with that line's leading blanks dropped); later keys win.
    """
    result: dict[str, str] = {}
    for line in _logical_lines(text):
        match = _ENTRY.match(line)
        assert match is not None  # every group may be empty, so it always matches
        result[_unescape(match["key"])] = _unescape(match["value"])
    return result


def _logical_lines(text: str) -> Iterator[str]:
    parts: list[str] = []
    for natural in _LINE_BREAK.split(text):
        line = natural.lstrip(_BLANKS)
        if not parts and (not line or line[0] in "#!"):
            continue
        if _continues(line):
            parts.append(line[:-1])
            continue
        parts.append(line)
        yield "".join(parts)
        parts = []
    if parts:
        yield "".join(parts)


def _continues(line: str) -> bool:
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _unescape(raw: str) -> str:
    return _ESCAPE.sub(_unescape_one, raw)


def _unescape_one(match: re.Match[str]) -> str:
    escaped = match.group(1)
    if len(escaped) == 5:
        return chr(int(escaped[1:], 16))
    return _ESCAPED_CHARS.get(escaped, escaped)


# --------------------------------------------------------------------------- values


def _invalid(key: str, value: object, expected: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is invalid; expected {expected}")


def _with_source(source: str, convert: Converter, value: Any, key: str) -> Any:
    try:
        return convert(value, key)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _expect_str(value: Any, key: str, expected: str) -> str:
    if not isinstance(value, str):
        raise _invalid(key, value, expected)
    return value.strip()


_BOOL_EXPECTED = "a boolean: true/false, 1/0 or yes/no"
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def _to_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = _expect_str(value, key, _BOOL_EXPECTED).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _invalid(key, value, _BOOL_EXPECTED)


_INT_TEXT = re.compile(r"[+-]?[0-9]+")


def _parse_int(value: Any, key: str, minimum: int, maximum: int | None = None) -> int:
    expected = f"an integer >= {minimum}" if maximum is None else f"an integer {minimum}-{maximum}"
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise _invalid(key, value, expected)
    if number < minimum or (maximum is not None and number > maximum):
        raise _invalid(key, value, expected)
    return number


def _int_at_least(minimum: int) -> Converter:
    def convert(value: Any, key: str) -> int:
        return _parse_int(value, key, minimum)

    return convert


def _to_port(value: Any, key: str) -> int:
    return _parse_int(value, key, 0, 65535)


def _optional(convert: Converter) -> Converter:
    """Wrap ``convert`` so that ``None`` and blank text mean "not set" (``None``)."""

    def optional(value: Any, key: str) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return convert(value, key)

    return optional


def _to_path(value: Any, key: str) -> Path:
    if isinstance(value, Path):
        path = value
    else:
        path = Path(_expect_str(value, key, "a file system path"))
    return path.expanduser().absolute()


def _choice(*choices: str) -> Converter:
    expected = "one of " + ", ".join(choices)

    def convert(value: Any, key: str) -> str:
        text = _expect_str(value, key, expected).lower()
        if text not in choices:
            raise _invalid(key, value, expected)
        return text

    return convert


def _to_str_list(value: Any, key: str, expected: str) -> list[str]:
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        items = list(value)
    else:
        raise _invalid(key, value, expected)
    return [item.strip() for item in items if item.strip()]


def _to_int_list(value: Any, key: str) -> list[int]:
    expected = "a list of integers >= 0, e.g. [0, 1] or '0,1'"
    if isinstance(value, str):
        items: list[Any] = [item for item in value.split(",") if item.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise _invalid(key, value, expected)
    try:
        return [_parse_int(item, key, 0) for item in items]
    except ConfigError:
        raise _invalid(key, value, expected) from None


_LOAD_MODELS_EXPECTED = "comma-separated entries: all, ARCHIVE or NAME=ARCHIVE"


def _to_load_models(value: Any, key: str) -> list[str]:
    entries = _to_str_list(value, key, _LOAD_MODELS_EXPECTED)
    return [_load_models_entry(entry, key) for entry in entries]


def _load_models_entry(entry: str, key: str) -> str:
    if entry.lower() == "all":
        return "all"
    name, sep, archive = entry.partition("=")
    if not sep:
        return entry
    if not name.strip() or not archive.strip():
        raise _invalid(key, entry, _LOAD_MODELS_EXPECTED)
    return f"{name.strip()}={archive.strip()}"


_ALLOWED_URLS_EXPECTED = "a comma-separated list of regular expressions"


def _to_allowed_urls(value: Any, key: str) -> list[str]:
    patterns = _to_str_list(value, key, _ALLOWED_URLS_EXPECTED)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _invalid(key, pattern, f"{_ALLOWED_URLS_EXPECTED} ({exc})") from None
    return patterns


# --------------------------------------------------------------------------- addresses

_ADDRESS_EXPECTED = (
    "[http|https://]HOST[:PORT], e.g. http://127.0.0.1:8080; IPv6 hosts go in brackets,"
    " e.g. http://[::1]:8080"
)
_ADDRESS = re.compile(
    r"(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?"
    r"(?P<host>\[[^\]/]*\]|[^\[\]/:]*)"
    r"(?::(?P<port>[0-9]+))?/?"
)
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_DOTTED = re.compile(r"[0-9.]+")
_HOST_EXPECTED = "a host name or IP address, e.g. 127.0.0.1, 0.0.0.0 or ::1"


@dataclass(frozen=True)
class Address:
    """Where a listener binds; ``host`` is kept without IPv6 brackets."""

    scheme: str
    host: str
    port: int

    @property
    def is_loopback(self) -> bool:
        """True for ``localhost``, 127.0.0.0/8 and ::1 (also IPv4-mapped)."""
        if self.host.lower().rstrip(".") == "localhost":
            return True
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return ip.ipv4_mapped.is_loopback
        return ip.is_loopback

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def __str__(self) -> str:
        return self.url


def parse_address(text: str, key: str = "address") -> Address:
    """Parse ``http://127.0.0.1:8080``, ``https://0.0.0.0:8443``, ``127.0.0.1:8080``,
    ``http://[::1]:8080``.  No scheme means http; no port means 80 (http) or 443 (https).
    """
    match = _ADDRESS.fullmatch(text.strip())
    if match is None:
        raise _invalid(key, text, _ADDRESS_EXPECTED)
    scheme = (match["scheme"] or "http").lower()
    host = _normalise_host(match["host"])
    if scheme not in ("http", "https") or host is None:
        raise _invalid(key, text, _ADDRESS_EXPECTED)
    port = int(match["port"]) if match["port"] else (443 if scheme == "https" else 80)
    if port > 65535:
        raise _invalid(key, text, "a port in 0-65535")
    return Address(scheme, host, port)


def _normalise_host(host: str) -> str | None:
    """``host`` without IPv6 brackets, or None when it is not a valid host."""
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1] if _is_ip(host[1:-1], 6) else None
    if ":" in host:
        return host if _is_ip(host, 6) else None
    if _DOTTED.fullmatch(host):
        return host if _is_ip(host, 4) else None
    return host if _HOSTNAME.fullmatch(host) else None


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def _to_address(value: Any, key: str) -> Address:
    if isinstance(value, Address):
        return value
    return parse_address(_expect_str(value, key, _ADDRESS_EXPECTED), key)


def _to_host(value: Any, key: str) -> str:
    host = _normalise_host(_expect_str(value, key, _HOST_EXPECTED))
    if host is None:
        raise _invalid(key, value, _HOST_EXPECTED)
    return host


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSettings:
    """Per model version overrides; ``None`` means not set (use the server default)."""

    min_workers: int | None = None
    max_workers: int | None = None
    batch_size: int | None = None
    max_batch_delay: int | None = None  # milliseconds
    response_timeout: int | None = None  # seconds
    startup_timeout: int | None = None  # seconds
    job_queue_size: int | None = None
    device_type: str | None = None  # "cpu" | "gpu"
    gpu_ids: list[int] | None = None

    def merged(self, other: ModelSettings) -> ModelSettings:
        """A copy of ``self`` where every field ``other`` sets (non-None) wins."""
        changes = {
            f.name: getattr(other, f.name)
            for f in dataclasses.fields(other)
            if getattr(other, f.name) is not None
        }
        return dataclasses.replace(self, **changes)


_MODEL_CONVERTERS: dict[str, Converter] = {
    "min_workers": _int_at_least(0),
    "max_workers": _int_at_least(0),
    "batch_size": _int_at_least(1),
    "max_batch_delay": _int_at_least(0),
    "response_timeout": _int_at_least(1),
    "startup_timeout": _int_at_least(1),
    "job_queue_size": _int_at_least(1),
    "device_type": _choice("cpu", "gpu"),
    "gpu_ids": _to_int_list,
}

# Accepted key spelling -> ModelSettings field.
_MODEL_KEYS: dict[str, str] = {
    "minWorkers": "min_workers",
    "min_workers": "min_workers",
    "min_worker": "min_workers",
    "initial_workers": "min_workers",
    "maxWorkers": "max_workers",
    "max_workers": "max_workers",
    "max_worker": "max_workers",
    "batchSize": "batch_size",
    "batch_size": "batch_size",
    "maxBatchDelay": "max_batch_delay",
    "max_batch_delay": "max_batch_delay",
    "responseTimeout": "response_timeout",
    "response_timeout": "response_timeout",
    "startupTimeout": "startup_timeout",
    "startup_timeout": "startup_timeout",
    "jobQueueSize": "job_queue_size",
    "job_queue_size": "job_queue_size",
    "deviceType": "device_type",
    "device_type": "device_type",
    "deviceIds": "gpu_ids",
    "device_ids": "gpu_ids",
    "gpu_ids": "gpu_ids",
}


def model_settings_from_mapping(d: Mapping[str, Any], source: str) -> ModelSettings:
    """Read model settings from a ``model-config.yaml`` mapping or a ``models`` JSON entry.

    Accepts TorchServe's camelCase keys and snake_case ones; other keys (``marName``,
    ``defaultVersion``, handler options, ...) are ignored, as are ``None`` values.
    """
    values: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for raw_key, raw in d.items():
        key = str(raw_key)
        name = _MODEL_KEYS.get(key)
        if name is None or raw is None:
            continue
        value = _with_source(source, _MODEL_CONVERTERS[name], raw, key)
        if name in values and values[name] != value:
            raise ConfigError(
                f"{source}: {spelled[name]}={values[name]!r} and {key}={value!r} disagree;"
                " give only one of them"
            )
        values[name] = value
        spelled[name] = key
    settings = ModelSettings(**values)
    _check_worker_range(settings, source)
    return settings


def _check_worker_range(settings: ModelSettings, source: str) -> None:
    low, high = settings.min_workers, settings.max_workers
    if low is not None and high is not None and low > high:
        raise ConfigError(
            f"{source}: min_workers={low} is greater than max_workers={high};"
            " expected min_workers <= max_workers"
        )


_MODELS_EXPECTED = 'a JSON object {"NAME": {"VERSION": {"minWorkers": 1, ...}}}'


def _to_models(value: Any, key: str) -> dict[str, dict[str, ModelSettings]]:
    data = _json_object(value, key) if isinstance(value, str) else value
    if not isinstance(data, Mapping):
        raise _invalid(key, value, _MODELS_EXPECTED)
    return {str(name): _model_versions(str(name), versions, key) for name, versions in data.items()}


def _json_object(text: str, key: str) -> Any:
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _invalid(key, text, f"{_MODELS_EXPECTED} ({exc})") from None


def _model_versions(name: str, versions: Any, key: str) -> dict[str, ModelSettings]:
    where = f"{key}[{name!r}]"
    if not isinstance(versions, Mapping):
        raise _invalid(where, versions, 'an object mapping versions to settings, {"1.0": {...}}')
    result: dict[str, ModelSettings] = {}
    for version, entry in versions.items():
        at = f"{where}[{str(version)!r}]"
        if isinstance(entry, ModelSettings):
            result[str(version)] = entry
        elif isinstance(entry, Mapping):
            result[str(version)] = model_settings_from_mapping(entry, at)
        else:
            raise _invalid(at, entry, "an object of model settings")
    return result


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """The whole server configuration; field names are TorchServe's key names."""

    inference_address: Address = Address("http", "127.0.0.1", 8080)
    management_address: Address = Address("http", "127.0.0.1", 8081)
    metrics_address: Address = Address("http", "127.0.0.1", 8082)
    grpc_inference_address: str = "127.0.0.1"
    grpc_inference_port: int = 7070
    grpc_management_address: str = "127.0.0.1"
    grpc_management_port: int = 7071
    enable_grpc: bool = True
    enable_grpc_ssl: bool = False
    grpc_max_message_size: int = 64 * 1024 * 1024  # bytes; gRPC takes the larger of this
    # and max_request_size (max_response_size for answers)
    grpc_inference_max_connection_age_ms: int | None = None
    grpc_management_max_connection_age_ms: int | None = None
    grpc_inference_max_connection_age_grace_ms: int | None = None
    grpc_management_max_connection_age_grace_ms: int | None = None
    model_store: Path | None = None
    load_models: list[str] = field(default_factory=list)
    models: dict[str, dict[str, ModelSettings]] = field(default_factory=dict)
    default_workers_per_model: int | None = None  # None: decide from the hardware
    job_queue_size: int = 100
    max_request_size: int = 6553500
    max_response_size: int = 6553500
    default_response_timeout: int = 120  # seconds
    default_startup_timeout: int = 120  # seconds
    batch_size: int = 1
    max_batch_delay: int = 100  # milliseconds
    number_of_gpu: int | None = None  # None: detect
    log_location: Path | None = None
    metrics_mode: str = "prometheus"  # "prometheus" | "log"
    enable_metrics_api: bool = True
    disable_token_authorization: bool = False
    enable_token_authorization: bool = False
    token_expiration_min: int | None = None  # None: keys do not expire (TorchServe: 60)
    enable_model_api: bool = False
    allowed_urls: list[str] = field(default_factory=lambda: [DEFAULT_ALLOWED_URLS])
    install_py_dep_per_model: bool = False
    private_key_file: Path | None = None
    certificate_file: Path | None = None
    torch_threads: int | None = None  # per worker; None: cores // workers (OMP_NUM_THREADS sets it)
    # Limits against hostile clients (docs/limits.md): what a connection, a download or an
    # archive may cost the server, and how long a silent worker is trusted.
    max_header_count: int = 100  # request headers; more: 431
    max_header_size: int = 8192  # bytes of all header names and values (Netty's 8 KB); more: 431
    header_read_timeout: int = 5  # s from a request's first byte (or the connection) to its headers
    body_read_timeout: int = 30  # s from the end of the headers to the end of the body
    max_download_size: int = 4 * 1024**3  # bytes of one archive downloaded for registration
    download_timeout: int = 600  # s for one whole download
    max_extracted_size: int = 16 * 1024**3  # bytes an archive may unpack to
    max_compression_ratio: int = 100  # unpacked bytes per archive byte
    max_workers_per_model: int | None = None  # None: what the machine runs (cores or GPUs)
    max_workers_total: int | None = None  # None: 4 x max_workers_per_model's default
    worker_heartbeat_timeout: int = 5  # s a worker may leave heartbeats unanswered
    unknown: dict[str, str] = field(default_factory=dict)  # unrecognised file keys

    @property
    def grpc_inference(self) -> Address:
        return Address("http", self.grpc_inference_address, self.grpc_inference_port)

    @property
    def grpc_management(self) -> Address:
        return Address("http", self.grpc_management_address, self.grpc_management_port)


_CONVERTERS: dict[str, Converter] = {
    "inference_address": _to_address,
    "management_address": _to_address,
    "metrics_address": _to_address,
    "grpc_inference_address": _to_host,
    "grpc_inference_port": _to_port,
    "grpc_management_address": _to_host,
    "grpc_management_port": _to_port,
    "enable_grpc": _to_bool,
    "enable_grpc_ssl": _to_bool,
    "grpc_max_message_size": _int_at_least(1),
    "grpc_inference_max_connection_age_ms": _optional(_int_at_least(1)),
    "grpc_management_max_connection_age_ms": _optional(_int_at_least(1)),
    "grpc_inference_max_connection_age_grace_ms": _optional(_int_at_least(0)),
    "grpc_management_max_connection_age_grace_ms": _optional(_int_at_least(0)),
    "model_store": _optional(_to_path),
    "load_models": _to_load_models,
    "models": _to_models,
    "default_workers_per_model": _optional(_int_at_least(0)),
    "job_queue_size": _int_at_least(1),
    "max_request_size": _int_at_least(1),
    "max_response_size": _int_at_least(1),
    "default_response_timeout": _int_at_least(1),
    "default_startup_timeout": _int_at_least(1),
    "batch_size": _int_at_least(1),
    "max_batch_delay": _int_at_least(0),
    "number_of_gpu": _optional(_int_at_least(0)),
    "log_location": _optional(_to_path),
    "metrics_mode": _choice("prometheus", "log"),
    "enable_metrics_api": _to_bool,
    "disable_token_authorization": _to_bool,
    "enable_token_authorization": _to_bool,
    "token_expiration_min": _optional(_int_at_least(1)),
    "enable_model_api": _to_bool,
    "allowed_urls": _to_allowed_urls,
    "install_py_dep_per_model": _to_bool,
    "private_key_file": _optional(_to_path),
    "certificate_file": _optional(_to_path),
    "torch_threads": _optional(_int_at_least(1)),
    "max_header_count": _int_at_least(1),
    "max_header_size": _int_at_least(256),
    "header_read_timeout": _int_at_least(1),
    "body_read_timeout": _int_at_least(1),
    "max_download_size": _int_at_least(1),
    "download_timeout": _int_at_least(1),
    "max_extracted_size": _int_at_least(1),
    "max_compression_ratio": _int_at_least(1),
    "max_workers_per_model": _optional(_int_at_least(1)),
    "max_workers_total": _optional(_int_at_least(1)),
    "worker_heartbeat_timeout": _int_at_least(1),
}

SETTING_KEYS: tuple[str, ...] = tuple(_CONVERTERS)
"""TorchServe key names that are read (each is a :class:`Settings` field)."""

IGNORED_KEYS: tuple[str, ...] = (
    "number_of_netty_threads",
    "netty_client_threads",
    "workflow_store",
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
)
"""TorchServe keys accepted in config.properties without effect (not kept in ``unknown``)."""

_CONFIG_FILE_VARS = ("TORCHWIRE_CONFIG_FILE", "TS_CONFIG_FILE")

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
        key: _with_source(source, _CONVERTERS[key], raw, key)
        for key, (raw, source) in layer.items()
    }
    settings = Settings(**values, unknown=unknown)
    _check_tls(settings)
    return settings


def _config_path_from_env(environ: Mapping[str, str]) -> Path | None:
    for name in _CONFIG_FILE_VARS:
        value = environ.get(name, "").strip()
        if value:
            return Path(value)
    return None


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
