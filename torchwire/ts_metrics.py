"""TorchServe's metrics as it defines them: ``metrics.yaml`` families, in each metrics mode.

Each :class:`TsMetric` is one declared metric (kind, unit, dimension names). In
``prometheus`` mode it is a Prometheus family, rendered as TorchServe's Java client
renders it (``Requests2XX{Level="Host",Hostname="vm",} 5.0``: every label followed by
a comma), which Prometheus and prometheus_client parse like the usual form. In
``log`` mode each update is a line of ``ts_metrics.log`` (frontend metrics) or
``model_metrics.log`` (handler metrics) in TorchServe's format::

    Requests2XX.Count:1.0|#Level:Host|#hostname:vm,timestamp:1733472000
    HandlerTime.ms:4.2|#ModelName:digits,Level:Model|#hostname:vm,requestID:7f..,timestamp:..

``legacy`` mode exposes TorchServe's three ``ts_*`` counters and logs the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

from torchwire.metrics_yaml import MetricSpec, MetricsSpec
from torchwire.protocol import MetricRecord

log = logging.getLogger(__name__)

TS_METRICS_LOG = "torchwire.ts_metrics"  # -> ts_metrics.log (torchwire.logs)
MODEL_METRICS_LOG = "torchwire.model_metrics"  # -> model_metrics.log
LEGACY_PROMETHEUS = frozenset({"ts_inference_requests_total",
                               "ts_inference_latency_microseconds",
                               "ts_queue_latency_microseconds"})
BUCKETS = (0.001, 0.01, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000,
           10000)  # histograms of ms, MB, counts: wider than prometheus_client's default
MAX_HANDLER_METRICS = 200
MAX_SERIES = 2000


def exposed(mode: str, name: str) -> bool:
    """Whether metric ``name`` is served on /metrics (else it is logged) in ``mode``."""
    return mode == "prometheus" or (mode == "legacy" and name in LEGACY_PROMETHEUS)


# --------------------------------------------------------------------------- exposition


class TsFamily(Metric):
    """A family rendered as TorchServe's Java client writes it (see :func:`ts_text`)."""


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def ts_text(family: Metric) -> str:
    """``name{a="x",b="y",} 1.0``: the Java simpleclient's text format 0.0.4."""
    doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    lines = [f"# HELP {family.name} {doc}\n", f"# TYPE {family.name} {family.type}\n"]
    for sample in family.samples:
        labels = "".join(f'{k}="{_escape(v)}",' for k, v in sample.labels.items())
        braces = f"{{{labels}}}" if labels else ""
        lines.append(f"{sample.name}{braces} {floatToGoString(sample.value)}\n")
    return "".join(lines)


# --------------------------------------------------------------------------- one metric


class TsMetric:
    """One declared metric: Prometheus series (a collector) or log lines."""

    def __init__(self, spec: MetricSpec, labels: tuple[str, ...], hostname: str,
                 logger: logging.Logger | None = None) -> None:
        self.spec = spec
        self.labels = labels
        self.hostname = hostname
        self.logger = logger
        self.documentation = f"Torchserve prometheus {spec.kind} metric with unit: {spec.unit}"
        self.values: dict[tuple[str, ...], float] = {}
        self.histogram = (Histogram(spec.name, self.documentation, labels, registry=None,
                                    buckets=BUCKETS)
                          if spec.kind == "histogram" else None)

    @property
    def name(self) -> str:
        return self.spec.name

    def add(self, values: tuple[str, ...], value: float, request_id: str | None = None) -> None:
        if self.logger is not None:
            self.logger.info(self.line(values, value, request_id))
        elif self.histogram is not None:
            (self.histogram.labels(*values) if values else self.histogram).observe(value)
            self.values.setdefault(values, 0.0)  # only to count the series
        elif self.spec.kind == "counter":
            self.values[values] = self.values.get(values, 0.0) + value
        else:
            self.values[values] = value

    def line(self, values: tuple[str, ...], value: float, request_id: str | None) -> str:
        dims = list(zip(self.labels, values, strict=True))
        host = self.hostname
        if dims and dims[-1][0].lower() == "hostname":
            host = dims.pop()[1]
        head = ",".join(f"{k}:{v}" for k, v in dims)
        text = f"{self.name}.{self.spec.unit}:{float(value)!r}|#{head}|#hostname:{host}"
        if request_id is not None:
            text += f",requestID:{request_id}"
        return f"{text},timestamp:{int(time.time())}"

    def collect(self) -> Iterator[Metric]:
        family = TsFamily(self.name, self.documentation, self.spec.kind)
        if self.histogram is not None:
            for metric in self.histogram.collect():
                family.samples = list(metric.samples)
        else:
            for values, total in self.values.items():
                family.add_sample(self.name, dict(zip(self.labels, values, strict=True)), total)
        yield family


def _build(spec: MetricSpec, labels: tuple[str, ...], mode: str, hostname: str,
           registry: CollectorRegistry, log_name: str) -> TsMetric:
    """A metric for ``mode``; a Prometheus one is registered (ValueError on a name clash)."""
    if exposed(mode, spec.name):
        metric = TsMetric(spec, labels, hostname)
        registry.register(metric)  # a collector by duck typing
        return metric
    return TsMetric(spec, labels, hostname, logging.getLogger(log_name))


# --------------------------------------------------------------------------- frontend


class FrontendMetrics:
    """The ``ts_metrics`` of metrics.yaml; the server records them by name."""

    def __init__(self, spec: MetricsSpec, mode: str, hostname: str,
                 registry: CollectorRegistry) -> None:
        self.hostname = hostname
        self.metrics = {s.name: _build(s, s.dimensions, mode, hostname, registry, TS_METRICS_LOG)
                        for s in spec.ts_metrics}

    def declared(self, name: str) -> bool:
        return name in self.metrics

    def add(self, name: str, dims: Mapping[str, str], value: float) -> None:
        """Record ``value``; each declared dimension takes its value from ``dims`` by name."""
        metric = self.metrics.get(name)
        if metric is not None:
            metric.add(tuple(self._value(dims, d) for d in metric.labels), value)

    def _value(self, dims: Mapping[str, str], name: str) -> str:
        if name.lower() == "hostname":
            return dims.get(name, self.hostname)
        return dims.get(name, "")


# --------------------------------------------------------------------------- handlers


class ModelMetrics:
    """What handlers record through ``context.metrics``: the declared ``model_metrics``,
    plus undeclared ones when ``auto_detect`` is on (TorchServe's
    ``model_metrics_auto_detect``); ``Hostname`` is added as the last dimension.

    An auto-detected family's kind and dimensions are fixed by its first record;
    records that disagree with their family, names that clash with the server's own
    metrics, and families or series past the limits are dropped with one warning each.
    """

    def __init__(self, spec: MetricsSpec, mode: str, hostname: str,
                 registry: CollectorRegistry, auto_detect: bool) -> None:
        self.mode = mode
        self.hostname = hostname
        self.registry = registry
        self.auto_detect = auto_detect
        self.families: dict[str, TsMetric] = {}
        self.detected: set[str] = set()  # auto-detected: the first record fixed the kind
        self._warned: set[str] = set()
        for s in spec.model_metrics:
            self._register(s)

    def record(self, records: Iterable[MetricRecord]) -> None:
        for rec in records:
            labels = dict(rec.labels)
            labels.setdefault("Hostname", self.hostname)
            family = self.families.get(rec.name) or self._detect(rec, tuple(labels))
            if family is not None and self._accepts(family, rec, labels):
                values = tuple(labels[name] for name in family.labels)
                family.add(values, rec.value, rec.request_id or None)

    def _accepts(self, family: TsMetric, rec: MetricRecord, labels: dict[str, str]) -> bool:
        if family.name in self.detected and family.spec.kind != rec.kind:
            self._warn(rec.name, f"it is a {family.spec.kind}; got a {rec.kind}")
            return False
        if set(family.labels) != set(labels):
            self._warn(rec.name, f"it has dimensions {list(family.labels)}; "
                                 f"got {list(labels)}")
            return False
        values = tuple(labels[name] for name in family.labels)
        if values not in family.values and len(family.values) >= MAX_SERIES:
            self._warn(rec.name, f"it has {MAX_SERIES} series already")
            return False
        return True

    def _detect(self, rec: MetricRecord, labels: tuple[str, ...]) -> TsMetric | None:
        if not self.auto_detect:
            self._warn(rec.name, "it is not in metrics_config's model_metrics "
                                 "(set model_metrics_auto_detect=true to add it)", logging.INFO)
            return None
        if len(self.families) >= MAX_HANDLER_METRICS:
            self._warn(rec.name, f"handlers defined {MAX_HANDLER_METRICS} metrics already")
            return None
        family = self._register(MetricSpec(rec.name, rec.kind, rec.unit, labels))
        if family is not None:
            self.detected.add(rec.name)
        return family

    def _register(self, spec: MetricSpec) -> TsMetric | None:
        labels = spec.dimensions
        if "Hostname" not in labels:
            labels = (*labels, "Hostname")
        try:
            family = _build(spec, labels, self.mode, self.hostname, self.registry,
                            MODEL_METRICS_LOG)
        except ValueError as exc:  # clashes with a metric of the server, or a reserved label
            self._warn(spec.name, str(exc))
            return None
        self.families[spec.name] = family
        return family

    def _warn(self, name: str, why: str, level: int = logging.WARNING) -> None:
        if name not in self._warned:
            self._warned.add(name)
            log.log(level, "handler metric %s is dropped: %s", name, why)
