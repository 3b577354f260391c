"""Hostile clients of the inference port (issue 15): each sends its input to a real server,
then the server is shown to serve correctly."""

from __future__ import annotations

import json
import resource
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import grpc
import httpx
import pytest

from tests.conftest import HOSTILE_LIMITS, Hostile, RunningServer, wait_until
from torchwire.grpc.generated import inference_pb2 as pb
from torchwire.grpc.generated import inference_pb2_grpc as pb_grpc

IDLE_CONNECTIONS = 3000


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def worker_pid(server: RunningServer) -> int:
    return int(httpx.post(f"{server.url}/predictions/toy", content=b"pid").json()["pid"])


def assert_serving(server: RunningServer) -> None:
    """What a user would check: healthy, and the model answers."""
    assert httpx.get(f"{server.url}/ping", timeout=10).status_code == 200
    r = httpx.post(f"{server.url}/predictions/toy", content=b"still", timeout=30)
    assert r.status_code == 200 and r.json()["echo"] == "still"


def read_response(sock: socket.socket, deadline_s: float) -> bytes:
    """Everything the server sends until it closes (or ``deadline_s`` passes)."""
    sock.settimeout(deadline_s)
    chunks: list[bytes] = []
    end = time.monotonic() + deadline_s
    try:
        while time.monotonic() < end and (chunk := sock.recv(65536)):
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def status_and_body(raw: bytes) -> tuple[int, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# -- 1. deep JSON ----------------------------------------------------------------------
DEEP = b"[" * 1000 + b"]" * 1000


@pytest.mark.parametrize("path", ["/predictions/toy", "/v1/models/toy:predict",
                                  "/v2/models/toy/infer"])
def test_deeply_nested_json_is_a_400_and_the_worker_lives(hostile: Hostile, path: str) -> None:
    server = hostile.server
    pid = worker_pid(server)
    for body in (DEEP, b"[" * 100_000, b'{"a":' * 500 + b"1" + b"}" * 500):
        r = httpx.post(server.url + path, content=body, timeout=30,
                       headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        error = r.json()  # KServe v2 answers {"error": ...}, the others {"code", "type", ...}
        assert "nest" in error.get("message", error.get("error", ""))
    assert worker_pid(server) == pid
    assert_serving(server)


# -- 2. many headers -------------------------------------------------------------------
def raw_request(server: RunningServer, head: bytes, body: bytes = b"") -> bytes:
    with socket.create_connection(address(server.url), timeout=10) as sock:
        sock.sendall(head + body)
        return read_response(sock, 10)


def request_head(path: str, headers: list[bytes], length: int | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1".encode(), b"Host: torchwire", *headers]
    if length is not None:
        lines.append(f"Content-Length: {length}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


def test_too_many_or_too_large_headers_are_a_431(hostile: Hostile) -> None:
    server = hostile.server
    many = [f"X-H{i}: v".encode() for i in range(150)]
    large = [b"X-Big: " + b"a" * 9000]
    for headers in (many, large):
        status, body = status_and_body(raw_request(
            server, request_head("/predictions/toy", headers, 2), b"hi"))
        assert status == 431
        message = json.loads(body)["message"]
        assert "max_header_count" in message or "max_header_size" in message
    assert_serving(server)


def _flood_headers(server: RunningServer, done: threading.Event) -> None:
    head = request_head("/predictions/toy", [f"X-H{i}: v".encode() for i in range(50_000)], 2)
    try:
        with socket.create_connection(address(server.url), timeout=10) as sock:
            sock.sendall(head + b"hi")  # a body: the request would reach the handler
            read_response(sock, 10)
    except OSError:
        pass  # refused mid-send: the server closed the connection, as it should
    finally:
        done.set()


def test_fifty_thousand_headers_do_not_freeze_the_front(hostile: Hostile) -> None:
    server = hostile.server
    done = threading.Event()
    attacker = threading.Thread(target=_flood_headers, args=(server, done), daemon=True)
    attacker.start()
    while not done.is_set():
        assert httpx.get(f"{server.url}/ping", timeout=2).status_code == 200
        assert httpx.get(f"{server.metrics_url}/metrics", timeout=2).status_code == 200
    attacker.join(15)
    assert not attacker.is_alive(), "the 50,000-header request was not refused"
    assert_serving(server)


# -- 3. idle and slow connections ------------------------------------------------------
@pytest.fixture()
def idle_connections(hostile: Hostile) -> Iterator[list[socket.socket]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < IDLE_CONNECTIONS + 500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    socks = [socket.create_connection(address(hostile.server.url), timeout=10)
             for _ in range(IDLE_CONNECTIONS)]
    yield socks
    for sock in socks:
        sock.close()


def closed_by_server(socks: list[socket.socket], deadline_s: float) -> int:
    """How many of ``socks`` the server closes (EOF or reset) within ``deadline_s``; what
    it sends before closing (an HTTP 408, gRPC's SETTINGS) is read and dropped."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    closed, end = 0, time.monotonic() + deadline_s
    while closed < len(socks) and (left := end - time.monotonic()) > 0:
        for key, _ in selector.select(left):
            if _at_eof(key.fileobj):  # type: ignore[arg-type]
                selector.unregister(key.fileobj)
                closed += 1
    selector.close()
    return closed


def _at_eof(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


def test_idle_connections_neither_block_clients_nor_stay(
        hostile: Hostile, idle_connections: list[socket.socket]) -> None:
    server = hostile.server
    r = httpx.post(f"{server.url}/predictions/toy", content=b"through", timeout=2)
    assert r.status_code == 200 and r.json()["echo"] == "through"
    assert httpx.get(f"{hostile.management_url}/models", timeout=2).status_code == 200
    assert httpx.get(f"{server.metrics_url}/metrics", timeout=2).status_code == 200
    # header_read_timeout is 2 s here: every idle connection is closed soon after.
    assert closed_by_server(idle_connections, 15) == IDLE_CONNECTIONS
    assert_serving(server)


def trickle(server: RunningServer, head: bytes, pieces: list[bytes], gap: float) -> bytes:
    """Send ``head`` then one piece per ``gap`` seconds until the server answers or closes."""
    with socket.create_connection(address(server.url), timeout=10) as sock:
        sock.sendall(head)
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ)
        for piece in pieces:
            if selector.select(gap):  # the server spoke (or closed): stop sending
                break
            try:
                sock.sendall(piece)
            except OSError:
                break
        selector.close()
        return read_response(sock, 5)


def test_slowloris_headers_and_a_slow_body_get_a_408(hostile: Hostile) -> None:
    server = hostile.server
    started = time.monotonic()
    slow_head = trickle(server, b"POST /predictions/toy HTTP/1.1\r\nHost: x\r\n",
                        [b"X-Slow: 1\r\n"] * 40, 0.25)
    assert status_and_body(slow_head)[0] == 408
    slow_body = trickle(server, request_head("/predictions/toy", [], 100), [b"a"] * 40, 0.25)
    status, body = status_and_body(slow_body)
    assert status == 408 and "body_read_timeout" in json.loads(body)["message"]
    assert time.monotonic() - started < 9  # both cut near their 2 s timeouts, not after 10 s
    assert_serving(server)


# -- 6. half-close ---------------------------------------------------------------------
def test_a_client_that_half_closes_is_logged_as_gone_not_as_answered(
        hostile: Hostile) -> None:
    """End-of-file after the request (`nc -N`) is indistinguishable from a client that
    left: its request is dropped, and the access log says 499, never a 200 nobody got."""
    server = hostile.server
    access = server.log_dir / "access_log.log"
    with socket.create_connection(address(server.url), timeout=10) as sock:
        sock.sendall(request_head("/predictions/toy?halfclose=1", [], 4) + b"half")
        sock.shutdown(socket.SHUT_WR)  # what `nc -N` does after sending
        assert read_response(sock, 10) == b""  # the server closes without an answer
    wait_until(lambda: "halfclose=1" in access.read_text(), 10, "the access log line")
    (line,) = [x for x in access.read_text().splitlines() if "halfclose=1" in x]
    assert '" 499 ' in line and '" 200 ' not in line
    assert_serving(server)


# -- 4. KServe v1 instances beyond the free queue ----------------------------------------
def handled(server: RunningServer) -> float:
    """ts_inference_requests_total for the toy model: requests its worker computed."""
    text = httpx.get(f"{server.metrics_url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("ts_inference_requests_total") and 'model_name="toy"' in line)


def test_kserve_v1_instances_are_admitted_whole_or_refused_whole(hostile: Hostile) -> None:
    server = hostile.server
    before = handled(server)
    too_many = {"instances": [f"item{i}" for i in range(5)]}  # job_queue_size is 4 here
    r = httpx.post(f"{server.url}/v1/models/toy:predict", json=too_many, timeout=30)
    assert r.status_code == 503 and "none of them was run" in r.json()["message"]
    assert handled(server) == before
    fitting = {"instances": ["a", "b", "c", "d"]}
    r = httpx.post(f"{server.url}/v1/models/toy:predict", json=fitting, timeout=30)
    assert r.status_code == 200
    assert [p["echo"] for p in r.json()["predictions"]] == ["a", "b", "c", "d"]
    assert_serving(server)


# -- 5. OIP edge cases ----------------------------------------------------------------------
@pytest.mark.parametrize("tensor", [
    {"name": "x", "datatype": "FP32", "shape": [0, 0], "data": []},
    {"name": "x", "datatype": "FP32", "shape": [1, 0, 3], "data": []},
    {"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, None]},
])
def test_empty_shapes_and_null_data_are_a_400(hostile: Hostile, tensor: dict[str, object]) -> None:
    server = hostile.server
    r = httpx.post(f"{server.url}/v2/models/toy/infer", json={"inputs": [tensor]}, timeout=30)
    assert r.status_code == 400, r.text
    assert "shape" in r.json()["error"] or "null" in r.json()["error"]
    assert_serving(server)


# -- the gRPC listeners: the same limits ----------------------------------------------
GRPC_IDLE_CONNECTIONS = 500
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS, H2_GOAWAY = 0x4, 0x7
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3


def grpc_predict(server: RunningServer, text: bytes,
                 metadata: tuple[tuple[str, str], ...] = ()) -> dict[str, object]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.InferenceAPIsServiceStub(channel)
        request = pb.PredictionsRequest(model_name="toy", input={"data": text})
        return json.loads(stub.Predictions(request, timeout=5, metadata=metadata).prediction)


def h2_frames(raw: bytes) -> list[tuple[int, bytes]]:
    """``(type, payload)`` of each whole HTTP/2 frame in ``raw``."""
    frames = []
    while len(raw) >= 9:
        length = int.from_bytes(raw[:3], "big")
        frames.append((raw[3], raw[9:9 + length]))
        raw = raw[9 + length:]
    return frames


def test_idle_grpc_connections_neither_block_calls_nor_stay(hostile: Hostile) -> None:
    server = hostile.server
    socks = [socket.create_connection(address(f"http://{server.grpc_target}"), timeout=10)
             for _ in range(GRPC_IDLE_CONNECTIONS)]
    try:
        started = time.monotonic()
        assert grpc_predict(server, b"through")["echo"] == "through"
        assert time.monotonic() - started < 2
        # header_read_timeout (2 s here) bounds gRPC's connection handshake too
        assert closed_by_server(socks, 15) == GRPC_IDLE_CONNECTIONS
    finally:
        for sock in socks:
            sock.close()
    assert_serving(server)


def test_a_grpc_connection_without_calls_gets_a_goaway_and_few_streams(
        hostile: Hostile) -> None:
    """An HTTP/2 connection that never calls is sent a GOAWAY after
    grpc_max_connection_idle_ms; the server announces grpc_max_concurrent_streams."""
    with socket.create_connection(address(f"http://{hostile.server.grpc_target}"),
                                  timeout=10) as sock:
        sock.sendall(H2_PREFACE + bytes([0, 0, 0, H2_SETTINGS, 0, 0, 0, 0, 0]))
        started = time.monotonic()
        frames = h2_frames(read_response(sock, 10))
        waited = time.monotonic() - started
    assert H2_GOAWAY in [kind for kind, _ in frames]
    assert 0.9 < waited < 5  # grpc_max_connection_idle_ms is 1 s here
    settings = b"".join(payload for kind, payload in frames if kind == H2_SETTINGS)
    announced = {int.from_bytes(settings[i:i + 2], "big"): int.from_bytes(settings[i + 2:i + 6],
                                                                          "big")
                 for i in range(0, len(settings) - 5, 6)}
    assert announced[SETTINGS_MAX_CONCURRENT_STREAMS] == \
        HOSTILE_LIMITS["grpc_max_concurrent_streams"]
    assert grpc_predict(hostile.server, b"after")["echo"] == "after"


def test_grpc_metadata_over_max_header_size_is_refused(hostile: Hostile) -> None:
    with pytest.raises(grpc.RpcError) as info:
        grpc_predict(hostile.server, b"big", metadata=(("x-big", "a" * 9000),))
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    assert grpc_predict(hostile.server, b"small", (("x-small", "a" * 100),))["echo"] == "small"
    assert_serving(hostile.server)
