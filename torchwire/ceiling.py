"""How many workers a model, and the whole server, may ask for.

Every worker is a process holding a copy of its model: asking for more than the
machine can run only swaps memory and slows everyone (and a huge count would
spawn without end). ``max_workers_per_model`` and ``max_workers_total`` cap them;
by default a model may have one worker per core's worth of torch threads (or one
per GPU, where there are more GPUs), and the server one worker per
:data:`WORKER_MEMORY` of physical memory (at least the per-model default).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from torchwire.config import Settings
from torchwire.errors import BadRequest
from torchwire.model import ModelVersion

WORKER_MEMORY = 512 * 1024**2
"""What one worker costs at least (a Python process with torch and a small model)."""


def memory_workers() -> int:
    """The workers this machine's physical memory holds at :data:`WORKER_MEMORY` each."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0
    return max(0, total // WORKER_MEMORY)


def machine_workers(settings: Settings, gpu_count: int) -> int:
    """The workers one model can usefully run here: cores over torch threads, or GPUs."""
    cores = os.cpu_count() or 1
    return max(1, cores // (settings.torch_threads or 1), gpu_count)


class WorkerCeiling:
    def __init__(self, settings: Settings, gpu_count: int) -> None:
        machine = machine_workers(settings, gpu_count)
        self.per_model = settings.max_workers_per_model or machine
        self.total = settings.max_workers_total or max(machine, memory_workers())

    def check(self, model: ModelVersion, low: int, models: Iterable[ModelVersion]) -> None:
        """Refuse (400) ``low`` workers for ``model`` beside the other ``models``.

        Only the workers that start are checked: ``maxWorkers`` above the ceiling is
        accepted, as TorchServe accepts it (archives often carry one), and the elastic
        scaler never grows a model past what the machine can run.
        """
        if low > self.per_model:
            raise BadRequest(
                f"{low} workers for model {model.name} exceed max_workers_per_model "
                f"({self.per_model}, what this machine can run); ask for at most "
                f"{self.per_model}")
        others = sum(m.config.min_workers for m in models if m is not model)
        if others + low > self.total:
            raise BadRequest(
                f"{low} workers for model {model.name} beside the {others} other models' "
                f"workers exceed max_workers_total ({self.total}); ask for at most "
                f"{max(0, self.total - others)}")
