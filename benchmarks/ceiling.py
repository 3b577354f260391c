"""The in-process ceiling: the model's handler run in a plain Python loop, no server.

Loads an archive exactly as a torchwire worker does (``torchwire.workers.child.load``
with the same ``WorkerSpec`` fields and the same torch thread settings), then calls
``Worker.run(Batch(...))`` back to back with batches built the way the HTTP layer
builds them (one ``Param("body", body_bytes, content_type)`` per request). What
this measures is the handler alone: decode, preprocess, inference, postprocess and
the JSON encoding of each answer. Whatever the server adds on top (HTTP, the batcher,
pickling to the worker and back) is the difference between this and bench_http.

    python benchmarks/ceiling.py model_store/digits.mar \\
        --body model_store/samples/digits/000_label2.png --content-type image/png \\
        --batch-sizes 1,4,16
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loadgen import percentile, request_headers

if TYPE_CHECKING:
    from torchwire.protocol import Batch
    from torchwire.workers.child import Worker

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def server_threads(workers: int = 1) -> int:
    """Torch threads per worker, as the server picks them (all cores for one worker)."""
    cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers))


def set_thread_env(threads: int) -> None:
    """The environment the server gives a worker; takes effect if torch is not imported yet."""
    for key in THREAD_VARS:
        os.environ[key] = str(threads)


@dataclass
class CeilingResult:
    batch_size: int
    batches: int  # timed batches
    items_per_s: float  # batch_size / median batch time: robust to other processes' noise
    loop_items_per_s: float  # batch_size * batches / elapsed of the whole timed loop
    batch_p50_ms: float
    batch_p99_ms: float
    batch_mean_ms: float
    failed_items: int  # outcomes with a status other than 2xx
    threads: int
    first_error: str = ""


def load_worker(
    archive: Path,
    work_dir: Path,
    batch_size: int,
    max_batch_delay: int = 100,
    threads: int | None = None,
    name: str | None = None,
) -> Worker:
    """Unpack ``archive`` under ``work_dir`` and load its handler as a worker would."""
    from torchwire.archive import open_archive, read_manifest, read_model_config
    from torchwire.protocol import WorkerSpec
    from torchwire.workers.child import load

    model_dir = open_archive(archive, work_dir)
    manifest = read_manifest(model_dir)
    if name and name != manifest.model_name:
        from dataclasses import replace

        manifest = replace(manifest, model_name=name)
    spec = WorkerSpec(
        model_name=manifest.model_name,
        model_version=manifest.model_version,
        model_dir=str(model_dir),
        manifest=manifest.to_json(),
        handler=manifest.handler,
        batch_size=batch_size,
        max_batch_delay=max_batch_delay,
        gpu_id=None,
        threads=server_threads() if threads is None else threads,
        model_yaml_config=read_model_config(model_dir, manifest),
    )
    return load(spec)


def make_batches(body: bytes, content_type: str, batch_size: int, count: int,
                 path: str = "/predictions/model") -> list[Batch]:
    """``count`` batches of ``batch_size`` requests, as the HTTP layer would build them."""
    from torchwire.protocol import Batch, Item, Param

    headers = {k.lower(): v for k, v in request_headers("127.0.0.1", 8080, content_type,
                                                         len(body))}
    param = Param("body", body, content_type)
    return [
        Batch(b + 1, tuple(Item(uuid.uuid4().hex, (param,), dict(headers))
                           for _ in range(batch_size)))
        for b in range(count)
    ]


def measure(worker: Worker, body: bytes, content_type: str, batch_size: int,
            max_batches: int = 2000, max_seconds: float = 3.0, warmup: int = 3,
            min_batches: int = 3) -> CeilingResult:
    """Run batches back to back for ``max_seconds`` (at least ``min_batches`` of them)."""
    import torch

    batches = make_batches(body, content_type, batch_size, 8)
    failed = 0
    first_error = ""
    for i in range(warmup):
        worker.run(batches[i % len(batches)])
    times: list[float] = []
    start = time.perf_counter()
    deadline = start + max_seconds
    while len(times) < max_batches and (len(times) < min_batches
                                        or time.perf_counter() < deadline):
        batch = batches[len(times) % len(batches)]
        t0 = time.perf_counter()
        outcomes = worker.run(batch)
        times.append(time.perf_counter() - t0)
        for o in outcomes:
            if not 200 <= o.status < 300:
                failed += 1
                first_error = first_error or f"{o.status}: {o.body[:200]!r}"
    elapsed = time.perf_counter() - start
    ms = sorted(t * 1000 for t in times)
    p50 = percentile(ms, 50)
    return CeilingResult(
        batch_size=batch_size,
        batches=len(times),
        items_per_s=batch_size * 1000 / p50 if p50 > 0 else 0.0,
        loop_items_per_s=batch_size * len(times) / elapsed if elapsed > 0 else 0.0,
        batch_p50_ms=p50,
        batch_p99_ms=percentile(ms, 99),
        batch_mean_ms=sum(ms) / len(ms),
        failed_items=failed,
        threads=torch.get_num_threads(),
        first_error=first_error,
    )


def run_ceiling(archive: Path, body: bytes, content_type: str, batch_sizes: list[int],
                configured_batch_size: int, max_batch_delay: int, threads: int,
                max_seconds: float, name: str | None = None) -> list[CeilingResult]:
    work_dir = Path(tempfile.mkdtemp(prefix="torchwire-ceiling-"))
    try:
        worker = load_worker(archive, work_dir, configured_batch_size, max_batch_delay,
                             threads, name)
        return [measure(worker, body, content_type, bs, max_seconds=max_seconds)
                for bs in batch_sizes]
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("archive", type=Path, help=".mar/.tar.gz archive or unpacked model dir")
    ap.add_argument("--body", type=Path, required=True, help="request body file")
    ap.add_argument("--content-type", default="application/octet-stream")
    ap.add_argument("--batch-sizes", default="1,4,16", help="comma-separated")
    ap.add_argument("--configured-batch-size", type=int, default=None,
                    help="batch_size in the WorkerSpec/Context (default: the largest measured)")
    ap.add_argument("--max-batch-delay", type=int, default=100)
    ap.add_argument("--workers", type=int, default=1,
                    help="size threads as one of this many workers would (cores // workers)")
    ap.add_argument("--threads", type=int, default=None, help="override torch threads")
    ap.add_argument("--max-seconds", type=float, default=3.0, help="timed loop per batch size")
    ap.add_argument("--name", default=None, help="serve the model under this name")
    ap.add_argument("--json", action="store_true", help="print one JSON list on stdout")
    args = ap.parse_args(argv)
    sizes = sorted({int(s) for s in args.batch_sizes.split(",") if s.strip()})
    if not sizes or min(sizes) < 1:
        ap.error("--batch-sizes needs positive integers")
    threads = args.threads or server_threads(args.workers)
    set_thread_env(threads)  # before torch is imported, like the worker's environment
    results = run_ceiling(args.archive, args.body.read_bytes(), args.content_type, sizes,
                          args.configured_batch_size or max(sizes), args.max_batch_delay,
                          threads, args.max_seconds, args.name)
    if args.json:
        print(json.dumps([asdict(r) for r in results]))
        return 0
    print(f"in-process ceiling for {args.archive} ({threads} torch thread(s))")
    print("items/s = batch size / median batch time; loop items/s = items / loop time")
    print(f"{'batch':>5} {'batches':>8} {'items/s':>10} {'loop items/s':>12} {'p50 ms':>9} "
          f"{'p99 ms':>9} {'mean ms':>9} {'failed':>6}")
    for r in results:
        print(f"{r.batch_size:>5} {r.batches:>8} {r.items_per_s:>10.1f} "
              f"{r.loop_items_per_s:>12.1f} {r.batch_p50_ms:>9.3f} {r.batch_p99_ms:>9.3f} "
              f"{r.batch_mean_ms:>9.3f} {r.failed_items:>6}")
        if r.first_error:
            print(f"      first failure: {r.first_error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
