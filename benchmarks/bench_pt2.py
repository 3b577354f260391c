"""resnet18 on CPU with and without ``pt2`` (torch.compile), and the first request after
``/ping`` turns 200 with and without a ``warmup`` input.

Builds examples/resnet18 into a temporary model store and re-archives it in four
variants that differ only in model-config.yaml:

| variant     | model-config.yaml adds                                          |
|-------------|-----------------------------------------------------------------|
| eager       | nothing                                                          |
| eager+warm  | ``warmup: {file: sample.jpg, batch_sizes: [1, B]}``              |
| pt2         | ``pt2: {compile: {enable: true, backend: inductor}}``           |
| pt2+warm    | both                                                             |

Table 1 (throughput): for eager and pt2+warm, the in-process ceiling
(benchmarks/ceiling.py, in a subprocess, before any server runs) and a real
``torchwire start`` driven by the closed-loop load generator at each
concurrency; ratio = req/s over that variant's own ceiling, and pt2/eager =
the pt2 row's req/s over the eager row's.

Table 2 (first request): for each variant, ``--startups`` fresh servers: the
seconds from process start to ``/ping`` 200, the first prediction's latency
right after, and the median of the next ``--after`` sequential ones.

    .venv/bin/python benchmarks/bench_pt2.py                     # a few minutes
    .venv/bin/python benchmarks/bench_pt2.py --startups 1 --requests 60 --concurrency 1,4

Inductor compiles C++ with the system compiler on first use; its cache
(``/tmp/torchinductor_$USER``) makes later compiles of the same graph faster, so the
pt2 start-up times depend on whether an earlier run filled it (reported, not hidden).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import bench_http
import yaml
from bench_http import (
    HOST,
    START_TIMEOUT,
    ModelCase,
    build_example,
    free_ports,
    http_post,
    jpeg_body,
    run_ceiling,
    running_server,
    torchwire_command,
    write_config,
)
from loadgen import LoadResult, run_sync

PT2 = {"compile": {"enable": True, "backend": "inductor"}}


@dataclass
class Variant:
    name: str
    pt2: bool
    warm: bool
    case: ModelCase | None = None


@dataclass
class FirstRequest:
    variant: str
    ready_s: list[float] = field(default_factory=list)  # process start → /ping 200
    first_ms: list[float] = field(default_factory=list)
    rest_ms: list[float] = field(default_factory=list)  # median of the next requests, per start
    errors: list[str] = field(default_factory=list)


def variant_archive(base: Path, out_dir: Path, variant: Variant, sample: Path,
                    batch_size: int) -> Path:
    """``base`` re-archived with ``variant``'s model-config.yaml (and the warm-up image)."""
    from torchwire.archive import open_archive, read_manifest, read_model_config, write_archive

    model_dir = open_archive(base, out_dir / ".unpacked")
    manifest = read_manifest(model_dir)
    config = dict(read_model_config(model_dir, manifest))
    if variant.pt2:
        config["pt2"] = PT2
    if variant.warm:
        config["warmup"] = {"file": sample.name, "content_type": "image/jpeg",
                            "batch_sizes": sorted({1, batch_size})}
    src = out_dir / f".{variant.name}-src"
    src.mkdir(parents=True)
    (src / "model-config.yaml").write_text(yaml.safe_dump(config))
    files = {p.name: p for p in model_dir.iterdir() if p.is_file() and p.name != "MAR-INF"}
    files["model-config.yaml"] = src / "model-config.yaml"
    files[sample.name] = sample
    manifest = replace(manifest, config_file="model-config.yaml")
    return write_archive(manifest, files, out_dir / variant.name, force=True)


def server_config(path: Path, store: Path, ports: list[int], case: ModelCase,
                  args: argparse.Namespace) -> None:
    """bench_http's config.properties, with room for a compile in the start-up and response
    timeouts."""
    write_config(path, store, ports, case, args.batch_size, args.max_batch_delay, 1)
    with path.open("a") as f:
        room = int(120 + args.compile_timeout)  # pt2 without warm-up compiles in a request
        f.write(f"default_startup_timeout={room}\ndefault_response_timeout={room}\n")


def start_cmd(store: Path, archive: Path, config: Path, logs: Path) -> list[str]:
    rel = archive.relative_to(store)
    return [*torchwire_command(), "start", "--foreground", "--model-store", str(store),
            "--models", f"resnet18={rel}", "--ts-config", str(config), "--log-location",
            str(logs)]


def timed_post(port: int, case: ModelCase) -> tuple[float, int]:
    t0 = time.perf_counter()
    status, _ = http_post(port, "/predictions/resnet18", case.body, case.content_type,
                          timeout=600)
    return (time.perf_counter() - t0) * 1000, status


def first_requests(v: Variant, store: Path, tmp: Path, args: argparse.Namespace) -> FirstRequest:
    assert v.case is not None
    out = FirstRequest(v.name)
    for n in range(args.startups):
        run_dir = tmp / f"first-{v.name}-{n}"
        run_dir.mkdir()
        ports = free_ports(5)
        server_config(run_dir / "config.properties", store, ports, v.case, args)
        cmd = start_cmd(store, v.case.archive, run_dir / "config.properties", run_dir / "logs")
        with running_server(cmd, run_dir / "server.out") as server:
            out.ready_s.append(server.wait_ready(ports[0], START_TIMEOUT + args.compile_timeout))
            first, status = timed_post(ports[0], v.case)
            rest = [timed_post(ports[0], v.case) for _ in range(args.after)]
        out.first_ms.append(first)
        out.rest_ms.append(statistics.median(ms for ms, _ in rest))
        bad = [s for s in [status, *(s for _, s in rest)] if s != 200]
        if bad:
            out.errors.append(f"start {n}: statuses {bad}")
        print(f"  {v.name} start {n}: ready {out.ready_s[-1]:.1f} s, first {first:.0f} ms, "
              f"next {out.rest_ms[-1]:.0f} ms", flush=True)
    return out


def throughput(v: Variant, store: Path, tmp: Path, args: argparse.Namespace,
               ceiling: dict[int, dict[str, float]]) -> list[tuple[int, LoadResult, float]]:
    assert v.case is not None
    run_dir = tmp / f"load-{v.name}"
    run_dir.mkdir()
    ports = free_ports(5)
    server_config(run_dir / "config.properties", store, ports, v.case, args)
    rows = []
    cmd = start_cmd(store, v.case.archive, run_dir / "config.properties", run_dir / "logs")
    with running_server(cmd, run_dir / "server.out") as server:
        server.wait_ready(ports[0], START_TIMEOUT + args.compile_timeout)
        path = "/predictions/resnet18"
        run_sync(HOST, ports[0], path, v.case.body, v.case.content_type,
                 max(args.concurrency), 20, args.max_seconds)  # settle (not measured)
        for c in args.concurrency:
            result = run_sync(HOST, ports[0], path, v.case.body, v.case.content_type, c,
                              args.requests, args.max_seconds)
            ceil = ceiling[min(args.batch_size, c)]["items_per_s"]
            rows.append((c, result, ceil))
            print(f"  {v.name} c={c}: {result.rps:.1f} req/s, {result.errors} errors",
                  flush=True)
    return rows


def med(values: list[float]) -> str:
    return f"{statistics.median(values):.0f}" if values else "-"


def print_loads(loads: dict[str, list[tuple[int, LoadResult, float]]],
                args: argparse.Namespace) -> None:
    print(f"\nresnet18 on CPU, batch size {args.batch_size}, max batch delay "
          f"{args.max_batch_delay} ms, 1 worker")
    print(f"{'variant':<10} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>6} {'ceiling/s':>9} {'ratio':>6} {'pt2/eager':>9}")
    eager = {c: r.rps for c, r, _ in loads.get("eager", [])}
    for name, rows in loads.items():
        for c, r, ceil in rows:
            ratio = r.rps / ceil if ceil else float("nan")
            vs = r.rps / eager[c] if name != "eager" and eager.get(c) else float("nan")
            print(f"{name:<10} {c:>4} {r.rps:>8.1f} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f} "
                  f"{r.errors:>6} {ceil:>9.1f} {ratio:>6.2f} {vs:>9.2f}")


def print_tables(loads: dict[str, list[tuple[int, LoadResult, float]]],
                 firsts: list[FirstRequest], args: argparse.Namespace) -> None:
    if loads:
        print_loads(loads, args)
    print(f"\nfirst request after /ping 200 (median of {args.startups} start(s); "
          f"'next' = median of the following {args.after} requests)")
    print(f"{'variant':<10} {'ready s':>8} {'first ms':>9} {'next ms':>8} {'first-next':>10}  "
          "each start's first ms")
    for f in firsts:
        gap = (statistics.median(f.first_ms) - statistics.median(f.rest_ms)
               if f.first_ms else float("nan"))
        ready = f"{statistics.median(f.ready_s):.1f}" if f.ready_s else "-"
        each = ", ".join(f"{ms:.0f}" for ms in f.first_ms)
        print(f"{f.variant:<10} {ready:>8} {med(f.first_ms):>9} {med(f.rest_ms):>8} "
              f"{gap:>10.0f}  {each}")
        for e in f.errors:
            print(f"  {f.variant}: {e}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-batch-delay", type=int, default=5)
    ap.add_argument("--concurrency", default="1,8", help="comma-separated levels")
    ap.add_argument("--requests", type=int, default=200, help="per concurrency level")
    ap.add_argument("--max-seconds", type=float, default=30.0, help="cap per load run")
    ap.add_argument("--ceiling-seconds", type=float, default=3.0)
    ap.add_argument("--startups", type=int, default=3, help="fresh servers per variant")
    ap.add_argument("--after", type=int, default=10, help="requests timed after the first")
    ap.add_argument("--compile-timeout", type=float, default=600.0,
                    help="extra seconds a pt2 start may take (inductor on a cold cache)")
    ap.add_argument("--skip-load", action="store_true", help="only the first-request table")
    args = ap.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    return args


def prepare(tmp: Path, args: argparse.Namespace) -> tuple[Path, list[Variant]]:
    store = tmp / "store"
    store.mkdir()
    build_example("resnet18", store)
    sample = tmp / "sample.jpg"
    sample.write_bytes(jpeg_body())
    variants = [Variant("eager", False, False), Variant("eager+warm", False, True),
                Variant("pt2", True, False), Variant("pt2+warm", True, True)]
    for v in variants:
        archive = variant_archive(store / "resnet18.mar", store, v, sample, args.batch_size)
        v.case = ModelCase("resnet18", archive, sample.read_bytes(), "image/jpeg", sample,
                           args.requests, 0)
    return store, variants


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench_http.CEILING_TIMEOUT += args.compile_timeout  # the pt2 ceiling compiles at load
    with tempfile.TemporaryDirectory(prefix="torchwire-bench-pt2-") as name:
        tmp = Path(name)
        store, variants = prepare(tmp, args)
        by_name = {v.name: v for v in variants}
        loads: dict[str, list[tuple[int, LoadResult, float]]] = {}
        if not args.skip_load:
            sizes = sorted({1} | {min(args.batch_size, c) for c in args.concurrency})
            for key in ("eager", "pt2+warm"):
                case = by_name[key].case
                assert case is not None
                ceiling = run_ceiling(case, sizes, args.batch_size, args.max_batch_delay, 1,
                                      args.ceiling_seconds)
                print("  ceiling items/s: " + ", ".join(
                    f"bs {bs}: {r['items_per_s']:.1f}" for bs, r in sorted(ceiling.items())),
                    flush=True)
                loads[key] = throughput(by_name[key], store, tmp, args, ceiling)
        firsts = [first_requests(v, store, tmp, args) for v in variants]
        print_tables(loads, firsts, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
