"""Metrics: exposition with TorchServe's exact names, filtering, handler metrics."""

from __future__ import annotations

import pytest

from torchwire.handlers.metrics import Dimension, MetricsCache, MetricTypes
from torchwire.metrics import Metrics
from torchwire.protocol import MetricRecord


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(hostname="host-a")


def test_plain_counters_keep_their_names(metrics: Metrics) -> None:
    metrics.count_response(200)
    metrics.count_response(204)
    metrics.count_response(404)
    metrics.count_response(302)  # not counted
    text = metrics.render().decode()
    assert "# TYPE Requests2XX counter\nRequests2XX{Level=\"Host\",Hostname=\"host-a\",} 2.0\n" \
        in text
    assert 'Requests4XX{Level="Host",Hostname="host-a",} 1.0' in text
    assert "# TYPE Requests5XX counter\n# HELP" in text  # no sample yet, as TorchServe
    assert "Requests2XX_total" not in text and "_created" not in text


def test_label_values_are_escaped(metrics: Metrics) -> None:
    metrics.ts.add("ts_inference_requests_total",
                   {"model_name": 'we"ird\\name', "model_version": "1.0", "hostname": "h\nx"}, 3)
    text = metrics.render().decode()
    assert r'model_name="we\"ird\\name",model_version="1.0",hostname="h\nx",} 3.0' in text


def test_name_filter(metrics: Metrics) -> None:
    metrics.count_response(200)
    text = metrics.render(["Requests2XX", "torchwire_batch_size_count"]).decode()
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert types == ["Requests2XX", "torchwire_batch_size"]


def test_handler_metrics_of_each_kind(metrics: Metrics) -> None:
    host = ("Hostname", "host-a")
    metrics.handler_metrics.record([
        MetricRecord("calls", "counter", 2, "count", (("ModelName", "m"),)),
        MetricRecord("calls", "counter", 3, "count", (("ModelName", "m"),)),
        MetricRecord("temp", "gauge", 5, "C", ()),
        MetricRecord("temp", "gauge", 4, "C", ()),
        MetricRecord("size", "histogram", 7, "MB", (("kind", "a"),)),
    ])
    text = metrics.render().decode()
    assert f'calls{{ModelName="m",{host[0]}="host-a",}} 5.0' in text
    assert 'temp{Hostname="host-a",} 4.0' in text
    assert 'size_count{kind="a",Hostname="host-a",} 1.0' in text
    assert "unit: MB" in text


def test_handler_metrics_that_disagree_are_dropped(metrics: Metrics,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    metrics.handler_metrics.record([
        MetricRecord("calls", "counter", 1, "", ()),
        MetricRecord("calls", "gauge", 9, "", ()),  # another kind
        MetricRecord("calls", "counter", 1, "", (("extra", "x"),)),  # other dimensions
        MetricRecord("ts_inference_requests_total", "counter", 1, "", ()),  # a server name
        MetricRecord("torchwire_batch_size", "gauge", 1, "", ()),
    ])
    text = metrics.render().decode()
    assert 'calls{Hostname="host-a",} 1.0' in text
    assert "ts_inference_requests_total{" not in text
    dropped = {r.getMessage().split()[2] for r in caplog.records if "dropped" in r.getMessage()}
    assert dropped == {"calls", "ts_inference_requests_total", "torchwire_batch_size"}


# --------------------------------------------------------------------------- worker side


def test_cache_convenience_calls_add_default_dimensions() -> None:
    cache = MetricsCache("digits")
    cache.add_counter("Loops", 2, dimensions=[Dimension("stage", "pre")])
    cache.add_time("Latency", 3.5)
    cache.add_percent("Used", 40, dimensions={"ModelName": "other"})
    records = cache.drain()
    assert records[0] == MetricRecord("Loops", "counter", 2.0, "count", (
        ("stage", "pre"), ("ModelName", "digits"), ("Level", "Model")))
    assert records[1].kind == "gauge" and records[1].unit == "ms"
    assert dict(records[2].labels)["ModelName"] == "other"
    assert cache.drain() == ()


def test_cache_explicit_api() -> None:
    cache = MetricsCache("m")
    metric = cache.add_metric_to_cache("Sizes", "MB", ["kind"], MetricTypes.HISTOGRAM)
    assert cache.get_metric("Sizes", "histogram") is metric
    metric.add_or_update(1.5, ["big"])
    assert cache.drain() == (MetricRecord("Sizes", "histogram", 1.5, "MB", (("kind", "big"),)),)
    with pytest.raises(KeyError, match="add_metric_to_cache"):
        cache.get_metric("Sizes", "counter")


@pytest.mark.parametrize(("call", "message"), [
    (lambda c: c.add_counter("Down", -1), "cannot go down"),
    (lambda c: c.add_counter("bad name", 1), "metric name"),
    (lambda c: c.add_counter("X", 1, dimensions=[("9x", "v")]), "dimension name"),
    (lambda c: c.add_time("T", float("nan")), "not finite"),
    (lambda c: c.add_time("T", "3"), "not a number"),
    (lambda c: c.add_metric("K", 1, metric_type="summary"), "metric_type"),
    (lambda c: c.add_metric_to_cache("D", "", ["a"]).add_or_update(1, []), "dimension values"),
])
def test_cache_refuses_bad_input_with_a_reason(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(MetricsCache("m"))  # type: ignore[operator]


def test_cache_refuses_a_second_dimension_set() -> None:
    cache = MetricsCache("m")
    cache.add_counter("Calls", 1)
    with pytest.raises(ValueError, match="already has dimensions"):
        cache.add_counter("Calls", 1, dimensions=[Dimension("x", "y")])


def test_requests_are_counted_by_kind_not_by_a_clients_describe_header(
    metrics: Metrics,
) -> None:
    import asyncio
    from types import SimpleNamespace

    from torchwire.batching import Job
    from torchwire.protocol import DESCRIBE, BatchDone, Item

    async def jobs() -> list[Job]:
        loop = asyncio.get_running_loop()
        sneaky = Job(Item("a", (), {"describe": "True"}), loop.create_future(), loop.time())
        describe = Job(Item("b", (), {}), loop.create_future(), loop.time(), DESCRIBE)
        return [sneaky, describe]

    sneaky, describe = asyncio.run(jobs())
    model = SimpleNamespace(name="m", version="1.0")
    metrics.observe_batch(model, [sneaky], BatchDone(1, (), 1.0))  # type: ignore[arg-type]
    metrics.observe_batch(model, [describe], BatchDone(2, (), 1.0))  # type: ignore[arg-type]
    text = metrics.render(["ts_inference_requests_total"]).decode()
    assert 'ts_inference_requests_total{model_name="m",model_version="1.0",' \
           'hostname="host-a",} 1.0' in text
