"""metrics_config and metrics_mode on a real server: what a scraper and a log reader see."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningServer, start_server, stop_server, toy_archive, wait_until

METRICS_YAML = """
dimensions:
  - &model_name "ModelName"
  - &level "Level"
  - &hostname "Hostname"
ts_metrics:
  counter:
    - name: Requests2XX
      unit: Count
      dimensions: [*level, *hostname]
    - name: ts_inference_requests_total
      unit: Count
      dimensions: ["model_name", "model_version", "hostname"]
  histogram:
    - name: QueueTime
      unit: Milliseconds
      dimensions: [*level, *hostname]
  gauge:
    - name: CPUUtilization
      unit: Percent
      dimensions: [*level, *hostname]
    - name: MemoryUsed
      unit: Megabytes
      dimensions: [*level, *hostname]
    - name: WorkerLoadTime
      unit: Milliseconds
      dimensions: ["WorkerName", *level, *hostname]
model_metrics:
  counter:
    - name: toy_calls
      unit: count
      dimensions: [*model_name, *level]
  gauge:
    - name: HandlerTime
      unit: ms
      dimensions: [*model_name, *level]
"""
# TorchServe's parser of metric log lines (its frontend's Metric.PATTERN), after "<time> - ".
TS_LINE = re.compile(r"\S+ - ([\w\s]+)\.([\w\s]+):([0-9\-,.e]+)\|#([^|]*)(\|#type:([^|,]+))?"
                     r"\|#hostname:([^,]+),([^,]+)(,(.*))?")


def start(tmp: Path, config: dict[str, object]) -> RunningServer:
    store = tmp / "store"
    store.mkdir(parents=True)
    toy_archive(store, "toy")
    return start_server(tmp, store, ["toy=toy-1.0/toy.mar"], config)


@pytest.fixture(scope="module")
def declared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("declared")
    (tmp / "metrics.yaml").write_text(METRICS_YAML)
    server = start(tmp, {"metrics_config": tmp / "metrics.yaml"})
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("logged")
    server = start(tmp, {"metrics_mode": "log", "metric_time_interval": 1})
    yield server
    stop_server(server)


def scrape(server: RunningServer) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample, through prometheus_client's own parser: name -> labels -> value."""
    text = httpx.get(f"{server.metrics_url}/metrics").text
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return found


def predict(server: RunningServer, times: int) -> None:
    with server.client() as c:
        for _ in range(times):
            assert c.post("/predictions/toy", content=b"metric:3").status_code == 200


def test_declared_metrics_appear_and_move_under_load(declared: RunningServer) -> None:
    predict(declared, 2)
    before = scrape(declared)
    predict(declared, 5)
    after = scrape(declared)
    # the parser names a counter's sample *_total (Requests2XX -> Requests2XX_total)
    host = (("Hostname", next(iter(after["Requests2XX_total"]))[0][1]), ("Level", "Host"))
    assert after["Requests2XX_total"][host] - before["Requests2XX_total"][host] == 5
    (ts_key,) = after["ts_inference_requests_total"]
    assert dict(ts_key)["model_name"] == "toy"
    assert after["ts_inference_requests_total"][ts_key] - \
        before["ts_inference_requests_total"][ts_key] == 5
    (calls_key,) = after["toy_calls_total"]
    assert dict(calls_key)["ModelName"] == "toy" and dict(calls_key)["Level"] == "Model"
    assert after["toy_calls_total"][calls_key] - before["toy_calls_total"][calls_key] == 5
    assert after["QueueTime_count"][host] - before["QueueTime_count"][host] == 5
    assert 0 <= after["CPUUtilization"][host] <= 100 and after["MemoryUsed"][host] > 0
    assert next(iter(after["HandlerTime"].values())) >= 0
    ((load_key, load_ms),) = after["WorkerLoadTime"].items()  # the toy's one worker
    assert dict(load_key)["WorkerName"] == "W-9000-toy_1.0" and 0 < load_ms < 60_000
    for undeclared in ("Requests4XX", "DiskUsage", "toy_last_ms", "toy_size_count",
                       "PredictionTime"):
        assert undeclared not in after  # not in metrics.yaml: not exposed
    assert "torchwire_request_latency_seconds_count" in after  # torchwire's own stay


def ts_lines(path: Path) -> list[re.Match[str]]:
    lines = path.read_text().splitlines() if path.exists() else []
    matches = [TS_LINE.fullmatch(line) for line in lines]
    assert all(matches), lines
    return [m for m in matches if m is not None]


def test_log_mode_writes_parseable_ts_and_model_metric_lines(logged: RunningServer) -> None:
    predict(logged, 3)
    front, model = logged.log_dir / "ts_metrics.log", logged.log_dir / "model_metrics.log"

    def written() -> bool:
        names = {m[1] for m in ts_lines(front)}
        return {"Requests2XX", "CPUUtilization", "DiskAvailable", "WorkerLoadTime"} <= names and \
            {"toy_calls", "HandlerTime"} <= {m[1] for m in ts_lines(model)}

    wait_until(written, 30, "metric lines in ts_metrics.log and model_metrics.log")
    requests = [m for m in ts_lines(front) if m[1] == "Requests2XX"]
    assert (requests[0][2], requests[0][3], requests[0][4]) == ("Count", "1.0", "Level:Host")
    load = next(m for m in ts_lines(front) if m[1] == "WorkerLoadTime")
    assert load[2] == "Milliseconds" and load[4] == "WorkerName:W-9000-toy_1.0,Level:Host"
    cpu = next(m for m in ts_lines(front) if m[1] == "CPUUtilization")
    assert cpu[2] == "Percent" and 0 <= float(cpu[3]) <= 100
    calls = [m for m in ts_lines(model) if m[1] == "toy_calls"]
    assert len(calls) == 3 and calls[0][4] == "ModelName:toy,Level:Model"
    assert all(m[8].startswith("timestamp:") for m in ts_lines(front))
    text = httpx.get(f"{logged.metrics_url}/metrics").text
    assert "Requests2XX" not in text and "toy_calls" not in text  # logged, not exposed
