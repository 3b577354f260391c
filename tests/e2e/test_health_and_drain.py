"""Liveness apart from readiness, and SIGTERM's drain, against a real server process."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import RunningServer, start_server, stop_server, toy_archive, wait_until


def status(server: RunningServer, path: str) -> int:
    return httpx.get(server.url + path, timeout=5).status_code


def test_a_slow_loading_model_is_live_but_not_ready(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    gate = tmp_path / "loaded"
    toy_archive(store, "slow", yaml_config=f"load_gate: {gate}\n")
    server = start_server(tmp_path / "run", store, ["slow=slow-1.0/slow.mar"], {},
                          want_ping=500)
    try:
        assert status(server, "/live") == 200
        assert httpx.get(server.url + "/live").json() == {"status": "Alive"}
        assert status(server, "/v2/health/live") == 200
        assert status(server, "/v2/health/ready") == 503
        assert status(server, "/ping") == 500
        gate.touch()
        wait_until(lambda: status(server, "/ping") == 200, 60, "/ping turning 200")
        assert status(server, "/v2/health/ready") == 200
    finally:
        stop_server(server)


def test_sigterm_while_a_model_loads_exits_0_at_once(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    toy_archive(store, "slow", yaml_config=f"load_gate: {tmp_path / 'never'}\n")
    server = start_server(tmp_path / "run", store, ["slow=slow-1.0/slow.mar"],
                          {"drain_timeout": 5}, want_ping=500)
    try:
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0  # not after the load (the gate never opens)
    finally:
        if server.proc.poll() is None:
            stop_server(server)


def _refused(url: str) -> bool:
    """No new connection is served: refused, or reset unanswered as the listener closes
    with it still in the accept queue."""
    try:
        httpx.get(url + "/live", timeout=2)
    except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
        return True
    return False


def draining_toy(tmp_path: Path, drain_delay: int, drain_timeout: int) -> RunningServer:
    """A server of the toy model with these drain settings."""
    store = tmp_path / "store"
    store.mkdir()
    toy_archive(store, "toy")
    return start_server(tmp_path / "run", store, ["toy=toy-1.0/toy.mar"],
                        {"drain_delay": drain_delay, "drain_timeout": drain_timeout})


def test_sigterm_drains_every_accepted_request_then_exits_0(tmp_path: Path) -> None:
    server = draining_toy(tmp_path, drain_delay=4, drain_timeout=20)
    release = tmp_path / "release"
    answers: dict[str, httpx.Response] = {}

    def send(text: str) -> threading.Thread:
        def post() -> None:
            answers[text] = httpx.post(server.url + "/predictions/toy", content=text, timeout=60)
        thread = threading.Thread(target=post)
        thread.start()
        return thread

    try:
        blocked = send(f"block:{release}")
        wait_until((tmp_path / "release.started").exists, 30, "the request reaching the worker")
        server.proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        wait_until(lambda: status(server, "/ping") == 503, 3, "/ping turning 503")
        assert status(server, "/v2/health/ready") == 503
        assert status(server, "/live") == 200
        late = send("late")  # within drain_delay a new connection is still accepted
        wait_until(lambda: _refused(server.url), 15, "new connections being refused")
        assert time.monotonic() - stopped_at >= 3.5  # not before drain_delay
        assert server.proc.poll() is None  # still owes two answers
        release.touch()
        blocked.join(30)
        late.join(30)
        assert answers[f"block:{release}"].json() == {"released": True}
        assert answers["late"].status_code == 200 and answers["late"].json()["echo"] == "late"
        assert server.proc.wait(25) == 0
    finally:
        release.touch()
        if server.proc.poll() is None:
            stop_server(server)


def test_a_second_signal_skips_the_drain_delay(tmp_path: Path) -> None:
    server = draining_toy(tmp_path, drain_delay=600, drain_timeout=5)
    try:
        server.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: status(server, "/ping") == 503, 3, "/ping turning 503")
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(30) == 0
    finally:
        if server.proc.poll() is None:
            stop_server(server)
