"""Per model version settings: ``models`` in config.properties, model-config.yaml, the API."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torchwire.config.values import (
    choice,
    converters,
    int_at_least,
    invalid,
    setting,
    to_bool,
    to_int_list,
    with_source,
)
from torchwire.errors import ConfigError


@dataclass(frozen=True)
class ModelSettings:
    """Per model version overrides; ``None`` means not set (use the server default).

    Each field declares its converter and TorchServe's other spellings of its key once.
    """

    min_workers: int | None = setting(
        int_at_least(0), aliases=("minWorkers", "min_worker", "initial_workers"))
    max_workers: int | None = setting(int_at_least(0), aliases=("maxWorkers", "max_worker"))
    batch_size: int | None = setting(int_at_least(1), aliases=("batchSize",))
    max_batch_delay: int | None = setting(int_at_least(0), aliases=("maxBatchDelay",))  # ms
    response_timeout: int | None = setting(int_at_least(1), aliases=("responseTimeout",))  # s
    startup_timeout: int | None = setting(int_at_least(1), aliases=("startupTimeout",))  # s
    job_queue_size: int | None = setting(int_at_least(1), aliases=("jobQueueSize",))
    device_type: str | None = setting(choice("cpu", "gpu"), aliases=("deviceType",))
    gpu_ids: list[int] | None = setting(to_int_list, aliases=("deviceIds", "device_ids"))
    # scheduling (docs/scheduling.md): the batch policy and the elastic worker scaler
    batch_policy: str | None = setting(choice("adaptive", "torchserve"),
                                       aliases=("batchPolicy",))
    elastic_workers: bool | None = setting(to_bool, aliases=("elasticWorkers",))
    scale_up_wait_ms: int | None = setting(int_at_least(0), aliases=("scaleUpWaitMs",))
    scale_down_after: int | None = setting(int_at_least(1), aliases=("scaleDownAfter",))  # s

    def merged(self, other: ModelSettings) -> ModelSettings:
        """A copy of ``self`` where every field ``other`` sets (non-None) wins."""
        changes = {
            f.name: getattr(other, f.name)
            for f in dataclasses.fields(other)
            if getattr(other, f.name) is not None
        }
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ElasticSettings:
    """The elastic worker scaler's thresholds (docs/scheduling.md)."""

    enabled: bool = True
    scale_up_wait_ms: int = 100  # queue wait beyond max_batch_delay that asks for a worker
    scale_down_after: float = 30.0  # seconds of quiet before a worker is retired


@dataclass(frozen=True)
class ServingConfig:
    """A model version's settings with every layer applied: each value concrete.

    Made only by :func:`resolve`; the fields are :class:`ModelSettings`' own.
    """

    min_workers: int
    max_workers: int
    batch_size: int
    max_batch_delay: int  # ms
    response_timeout: float  # s
    startup_timeout: float  # s
    job_queue_size: int
    device_type: str | None = None  # "cpu", "gpu" or None (gpu when one is visible)
    gpu_ids: tuple[int, ...] | None = None
    batch_policy: str = "adaptive"  # or "torchserve" (see torchwire.batching)
    elastic: ElasticSettings = ElasticSettings()


def resolve(layered: ModelSettings) -> ServingConfig:
    """The concrete settings of ``layered``, whose first layer set every number (the
    server's defaults); ``max_workers`` is at least ``min_workers``."""

    def need(name: str) -> int:
        value = getattr(layered, name)
        if value is None:
            raise ConfigError(f"model setting {name} has no value; expected a server default")
        return int(value)

    low = need("min_workers")
    return ServingConfig(
        min_workers=low, max_workers=max(low, need("max_workers")),
        batch_size=need("batch_size"), max_batch_delay=need("max_batch_delay"),
        response_timeout=float(need("response_timeout")),
        startup_timeout=float(need("startup_timeout")), job_queue_size=need("job_queue_size"),
        device_type=layered.device_type,
        gpu_ids=tuple(layered.gpu_ids) if layered.gpu_ids else None,
        batch_policy=layered.batch_policy or "adaptive",
        elastic=_elastic(layered),
    )


def _elastic(m: ModelSettings) -> ElasticSettings:
    default = ElasticSettings()
    return ElasticSettings(
        enabled=default.enabled if m.elastic_workers is None else m.elastic_workers,
        scale_up_wait_ms=(default.scale_up_wait_ms if m.scale_up_wait_ms is None
                          else m.scale_up_wait_ms),
        scale_down_after=float(m.scale_down_after or default.scale_down_after),
    )


_CONVERTERS = converters(ModelSettings)

# Accepted key spelling -> ModelSettings field.
_MODEL_KEYS: dict[str, str] = {
    spelling: f.name
    for f in dataclasses.fields(ModelSettings)
    for spelling in (f.name, *f.metadata["aliases"])
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
        value = with_source(source, _CONVERTERS[name], raw, key)
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


def to_models(value: Any, key: str) -> dict[str, dict[str, ModelSettings]]:
    data = _json_object(value, key) if isinstance(value, str) else value
    if not isinstance(data, Mapping):
        raise invalid(key, value, _MODELS_EXPECTED)
    return {str(name): _model_versions(str(name), versions, key) for name, versions in data.items()}


def _json_object(text: str, key: str) -> Any:
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise invalid(key, text, f"{_MODELS_EXPECTED} ({exc})") from None


def _model_versions(name: str, versions: Any, key: str) -> dict[str, ModelSettings]:
    where = f"{key}[{name!r}]"
    if not isinstance(versions, Mapping):
        raise invalid(where, versions, 'an object mapping versions to settings, {"1.0": {...}}')
    result: dict[str, ModelSettings] = {}
    for version, entry in versions.items():
        at = f"{where}[{str(version)!r}]"
        if isinstance(entry, ModelSettings):
            result[str(version)] = entry
        elif isinstance(entry, Mapping):
            result[str(version)] = model_settings_from_mapping(entry, at)
        else:
            raise invalid(at, entry, "an object of model settings")
    return result


