"""``context.metrics``: TorchServe's custom metrics API for handlers.

A handler records values in its worker process; the worker sends them to the
front with the batch's results, and the front shows them on ``/metrics``. So a
value is visible once the request that recorded it has been answered.

The convenience calls (``add_counter``, ``add_time``, ...) add TorchServe's
default dimensions ``ModelName`` and ``Level=Model``; ``add_metric_to_cache``
and ``get_metric`` use exactly the dimension names given.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torchwire.metrics_yaml import MetricSpec
from torchwire.protocol import MetricRecord

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class MetricsCacheKeyError(KeyError):
    """No such metric in the cache (TorchServe's name for the error)."""


class MetricsCacheValueError(ValueError):
    """A metric declaration that does not fit the metric already in the cache."""


class MetricTypes(enum.Enum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True)
class Dimension:
    """One name/value pair of a metric (a Prometheus label)."""

    name: str
    value: str

    def __str__(self) -> str:
        return f"{self.name}:{self.value}"

    def to_dict(self) -> dict[str, str]:
        return {"Name": self.name, "Value": self.value}


def _metric_type(value: MetricTypes | str) -> MetricTypes:
    if isinstance(value, MetricTypes):
        return value
    try:
        return MetricTypes(str(value).lower())
    except ValueError:
        raise ValueError(
            f"metric_type {value!r} is not one of counter, gauge, histogram"
        ) from None


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _METRIC_NAME.fullmatch(name):
        raise ValueError(
            f"metric name {name!r} is invalid: use letters, digits, '_' and ':', "
            "not starting with a digit"
        )
    return name


def _check_label(name: object) -> str:
    if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
        raise ValueError(
            f"dimension name {name!r} is invalid: use letters, digits and '_', "
            "not starting with a digit or '__'"
        )
    return name


def _dimension(item: Any) -> Dimension:
    if isinstance(item, tuple) and len(item) == 2:
        return Dimension(_check_label(item[0]), str(item[1]))
    name, value = getattr(item, "name", None), getattr(item, "value", None)
    if name is None or value is None:
        raise ValueError(f"dimension {item!r} is neither a Dimension nor a (name, value) pair")
    return Dimension(_check_label(name), str(value))


def as_dimensions(dimensions: Iterable[Any] | Mapping[str, Any] | None) -> list[Dimension]:
    """Dimension objects from Dimensions, (name, value) pairs or a mapping."""
    if dimensions is None:
        return []
    if isinstance(dimensions, Mapping):
        return [_dimension((k, v)) for k, v in dimensions.items()]
    return [_dimension(item) for item in dimensions]


class Metric:
    """A named metric with fixed dimension names; each update becomes one record."""

    def __init__(self, name: str, unit: str, dimension_names: list[str],
                 metric_type: MetricTypes, sink: list[MetricRecord]) -> None:
        self.name = _check_name(name)
        self.unit = unit
        self.dimension_names = [_check_label(d) for d in dimension_names]
        self.metric_type = metric_type
        self._sink = sink

    def add_or_update(self, value: float, dimension_values: Iterable[Any] | None = None,
                      request_id: str = "") -> None:
        values = [str(v) for v in (dimension_values or [])]
        if len(values) != len(self.dimension_names):
            raise ValueError(
                f"metric {self.name} has dimensions {self.dimension_names}; "
                f"got {len(values)} dimension values"
            )
        number = self._checked(value)
        labels = tuple(zip(self.dimension_names, values, strict=True))
        self._sink.append(MetricRecord(self.name, self.metric_type.value, number, self.unit,
                                       labels, str(request_id or "")))

    update = add_or_update

    def _checked(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"metric {self.name}: value {value!r} is not a number")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"metric {self.name}: value {value!r} is not finite")
        if self.metric_type is MetricTypes.COUNTER and number < 0:
            raise ValueError(
                f"counter {self.name} cannot go down (got {value!r}); use a gauge for that"
            )
        return number


class MetricsCache:
    """What ``context.metrics`` is: creates metrics and collects their updates."""

    def __init__(self, model_name: str, declared: Iterable[MetricSpec] = ()) -> None:
        self.model_name = model_name
        self._metrics: dict[tuple[str, MetricTypes], Metric] = {}
        self._records: list[MetricRecord] = []
        for spec in declared:  # metrics_config's model_metrics: get_metric() finds them
            self.add_metric_to_cache(spec.name, spec.unit, list(spec.dimensions), spec.kind)

    # -- TorchServe's explicit API ---------------------------------------------
    def add_metric_to_cache(self, metric_name: str, unit: str = "count",
                            dimension_names: list[str] | None = None,
                            metric_type: MetricTypes | str = MetricTypes.COUNTER) -> Metric:
        kind = _metric_type(metric_type)
        names = list(dimension_names or [])
        existing = self._metrics.get((metric_name, kind))
        if existing is not None:
            if existing.dimension_names != names:
                raise MetricsCacheValueError(
                    f"{kind.value} {metric_name} already has dimensions "
                    f"{existing.dimension_names}; it cannot also have {names}"
                )
            return existing
        metric = Metric(metric_name, unit, names, kind, self._records)
        self._metrics[(metric_name, kind)] = metric
        return metric

    def get_metric(self, metric_name: str,
                   metric_type: MetricTypes | str = MetricTypes.COUNTER) -> Metric:
        kind = _metric_type(metric_type)
        metric = self._metrics.get((metric_name, kind))
        if metric is None:
            raise MetricsCacheKeyError(
                f"no {kind.value} named {metric_name}; create it with add_metric_to_cache()"
            )
        return metric

    # -- convenience calls (with ModelName and Level dimensions) ---------------
    def add_metric(self, name: str, value: float, unit: str = "", idx: int | None = None,
                   dimensions: Iterable[Any] | None = None,
                   metric_type: MetricTypes | str = MetricTypes.COUNTER) -> None:
        dims = self._with_defaults(as_dimensions(dimensions))
        metric = self.add_metric_to_cache(name, unit, [d.name for d in dims], metric_type)
        metric.add_or_update(value, [d.value for d in dims], "" if idx is None else str(idx))

    def add_counter(self, name: str, value: float, idx: int | None = None,
                    dimensions: Iterable[Any] | None = None) -> None:
        self.add_metric(name, value, "count", idx, dimensions, MetricTypes.COUNTER)

    def add_time(self, name: str, value: float, idx: int | None = None, unit: str = "ms",
                 dimensions: Iterable[Any] | None = None,
                 metric_type: MetricTypes | str = MetricTypes.GAUGE) -> None:
        self.add_metric(name, value, unit, idx, dimensions, metric_type)

    def add_size(self, name: str, value: float, idx: int | None = None, unit: str = "MB",
                 dimensions: Iterable[Any] | None = None,
                 metric_type: MetricTypes | str = MetricTypes.GAUGE) -> None:
        self.add_metric(name, value, unit, idx, dimensions, metric_type)

    def add_percent(self, name: str, value: float, idx: int | None = None,
                    dimensions: Iterable[Any] | None = None,
                    metric_type: MetricTypes | str = MetricTypes.GAUGE) -> None:
        self.add_metric(name, value, "percent", idx, dimensions, metric_type)

    def add_error(self, name: str, value: float,
                  dimensions: Iterable[Any] | None = None) -> None:
        self.add_metric(name, value, "", None, dimensions, MetricTypes.COUNTER)

    def _with_defaults(self, dims: list[Dimension]) -> list[Dimension]:
        given = {d.name for d in dims}
        defaults = [Dimension("ModelName", self.model_name), Dimension("Level", "Model")]
        return dims + [d for d in defaults if d.name not in given]

    # -- worker side -------------------------------------------------------------
    def drain(self) -> tuple[MetricRecord, ...]:
        """The records made since the last call (sent with the batch just run)."""
        records = tuple(self._records)
        self._records.clear()
        return records
