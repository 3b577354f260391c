"""Worker supervision over real HTTP: crashes, kill -9, timeouts, failed loads, full queues."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    ROOT,
    RunningServer,
    start_server,
    stop_server,
    toy_archive,
    until,
    wait_for_ping,
    wait_until,
)


def worker_pid(server: RunningServer, model: str = "toy") -> int:
    # /ping may turn 200 before a replaced worker's successor has loaded (the old one
    # still counts until it is reaped): the request then waits in the queue for it.
    r = httpx.post(f"{server.url}/predictions/{model}", content=b"pid", timeout=60)
    assert r.status_code == 200, r.text
    return int(r.json()["pid"])


async def _block_then_kill(url: str, pid: int, gate: Path) -> tuple[httpx.Response, float]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        pending = asyncio.ensure_future(c.post("/predictions/toy", content=f"block:{gate}"))
        started = gate.with_name(gate.name + ".started")  # the handler has the request
        await until(started.exists, 30, "the worker starting the request")
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        response = await pending
        return response, time.monotonic() - killed_at


@pytest.fixture(scope="module")
def toy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A toy model of its own: these tests kill, crash and time out its worker, so they
    leave the shared server alone."""
    tmp = tmp_path_factory.mktemp("workers")
    store = tmp / "store"
    store.mkdir()
    toy_archive(store, "toy", yaml_config="responseTimeout: 3\n")
    running = start_server(tmp, store, ["toy=toy-1.0/toy.mar"], {})
    yield running
    stop_server(running)


def test_kill_9_mid_request_answers_503_fast_and_restarts(
    toy_server: RunningServer, tmp_path: Path
) -> None:
    pid = worker_pid(toy_server)
    response, waited = asyncio.run(_block_then_kill(toy_server.url, pid, tmp_path / "gate"))
    assert response.status_code == 503
    assert "died" in response.json()["message"]
    assert waited < 1.0
    wait_for_ping(toy_server.url, toy_server.proc, 200, 60)
    assert worker_pid(toy_server) != pid
    assert httpx.post(f"{toy_server.url}/predictions/toy", content=b"hi").json()["echo"] == "hi"


def test_a_crashing_request_does_not_take_down_later_ones(toy_server: RunningServer) -> None:
    r = httpx.post(f"{toy_server.url}/predictions/toy", content=b"crash", timeout=30)
    assert r.status_code == 503
    wait_for_ping(toy_server.url, toy_server.proc, 200, 60)
    assert httpx.post(f"{toy_server.url}/predictions/toy", content=b"ok").status_code == 200


def test_response_timeout_is_408_and_the_worker_is_replaced(toy_server: RunningServer) -> None:
    pid = worker_pid(toy_server)
    r = httpx.post(f"{toy_server.url}/predictions/toy", content=b"sleep:20", timeout=30)
    body = r.json()
    assert r.status_code == 408 and body["code"] == 408
    assert "response_timeout" in body["message"]
    wait_for_ping(toy_server.url, toy_server.proc, 200, 60)
    assert worker_pid(toy_server) != pid


@pytest.fixture()
def broken_store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    store.mkdir()
    toy_archive(store, "good")
    toy_archive(store, "noload", yaml_config="fail_load: true\n")
    with zipfile.ZipFile(store / "evil.mar", "w") as zf:
        zf.writestr("MAR-INF/MANIFEST.json",
                    '{"model": {"modelName": "evil", "handler": "h.py"}}')
        zf.writestr("../escaped.py", "print('pwned')")
    return store


def test_failed_load_and_unsafe_archive_make_ping_unhealthy(
        tmp_path: Path, broken_store: Path) -> None:
    models = ["good=good-1.0/good.mar", "noload=noload-1.0/noload.mar", "evil=evil.mar"]
    server = start_server(tmp_path, broken_store, models, {}, want_ping=500)
    try:
        with server.client() as c:
            assert c.get("/ping").json() == {"status": "Unhealthy"}
            assert c.post("/predictions/good", content=b"x").status_code == 200
            failed = c.post("/predictions/noload", content=b"x")
            assert failed.status_code == 503
            assert "refuses to load" in failed.json()["message"]
            assert c.post("/predictions/evil", content=b"x").status_code == 404
        assert not (tmp_path / "escaped.py").exists()
        assert not any(p.name == "escaped.py" for p in Path("/tmp").glob("*/escaped.py"))
        assert "../escaped.py" in server.log_text()
    finally:
        stop_server(server)


async def _flood(url: str, n: int, release: Path) -> tuple[list[int], list[int]]:
    """Send ``n`` requests to a worker that blocks until ``release`` exists.

    Returns the statuses answered while the worker was blocked, then the rest.
    """
    limits = httpx.Limits(max_connections=n)
    body = f"block:{release}".encode()
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        tasks = [asyncio.ensure_future(c.post("/predictions/slow", content=body))
                 for _ in range(n)]
        # 1 batch computing + 1 waiting in the worker + job_queue_size 2 queued = 4 accepted.
        early: list[int] = []
        pending = set(tasks)
        while len(early) < n - 4 and pending:
            done, pending = await asyncio.wait(pending, timeout=30,
                                               return_when=asyncio.FIRST_COMPLETED)
            assert done, "no answer within 30 s while the worker was blocked"
            early += [t.result().status_code for t in done]
        release.touch()
        late = [(await t).status_code for t in pending]
    return early, late


def test_full_queue_is_503_and_every_request_is_answered(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    toy_archive(store, "slow")
    config = {"job_queue_size": 2, "models": '{"slow": {"1.0": {"batchSize": 1}}}'}
    server = start_server(tmp_path, store, ["slow=slow-1.0/slow.mar"], config)
    try:
        early, late = asyncio.run(_flood(server.url, 8, tmp_path / "release"))
    finally:
        stop_server(server)
    # While the worker is blocked, whatever did not fit (2 in the worker + 2 queued, fewer if
    # requests arrived faster than the dispatcher ran) was refused at once; after the
    # release every accepted request was answered.
    assert set(early) == {503}
    statuses = early + late
    assert len(statuses) == 8 and set(statuses) <= {200, 503}
    assert 2 <= statuses.count(200) <= 4


def test_background_start_and_stop_with_models_all(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    toy_archive(store, "a").rename(store / "a.mar")
    toy_archive(store, "b").rename(store / "b.mar")
    from tests.conftest import free_port

    port = free_port()
    exe = [sys.executable, "-m", "torchwire"]
    env = {**os.environ, "TMPDIR": str(tmp_path), "TS_INFERENCE_ADDRESS": f"127.0.0.1:{port}",
           "TS_MANAGEMENT_ADDRESS": f"127.0.0.1:{free_port()}",
           "TS_METRICS_ADDRESS": f"127.0.0.1:{free_port()}"}
    started = subprocess.run([*exe, "start", "--model-store", str(store), "--models", "all",
                              "--ncs", "--log-location", str(tmp_path / "logs")],
                             env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/ping").status_code == 200, 60, "/ping")
        for name in ("a", "b"):
            assert httpx.post(f"{url}/predictions/{name}", content=b"q").json()["echo"] == "q"
    finally:
        stopped = subprocess.run([*exe, "stop"], env=env, capture_output=True, text=True,
                                 timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/ping")


def test_torchserve_made_archive_serves(tmp_path: Path) -> None:
    tma = Path(sys.executable).parent / "torch-model-archiver"
    if not tma.exists():
        pytest.skip("torch-model-archiver is not installed")
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.py").write_text((ROOT / "examples/digits/model.py").read_text())
    (src / "handler.py").write_text((ROOT / "examples/digits/handler.py").read_text())
    save_weights = "import torch, model; torch.save(model.DigitsMLP().state_dict(), 'w.pt')"
    subprocess.run([sys.executable, "-c", save_weights], cwd=src, check=True)
    store = tmp_path / "store"
    store.mkdir()
    subprocess.run([str(tma), "--model-name", "tsdigits", "--version", "3.1", "--model-file",
                    str(src / "model.py"), "--serialized-file", str(src / "w.pt"),
                    "--handler", str(src / "handler.py"), "--export-path", str(store)],
                   check=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    server = start_server(tmp_path, store, ["tsdigits.mar"], {})
    try:
        r = httpx.post(f"{server.url}/predictions/tsdigits/3.1", json=[0] * 64)
        assert r.status_code == 200 and len(r.json()) == 3
    finally:
        stop_server(server)
