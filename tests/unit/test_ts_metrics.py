"""metrics.yaml, metrics modes and system metrics, as TorchServe defines them."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from torchwire.errors import ConfigError
from torchwire.metrics import Metrics, MetricsOptions
from torchwire.metrics_yaml import DEFAULT_SPEC, load_metrics_config
from torchwire.protocol import MetricRecord
from torchwire.system_metrics import SystemMetrics, gpu_readings

# TorchServe's own parser of metric log lines (frontend Metric.PATTERN), in Python.
TS_LINE = re.compile(r"\s*([\w\s]+)\.([\w\s]+):([0-9\-,.e]+)\|#([^|]*)(\|#type:([^|,]+))?"
                     r"\|#hostname:([^,]+),([^,]+)(,(.*))?")

CUSTOM = """
dimensions:
  - &model_name "ModelName"
  - &level "Level"
  - &hostname "Hostname"
ts_metrics:
  counter:
    - name: Requests2XX
      unit: Count
      dimensions: [*level, *hostname]
  histogram:
    - name: QueueTime
      unit: Milliseconds
      dimensions: [*level, *hostname]
  gauge:
    - name: MemoryUsed
      unit: Megabytes
      dimensions: [*level, *hostname]
model_metrics:
  counter:
    - name: toy_calls
      unit: count
      dimensions: [*model_name, *level]
"""


def families(metrics: Metrics) -> dict[str, object]:
    """The scrape through prometheus_client's own parser (what a scraper sees)."""
    return {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}


def custom(tmp_path: Path, mode: str = "prometheus", auto: bool = False) -> Metrics:
    path = tmp_path / "metrics.yaml"
    path.write_text(CUSTOM)
    return Metrics("vm", MetricsOptions(load_metrics_config(path), mode, auto))


def test_default_set_is_torchserves() -> None:
    names = {s.name for s in DEFAULT_SPEC.ts_metrics}
    assert {"Requests2XX", "ts_inference_requests_total", "QueueTime", "CPUUtilization",
            "DiskAvailable", "GPUUtilization"} <= names
    assert DEFAULT_SPEC.frontend("GPUMemoryUsed").dimensions == ("Level", "DeviceId", "Hostname")
    assert {s.name for s in DEFAULT_SPEC.model_metrics} == {"HandlerTime", "PredictionTime"}


def test_trailing_comma_format_parses_with_prometheus_client() -> None:
    metrics = Metrics("vm")
    metrics.count_response(200)
    metrics.handler_metrics.record([MetricRecord("toy_size", "histogram", 3, "MB",
                                                 (("kind", "a"),))])
    text = metrics.render().decode()
    assert 'Requests2XX{Level="Host",Hostname="vm",} 1.0\n' in text
    assert 'CPUUtilization{Level="Host",Hostname="vm",} ' in text
    parsed = families(metrics)
    (sample,) = parsed["Requests2XX"].samples  # type: ignore[attr-defined]
    assert sample.labels == {"Level": "Host", "Hostname": "vm"} and sample.value == 1.0
    buckets = [s for s in parsed["toy_size"].samples  # type: ignore[attr-defined]
               if s.name == "toy_size_bucket"]
    assert buckets and buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 1.0
    assert "torchwire_batch_size" in parsed  # torchwire's own: standard format, parsed too


def test_custom_config_decides_names_kinds_and_dimensions(tmp_path: Path) -> None:
    metrics = custom(tmp_path)
    metrics.count_response(200)
    metrics.count_response(404)  # Requests4XX is not declared
    metrics.ts.add("QueueTime", {"Level": "Host"}, 12.0)
    metrics.handler_metrics.record([
        MetricRecord("toy_calls", "gauge", 2, "", (("ModelName", "toy"), ("Level", "Model"))),
        MetricRecord("toy_last_ms", "gauge", 5, "ms", (("ModelName", "toy"),)),  # undeclared
    ])
    parsed = families(metrics)
    assert "Requests4XX" not in parsed and "ts_inference_requests_total" not in parsed
    assert "CPUUtilization" not in parsed and "toy_last_ms" not in parsed
    assert parsed["QueueTime"].type == "histogram"  # type: ignore[attr-defined]
    memory = parsed["MemoryUsed"].samples[0]  # type: ignore[attr-defined]
    assert memory.value > 0 and memory.labels == {"Level": "Host", "Hostname": "vm"}
    calls = parsed["toy_calls"]
    assert calls.type == "counter"  # type: ignore[attr-defined]  # the file's kind wins
    assert calls.samples[0].labels == {"ModelName": "toy", "Level": "Model",  # type: ignore[attr-defined]
                                       "Hostname": "vm"}


def test_undeclared_handler_metric_is_added_when_auto_detect_is_on(tmp_path: Path) -> None:
    metrics = custom(tmp_path, auto=True)
    metrics.handler_metrics.record([MetricRecord("toy_last_ms", "gauge", 5, "ms", ())])
    assert 'toy_last_ms{Hostname="vm",} 5.0' in metrics.render().decode()


def ts_lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[re.Match[str]]:
    found = [TS_LINE.fullmatch(r.getMessage()) for r in caplog.records if r.name == logger]
    assert all(found), [r.getMessage() for r in caplog.records if r.name == logger]
    return [m for m in found if m is not None]


def test_log_mode_writes_torchserves_lines(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    metrics = custom(tmp_path, mode="log")
    with caplog.at_level(logging.INFO):
        metrics.count_response(200)
        metrics.sample_system()
        metrics.handler_metrics.record([MetricRecord(
            "toy_calls", "counter", 1, "count", (("ModelName", "toy"), ("Level", "Model")), "r-1")])
    front = ts_lines(caplog, "torchwire.ts_metrics")
    assert [(m[1], m[2], m[3], m[4], m[7]) for m in front] == [
        ("Requests2XX", "Count", "1.0", "Level:Host", "vm"),
        ("MemoryUsed", "Megabytes", front[1][3], "Level:Host", "vm")]
    (model,) = ts_lines(caplog, "torchwire.model_metrics")
    assert (model[1], model[2], model[3], model[4]) == ("toy_calls", "count", "1.0",
                                                        "ModelName:toy,Level:Model")
    assert model[10].startswith("timestamp:") and model[8] == "requestID:r-1"
    assert "Requests2XX" not in metrics.render().decode()  # logged, not exposed


def test_legacy_mode_exposes_only_the_three_ts_counters(
        caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics("vm", MetricsOptions(mode="legacy"))
    with caplog.at_level(logging.INFO):
        metrics.count_response(200)
        metrics.ts.add("ts_inference_requests_total", {"model_name": "m",
                                                       "model_version": "1"}, 2)
    text = metrics.render().decode()
    assert 'ts_inference_requests_total{model_name="m",model_version="1",hostname="vm",} 2.0' \
        in text
    assert "Requests2XX" not in text
    assert [m[1] for m in ts_lines(caplog, "torchwire.ts_metrics")] == ["Requests2XX"]


@pytest.mark.parametrize(("text", "message"), [
    ("ts_metrics: [1]", "must map counter/gauge/histogram"),
    ("ts_metrics:\n  summary: []", "summary is not one of"),
    ("model_metrics:\n  gauge:\n    - unit: ms", "expected {name, unit, dimensions}"),
    ("ts_metrics:\n  gauge:\n    - name: bad-name", "not a valid metric name"),
    ("ts_metrics:\n  gauge:\n    - {name: a, dimensions: x}", "dimensions must be a list"),
    ("ts_metrics:\n  gauge: [{name: a}]\n  counter: [{name: a}]", "defines a twice"),
    ("ts_metrics: [", "not valid YAML"),
])
def test_bad_metrics_config_says_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "metrics.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_metrics_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_metrics_config(tmp_path / "missing.yaml")


def test_system_metrics_are_sensible() -> None:
    readings = {r.name: r for r in SystemMetrics(gpus=0).readings()}
    assert set(readings) == {"CPUUtilization", "MemoryUsed", "MemoryAvailable",
                             "MemoryUtilization", "DiskUsage", "DiskUtilization",
                             "DiskAvailable"}
    total_mb = psutil.virtual_memory().total / 2**20
    assert 0 <= readings["CPUUtilization"].value <= 100
    assert 0 < readings["MemoryUsed"].value < total_mb
    assert 0 < readings["MemoryAvailable"].value <= total_mb
    assert 0 < readings["MemoryUtilization"].value < 100
    disk_gb = psutil.disk_usage("/").total / 2**30
    assert 0 < readings["DiskUsage"].value + readings["DiskAvailable"].value <= disk_gb * 1.001
    assert 0 < readings["DiskUtilization"].value <= 100
    assert all(r.dims == {"Level": "Host"} for r in readings.values())


def test_gpu_readings_from_nvml_values() -> None:
    info = SimpleNamespace(used=3 * 2**30, total=12 * 2**30)
    nvml = SimpleNamespace(nvmlDeviceGetCount=lambda: 2, nvmlDeviceGetHandleByIndex=lambda i: i,
                           nvmlDeviceGetMemoryInfo=lambda h: info,
                           nvmlDeviceGetUtilizationRates=lambda h: SimpleNamespace(gpu=40 + h))
    readings = [(r.name, r.value, r.dims["DeviceId"]) for r in gpu_readings(nvml)]
    assert readings[:3] == [("GPUMemoryUtilization", 25.0, "0"), ("GPUMemoryUsed", 3072.0, "0"),
                            ("GPUUtilization", 40.0, "0")]
    assert readings[5] == ("GPUUtilization", 41.0, "1")
