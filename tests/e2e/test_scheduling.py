"""Scheduling with real workers: no batch wait for an idle worker, elastic workers,
no work for clients that left, per-request deadlines (REST and gRPC)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import grpc
import httpx
import pytest

from tests.conftest import (
    TOY,
    RunningServer,
    handler_archive,
    start_server,
    stop_server,
    toy_archive,
    wait_until,
)
from tests.e2e.test_metrics_and_scaling import one
from torchwire.grpc.generated import inference_pb2 as pb
from torchwire.grpc.generated import inference_pb2_grpc as pb_grpc

T = TypeVar("T")
SLOW = "batchSize: 1\nmaxBatchDelay: 5\nminWorkers: 1\nmaxWorkers: 1\n"
MODELS = {
    "slow": SLOW,
    "batchy": "batchSize: 8\nmaxBatchDelay: 1500\n",
    "elastic": "batchSize: 1\nmaxBatchDelay: 5\nminWorkers: 1\nmaxWorkers: 3\n"
               "scaleUpWaitMs: 50\nscaleDownAfter: 2\n",
}
TOYS = {"eager": "batchSize: 8\nmaxBatchDelay: 1500\n",
        "tsrule": "batchSize: 8\nmaxBatchDelay: 1500\nbatchPolicy: torchserve\n"}


@dataclass
class Server:
    running: RunningServer
    management: str

    @property
    def url(self) -> str:
        return self.running.url

    def post(self, model: str, body: bytes, **headers: str) -> httpx.Response:
        return httpx.post(f"{self.url}/predictions/{model}", content=body, headers=headers,
                          timeout=60)

    def metric(self, name: str, model: str, **labels: str) -> float:
        text = httpx.get(f"{self.running.metrics_url}/metrics", timeout=10).text
        return one(text, name, model_name=model, **labels)

    def seen(self, model: str) -> list[str]:
        return list(self.post(model, b"seen").json()["seen"])


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("scheduling")
    store = tmp / "store"
    store.mkdir()
    slow_handler = TOY / "slow_handler.py"
    for name, yaml in MODELS.items():
        handler_archive(store, name, slow_handler, store / name, yaml_config=yaml)
    for name, yaml in TOYS.items():
        toy_archive(store, name, yaml_config=yaml)
    config = {"job_queue_size": 500, "disable_token_authorization": "true"}
    archives = [f"{n}={n}/{n}.mar" for n in MODELS] + [f"{n}={n}-1.0/{n}.mar" for n in TOYS]
    running = start_server(tmp, store, archives, config)
    yield Server(running, running.management_url)
    stop_server(running)


# --------------------------------------------------------------------------- batch policy


def test_a_lone_request_on_an_idle_worker_does_not_wait_for_companions(srv: Server) -> None:
    start = time.monotonic()
    r = srv.post("eager", b"alone")
    assert r.json() == {"echo": "alone", "batch": 1}
    assert time.monotonic() - start < 1.0  # maxBatchDelay is 1.5 s


def test_the_torchserve_policy_keeps_its_full_batch_delay(srv: Server) -> None:
    start = time.monotonic()
    r = srv.post("tsrule", b"alone")
    assert r.json() == {"echo": "alone", "batch": 1}
    assert time.monotonic() - start >= 1.5


def test_requests_accumulate_into_one_batch_while_the_worker_is_busy(srv: Server) -> None:
    async def nine() -> list[int]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=60) as c:
            sent = [c.post("/predictions/batchy", content=f"r{i}:2".encode()) for i in range(9)]
            return [r.json()["batch"] for r in await asyncio.gather(*sent)]

    # the first batch goes at once with what had arrived; the rest arrive while it computes
    # and go together as the second batch (each answer says the size of its batch)
    sizes = Counter(asyncio.run(nine()))
    assert len(sizes) == 2 and sum(sizes) == 9
    assert all(count == size for size, count in sizes.items())


# --------------------------------------------------------------------------- clients that left


def raw_post(url: str, model: str, body: bytes, path: str = "/predictions/{}") -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = (f"POST {path.format(model)} HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    sock.sendall(head.encode() + body)
    return sock


def test_queued_requests_of_clients_that_left_are_never_computed(srv: Server) -> None:
    before = srv.metric("torchwire_requests_cancelled_total", "slow", reason="client_gone")
    socks = [raw_post(srv.url, "slow", f"gone{i}:2".encode()) for i in range(195)]
    socks += [raw_post(srv.url, "slow", f'{{"instances": ["gone-kserve{i}:2"]}}'.encode(),
                       "/v1/models/{}:predict") for i in range(5)]  # KServe v1 the same
    try:  # one worker holds two requests (one computing, one waiting); 198 wait in the queue
        wait_until(lambda: srv.metric("torchwire_queue_depth", "slow") == 198, 60, "queueing")
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: srv.metric("torchwire_queue_depth", "slow") == 0, 30, "queue drained")
    computed = [label for label in srv.seen("slow") if label.startswith("gone")]
    assert len(computed) == 2  # only those a worker already had
    cancelled = srv.metric("torchwire_requests_cancelled_total", "slow", reason="client_gone")
    assert cancelled - before == 198
    assert srv.post("slow", b"after:0").json()["label"] == "after"  # and it serves normally
    assert "Traceback" not in srv.running.log_text()  # no error noise for the leavers


def _late_request(srv: Server, headers: dict[str, str]) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    r = srv.post("slow", b"late:0", **headers)
    return r, time.monotonic() - start


def test_a_deadline_shorter_than_the_queue_wait_gets_408_and_is_never_computed(
        srv: Server) -> None:
    before = srv.metric("torchwire_requests_cancelled_total", "slow", reason="deadline")
    r, elapsed = asyncio.run(_behind_queue(
        srv, lambda: _late_request(srv, {"X-Request-Timeout": "0.3"})))
    assert r.status_code == 408
    assert r.json()["type"] == "RequestTimeoutException"
    assert "X-Request-Timeout" in r.json()["message"]
    assert elapsed < 1.0  # answered at its deadline, not after the queue ahead of it
    assert "late" not in srv.seen("slow")
    after = srv.metric("torchwire_requests_cancelled_total", "slow", reason="deadline")
    assert after - before == 1


def test_a_deadline_long_enough_is_served(srv: Server) -> None:
    r = srv.post("slow", b"ontime:0", **{"X-Request-Timeout": "30"})
    assert r.json()["label"] == "ontime"


@pytest.mark.parametrize("value", ["soon", "0", "-2"])
def test_a_bad_request_timeout_is_a_400_that_says_why(srv: Server, value: str) -> None:
    r = srv.post("slow", b"bad:0", **{"X-Request-Timeout": value})
    assert r.status_code == 400
    assert "X-Request-Timeout must be a positive number of seconds" in r.json()["message"]


async def _behind_queue(srv: Server, call: Callable[[], T]) -> T:
    """Run ``call`` while the slow model's worker holds two requests and one more waits."""
    async with httpx.AsyncClient(base_url=srv.url, timeout=60) as c:
        ahead = [asyncio.ensure_future(c.post("/predictions/slow", content=f"g{i}:1".encode()))
                 for i in range(3)]
        await asyncio.to_thread(wait_until, lambda: srv.metric(
            "torchwire_queue_depth", "slow") == 1, 30, "two dispatched, one queued")
        result = await asyncio.to_thread(call)
        assert [a.status_code for a in await asyncio.gather(*ahead)] == [200] * 3
        return result


def _grpc_request(label: str) -> pb.PredictionsRequest:
    return pb.PredictionsRequest(model_name="slow", input={"data": f"{label}:0".encode()})


def _grpc_with_deadline(stub: pb_grpc.InferenceAPIsServiceStub) -> grpc.StatusCode:
    try:
        stub.Predictions(_grpc_request("deadline"), timeout=0.3)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


def _grpc_cancelled(stub: pb_grpc.InferenceAPIsServiceStub) -> bool:
    future = stub.Predictions.future(_grpc_request("cancel"), timeout=60)
    time.sleep(0.2)  # the client's own behaviour: it gives up after 0.2 s
    return bool(future.cancel())


def test_a_grpc_deadline_ends_the_call_and_its_request_is_never_computed(srv: Server) -> None:
    with grpc.insecure_channel(srv.running.grpc_target) as channel:
        stub = pb_grpc.InferenceAPIsServiceStub(channel)
        code = asyncio.run(_behind_queue(srv, lambda: _grpc_with_deadline(stub)))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "deadline" not in srv.seen("slow")


def test_a_cancelled_grpc_call_is_dropped_from_the_queue(srv: Server) -> None:
    before = srv.metric("torchwire_requests_cancelled_total", "slow", reason="client_gone")
    with grpc.insecure_channel(srv.running.grpc_target) as channel:
        stub = pb_grpc.InferenceAPIsServiceStub(channel)
        assert asyncio.run(_behind_queue(srv, lambda: _grpc_cancelled(stub)))
    assert "cancel" not in srv.seen("slow")
    after = srv.metric("torchwire_requests_cancelled_total", "slow", reason="client_gone")
    assert after - before == 1


# --------------------------------------------------------------------------- elastic workers


async def _clients(url: str, count: int, stop: asyncio.Event) -> list[int]:
    async def one_client(c: httpx.AsyncClient) -> list[int]:
        codes = []
        while not stop.is_set():
            codes.append((await c.post("/predictions/elastic", content=b"e:0.1")).status_code)
        return codes

    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        results = await asyncio.gather(*(one_client(c) for _ in range(count)))
    return [code for codes in results for code in codes]


async def _load_step(srv: Server) -> tuple[list[int], float]:
    def wanted() -> float:
        return srv.metric("torchwire_workers_wanted", "elastic")

    stop = asyncio.Event()
    light = asyncio.ensure_future(_clients(srv.url, 1, stop))
    await asyncio.sleep(1.5)  # the load's shape: c=1 for a while (no growth expected)
    assert wanted() == 1
    stop.set()
    codes = await light
    stop = asyncio.Event()
    heavy = asyncio.ensure_future(_clients(srv.url, 16, stop))
    await asyncio.to_thread(wait_until, lambda: wanted() >= 2, 60, "growth under c=16")
    await asyncio.to_thread(wait_until, lambda: srv.metric(
        "torchwire_workers_live", "elastic") >= 2, 60, "the new worker serving")
    peak = wanted()
    stop.set()
    codes += await heavy
    await asyncio.to_thread(wait_until, lambda: wanted() == 1, 60, "shrinking after the load")
    return codes, peak


def test_a_load_step_grows_the_workers_and_quiet_shrinks_them_back(srv: Server) -> None:
    codes, peak = asyncio.run(_load_step(srv))
    assert codes and set(codes) == {200}
    assert 2 <= peak <= min(3, os.cpu_count() or 1)  # maxWorkers, and the machine's cores
    assert srv.metric("torchwire_worker_scale_events_total", "elastic", direction="up") >= 1
    assert srv.metric("torchwire_worker_scale_events_total", "elastic", direction="down") >= 1
    assert "growing workers 1 -> 2" in srv.running.log_text()


def test_the_scale_api_sets_the_floor_the_scaler_keeps(srv: Server) -> None:
    r = httpx.put(f"{srv.management}/models/elastic",
                  params={"min_worker": 2, "max_worker": 3, "synchronous": "true"}, timeout=120)
    assert r.status_code == 200
    downs = srv.metric("torchwire_worker_scale_events_total", "elastic", direction="down")
    wait_until(lambda: srv.metric("torchwire_workers_live", "elastic") == 2, 60, "two live")
    time.sleep(3)  # the scenario: 3 s of quiet, longer than scaleDownAfter (2 s)
    assert srv.metric("torchwire_workers_wanted", "elastic") == 2
    after = srv.metric("torchwire_worker_scale_events_total", "elastic", direction="down")
    assert after == downs
