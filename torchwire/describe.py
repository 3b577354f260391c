"""The JSON of ``GET /models`` and ``GET /models/{name}``, in TorchServe's shapes.

Besides TorchServe's fields, a description carries ``status`` (Loading, Ready,
Failed, Stopped, Unloading) and, for a model that could not load, ``loadError``.
TorchServe's keys for features torchwire does not have (job tickets, sequence
batching, tensor parallelism) carry TorchServe's values for a model that does not
use them; ``useVenv`` is true where the model's requirements.txt got its own venv.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from torchwire.model import ModelVersion
from torchwire.registry import ModelRegistry
from torchwire.workers.process import WorkerProcess

MAX_PAGE = 100


def iso_time(timestamp: float) -> str:
    when = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def memory_usage(pid: int | None) -> int:
    """Resident memory of ``pid`` in bytes (0 where it cannot be read)."""
    if pid is None:
        return 0
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
            resident_pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def worker_status(worker: WorkerProcess) -> str:
    if worker.unresponsive:
        return "UNRESPONSIVE"  # missed its heartbeats; being replaced
    if worker.retiring:
        return "UNLOADING"
    return "READY" if worker.alive else "LOADING"


def describe_worker(slot: int, worker: WorkerProcess) -> dict[str, Any]:
    gpu = worker.gpu_id is not None
    return {
        "id": str(slot),
        "startTime": iso_time(worker.started_at),
        "status": worker_status(worker),
        "memoryUsage": memory_usage(worker.pid) if worker.alive else 0,
        "pid": worker.pid if worker.pid is not None else -1,
        "gpu": gpu,
        "gpuUsage": f"gpuId::{worker.gpu_id}" if gpu else "N/A",
    }


def torchserve_settings(model: ModelVersion) -> dict[str, Any]:
    """TorchServe's DescribeModelResponse keys after startupTimeout, in its order."""
    doc: dict[str, Any] = {
        "maxRetryTimeoutInSec": 300,  # TorchServe's default; torchwire restarts without limit
        "clientTimeoutInMills": 0,
        "parallelType": "",
        "parallelLevel": 0,
        "deviceType": "gpu" if model.use_gpu else "cpu",
    }
    if model.config.gpu_ids:  # TorchServe leaves deviceIds out when none are configured
        doc["deviceIds"] = list(model.config.gpu_ids)
    venv = model.requirements is not None
    return {**doc, "continuousBatching": False, "useJobTicket": False, "useVenv": venv,
            "stateful": False, "sequenceMaxIdleMSec": 0, "sequenceTimeoutMSec": 0,
            "maxNumSequence": 0, "maxSequenceJobQueueSize": 0}


def describe_model(model: ModelVersion) -> dict[str, Any]:
    cfg = model.config
    depth = model.queue_depth
    doc: dict[str, Any] = {
        "modelName": model.name,
        "modelVersion": model.version,
        "modelUrl": model.model_url,
        "runtime": model.manifest.runtime,
        "minWorkers": cfg.min_workers,
        "maxWorkers": cfg.max_workers,
        "batchSize": cfg.batch_size,
        "maxBatchDelay": cfg.max_batch_delay,
        "responseTimeout": int(cfg.response_timeout),
        "startupTimeout": int(cfg.startup_timeout),
        **torchserve_settings(model),
        "loadedAtStartup": model.loaded_at_startup,
        "status": model.state.value,
        "workers": [describe_worker(slot, w) for slot, w in sorted(model.pool.workers.items())],
        "jobQueueStatus": {
            "remainingCapacity": max(0, cfg.job_queue_size - depth),
            "pendingRequests": depth,
        },
    }
    if model.load_error:
        doc["loadError"] = model.load_error
    return doc


def list_page(registry: ModelRegistry, limit: int, page_token: int) -> dict[str, Any]:
    """One page of default versions, sorted by name; ``nextPageToken`` if more follow."""
    if limit <= 0 or limit > MAX_PAGE:
        limit = MAX_PAGE
    start = max(0, page_token)
    names = registry.names()
    end = min(len(names), start + limit)
    doc: dict[str, Any] = {}
    if end < len(names):
        doc["nextPageToken"] = str(end)
    doc["models"] = [
        {"modelName": n, "modelUrl": registry.get(n).model_url} for n in names[start:end]
    ]
    return doc
