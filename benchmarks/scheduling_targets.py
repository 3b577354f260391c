"""Issue 13's scheduling targets, measured for both batch policies in the same run.

For each model (resnet18 at batch 8 / 10 ms, digits at batch 16 / 5 ms): measure the
in-process ceiling once, then run bench_http.py's server benchmark twice on the same
archive and ceiling, once with ``batchPolicy: adaptive`` (torchwire's default: no batch
wait while a worker is idle) and once with ``batchPolicy: torchserve`` (a short batch
always waits ``maxBatchDelay``), and print each run's table and then the targets:

- resnet18 c=1: p50 <= ceiling batch-1 p50 + 2 ms
- resnet18 c=16: req/s >= 0.95 x ceiling batch-8 items/s
- digits batch 16 c=1: server overhead p50 (server p50 - ceiling batch-1 p50) <= 1 ms
- digits batch 16 c=4: req/s >= 0.5 x its c=16 req/s

    .venv/bin/python benchmarks/scheduling_targets.py            # both models, ~4 min
    .venv/bin/python benchmarks/scheduling_targets.py --short    # fewer requests, ~2 min
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench_http import ModelCase, ModelReport, bench_model, ceiling_for, prepare_cases, print_report

POLICIES = ("adaptive", "torchserve")
SETTINGS = {  # model: (batch size, max batch delay ms, concurrencies)
    "resnet18": (8, 10, (1, 16)),
    "digits": (16, 5, (1, 4, 16)),
}


@dataclass(frozen=True)
class Target:
    model: str
    kind: str  # which measurement: "c1_over_ceiling", "c16_ratio", "c4_over_c16"
    what: str
    goal: str
    bound: float
    at_most: bool  # True: measured <= bound; False: measured >= bound

    def met(self, value: float) -> str:
        if value != value:
            return "-"
        return "yes" if (value <= self.bound if self.at_most else value >= self.bound) else "NO"


TARGETS = (
    Target("resnet18", "c1_over_ceiling", "c=1 p50 - ceiling batch-1 p50 (ms)", "<= 2 ms",
           2.0, True),
    Target("resnet18", "c16_ratio", "c=16 req/s / ceiling batch-8 items/s", ">= 0.95",
           0.95, False),
    Target("digits", "c1_over_ceiling", "c=1 server overhead p50 (ms)", "<= 1 ms", 1.0, True),
    Target("digits", "c4_over_c16", "c=4 req/s / c=16 req/s", ">= 0.5", 0.5, False),
)


def measure(target: Target, report: ModelReport) -> float:
    rows = {r.concurrency: r for r in report.rows}
    nan = float("nan")
    if target.kind == "c1_over_ceiling" and 1 in rows:
        return rows[1].load.p50_ms - report.ceiling.get(1, {}).get("batch_p50_ms", nan)
    if target.kind == "c16_ratio" and 16 in rows:
        return rows[16].ratio
    if target.kind == "c4_over_c16" and 4 in rows and 16 in rows and rows[16].load.rps:
        return rows[4].load.rps / rows[16].load.rps
    return nan


def model_args(base: argparse.Namespace, model: str, policy: str) -> argparse.Namespace:
    bs, delay, _ = SETTINGS[model]
    return argparse.Namespace(**{**vars(base), "batch_size": bs, "max_batch_delay": delay,
                                 "batch_policy": policy})


def run_model(case: ModelCase, tmp: Path, store: Path,
              base: argparse.Namespace) -> dict[str, ModelReport]:
    concurrencies = SETTINGS[case.name][2]
    ceiling = ceiling_for(case, model_args(base, case.name, POLICIES[0]), concurrencies)
    reports = {}
    for policy in POLICIES:
        args = model_args(base, case.name, policy)
        reports[policy] = bench_model(case, tmp, store, args, concurrencies, ceiling)
        print_report([reports[policy]], args, [])
    return reports


def print_targets(results: dict[str, dict[str, ModelReport]], loadavg: str) -> None:
    print()
    print(f"scheduling targets: {os.cpu_count()} CPU(s), loadavg before run {loadavg}; "
          "resnet18 batch 8 / maxBatchDelay 10 ms, digits batch 16 / 5 ms, one worker")
    head = f"{'model':<9} {'target':<40} {'goal':>9}"
    head += "".join(f" {p:>12} {'met':>4}" for p in POLICIES)
    print(head)
    print("-" * len(head))
    for t in TARGETS:
        if t.model not in results:
            continue
        line = f"{t.model:<9} {t.what:<40} {t.goal:>9}"
        for policy in POLICIES:
            value = measure(t, results[t.model][policy])
            line += f" {value:>12.2f} {t.met(value):>4}"
        print(line)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet18,digits")
    ap.add_argument("--short", action="store_true",
                    help="fewer requests and shorter ceilings (a quick check, noisier numbers)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, store)")
    args = ap.parse_args(argv)
    args.requests = None
    args.max_seconds = 15.0
    args.ceiling_seconds = 2.0
    if args.short:
        args.requests, args.max_seconds, args.ceiling_seconds = 150, 6.0, 1.0
    args.workers = 1
    args.loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [m.strip() for m in args.models.split(",") if m.strip() in SETTINGS]
    tmp = Path(tempfile.mkdtemp(prefix="torchwire-sched-"))
    notes: list[str] = []
    results: dict[str, dict[str, ModelReport]] = {}
    try:
        store = tmp / "store"
        store.mkdir()
        for case in prepare_cases(names, store, args.requests, notes):
            results[case.name] = run_model(case, tmp, store, args)
        print_targets(results, args.loadavg)
        for note in notes:
            print(f"note: {note}")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
