"""GPU discovery and assignment, without importing torch in the front process."""

from __future__ import annotations

import itertools
import logging
import shutil
import subprocess
from collections.abc import Iterator, Sequence

from torchwire.errors import BadRequest

log = logging.getLogger(__name__)


def visible_gpu_count(env: dict[str, str], configured: int | None) -> int:
    """GPUs this server may use: ``number_of_gpu`` if set, else what nvidia-smi lists."""
    if configured is not None:
        return max(0, configured)
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return _nvidia_smi_count()


def _nvidia_smi_count() -> int:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        log.warning("nvidia-smi is present but failed; serving on CPU")
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


class GpuAllocator:
    """Hands out GPU ids round-robin across every worker of every model (as TorchServe)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._next: Iterator[int] = itertools.cycle(range(count)) if count else iter(())

    def uses_gpu(self, device_type: str | None) -> bool:
        if device_type == "gpu" and self.count == 0:
            raise BadRequest("the model asks for deviceType gpu but the server sees no GPU")
        return device_type != "cpu" and self.count > 0

    def pick(self, allowed: Sequence[int] | None) -> int:
        if allowed:
            return allowed[next(self._next) % len(allowed)]
        return next(self._next)
