"""End-to-end HTTP benchmark of a real ``torchwire start`` against the in-process ceiling.

For each model: build its example archive into a temporary model store, measure
the in-process ceiling (benchmarks/ceiling.py, in a subprocess, before the server
runs), start ``torchwire start --foreground`` on free 127.0.0.1 ports with the
batch settings in config.properties' ``models`` key, wait for ``GET /ping`` to
answer 200, warm up, then drive ``POST /predictions/<model>`` with the closed-loop
load generator at each concurrency and print one table. Every server started here
is stopped (its process group and its workers) before the script exits.

    .venv/bin/python benchmarks/bench_http.py --models digits
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from loadgen import LoadResult, loop_name, run_sync

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EXAMPLES = ROOT / "examples"
HOST = "127.0.0.1"
CONCURRENCIES = (1, 4, 16)
BUILD_TIMEOUT = 600.0  # s, per example build
CEILING_TIMEOUT = 180.0  # s, per model
START_TIMEOUT = 180.0  # s, process start to /ping 200
STOP_TIMEOUT = 30.0  # s, SIGTERM to exit before SIGKILL


@dataclass
class ModelCase:
    name: str
    archive: Path
    body: bytes
    content_type: str
    body_file: Path
    requests: int  # per concurrency level
    warmup: int
    version: str = "1.0"


@dataclass
class Row:
    model: str
    concurrency: int
    batch_size: int
    load: LoadResult
    ceiling_bs: int
    ceiling_items_s: float

    @property
    def ratio(self) -> float:
        return self.load.rps / self.ceiling_items_s if self.ceiling_items_s > 0 else float("nan")


@dataclass
class ModelReport:
    case: ModelCase
    rows: list[Row] = field(default_factory=list)
    startup_s: float = float("nan")
    shutdown_s: float = float("nan")
    ceiling: dict[int, dict[str, float]] = field(default_factory=dict)
    sample_answer: str = ""
    workers_seen: int = 0  # worker processes found under the server
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- building


def python() -> str:
    return sys.executable


def torchwire_command() -> list[str]:
    exe = Path(sys.executable).parent / "torchwire"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torchwire"]


def build_example(name: str, out: Path) -> None:
    script = EXAMPLES / name / "build.py"
    print(f"building {name}: {script.relative_to(ROOT)} --out {out}", flush=True)
    proc = subprocess.run([python(), str(script), "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
    for line in proc.stdout.strip().splitlines()[-2:]:
        print(f"  {line}")


def manifest_of(archive: Path, scratch: Path) -> tuple[str, str]:
    from torchwire.archive import open_archive, read_manifest

    manifest = read_manifest(open_archive(archive, scratch))
    return manifest.model_name, manifest.model_version


def jpeg_body(width: int = 320, height: int = 240) -> bytes:
    """A deterministic JPEG: gradients in red and blue, noise in green."""
    from PIL import Image

    red = Image.linear_gradient("L").resize((width, height))
    blue = red.transpose(Image.Transpose.ROTATE_90).resize((width, height))
    green = Image.effect_noise((width, height), 60)
    buf = io.BytesIO()
    Image.merge("RGB", (red, green, blue)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def prepare_cases(names: list[str], store: Path, requests: int | None,
                  notes: list[str]) -> list[ModelCase]:
    cases: list[ModelCase] = []
    scratch = store.parent / "manifests"
    for name in names:
        if name == "digits":
            build_example("digits", store)
            samples = sorted((store / "samples" / "digits").glob("*.png"))
            if not samples:
                raise RuntimeError(f"examples/digits/build.py wrote no PNG samples in {store}")
            case = ModelCase("digits", store / "digits.mar", samples[0].read_bytes(),
                             "image/png", samples[0], requests or 1500, 200)
        elif name == "resnet18":
            if not (EXAMPLES / "resnet18" / "build.py").exists():
                notes.append("resnet18 skipped: examples/resnet18/build.py does not exist")
                continue
            try:
                build_example("resnet18", store)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                notes.append(f"resnet18 skipped: its build failed: {exc}")
                continue
            body_file = store.parent / "resnet18-input.jpg"
            body_file.write_bytes(jpeg_body())
            case = ModelCase("resnet18", store / "resnet18.mar", body_file.read_bytes(),
                             "image/jpeg", body_file, requests or 300, 20)
        else:
            raise SystemExit(f"unknown model {name!r}; expected digits and/or resnet18")
        if not case.archive.exists():
            notes.append(f"{name} skipped: the build did not write {case.archive}")
            continue
        model_name, case.version = manifest_of(case.archive, scratch)
        if model_name != case.name:
            notes.append(f"{name}: the archive's manifest names the model {model_name!r}; "
                         f"it is served as {case.name!r}")
        cases.append(case)
    return cases


# --------------------------------------------------------------------------- ceiling


def run_ceiling(case: ModelCase, batch_sizes: list[int], batch_size: int, delay: int,
                workers: int, seconds: float) -> dict[int, dict[str, float]]:
    cmd = [python(), str(HERE / "ceiling.py"), str(case.archive), "--body", str(case.body_file),
           "--content-type", case.content_type,
           "--batch-sizes", ",".join(map(str, batch_sizes)),
           "--configured-batch-size", str(batch_size), "--max-batch-delay", str(delay),
           "--workers", str(workers), "--max-seconds", str(seconds),
           "--name", case.name, "--json"]
    print(f"ceiling for {case.name}: batch sizes {batch_sizes}, {seconds:g} s each", flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          timeout=CEILING_TIMEOUT, start_new_session=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ceiling.py failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return {r["batch_size"]: r for r in results}


def ceiling_for(case: ModelCase, args: argparse.Namespace,
                concurrencies: tuple[int, ...]) -> dict[int, dict[str, float]]:
    """The in-process ceiling at batch 1 and at each batch the concurrencies can form."""
    bs = args.batch_size
    sizes = sorted({1} | {min(bs, c) for c in concurrencies})
    return run_ceiling(case, sizes, bs, args.max_batch_delay, args.workers, args.ceiling_seconds)


# --------------------------------------------------------------------------- the server


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write_config(path: Path, store: Path, ports: list[int], case: ModelCase,
                 batch_size: int, delay: int, workers: int, policy: str = "adaptive") -> None:
    models = {case.name: {case.version: {
        "batchSize": batch_size, "maxBatchDelay": delay, "batchPolicy": policy,
        "minWorkers": workers, "maxWorkers": workers,
    }}}
    lines = [
        f"inference_address=http://{HOST}:{ports[0]}",
        f"management_address=http://{HOST}:{ports[1]}",
        f"metrics_address=http://{HOST}:{ports[2]}",
        f"grpc_inference_port={ports[3]}",
        f"grpc_management_port={ports[4]}",
        "enable_grpc=false",
        "disable_token_authorization=true",
        f"model_store={store}",
        f"default_workers_per_model={workers}",
        f"models={json.dumps(models)}",
    ]
    path.write_text("\n".join(lines) + "\n")


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def http_post(port: int, path: str, body: bytes, content_type: str,
              timeout: float = 30.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (the server's workers run in their own sessions)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            kids.append(int(entry.name))
    return kids


def is_worker(pid: int) -> bool:
    try:
        return b"torchwire.workers.child" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class ServerProcess:
    """``torchwire start --foreground`` in its own process group, always stopped."""

    def __init__(self, cmd: list[str], log_file: Path) -> None:
        self.cmd = cmd
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.workers: set[int] = set()
        self.stop_elapsed = float("nan")  # SIGTERM to exit, once stopped

    def start(self) -> None:
        with self.log_file.open("ab") as out:
            self.started_at = time.perf_counter()
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def note_workers(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.workers.update(p for p in children_of(self.proc.pid) if is_worker(p))

    def wait_ready(self, port: int, timeout: float) -> float:
        """Poll ``GET /ping`` until 200; seconds from process start to that answer."""
        assert self.proc is not None
        deadline = time.perf_counter() + timeout
        last = "no answer yet"
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited during startup (code "
                                   f"{self.proc.returncode})\n{self.log_tail()}")
            try:
                status, body = http_get(port, "/ping", timeout=1.0)
                if status == 200:
                    elapsed = time.perf_counter() - self.started_at
                    self.note_workers()
                    return elapsed
                last = f"{status} {body[:200]!r}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.05)
        raise RuntimeError(f"GET /ping did not answer 200 within {timeout:g} s (last: {last})"
                           f"\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM the group, SIGKILL after STOP_TIMEOUT; then make sure no worker is left."""
        if self.proc is None:
            return
        self.note_workers()
        t0 = time.perf_counter()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
                self.stop_elapsed = time.perf_counter() - t0
            except subprocess.TimeoutExpired:
                print(f"  the server did not stop in {STOP_TIMEOUT:g} s; killing it", flush=True)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything left in the group
        self._reap_workers()

    def _reap_workers(self) -> None:
        deadline = time.perf_counter() + 5.0
        left = {p for p in self.workers if is_worker(p)}
        while left and time.perf_counter() < deadline:
            time.sleep(0.1)
            left = {p for p in left if is_worker(p)}
        for pid in left:
            print(f"  worker {pid} outlived the server; killing it", flush=True)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@contextlib.contextmanager
def running_server(cmd: list[str], log_file: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(cmd, log_file)
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- a model's run


def bench_model(case: ModelCase, tmp: Path, store: Path, args: argparse.Namespace,
                concurrencies: tuple[int, ...],
                ceiling: dict[int, dict[str, float]] | None = None) -> ModelReport:
    """One server run; ``ceiling`` (from :func:`ceiling_for`) is measured when not given."""
    report = ModelReport(case)
    bs, delay, workers = args.batch_size, args.max_batch_delay, args.workers
    report.ceiling = ceiling or ceiling_for(case, args, concurrencies)
    for r in report.ceiling.values():
        if r["failed_items"]:
            report.notes.append(f"{case.name}: the ceiling had {r['failed_items']} failed items "
                                f"at batch size {r['batch_size']}: {r['first_error']}")
    ports = free_ports(5)
    run_dir = tmp / f"run-{case.name}-{args.batch_policy}"
    run_dir.mkdir()
    config = run_dir / "config.properties"
    write_config(config, store, ports, case, bs, delay, workers, args.batch_policy)
    cmd = [*torchwire_command(), "start", "--foreground", "--model-store", str(store),
           "--models", f"{case.name}={case.archive.name}", "--ts-config", str(config),
           "--log-location", str(run_dir / "logs")]
    port = ports[0]
    path = f"/predictions/{case.name}"
    print(f"starting: {' '.join(cmd)}", flush=True)
    with running_server(cmd, run_dir / "server.out") as server:
        report.startup_s = server.wait_ready(port, START_TIMEOUT)
        print(f"  /ping 200 after {report.startup_s:.2f} s", flush=True)
        status, answer = http_post(port, path, case.body, case.content_type)
        report.sample_answer = f"{status} {answer[:160].decode('utf-8', 'replace')}"
        if status != 200:
            report.notes.append(f"{case.name}: the first prediction answered "
                                f"{report.sample_answer}")
        warm = run_sync(HOST, port, path, case.body, case.content_type, max(concurrencies),
                        case.warmup, args.max_seconds)
        print(f"  warm-up: {warm.completed} requests, {warm.errors} errors", flush=True)
        for c in concurrencies:
            result = run_sync(HOST, port, path, case.body, case.content_type, c,
                              case.requests, args.max_seconds)
            cb = min(bs, c)
            ceiling = report.ceiling[cb]["items_per_s"] * workers
            report.rows.append(Row(case.name, c, bs, result, cb, ceiling))
            print(f"  c={c}: {result.completed} requests in {result.elapsed_s:.1f} s, "
                  f"{result.rps:.1f} req/s, {result.errors} errors", flush=True)
            if result.errors:
                samples = "; ".join(f"{k}: {v}" for k, v in result.error_samples.items())
                report.notes.append(f"{case.name} c={c}: statuses {result.statuses}, "
                                    f"failures {result.failures}: {samples[:400]}")
            if result.timed_out:
                report.notes.append(f"{case.name} c={c}: the {args.max_seconds:g} s cap stopped "
                                    f"it after {result.sent} of {case.requests} requests")
        server.note_workers()
        report.workers_seen = len(server.workers)
        if report.workers_seen != workers:
            report.notes.append(f"{case.name}: asked for {workers} worker(s), found "
                                f"{report.workers_seen} worker process(es) under the server")
        if server.proc is not None and server.proc.poll() is not None:
            report.notes.append(f"{case.name}: the server exited during the run "
                                f"(code {server.proc.returncode})")
    report.shutdown_s = server.stop_elapsed
    return report


# --------------------------------------------------------------------------- output


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"  # NaN -> "-"


def print_report(reports: list[ModelReport], args: argparse.Namespace,
                 notes: list[str]) -> None:
    headers = ["model", "conc", "batch", "req/s", "p50 ms", "p99 ms", "errors",
               "ceil bs", "ceiling items/s", "ratio"]
    table = [
        [r.model, str(r.concurrency), str(r.batch_size), fmt(r.load.rps), fmt(r.load.p50_ms, 2),
         fmt(r.load.p99_ms, 2), str(r.load.errors), str(r.ceiling_bs), fmt(r.ceiling_items_s),
         fmt(r.ratio, 2)]
        for rep in reports for r in rep.rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h)
              for i, h in enumerate(headers)]
    print()
    print(f"torchwire HTTP benchmark: {os.cpu_count()} CPU(s), loadavg before run "
          f"{args.loadavg}, load generator on {loop_name()}, {args.workers} worker(s), "
          f"max_batch_delay {args.max_batch_delay} ms, batch policy {args.batch_policy}")
    line = "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in
                     enumerate(zip(headers, widths, strict=True)))
    print(line)
    print("-" * len(line))
    for row in table:
        print("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in
                        enumerate(zip(row, widths, strict=True))))
    print()
    for rep in reports:
        name = rep.case.name
        c1 = next((r for r in rep.rows if r.concurrency == 1), None)
        one = rep.ceiling.get(1)
        if c1 is not None and one is not None:
            overhead = c1.load.p50_ms - one["batch_p50_ms"]
            waiting = (f"; includes up to max_batch_delay={args.max_batch_delay} ms of "
                       f"waiting for a batch to fill" if args.batch_size > 1
                       and args.batch_policy == "torchserve" else "")
            print(f"{name}: server overhead p50 at c=1: {overhead:.2f} ms "
                  f"(server p50 {c1.load.p50_ms:.2f} ms - ceiling batch-of-1 p50 "
                  f"{one['batch_p50_ms']:.3f} ms{waiting})")
        print(f"{name}: startup {fmt(rep.startup_s, 2)} s (process start to first 200 /ping); "
              f"stop {fmt(rep.shutdown_s, 2)} s (SIGTERM to exit); "
              f"{rep.workers_seen} worker process(es)")
        ceil = "; ".join(f"bs {bs}: {fmt(r['items_per_s'])} items/s at the median batch "
                         f"time ({fmt(r['loop_items_per_s'])} over the whole loop), p50 "
                         f"{fmt(r['batch_p50_ms'], 3)} ms/batch, p99 "
                         f"{fmt(r['batch_p99_ms'], 3)} ms/batch"
                         for bs, r in sorted(rep.ceiling.items()))
        threads = next(iter(rep.ceiling.values()))["threads"] if rep.ceiling else "?"
        print(f"{name}: ceiling ({threads} torch thread(s)"
              f"{f', x{args.workers} workers in the table' if args.workers > 1 else ''}): {ceil}")
        print(f"{name}: sample answer: {rep.sample_answer}")
    for note in [*notes, *(n for rep in reports for n in rep.notes)]:
        print(f"note: {note}")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="digits,resnet18",
                    help="comma-separated: digits, resnet18 (default: both)")
    ap.add_argument("--requests", type=int, default=None,
                    help="requests per concurrency level (default: digits 1500, resnet18 300)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-batch-delay", type=int, default=5, help="milliseconds")
    ap.add_argument("--workers", type=int, default=1, help="workers per model")
    ap.add_argument("--batch-policy", choices=("adaptive", "torchserve"), default="adaptive",
                    help="batchPolicy per model (default adaptive; torchserve: a short batch "
                         "always waits max_batch_delay)")
    ap.add_argument("--concurrency", default=",".join(map(str, CONCURRENCIES)),
                    help="comma-separated concurrency levels (default: 1,4,16)")
    ap.add_argument("--max-seconds", type=float, default=15.0,
                    help="wall-time cap per load run (default: 15)")
    ap.add_argument("--ceiling-seconds", type=float, default=2.0,
                    help="timed in-process loop per batch size (default: 2)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, store)")
    args = ap.parse_args(argv)
    if args.batch_size < 1 or args.workers < 1 or args.max_batch_delay < 0:
        ap.error("--batch-size and --workers must be >= 1, --max-batch-delay >= 0")
    if args.requests is not None and args.requests < 1:
        ap.error("--requests must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    concurrencies = tuple(sorted({int(c) for c in args.concurrency.split(",") if c.strip()}))
    if not concurrencies or min(concurrencies) < 1:
        raise SystemExit("--concurrency needs positive integers")
    notes: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="torchwire-bench-"))
    reports: list[ModelReport] = []
    failed = False
    try:
        store = tmp / "store"
        store.mkdir()
        cases = prepare_cases(names, store, args.requests, notes)
        for case in cases:
            try:
                reports.append(bench_model(case, tmp, store, args, concurrencies))
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                failed = True
                notes.append(f"{case.name} failed: {exc}")
                print(f"{case.name} failed: {exc}", file=sys.stderr, flush=True)
        print_report(reports, args, notes)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if reports and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
