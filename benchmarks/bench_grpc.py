"""REST ``POST /predictions`` against gRPC ``Predictions`` on the same server and model.

Builds the digits example, starts one ``torchwire start --foreground`` with its
gRPC listeners on free 127.0.0.1 ports, then at each concurrency drives the same
PNG through both APIs with closed-loop load generators and prints one table.
The REST side is benchmarks/loadgen.py (raw HTTP/1.1 keep-alive connections);
the gRPC side keeps one channel (its own HTTP/2 connection) per concurrent
caller and sends pre-serialized ``PredictionsRequest`` bytes, so neither client
spends time on JSON or protobuf objects. Rounds alternate REST and gRPC.

    .venv/bin/python benchmarks/bench_grpc.py            # ~1 min
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from bench_http import (
    HOST,
    START_TIMEOUT,
    ModelCase,
    fmt,
    free_ports,
    http_post,
    prepare_cases,
    running_server,
    torchwire_command,
    write_config,
)
from loadgen import LoadResult, loop_name, percentile, run_sync

PREDICTIONS = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions"


def predictions_request(model: str, body: bytes) -> bytes:
    from torchwire.grpc.generated import inference_pb2

    message = inference_pb2.PredictionsRequest(model_name=model, input={"data": body})
    return message.SerializeToString()


async def run_grpc_load(target: str, request: bytes, concurrency: int, total: int,
                        max_seconds: float, connections: int = 1) -> LoadResult:
    """``total`` unary calls from ``concurrency`` callers sharing ``connections`` channels
    (0: one per caller), closed loop."""
    options = [("grpc.use_local_subchannel_pool", 1)]  # one TCP connection per channel
    count = concurrency if connections <= 0 else min(connections, concurrency)
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(count)]
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    samples: dict[str, str] = {}
    sent = 0
    start = time.perf_counter()
    deadline = start + max_seconds
    done_at = start

    async def caller(channel: grpc.aio.Channel) -> None:
        nonlocal sent, done_at
        call = channel.unary_unary(PREDICTIONS)
        while sent < total and time.perf_counter() < deadline:
            sent += 1
            t0 = time.perf_counter()
            try:
                await call(request, timeout=30)
                codes["OK"] += 1
            except grpc.aio.AioRpcError as err:
                codes[err.code().name] += 1
                samples.setdefault(err.code().name, err.details() or "")
            done_at = time.perf_counter()
            latencies.append(done_at - t0)

    try:
        await asyncio.gather(*(c.channel_ready() for c in channels))
        start = time.perf_counter()
        deadline = start + max_seconds
        await asyncio.gather(*(caller(channels[i % count]) for i in range(concurrency)))
    finally:
        await asyncio.gather(*(c.close() for c in channels))
    elapsed = done_at - start
    lat_ms = sorted(x * 1000 for x in latencies)
    completed = sum(codes.values())
    return LoadResult(
        concurrency=concurrency, sent=sent, completed=completed,
        non_2xx=completed - codes["OK"], failures=0, elapsed_s=elapsed,
        rps=completed / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(lat_ms, 50), p90_ms=percentile(lat_ms, 90),
        p99_ms=percentile(lat_ms, 99),
        mean_ms=sum(lat_ms) / len(lat_ms) if lat_ms else float("nan"),
        max_ms=lat_ms[-1] if lat_ms else float("nan"),
        statuses={}, error_samples=samples, timed_out=sent < total, latencies_ms=lat_ms,
    )


def grpc_sync(target: str, request: bytes, concurrency: int, total: int,
              max_seconds: float, connections: int = 1) -> LoadResult:
    coro = run_grpc_load(target, request, concurrency, total, max_seconds, connections)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU time so far of one process, or of one of its threads (Linux /proc)."""
    where = f"/proc/{pid}" if tid is None else f"/proc/{pid}/task/{tid}"
    fields = Path(f"{where}/stat").read_text().rsplit(")", 1)[-1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    """One load run and the CPU microseconds per completed request it cost: the server's
    whole front process, its event-loop (main) thread alone, and this client process."""

    result: LoadResult
    front_us: float
    loop_us: float
    client_us: float


def measured(pid: int, run: Callable[[], LoadResult]) -> Sample:
    me = os.getpid()
    before = (cpu_seconds(pid), cpu_seconds(pid, pid), cpu_seconds(me))
    result = run()
    after = (cpu_seconds(pid), cpu_seconds(pid, pid), cpu_seconds(me))
    per = [(a - b) * 1e6 / result.completed if result.completed else float("nan")
           for a, b in zip(after, before, strict=True)]
    return Sample(result, *per)


def medians(runs: list[Sample]) -> tuple[float, float, float, float, float]:
    """Median req/s, p50 ms, front µs/req, loop µs/req and client µs/req over rounds."""
    return (statistics.median(s.result.rps for s in runs),
            statistics.median(s.result.p50_ms for s in runs),
            statistics.median(s.front_us for s in runs),
            statistics.median(s.loop_us for s in runs),
            statistics.median(s.client_us for s in runs))


def bench(case: ModelCase, tmp: Path, store: Path, args: argparse.Namespace,
          concurrencies: list[int]) -> tuple[list[list[str]], list[str]]:
    ports = free_ports(5)
    config = tmp / "config.properties"
    write_config(config, store, ports, case, args.batch_size, args.max_batch_delay,
                 args.workers)
    with config.open("a") as fh:
        fh.write("enable_grpc=true\n")  # later keys win
    cmd = [*torchwire_command(), "start", "--foreground", "--model-store", str(store),
           "--models", f"{case.name}={case.archive.name}", "--ts-config", str(config),
           "--log-location", str(tmp / "logs")]
    port, target = ports[0], f"{HOST}:{ports[3]}"
    path = f"/predictions/{case.name}"
    request = predictions_request(case.name, case.body)
    rows: list[list[str]] = []
    notes: list[str] = []
    with running_server(cmd, tmp / "server.out") as server:
        server.wait_ready(port, START_TIMEOUT)
        status, answer = http_post(port, path, case.body, case.content_type)
        notes.append(f"sample answer: {status} {answer[:120].decode('utf-8', 'replace')}")
        run_sync(HOST, port, path, case.body, case.content_type, 16, case.warmup, 10)
        grpc_sync(target, request, 16, case.warmup, 10)
        for c in concurrencies:
            rest: list[Sample] = []
            rpc: list[Sample] = []
            assert server.proc is not None
            pid = server.proc.pid
            for _ in range(args.rounds):
                rest.append(measured(pid, lambda c=c: run_sync(
                    HOST, port, path, case.body, case.content_type, c, case.requests,
                    args.max_seconds)))
                rpc.append(measured(pid, lambda c=c: grpc_sync(
                    target, request, c, case.requests, args.max_seconds, args.grpc_channels)))
            r_rps, r_p50, r_cpu, r_loop, r_client = medians(rest)
            g_rps, g_p50, g_cpu, g_loop, g_client = medians(rpc)
            errors = sum(x.result.errors for x in rest + rpc)
            rows.append([str(c), fmt(r_rps), fmt(r_p50, 2), fmt(r_cpu, 0), fmt(r_loop, 0),
                         fmt(r_client, 0), fmt(g_rps), fmt(g_p50, 2), fmt(g_cpu, 0),
                         fmt(g_loop, 0), fmt(g_client, 0),
                         fmt(g_rps / r_rps if r_rps else float("nan"), 2), str(errors)])
            print(f"  c={c}: REST {r_rps:.1f} req/s, gRPC {g_rps:.1f} req/s", flush=True)
            for x in (s.result for s in rest + rpc):
                if x.errors:
                    notes.append(f"c={c}: errors {x.statuses or ''} {x.error_samples}")
    return rows, notes


def print_rows(title: str, headers: list[str], rows: list[list[str]]) -> None:
    """A title line, then right-aligned columns under a rule."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print()
    print(title)
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def print_table(rows: list[list[str]], args: argparse.Namespace, notes: list[str]) -> None:
    headers = ["conc", "REST req/s", "p50 ms", "front µs", "loop µs", "client µs",
               "gRPC req/s", "p50 ms", "front µs", "loop µs", "client µs", "gRPC/REST",
               "errors"]
    print_rows(f"torchwire REST vs gRPC, digits: {os.cpu_count()} CPU(s), loadavg before run "
               f"{args.loadavg}, clients on {loop_name()}, batch size {args.batch_size}, "
               f"max_batch_delay {args.max_batch_delay} ms, {args.workers} worker(s), "
               f"median of {args.rounds} round(s)", headers, rows)
    for note in notes:
        print(f"note: {note}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1500, help="per protocol, per round")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-batch-delay", type=int, default=5, help="milliseconds")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="alternating REST/gRPC rounds")
    ap.add_argument("--grpc-channels", type=int, default=1,
                    help="gRPC connections the callers share (default 1, as gRPC clients "
                         "multiplex; 0: one per caller, like the REST side's connections)")
    ap.add_argument("--max-seconds", type=float, default=15.0, help="cap per load run")
    args = ap.parse_args(argv)
    args.loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    concurrencies = sorted({int(c) for c in args.concurrency.split(",") if c.strip()})
    tmp = Path(tempfile.mkdtemp(prefix="torchwire-bench-grpc-"))
    try:
        store = tmp / "store"
        store.mkdir()
        notes: list[str] = []
        (case,) = prepare_cases(["digits"], store, args.requests, notes)
        rows, more = bench(case, tmp, store, args, concurrencies)
        print_table(rows, args, notes + more)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
