"""The transports alone: an empty handler behind uvicorn (HTTP/1.1) and behind grpc.aio.

This answers "how much of a call is the transport's own cost, before torchwire
does any work?". Two small servers run as subprocesses, each with the library
settings torchwire's front uses (uvicorn with httptools on uvloop; a grpc.aio
server on uvloop) and a handler that reads the request and answers a fixed
64-byte body, no model, no batcher, no worker. They are driven by the same
clients as bench_grpc.py (benchmarks/loadgen.py for HTTP, grpc.aio channels with
pre-serialized ``PredictionsRequest`` bytes for gRPC), closed loop, alternating
rounds, and the table shows req/s, p50 and CPU per request of each server
process, of its event-loop thread alone, and of the client.

    .venv/bin/python benchmarks/transport_floor.py        # ~30 s
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench_grpc import Sample, grpc_sync, measured, medians, predictions_request, print_rows
from bench_http import HOST, fmt, free_ports
from loadgen import loop_name, run_sync

SERVICE = "org.pytorch.serve.grpc.inference.InferenceAPIsService"
PATH = "/predictions/floor"
REPLY = b'{"answer": "a fixed reply of sixty-four bytes, no model behind"}'[:64]


def serve_http(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def predict(request: Request) -> Response:
        await request.body()
        return Response(REPLY, media_type="application/json")

    app = Starlette(routes=[Route(PATH, predict, methods=["POST"])])
    uvicorn.run(app, host=HOST, port=port, loop="uvloop", http="httptools", lifespan="off",
                access_log=False, log_config=None, server_header=False)


def serve_grpc(port: int) -> None:
    import grpc
    import uvloop

    from torchwire.grpc.generated import inference_pb2

    reply = inference_pb2.PredictionResponse(prediction=REPLY).SerializeToString()

    async def predict(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return reply

    async def main() -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {"Predictions": grpc.unary_unary_rpc_method_handler(predict)})
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"{HOST}:{port}")
        await server.start()
        await server.wait_for_termination()

    uvloop.run(main())


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the floor server on port {port} exited with {proc.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)  # polling a condition with a deadline, not synchronising
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout} s")


@contextmanager
def floor_server(kind: str, port: int) -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port)])
    try:
        wait_listening(port, proc)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bench(args: argparse.Namespace, concurrencies: list[int]) -> list[list[str]]:
    http_port, grpc_port = free_ports(2)
    request = predictions_request("floor", b"x" * args.body_bytes)
    body = b"x" * args.body_bytes
    target = f"{HOST}:{grpc_port}"
    rows = []
    with floor_server("http", http_port) as http_pid, floor_server("grpc", grpc_port) as grpc_pid:
        run_sync(HOST, http_port, PATH, body, "application/octet-stream", 16, 500, 10)
        grpc_sync(target, request, 16, 500, 10)
        for c in concurrencies:
            http: list[Sample] = []
            rpc: list[Sample] = []
            for _ in range(args.rounds):
                http.append(measured(http_pid, lambda c=c: run_sync(
                    HOST, http_port, PATH, body, "application/octet-stream", c, args.requests,
                    args.max_seconds)))
                rpc.append(measured(grpc_pid, lambda c=c: grpc_sync(
                    target, request, c, args.requests, args.max_seconds)))
            h, g = medians(http), medians(rpc)
            rows.append([str(c), fmt(h[0]), fmt(h[1], 2), fmt(h[2], 0), fmt(h[3], 0),
                         fmt(h[4], 0), fmt(g[0]), fmt(g[1], 2), fmt(g[2], 0), fmt(g[3], 0),
                         fmt(g[4], 0), fmt(g[0] / h[0] if h[0] else float("nan"), 2)])
            print(f"  c={c}: HTTP {h[0]:.0f} req/s, gRPC {g[0]:.0f} req/s", flush=True)
    return rows


def print_table(rows: list[list[str]], args: argparse.Namespace) -> None:
    headers = ["conc", "HTTP req/s", "p50 ms", "server µs", "loop µs", "client µs",
               "gRPC req/s", "p50 ms", "server µs", "loop µs", "client µs", "gRPC/HTTP"]
    print_rows(f"transport floor (empty handler): {os.cpu_count()} CPU(s), loadavg before run "
               f"{args.loadavg}, clients on {loop_name()}, {args.body_bytes}-byte request, "
               f"median of {args.rounds} round(s)", headers, rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    ap.add_argument("--requests", type=int, default=3000, help="per transport, per round")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--body-bytes", type=int, default=300, help="request payload size")
    ap.add_argument("--max-seconds", type=float, default=10.0, help="cap per load run")
    args = ap.parse_args(argv)
    if args.serve:
        kind, port = args.serve
        if kind == "http":
            serve_http(int(port))
        else:
            serve_grpc(int(port))
        return 0
    args.loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    concurrencies = sorted({int(c) for c in args.concurrency.split(",") if c.strip()})
    print_table(bench(args, concurrencies), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
