"""Soak: mixed models, a few bad inputs, steady concurrency, for N minutes.

Builds the digits (PNG images) and news (text) examples, starts a real
``torchwire start --foreground`` serving both, and keeps ``-c`` clients busy for
``--minutes``: each request goes to a random model, and ``--bad-fraction`` of them
carry an input the model must refuse with a 4xx (bytes that are not an image,
text that is not UTF-8, JSON nested 1,000 deep). Every ``--window`` seconds it
prints one row: requests, answered as expected, unexpected statuses, lost
requests (no answer at all), p50 and p99. It prints the front's and the workers'
resident memory and open descriptors after warm-up and at the end.

It exits 1 when any request was lost or answered unexpectedly (a good input not
200, a bad one not 4xx), or when the front or the workers grew by more than
``--max-rss-growth-mb`` / ``--max-fd-growth``; else 0.

    .venv/bin/python benchmarks/soak.py --minutes 5            # the issue-15 soak
    .venv/bin/python benchmarks/soak.py --minutes 0.5 --window 10   # a quick check
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_http import (
    HOST,
    START_TIMEOUT,
    build_example,
    children_of,
    free_ports,
    is_worker,
    running_server,
    torchwire_command,
)
from loadgen import percentile

MODELS = ("digits", "news")
DEEP_JSON = b"[" * 1000 + b"]" * 1000


@dataclass(frozen=True)
class Target:
    name: str
    body: bytes
    content_type: str
    bad: tuple[tuple[bytes, str], ...]  # inputs this model must refuse with a 4xx


@dataclass(frozen=True)
class Sample:
    at: float  # s since the soak began
    bad: bool
    status: int  # 0: no answer (lost)
    ms: float

    @property
    def expected(self) -> bool:
        return 400 <= self.status < 500 if self.bad else self.status == 200


@dataclass
class Usage:
    front_rss_mb: float = 0.0
    front_fds: int = 0
    workers: int = 0
    workers_rss_mb: float = 0.0
    workers_fds: int = 0


@dataclass
class Soak:
    samples: list[Sample] = field(default_factory=list)
    start: Usage = field(default_factory=Usage)
    end: Usage = field(default_factory=Usage)


# --------------------------------------------------------------------------- setup


def targets(store: Path) -> list[Target]:
    png = sorted((store / "samples" / "digits").glob("*.png"))[0].read_bytes()
    text = sorted((store / "samples" / "news").glob("*.txt"))[0].read_bytes()
    deep = (DEEP_JSON, "application/json")
    return [Target("digits", png, "image/png", ((b"not a png at all", "image/png"), deep)),
            Target("news", text, "text/plain", ((b"\xff\xfe\xfa caf\xe9", "text/plain"), deep))]


def write_config(path: Path, store: Path, ports: list[int], workers: int) -> None:
    lines = [f"inference_address=http://{HOST}:{ports[0]}",
             f"management_address=http://{HOST}:{ports[1]}",
             f"metrics_address=http://{HOST}:{ports[2]}",
             "enable_grpc=false", "disable_token_authorization=true",
             f"model_store={store}", f"default_workers_per_model={workers}",
             "batch_size=8", "max_batch_delay=5"]
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- load


def client(port: int, choices: list[Target], bad_fraction: float, seed: int, began: float,
           until: float, out: list[Sample]) -> None:
    rng = random.Random(seed)
    conn: http.client.HTTPConnection | None = None
    while time.monotonic() < until:
        target = rng.choice(choices)
        bad = rng.random() < bad_fraction
        body, ctype = rng.choice(target.bad) if bad else (target.body, target.content_type)
        t0 = time.monotonic()
        try:
            conn = conn or http.client.HTTPConnection(HOST, port, timeout=60)
            conn.request("POST", f"/predictions/{target.name}", body=body,
                         headers={"Content-Type": ctype})
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            status = 0
            if conn is not None:
                conn.close()
            conn = None
        out.append(Sample(t0 - began, bad, status, (time.monotonic() - t0) * 1000))
    if conn is not None:
        conn.close()


def drive(port: int, choices: list[Target], args: argparse.Namespace) -> list[Sample]:
    samples: list[Sample] = []
    began = time.monotonic()
    until = began + args.minutes * 60
    threads = [threading.Thread(target=client, daemon=True,
                                args=(port, choices, args.bad_fraction, args.seed + i, began,
                                      until, samples))
               for i in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples


def warm_up(port: int, choices: list[Target]) -> None:
    for target in choices:
        for _ in range(20):
            conn = http.client.HTTPConnection(HOST, port, timeout=60)
            conn.request("POST", f"/predictions/{target.name}", body=target.body,
                         headers={"Content-Type": target.content_type})
            conn.getresponse().read()
            conn.close()


# --------------------------------------------------------------------------- resources


def rss_mb(pid: int) -> float:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def usage(front: int) -> Usage:
    workers = [p for p in children_of(front) if is_worker(p)]
    return Usage(rss_mb(front), fds(front), len(workers), sum(rss_mb(p) for p in workers),
                 sum(fds(p) for p in workers))


# --------------------------------------------------------------------------- report


def window_rows(samples: list[Sample], window: float) -> list[str]:
    rows = [f"{'window':>9} {'requests':>9} {'bad sent':>9} {'expected':>9} "
            f"{'unexpected':>10} {'lost':>5} {'p50 ms':>8} {'p99 ms':>8}"]
    last = int(max((s.at for s in samples), default=0) // window)
    for w in range(last + 1):
        part = [s for s in samples if int(s.at // window) == w]
        answered = sorted(s.ms for s in part if s.status)
        rows.append(
            f"{f'{w * window:g}-{(w + 1) * window:g}s':>9} {len(part):>9} "
            f"{sum(s.bad for s in part):>9} {sum(s.expected for s in part):>9} "
            f"{sum(bool(s.status) and not s.expected for s in part):>10} "
            f"{sum(not s.status for s in part):>5} {percentile(answered, 50):>8.1f} "
            f"{percentile(answered, 99):>8.1f}")
    return rows


def usage_rows(soak: Soak) -> list[str]:
    rows = [f"{'':>6} {'front RSS MB':>12} {'front fds':>9} {'workers':>7} "
            f"{'workers RSS MB':>14} {'workers fds':>11}"]
    for label, u in (("start", soak.start), ("end", soak.end)):
        rows.append(f"{label:>6} {u.front_rss_mb:>12.1f} {u.front_fds:>9} {u.workers:>7} "
                    f"{u.workers_rss_mb:>14.1f} {u.workers_fds:>11}")
    return rows


def problems(soak: Soak, args: argparse.Namespace) -> list[str]:
    found: list[str] = []
    lost = sum(not s.status for s in soak.samples)
    unexpected = sum(bool(s.status) and not s.expected for s in soak.samples)
    if lost:
        found.append(f"{lost} request(s) lost (no answer)")
    if unexpected:
        found.append(f"{unexpected} request(s) answered with an unexpected status")
    a, b = soak.start, soak.end
    for what, grew, limit in (
            ("front RSS", b.front_rss_mb - a.front_rss_mb, args.max_rss_growth_mb),
            ("workers' RSS", b.workers_rss_mb - a.workers_rss_mb, args.max_rss_growth_mb),
            ("front fds", b.front_fds - a.front_fds, args.max_fd_growth),
            ("workers' fds", b.workers_fds - a.workers_fds, args.max_fd_growth)):
        if grew > limit:
            found.append(f"{what} grew by {grew:g} (limit {limit:g})")
    if b.workers != a.workers:
        found.append(f"the worker count changed from {a.workers} to {b.workers}")
    return found


# --------------------------------------------------------------------------- main


def soak(args: argparse.Namespace, tmp: Path) -> Soak:
    store = tmp / "store"
    for name in MODELS:
        build_example(name, store)
    choices = targets(store)
    ports = free_ports(3)
    config = tmp / "config.properties"
    write_config(config, store, ports, args.workers)
    cmd = [*torchwire_command(), "start", "--foreground", "--model-store", str(store),
           "--models", *(f"{m}={m}.mar" for m in MODELS), "--ts-config", str(config),
           "--log-location", str(tmp / "logs")]
    result = Soak()
    with running_server(cmd, tmp / "server.log") as server:
        server.wait_ready(ports[0], START_TIMEOUT)
        assert server.proc is not None
        warm_up(ports[0], choices)
        result.start = usage(server.proc.pid)
        print(f"soaking for {args.minutes:g} min at c={args.concurrency}, "
              f"{args.bad_fraction:.1%} bad inputs", flush=True)
        result.samples = drive(ports[0], choices, args)
        result.end = usage(server.proc.pid)
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--window", type=float, default=30.0, help="seconds per printed row")
    ap.add_argument("-c", "--concurrency", type=int, default=8)
    ap.add_argument("--bad-fraction", type=float, default=0.01)
    ap.add_argument("--workers", type=int, default=1, help="workers per model")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--max-rss-growth-mb", type=float, default=64.0)
    ap.add_argument("--max-fd-growth", type=int, default=16)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="torchwire-soak-") as scratch:
        result = soak(args, Path(scratch))
    print("\n".join(window_rows(result.samples, args.window)))
    print("\n".join(usage_rows(result)))
    found = problems(result, args)
    print("FAIL: " + "; ".join(found) if found else
          f"OK: {len(result.samples)} requests, none lost, every one answered as expected")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
