"""Hostile management calls and stopped workers (issue 15): worker ceilings, allowed_urls
with dot segments, downloads, archive bombs, SIGSTOP; each followed by proof that the
server still serves."""

from __future__ import annotations

import http.server
import os
import signal
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    TOY,
    Hostile,
    start_server,
    stop_server,
    wait_for_ping,
    wait_until,
)
from tests.e2e.test_hostile_clients import assert_serving, worker_pid


def register(hostile: Hostile, url: str, timeout: float = 30, **params: object) -> httpx.Response:
    query = {"url": url, "synchronous": "true", **params}
    return httpx.post(f"{hostile.management_url}/models", params=query, timeout=timeout)


def message(r: httpx.Response) -> str:
    return str(r.json()["message"])


# -- 7. worker counts --------------------------------------------------------------------
def test_worker_counts_above_the_ceilings_are_refused(hostile: Hostile) -> None:
    url = f"{hostile.management_url}/models/toy"
    for count in ("99999999999999999999", "3"):
        r = httpx.put(url, params={"min_worker": count, "synchronous": "true"}, timeout=10)
        assert r.status_code == 400
        assert "max_workers_per_model (2" in message(r)
    # maxWorkers is a ceiling for the elastic scaler, never workers started: TorchServe
    # accepts any, and so does torchwire (the scaler stays within the machine).
    r = httpx.put(url, params={"min_worker": "1", "max_worker": "5", "synchronous": "true"},
                  timeout=10)
    assert r.status_code == 200, r.text
    r = httpx.put(url, params={"min_worker": "1", "max_worker": "1", "synchronous": "true"},
                  timeout=10)  # back to one worker for the module's other tests
    assert r.status_code == 200, r.text
    r = register(hostile, "toy-1.0/toy.mar", model_name="many", initial_workers=2)
    assert r.status_code == 400 and "max_workers_total (2)" in message(r)
    described = httpx.get(url, timeout=10).json()[0]
    assert described["minWorkers"] == 1 and len(described["workers"]) == 1
    assert_serving(hostile.server)


# -- 8. dot segments ---------------------------------------------------------------------
class _Web(http.server.BaseHTTPRequestHandler):
    """Archives that misbehave: endless, lying about their size, cut short, dripping."""

    archive = b""
    asked = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
        type(self).asked.set()
        route = {"/allowed/toy.mar": self._toy, "/allowed/zeros.mar": self._zeros,
                 "/allowed/huge.mar": self._huge, "/allowed/short.mar": self._short,
                 "/allowed/drip.mar": self._drip, "/allowed/drip.war": self._drip}.get(self.path)
        if route is None:
            self.send_error(404)
            return
        try:
            route()
        except OSError:
            pass  # the server hung up on us, as it should

    def _toy(self) -> None:
        self._head(len(self.archive))
        self.wfile.write(self.archive)

    def _head(self, length: int | None) -> None:
        self.send_response(200)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _zeros(self) -> None:
        self._head(None)
        while True:
            self.wfile.write(bytes(65536))

    def _huge(self) -> None:
        self._head(100 * 1024**3)
        self.wfile.write(bytes(1000))

    def _short(self) -> None:
        self._head(5000)
        self.wfile.write(bytes(100))

    def _drip(self) -> None:
        self._head(1000)
        for _ in range(1000):
            self.wfile.write(b"\0")
            self.wfile.flush()
            time.sleep(0.2)  # the hostile server's pace, not synchronisation

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextmanager
def web(archive: bytes) -> Iterator[tuple[str, type[_Web]]]:
    handler = type("Web", (_Web,), {"archive": archive, "asked": threading.Event()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_dot_segments_cannot_leave_allowed_urls(hostile: Hostile) -> None:
    store = hostile.store
    toy = (store / "allowed" / "toy.mar").read_bytes()
    with web(toy) as (base, _):
        sneaky = [f"file://{store}/allowed/../toy-1.0/toy.mar",
                  f"file://{store}/allowed/%2e%2e/toy-1.0/toy.mar",
                  f"{store}/allowed/../toy-1.0/toy.mar",
                  f"file://{store}/allowed/../../../../../../../etc/passwd",
                  f"{base}/allowed/../elsewhere/toy.mar",
                  f"{base}/allowed/%2E%2E/elsewhere/toy.mar"]
        for url in sneaky:
            r = register(hostile, url, model_name="sneaky", initial_workers=0)
            assert r.status_code == 404, (url, r.text)  # TorchServe's refusals
            assert message(r).startswith(("Relative path is not allowed in url: ",
                                          f"Given URL {url} does not match")), r.text
        for name, url in (("local", f"file://{store}/allowed/./toy.mar"),
                          ("remote", f"{base}/allowed/toy.mar")):
            r = register(hostile, url, model_name=name, initial_workers=0)
            assert r.status_code == 200, r.text
            httpx.delete(f"{hostile.management_url}/models/{name}", timeout=30)
    assert_serving(hostile.server)


# -- 9. downloads ------------------------------------------------------------------------
def test_downloads_are_capped_in_size_and_time(hostile: Hostile) -> None:
    with web(b"") as (base, _):
        cases = {"zeros": "max_download_size (1000000", "huge": "max_download_size (1000000",
                 "short": "short read", "drip": "download_timeout (3 s)"}
        for name, expected in cases.items():
            started = time.monotonic()
            r = register(hostile, f"{base}/allowed/{name}.mar", model_name=name)
            assert r.status_code == 400 and expected in message(r), r.text
            assert time.monotonic() - started < 10
    downloads = hostile.work_dir() / "downloads"
    assert not downloads.exists() or not any(downloads.iterdir())
    assert_serving(hostile.server)


@pytest.mark.parametrize("what", ["models", "workflows"])
def test_a_download_in_progress_does_not_delay_shutdown(tmp_path: Path, what: str) -> None:
    """A registration's download, of a model or of a workflow, is cut when the server stops."""
    store = tmp_path / "store"
    store.mkdir()
    config = {"enable_model_api": "true", "disable_token_authorization": "true",
              "allowed_urls": "http://127.0.0.1:[0-9]+/allowed/.*"}
    server = start_server(tmp_path / "run", store, [], config)
    try:
        with web(b"") as (base, handler), ThreadPoolExecutor(1) as pool:
            archive = "drip.war" if what == "workflows" else "drip.mar"
            pending = pool.submit(httpx.post, f"{server.management_url}/{what}",
                                  params={"url": f"{base}/allowed/{archive}"}, timeout=60)
            assert handler.asked.wait(30)
            stopping = time.monotonic()
            server.proc.terminate()
            server.proc.wait(30)
            assert time.monotonic() - stopping < 5
            with pytest.raises(httpx.HTTPError):
                pending.result().raise_for_status()
    finally:
        if server.proc.poll() is None:
            stop_server(server)


# -- 10. archive bombs --------------------------------------------------------------------
def bomb(path: Path, size: int, method: int) -> Path:
    """A valid model archive plus ``size`` zero bytes stored with ``method``."""
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        zf.writestr("MAR-INF/MANIFEST.json",
                    '{"model": {"modelName": "bomb", "modelVersion": "1.0", '
                    '"handler": "toy_handler.py"}, "runtime": "python"}')
        zf.write(TOY / "toy_handler.py", "toy_handler.py")
        zf.writestr("weights.bin", bytes(size))
    return path


def test_archive_bombs_are_refused_and_leave_nothing(hostile: Hostile) -> None:
    allowed = hostile.store / "allowed"
    cases = {
        "max_compression_ratio (100)": bomb(allowed / "ratio.mar", 40_000_000,
                                            zipfile.ZIP_DEFLATED),
        "max_extracted_size (50000000 bytes)": bomb(allowed / "size.mar", 60_000_000,
                                                    zipfile.ZIP_STORED),
    }
    for expected, archive in cases.items():
        r = register(hostile, f"file://{archive}", model_name="bomb", initial_workers=0)
        assert r.status_code == 400 and expected in message(r), r.text
    left = [p.name for p in hostile.work_dir().rglob("*") if "ratio" in p.name
            or "size" in p.name or "bomb" in p.name]
    assert left == []
    assert_serving(hostile.server)


# -- 12. stopped workers -----------------------------------------------------------------
def test_a_stopped_worker_is_reported_failed_and_replaced(hostile: Hostile) -> None:
    server = hostile.server
    pid = worker_pid(server)
    os.kill(pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(httpx.post, f"{server.url}/predictions/toy",
                                  content=b"stuck?", timeout=60)
            wait_until(lambda: httpx.get(f"{server.url}/ping", timeout=5).status_code == 500,
                       15, "/ping reporting the stopped worker")
            answer = pending.result()
        assert answer.status_code == 503 and "heartbeat" in message(answer)
    finally:
        _resume(pid)
    wait_for_ping(server.url, server.proc, 200, 60)
    assert worker_pid(server) != pid
    assert_serving(server)


def _resume(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass  # already killed and reaped by the server


def test_a_long_handler_is_not_mistaken_for_a_stopped_one(hostile: Hostile) -> None:
    server = hostile.server
    pid = worker_pid(server)
    r = httpx.post(f"{server.url}/predictions/toy", content=b"sleep:5", timeout=60)
    assert r.status_code == 200 and r.json() == {"slept": True, "pid": pid}
    assert worker_pid(server) == pid


# -- 11. describe customized=true with no workers -----------------------------------------
def test_customized_describe_of_a_model_scaled_to_zero_answers(hostile: Hostile) -> None:
    r = register(hostile, "toy-1.0/toy.mar", model_name="idle", initial_workers=0)
    assert r.status_code == 200, r.text
    try:
        r = httpx.get(f"{hostile.management_url}/models/idle", params={"customized": "true"},
                      timeout=10)
        assert r.status_code == 200, r.text
        described = r.json()[0]
        assert described["modelName"] == "idle" and described["workers"] == []
        assert not described.get("customizedMetadata")
    finally:
        httpx.delete(f"{hostile.management_url}/models/idle", timeout=30)
    assert_serving(hostile.server)
