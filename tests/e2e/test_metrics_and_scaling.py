"""Prometheus metrics that match the traffic sent, and scaling under a steady load."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    RunningServer,
    start_server,
    stop_server,
    toy_archive,
    wait_until,
)

SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str, **labels: str) -> list[float]:
    """Values of the samples called ``name`` whose labels include ``labels``."""
    found = []
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and m["name"] == name and labels.items() <= dict(LABEL.findall(m["labels"] or "")
                                                               ).items():
            found.append(float(m["value"]))
    return found


def one(text: str, name: str, **labels: str) -> float:
    (value,) = samples(text, name, **labels)
    return value


@dataclass
class Server:
    running: RunningServer
    management: str
    metrics: str

    def scrape(self, **params: object) -> str:
        r = httpx.get(f"{self.metrics}/metrics", params=params)  # type: ignore[arg-type]
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        return r.text

    def predict(self, model: str, body: bytes) -> httpx.Response:
        return httpx.post(f"{self.running.url}/predictions/{model}", content=body, timeout=60)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("metrics")
    store = tmp / "store"
    store.mkdir()
    for name in ("counted", "queued", "crashy", "custom", "scaled"):
        toy_archive(store, name)
    models = {"counted": {"1.0": {"minWorkers": 2, "maxWorkers": 2}}}
    # scaling to 3 workers is the point of a test below, whatever the machine runs
    config = {"disable_token_authorization": "true", "models": json.dumps(models),
              "max_workers_per_model": 3}
    archives = [f"{n}={n}-1.0/{n}.mar" for n in ("counted", "queued", "crashy", "custom",
                                                 "scaled")]
    running = start_server(tmp, store, archives, config)
    yield Server(running, running.management_url, running.metrics_url)
    stop_server(running)


# --------------------------------------------------------------------------- metrics


def test_counters_match_the_requests_sent_with_two_workers(srv: Server) -> None:
    before = srv.scrape()
    ok_before = one(before, "Requests2XX", Level="Host")
    pids = {srv.predict("counted", b"pid").json()["pid"] for _ in range(37)}
    text = srv.scrape()
    labels = {"model_name": "counted", "model_version": "1.0"}
    assert len(pids) == 2  # both workers answered some of them
    assert one(text, "ts_inference_requests_total", **labels) == 37
    assert one(text, "torchwire_request_latency_seconds_count", **labels) == 37
    assert one(text, "torchwire_batch_size_count", **labels) == 37
    assert one(text, "torchwire_batch_size_sum", **labels) == 37
    assert one(text, "Requests2XX", Level="Host") - ok_before >= 37
    latency_us = one(text, "ts_inference_latency_microseconds", **labels)
    latency_s = one(text, "torchwire_request_latency_seconds_sum", **labels)
    assert latency_us > 0 and latency_us == pytest.approx(latency_s * 1e6)
    queue_us = one(text, "ts_queue_latency_microseconds", **labels)
    assert 0 <= queue_us <= latency_us
    assert one(text, "torchwire_workers_live", **labels) == 2


def test_torchserve_names_and_types_are_exact(srv: Server) -> None:
    text = srv.scrape()
    for name in ("ts_inference_requests_total", "ts_inference_latency_microseconds",
                 "ts_queue_latency_microseconds", "Requests2XX", "Requests4XX", "Requests5XX"):
        assert f"# TYPE {name} counter\n" in text
    assert "_created" not in text
    assert "# TYPE torchwire_request_latency_seconds histogram" in text


def test_errors_count_as_4xx_and_5xx(srv: Server) -> None:
    before = srv.scrape()
    assert srv.predict("counted", b"bad").status_code == 400
    assert srv.predict("nope", b"x").status_code == 404
    assert srv.predict("counted", b"boom").status_code == 500
    text = srv.scrape()
    for cls, sent in (("Requests4XX", 2), ("Requests5XX", 1)):
        old = samples(before, cls, Level="Host")
        assert one(text, cls, Level="Host") - (old[0] if old else 0) == sent


def test_name_filter_keeps_only_the_named_families(srv: Server) -> None:
    text = srv.scrape(**{"name[]": ["ts_inference_requests_total", "torchwire_queue_depth"]})
    families = set(re.findall(r"^# TYPE (\S+)", text, re.M))
    assert families == {"ts_inference_requests_total", "torchwire_queue_depth"}


def test_queue_depth_gauge_sees_waiting_requests(srv: Server) -> None:
    async def flood() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as c:
            sent = [asyncio.ensure_future(c.post(f"{srv.running.url}/predictions/queued",
                                                 content=b"sleep:0.5")) for _ in range(6)]
            # one worker takes two batches; four wait, and the gauge must say so
            await asyncio.to_thread(wait_until, lambda: samples(
                srv.scrape(), "torchwire_queue_depth", model_name="queued") == [4.0], 20)
            return [r.status_code for r in await asyncio.gather(*sent)]

    assert asyncio.run(flood()) == [200] * 6
    assert one(srv.scrape(), "torchwire_queue_depth", model_name="queued") == 0


def test_worker_restarts_are_counted(srv: Server) -> None:
    assert srv.predict("crashy", b"crash").status_code == 503
    wait_until(lambda: samples(srv.scrape(), "torchwire_worker_restarts_total",
                             model_name="crashy") == [1.0])
    wait_until(lambda: srv.predict("crashy", b"again").status_code == 200)


def test_handler_metrics_appear_on_metrics(srv: Server) -> None:
    for value in (5, 7):
        assert srv.predict("custom", f"metric:{value}".encode()).json() == {"recorded": value}
    text = srv.scrape()
    dims = {"ModelName": "custom", "Level": "Model"}
    assert one(text, "toy_calls", **dims) == 2
    assert "# TYPE toy_calls counter" in text
    assert one(text, "toy_last_ms", **dims) == 7
    assert one(text, "toy_size_count", kind="demo") == 2
    assert one(text, "toy_size_sum", kind="demo") == 12
    line = next(x for x in text.splitlines() if x.startswith("toy_calls{"))
    assert 'Hostname="' in line


# --------------------------------------------------------------------------- scaling


async def _load(url: str, stop: asyncio.Event) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        while not stop.is_set():
            r = await c.post("/predictions/scaled", content=b"sleep:0.05")
            out.append((r.status_code, r.json().get("pid", 0) if r.status_code == 200 else 0))
    return out


def _workers(srv: Server) -> list[dict[str, object]]:
    (doc,) = httpx.get(f"{srv.management}/models/scaled").json()
    return list(doc["workers"])


async def _scale_under_load(srv: Server) -> tuple[list[tuple[int, int]], list[int]]:
    stop = asyncio.Event()
    load = [asyncio.ensure_future(_load(srv.running.url, stop)) for _ in range(4)]
    codes = []
    async with httpx.AsyncClient(base_url=srv.management, timeout=120) as c:
        for workers, sync in ((3, True), (1, True), (2, False), (1, True)):
            params = {"min_worker": workers, "synchronous": str(sync).lower()}
            codes.append((await c.put("/models/scaled", params=params)).status_code)
            if not sync:
                await asyncio.to_thread(wait_until, lambda: [w["status"] for w in _workers(srv)]
                                        == ["READY", "READY"])
    stop.set()
    results = await asyncio.gather(*load)
    return [r for rs in results for r in rs], codes


def test_scaling_up_and_down_under_load_fails_no_request(srv: Server) -> None:
    results, codes = asyncio.run(_scale_under_load(srv))
    assert codes == [200, 200, 202, 200]
    statuses = [s for s, _ in results]
    assert len(statuses) > 40 and set(statuses) == {200}
    assert len({pid for _, pid in results}) >= 3  # the extra workers did serve
    assert [w["status"] for w in _workers(srv)] == ["READY"]
    text = srv.scrape()
    assert one(text, "torchwire_workers_live", model_name="scaled") == 1


def test_scale_rejects_bad_parameters(srv: Server) -> None:
    url = f"{srv.management}/models/scaled"
    inverted = httpx.put(url, params={"min_worker": 3, "max_worker": 2})
    negative = httpx.put(url, params={"min_worker": -1})
    unknown = httpx.put(f"{srv.management}/models/scaled/9.9", params={"min_worker": 1})
    assert inverted.status_code == 400 and "max_worker" in inverted.json()["message"]
    assert negative.status_code == 400 and unknown.status_code == 404


def test_model_log_has_each_workers_lines(srv: Server) -> None:
    log = Path(srv.running.log_dir / "model_log.log").read_text()
    for name in ("counted", "queued", "crashy"):
        assert re.search(rf"^\[{name}-1\.0-\d+\] .* ready", log, re.M), name
