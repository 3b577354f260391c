"""Time and peak memory of ``torchwire archive`` (and torch-model-archiver) on large weights.

Writes a weights file of ``--size-mb`` (zeros, made sparse and instantly; or random
bytes with ``--random``, which is what real float weights compress like), then runs
each archiver once per format in a fresh parent process that reports the child's
peak RSS (``ru_maxrss``). Prints one table. Everything is written under a temporary
directory that is removed at the end.

    .venv/bin/python benchmarks/archive_write.py --size-mb 200 --random
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ("default", "zip-store", "tgz", "no-archive")
MB = 1024 * 1024
MEASURE = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[1:], check=True, stderr=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def weights(path: Path, size: int, random: bool) -> None:
    with path.open("wb") as fh:
        if not random:
            fh.truncate(size)
            return
        for _ in range(size // MB):
            fh.write(os.urandom(MB))


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of ``cmd``."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True,
                          env=env, check=True)
    return time.perf_counter() - start, int(done.stdout.split()[-1]) / 1024


def archivers() -> dict[str, list[str]]:
    tools = {"torchwire archive": [sys.executable, "-m", "torchwire", "archive"]}
    tma = Path(sys.executable).parent / "torch-model-archiver"
    if tma.exists():
        tools["torch-model-archiver"] = [str(tma)]
    return tools


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--random", action="store_true", help="random bytes instead of zeros")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="archive-bench-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}
    try:
        src = tmp / "weights.pt"
        weights(src, args.size_mb * MB, args.random)
        handler = tmp / "handler.py"
        handler.write_text("def handle(data, context):\n    return data\n")
        kind = "random" if args.random else "zeros"
        print(f"{args.size_mb} MB of {kind}; {os.cpu_count()} CPUs")
        print(f"{'archiver':<22} {'format':<11} {'seconds':>8} {'MB/s':>7} {'peak RSS MB':>12}")
        for name, tool in archivers().items():
            for fmt in FORMATS:
                out = tmp / "out"
                out.mkdir(exist_ok=True)
                cmd = [*tool, "--model-name", "bench", "--version", "1", "--handler",
                       str(handler), "--serialized-file", str(src), "--archive-format", fmt,
                       "--export-path", str(out), "--force"]
                seconds, rss = run(cmd, env)
                rate = args.size_mb / seconds
                print(f"{name:<22} {fmt:<11} {seconds:>8.2f} {rate:>7.0f} {rss:>12.1f}")
                shutil.rmtree(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
