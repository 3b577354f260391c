"""deviceType gpu end to end; skipped where no CUDA device is visible (as in CI)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server, stop_server, toy_archive

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_gpu_workers_get_their_own_gpu_and_match_cpu(tmp_path: Path, example_store: Path,
                                                    digit_samples: list[tuple[bytes, int]]) -> None:
    gpus = torch.cuda.device_count()
    toy_archive(example_store, "toygpu", yaml_config=f"minWorkers: {min(2, gpus)}\n"
                "deviceType: gpu\n")
    models = {"digits": {"1.0": {"batchSize": 8, "maxBatchDelay": 10, "deviceType": "gpu"}}}
    server = start_server(tmp_path, example_store,
                          ["digits=digits.mar", "toygpu=toygpu-1.0/toygpu.mar"],
                          {"models": json.dumps(models)})
    try:
        with server.client() as c:
            seen = {c.post("/predictions/toygpu", content=b"pid").json()["gpu_id"]
                    for _ in range(20)}
            gpu_answers = [c.post("/predictions/digits", content=png).json()
                           for png, _ in digit_samples[:20]]
    finally:
        stop_server(server)
    assert None not in seen and len(seen) == min(2, gpus)
    cpu_models = {"digits": {"1.0": {"deviceType": "cpu"}}}
    server = start_server(tmp_path / "cpu", example_store, ["digits=digits.mar"],
                          {"models": json.dumps(cpu_models)})
    try:
        with server.client() as c:
            cpu_answers = [c.post("/predictions/digits", content=png).json()
                           for png, _ in digit_samples[:20]]
    finally:
        stop_server(server)
    for g, cpu in zip(gpu_answers, cpu_answers, strict=True):
        assert list(g) == list(cpu)
        assert all(abs(g[k] - cpu[k]) < 1e-4 for k in g)


def test_gpu_system_metrics_on_scrape(tmp_path: Path, example_store: Path) -> None:
    """NVML's readings per DeviceId, with TorchServe's names, on a real GPU machine."""
    server = start_server(tmp_path, example_store, ["digits=digits.mar"], {})
    try:
        text = httpx.get(f"{server.metrics_url}/metrics").text
    finally:
        stop_server(server)
    for name in ("GPUMemoryUtilization", "GPUMemoryUsed", "GPUUtilization"):
        lines = [line for line in text.splitlines() if line.startswith(name + "{")]
        assert len(lines) >= torch.cuda.device_count(), name
        assert all('DeviceId="' in line and 'Level="Host"' in line for line in lines)
        assert all(0 <= float(line.rsplit(" ", 1)[1]) for line in lines)
    used = [float(x.rsplit(" ", 1)[1]) for x in text.splitlines()
            if x.startswith("GPUMemoryUtilization{")]
    assert all(u <= 100 for u in used)
