"""``metrics_config``: TorchServe's ``metrics.yaml`` (which frontend and model metrics exist).

The file has ``dimensions`` (YAML anchors, only referenced), ``ts_metrics`` (the
frontend's) and ``model_metrics`` (the handlers'), each with ``counter``, ``gauge``
and ``histogram`` lists of ``{name, unit, dimensions}``. Without a file, torchwire
uses the same set as TorchServe's default ``metrics.yaml``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from torchwire.errors import ConfigError

KINDS = ("counter", "gauge", "histogram")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_HOST = ["Level", "Hostname"]
_TS = ["model_name", "model_version", "hostname"]
_GPU = ["Level", "DeviceId", "Hostname"]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # counter | gauge | histogram
    unit: str
    dimensions: tuple[str, ...]


@dataclass(frozen=True)
class MetricsSpec:
    ts_metrics: tuple[MetricSpec, ...]
    model_metrics: tuple[MetricSpec, ...]

    def frontend(self, name: str) -> MetricSpec | None:
        return next((s for s in self.ts_metrics if s.name == name), None)

    def model(self, name: str) -> MetricSpec | None:
        return next((s for s in self.model_metrics if s.name == name), None)


def _specs(kind: str, rows: list[tuple[str, str, list[str]]]) -> tuple[MetricSpec, ...]:
    return tuple(MetricSpec(name, kind, unit, tuple(dims)) for name, unit, dims in rows)


DEFAULT_SPEC = MetricsSpec(
    ts_metrics=_specs("counter", [
        ("Requests2XX", "Count", _HOST), ("Requests4XX", "Count", _HOST),
        ("Requests5XX", "Count", _HOST), ("ts_inference_requests_total", "Count", _TS),
        ("ts_inference_latency_microseconds", "Microseconds", _TS),
        ("ts_queue_latency_microseconds", "Microseconds", _TS),
    ]) + _specs("gauge", [
        ("QueueTime", "Milliseconds", _HOST), ("WorkerThreadTime", "Milliseconds", _HOST),
        ("WorkerLoadTime", "Milliseconds", ["WorkerName", *_HOST]),
        ("CPUUtilization", "Percent", _HOST), ("MemoryUsed", "Megabytes", _HOST),
        ("MemoryAvailable", "Megabytes", _HOST), ("MemoryUtilization", "Percent", _HOST),
        ("DiskUsage", "Gigabytes", _HOST), ("DiskUtilization", "Percent", _HOST),
        ("DiskAvailable", "Gigabytes", _HOST), ("GPUMemoryUtilization", "Percent", _GPU),
        ("GPUMemoryUsed", "Megabytes", _GPU), ("GPUUtilization", "Percent", _GPU),
    ]),
    model_metrics=_specs("gauge", [("HandlerTime", "ms", ["ModelName", "Level"]),
                                   ("PredictionTime", "ms", ["ModelName", "Level"])]),
)


def load_metrics_config(path: Path) -> MetricsSpec:
    """Read ``path``; a :class:`ConfigError` says what is wrong and where."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"metrics_config {path}: cannot read it ({exc.strerror or exc})") \
            from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"metrics_config {path}: not valid YAML ({exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"metrics_config {path}: expected a mapping with ts_metrics and "
                          "model_metrics")
    return MetricsSpec(_section(data, "ts_metrics", path), _section(data, "model_metrics", path))


def _section(data: dict[str, Any], key: str, path: Path) -> tuple[MetricSpec, ...]:
    section = data.get(key) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"metrics_config {path}: {key} must map counter/gauge/histogram "
                          "to lists of metrics")
    specs: list[MetricSpec] = []
    for kind, rows in section.items():
        if kind not in KINDS:
            raise ConfigError(f"metrics_config {path}: {key}.{kind} is not one of "
                              f"{', '.join(KINDS)}")
        if not isinstance(rows, list):
            raise ConfigError(f"metrics_config {path}: {key}.{kind} must be a list")
        specs += [_spec(row, kind, f"{path}: {key}.{kind}[{i}]") for i, row in enumerate(rows)]
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"metrics_config {path}: {key} defines {', '.join(twice)} twice")
    return tuple(specs)


def _spec(row: Any, kind: str, where: str) -> MetricSpec:
    if not isinstance(row, dict) or not isinstance(row.get("name"), str):
        raise ConfigError(f"metrics_config {where}: expected {{name, unit, dimensions}}")
    if not _NAME.fullmatch(row["name"]):
        raise ConfigError(f"metrics_config {where}: name {row['name']!r} is not a valid "
                          "metric name (letters, digits, _ and :)")
    dims = row.get("dimensions") or []
    if not isinstance(dims, list) or not all(isinstance(d, str) and _LABEL.fullmatch(d)
                                             for d in dims):
        raise ConfigError(f"metrics_config {where}: dimensions must be a list of names "
                          "(letters, digits and _)")
    return MetricSpec(row["name"], kind, str(row.get("unit") or ""), tuple(dims))
