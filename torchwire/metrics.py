"""Every Prometheus metric the server exposes, defined once, all recorded in the front.

Workers never write metrics themselves: each finished batch comes back to the front
with its timings (and the handler's own ``context.metrics`` records), and the front
records them here. So the numbers are right with any number of worker processes.

TorchServe's names are kept so that dashboards built for it keep working:
``ts_inference_requests_total``, ``ts_inference_latency_microseconds``,
``ts_queue_latency_microseconds`` (labels ``model_name``, ``model_version``,
``hostname``) and ``Requests2XX``/``Requests4XX``/``Requests5XX`` (labels ``Level``,
``Hostname``). Those are counters whose names do not end in ``_total``, which
prometheus_client would rename, so :class:`PlainCounter` renders them under their
exact names. Everything else is prometheus_client's own.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.utils import floatToGoString

from torchwire.protocol import DESCRIBE, BatchDone, MetricRecord

if TYPE_CHECKING:
    from torchwire.batching import Job
    from torchwire.model import ModelVersion
    from torchwire.registry import ModelRegistry

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
CUSTOM_BUCKETS = (0.001, 0.01, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000,
                   2500, 5000, 10000)
MODEL_LABELS = ("model_name", "model_version")
TS_LABELS = ("model_name", "model_version", "hostname")
HOST_LABELS = ("Level", "Hostname")
MAX_HANDLER_METRICS = 200
MAX_SERIES = 2000


# --------------------------------------------------------------------------- exact names


class _PlainFamily(Metric):
    """A counter family rendered under its exact name (see :func:`render_family`)."""


class PlainCounter:
    """A labelled counter exposed as ``name`` exactly, with ``# TYPE name counter``."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str],
                 registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = tuple(labels)
        self.values: dict[tuple[str, ...], float] = {}
        registry.register(self)

    def inc(self, values: tuple[str, ...], amount: float = 1.0) -> None:
        self.values[values] = self.values.get(values, 0.0) + amount

    def collect(self) -> Iterator[Metric]:
        family = _PlainFamily(self.name, self.documentation, "counter")
        for values, total in self.values.items():
            family.add_sample(self.name, dict(zip(self.labels, values, strict=True)), total)
        yield family


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _plain_text(family: Metric) -> str:
    doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    lines = [f"# HELP {family.name} {doc}\n", f"# TYPE {family.name} counter\n"]
    for sample in family.samples:
        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels.items())
        lines.append(f"{sample.name}{{{labels}}} {floatToGoString(sample.value)}\n")
    return "".join(lines)


class _One:
    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterable[Metric]:
        return [self.family]


def render_family(family: Metric) -> str:
    if isinstance(family, _PlainFamily):
        return _plain_text(family)
    return generate_latest(_One(family)).decode()


_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


def selected(family: Metric, names: Collection[str]) -> bool:
    """TorchServe's ``?name[]=`` filter: by family name, or any of its series' names."""
    if not names or family.name in names:
        return True
    if any(family.name + suffix in names for suffix in _SUFFIXES.get(family.type, ())):
        return True
    return any(sample.name in names for sample in family.samples)


# --------------------------------------------------------------------------- live gauges


class ModelGauges:
    """Queue depth, live workers, readiness and worker restarts, read at scrape time."""

    def __init__(self, models: ModelRegistry) -> None:
        self.models = models

    def collect(self) -> Iterator[Metric]:
        queue = GaugeMetricFamily("torchwire_queue_depth",
                                  "Requests waiting for a worker", labels=MODEL_LABELS)
        live = GaugeMetricFamily("torchwire_workers_live",
                                 "Worker processes serving the model", labels=MODEL_LABELS)
        ready = GaugeMetricFamily("torchwire_model_ready",
                                  "1 when the model can serve a request now", labels=MODEL_LABELS)
        restarts = CounterMetricFamily("torchwire_worker_restarts",
                                       "Workers restarted after they died", labels=MODEL_LABELS)
        for model in self.models:
            key = [model.name, model.version]
            queue.add_metric(key, model.queue_depth)
            live.add_metric(key, model.pool.live)
            ready.add_metric(key, 1.0 if model.ready else 0.0)
            restarts.add_metric(key, model.pool.events.restarts)
        yield from (queue, live, ready, restarts)


# --------------------------------------------------------------------------- handler metrics


class _HandlerFamily:
    def __init__(self, kind: str, labels: tuple[str, ...], sink: PlainCounter | Gauge | Histogram):
        self.kind = kind
        self.labels = labels
        self.sink = sink
        self.series: set[tuple[str, ...]] = set()

    def apply(self, values: tuple[str, ...], value: float) -> None:
        if isinstance(self.sink, PlainCounter):
            self.sink.inc(values, value)
        elif isinstance(self.sink, Gauge):
            self.sink.labels(*values).set(value)
        else:
            self.sink.labels(*values).observe(value)


class HandlerMetrics:
    """What handlers record through ``context.metrics``, each name one Prometheus family.

    A family's kind and dimension names are fixed by its first record; records that
    disagree, names that clash with the server's own metrics, and families or series
    past the limits are dropped with one warning each.
    """

    def __init__(self, registry: CollectorRegistry, hostname: str) -> None:
        self.registry = registry
        self.hostname = hostname
        self.families: dict[str, _HandlerFamily] = {}
        self._warned: set[str] = set()

    def record(self, records: Iterable[MetricRecord]) -> None:
        for rec in records:
            labels = dict(rec.labels)
            labels.setdefault("Hostname", self.hostname)
            family = self.families.get(rec.name) or self._create(rec, tuple(labels))
            if family is not None and self._accepts(family, rec, labels):
                values = tuple(labels.values())
                family.series.add(values)
                family.apply(values, rec.value)

    def _accepts(self, family: _HandlerFamily, rec: MetricRecord, labels: dict[str, str]) -> bool:
        if family.kind != rec.kind or family.labels != tuple(labels):
            self._warn(rec.name, f"it is a {family.kind} with dimensions {list(family.labels)}; "
                                 f"got a {rec.kind} with {list(labels)}")
            return False
        if tuple(labels.values()) not in family.series and len(family.series) >= MAX_SERIES:
            self._warn(rec.name, f"it has {MAX_SERIES} series already")
            return False
        return True

    def _create(self, rec: MetricRecord, labels: tuple[str, ...]) -> _HandlerFamily | None:
        if len(self.families) >= MAX_HANDLER_METRICS:
            self._warn(rec.name, f"handlers defined {MAX_HANDLER_METRICS} metrics already")
            return None
        doc = f"Handler metric ({rec.kind}{', unit: ' + rec.unit if rec.unit else ''})"
        try:
            family = _HandlerFamily(rec.kind, labels, self._sink(rec, doc, labels))
        except ValueError as exc:  # clashes with a metric of the server, or a reserved label
            self._warn(rec.name, str(exc))
            return None
        self.families[rec.name] = family
        return family

    def _sink(self, rec: MetricRecord, doc: str,
              labels: tuple[str, ...]) -> PlainCounter | Gauge | Histogram:
        if rec.kind == "counter":
            return PlainCounter(rec.name, doc, labels, self.registry)
        if rec.kind == "gauge":
            return Gauge(rec.name, doc, labels, registry=self.registry)
        return Histogram(rec.name, doc, labels, buckets=CUSTOM_BUCKETS, registry=self.registry)

    def _warn(self, name: str, why: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            log.warning("handler metric %s is dropped: %s", name, why)


# --------------------------------------------------------------------------- the metrics


class Metrics:
    """The server's metrics; one instance per server, with its own registry."""

    def __init__(self, hostname: str | None = None) -> None:
        disable_created_metrics()  # no *_created series: TorchServe has none either
        self.hostname = hostname or socket.gethostname()
        self.registry = reg = CollectorRegistry(auto_describe=True)
        ts_doc = "Torchserve prometheus counter metric with unit: "
        self.ts_requests = PlainCounter("ts_inference_requests_total", ts_doc + "Count",
                                        TS_LABELS, reg)
        self.ts_latency = PlainCounter("ts_inference_latency_microseconds",
                                       ts_doc + "Microseconds", TS_LABELS, reg)
        self.ts_queue = PlainCounter("ts_queue_latency_microseconds", ts_doc + "Microseconds",
                                     TS_LABELS, reg)
        self.responses = {cls: PlainCounter(f"Requests{cls}XX", ts_doc + "Count", HOST_LABELS,
                                            reg) for cls in (2, 4, 5)}
        self.request_latency = Histogram(
            "torchwire_request_latency_seconds",
            "Time from a request's arrival to its answer (queue + handler)",
            MODEL_LABELS, buckets=LATENCY_BUCKETS, registry=reg)
        self.queue_time = Histogram(
            "torchwire_queue_time_seconds", "Time a request waited before its batch was sent",
            MODEL_LABELS, buckets=LATENCY_BUCKETS, registry=reg)
        self.handler_time = Histogram(
            "torchwire_handler_time_seconds", "Time the handler took for one batch",
            MODEL_LABELS, buckets=LATENCY_BUCKETS, registry=reg)
        self.batch_size = Histogram(
            "torchwire_batch_size", "Requests per batch sent to a worker",
            MODEL_LABELS, buckets=BATCH_BUCKETS, registry=reg)
        self.handler_metrics = HandlerMetrics(reg, self.hostname)

    def watch(self, models: ModelRegistry) -> None:
        """Expose the live gauges of every registered model version."""
        self.registry.register(ModelGauges(models))

    # -- recording ---------------------------------------------------------------
    def observe_batch(self, model: ModelVersion, jobs: list[Job], done: BatchDone) -> None:
        """The model's batch observer: called once per batch a worker answered."""
        jobs = [j for j in jobs if j.kind != DESCRIBE]
        self.handler_metrics.record(done.metrics)
        if not jobs:
            return
        key = (model.name, model.version)
        ts_key = (*key, self.hostname)
        now = time.perf_counter()
        self.batch_size.labels(*key).observe(len(jobs))
        self.handler_time.labels(*key).observe(done.handler_ms / 1000)
        for job in jobs:
            latency = max(0.0, now - job.received)
            queued = max(0.0, job.sent - job.received)
            self.request_latency.labels(*key).observe(latency)
            self.queue_time.labels(*key).observe(queued)
            self.ts_latency.inc(ts_key, latency * 1e6)
            self.ts_queue.inc(ts_key, queued * 1e6)
        self.ts_requests.inc(ts_key, len(jobs))

    def count_response(self, status: int) -> None:
        """Requests2XX/4XX/5XX: every response of the inference and management APIs."""
        counter = self.responses.get(status // 100)
        if counter is not None:
            counter.inc(("Host", self.hostname))

    # -- exposition ----------------------------------------------------------------
    def render(self, names: Collection[str] = ()) -> bytes:
        wanted = set(names)
        families = (f for f in self.registry.collect() if selected(f, wanted))
        return "".join(render_family(f) for f in families).encode()
