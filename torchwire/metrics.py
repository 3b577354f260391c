"""Every Prometheus metric the server exposes, defined once, all recorded in the front.

Workers never write metrics themselves: each finished batch comes back to the front
with its timings (and the handler's own ``context.metrics`` records), and the front
records them here. So the numbers are right with any number of worker processes.

TorchServe's metrics (``metrics.yaml``'s ``ts_metrics`` and ``model_metrics``: by
default ``ts_inference_requests_total``, ``Requests2XX``, ``QueueTime``, the system
metrics, ``HandlerTime``, ...) keep TorchServe's names, dimensions and text format
(:mod:`torchwire.ts_metrics`), so that dashboards built for it keep working.
torchwire's own ``torchwire_*`` histograms and gauges are prometheus_client's.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from torchwire.metrics_yaml import DEFAULT_SPEC, MetricsSpec
from torchwire.protocol import DESCRIBE, BatchDone, MetricRecord
from torchwire.system_metrics import SystemMetrics
from torchwire.ts_metrics import FrontendMetrics, ModelMetrics, TsFamily, ts_text

if TYPE_CHECKING:
    from torchwire.batching import Job
    from torchwire.model import ModelVersion
    from torchwire.registry import ModelRegistry

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
MODEL_LABELS = ("model_name", "model_version")


class _One:
    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterable[Metric]:
        return [self.family]


def render_family(family: Metric) -> str:
    if isinstance(family, TsFamily):
        return ts_text(family)
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
        yield from scheduling_families(self.models)


def scheduling_families(models: ModelRegistry) -> Iterator[Metric]:
    """Workers wanted, elastic scale decisions, and queued requests dropped unanswered."""
    wanted = GaugeMetricFamily("torchwire_workers_wanted",
                               "Workers the model version runs now (the elastic scaler's or "
                               "the scale API's count)", labels=MODEL_LABELS)
    scaled = CounterMetricFamily("torchwire_worker_scale_events",
                                 "Workers added (up) or retired (down) by the elastic scaler",
                                 labels=(*MODEL_LABELS, "direction"))
    dropped = CounterMetricFamily("torchwire_requests_cancelled",
                                  "Queued requests dropped before any worker computed them: "
                                  "client_gone (it disconnected or cancelled) or deadline "
                                  "(its X-Request-Timeout passed; answered 408)",
                                  labels=(*MODEL_LABELS, "reason"))
    for model in models:
        key = [model.name, model.version]
        wanted.add_metric(key, model.pool.wanted)
        scaled.add_metric([*key, "up"], model.elastic.events.up)
        scaled.add_metric([*key, "down"], model.elastic.events.down)
        dropped.add_metric([*key, "client_gone"], model.batcher.stats.cancelled)
        dropped.add_metric([*key, "deadline"], model.batcher.stats.expired)
    yield from (wanted, scaled, dropped)


# --------------------------------------------------------------------------- the metrics


@dataclass(frozen=True)
class MetricsOptions:
    """What ``metrics_config``, ``metrics_mode`` and ``model_metrics_auto_detect`` chose."""

    spec: MetricsSpec = DEFAULT_SPEC
    mode: str = "prometheus"
    auto_detect: bool = True  # undeclared handler metrics are added (else dropped)
    gpus: int = 0  # GPU system metrics through NVML when > 0


class Metrics:
    """The server's metrics; one instance per server, with its own registry."""

    def __init__(self, hostname: str | None = None,
                 options: MetricsOptions | None = None) -> None:
        disable_created_metrics()  # no *_created series: TorchServe has none either
        opts = options or MetricsOptions()
        self.hostname = hostname or socket.gethostname()
        self.mode = opts.mode
        self.registry = reg = CollectorRegistry(auto_describe=True)
        self.ts = FrontendMetrics(opts.spec, opts.mode, self.hostname, reg)
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
        self.handler_metrics = ModelMetrics(opts.spec, opts.mode, self.hostname, reg,
                                            opts.auto_detect)
        self.system = SystemMetrics(opts.gpus)

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
        now = time.perf_counter()
        self.batch_size.labels(*key).observe(len(jobs))
        self.handler_time.labels(*key).observe(done.handler_ms / 1000)
        self._ts_batch(model, jobs, done, now)
        for job in jobs:
            latency = max(0.0, now - job.received)
            queued = max(0.0, job.sent - job.received)
            self.request_latency.labels(*key).observe(latency)
            self.queue_time.labels(*key).observe(queued)

    def _ts_batch(self, model: ModelVersion, jobs: list[Job], done: BatchDone,
                  now: float) -> None:
        """TorchServe's frontend and default model metrics for one answered batch."""
        ts = {"model_name": model.name, "model_version": model.version,
              "hostname": self.hostname}
        host = {"Level": "Host", "Hostname": self.hostname}
        for job in jobs:
            queued = max(0.0, job.sent - job.received)
            self.ts.add("ts_inference_latency_microseconds", ts,
                        max(0.0, now - job.received) * 1e6)
            self.ts.add("ts_queue_latency_microseconds", ts, queued * 1e6)
            self.ts.add("QueueTime", host, queued * 1000)
        self.ts.add("ts_inference_requests_total", ts, len(jobs))
        away = (now - min(j.sent for j in jobs)) * 1000
        self.ts.add("WorkerThreadTime", host, max(0.0, away - done.handler_ms))
        labels = (("ModelName", model.name), ("Level", "Model"))
        request_id = jobs[0].item.request_id
        self.handler_metrics.record(
            MetricRecord(name, "gauge", done.handler_ms, "ms", labels, request_id)
            for name in ("HandlerTime", "PredictionTime"))

    def observe_load(self, model: ModelVersion, worker_id: str, seconds: float) -> None:
        """TorchServe's WorkerLoadTime: spawn to loaded, per worker (``W-9000-m_1.0``)."""
        port = worker_id.rsplit("-", 1)[-1]
        self.ts.add("WorkerLoadTime", {"WorkerName": f"W-{port}-{model.name}_{model.version}",
                                       "Level": "Host", "Hostname": self.hostname},
                    seconds * 1000)

    def count_response(self, status: int) -> None:
        """Requests2XX/4XX/5XX: every response of the inference and management APIs."""
        if status // 100 in (2, 4, 5):
            self.ts.add(f"Requests{status // 100}XX",
                        {"Level": "Host", "Hostname": self.hostname}, 1)

    def sample_system(self) -> None:
        """Record TorchServe's system metrics now (on scrape, or each metric_time_interval)."""
        for reading in self.system.readings():
            self.ts.add(reading.name, reading.dims, reading.value)

    # -- exposition ----------------------------------------------------------------
    def render(self, names: Collection[str] = ()) -> bytes:
        if self.mode == "prometheus":
            self.sample_system()
        wanted = set(names)
        families = (f for f in self.registry.collect() if selected(f, wanted))
        return "".join(render_family(f) for f in families).encode()
