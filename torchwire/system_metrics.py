"""TorchServe's system metrics, read with psutil (and NVML on GPU machines).

Names, units and dimensions are TorchServe's: ``CPUUtilization`` (Percent),
``MemoryUsed`` / ``MemoryAvailable`` (Megabytes), ``MemoryUtilization`` (Percent),
``DiskUsage`` / ``DiskAvailable`` (Gigabytes) and ``DiskUtilization`` (Percent) of
the root file system, all with ``Level=Host``; with a GPU, ``GPUMemoryUtilization``
(Percent), ``GPUMemoryUsed`` (Megabytes) and ``GPUUtilization`` (Percent) per
``DeviceId``. ``CPUUtilization`` is the CPU use since the previous reading.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import psutil

log = logging.getLogger(__name__)

MB = 1024 * 1024
GB = 1024 * MB
HOST = {"Level": "Host"}


@dataclass(frozen=True)
class Reading:
    name: str
    value: float
    dims: dict[str, str] = field(default_factory=lambda: dict(HOST))


def host_readings(disk: str = "/") -> list[Reading]:
    memory = psutil.virtual_memory()
    usage = psutil.disk_usage(disk)
    return [
        Reading("CPUUtilization", psutil.cpu_percent(interval=None)),
        Reading("MemoryUsed", memory.used / MB),
        Reading("MemoryAvailable", memory.available / MB),
        Reading("MemoryUtilization", memory.percent),
        Reading("DiskUsage", usage.used / GB),
        Reading("DiskUtilization", usage.percent),
        Reading("DiskAvailable", usage.free / GB),
    ]


def gpu_readings(nvml: Any) -> list[Reading]:
    """Per-GPU readings through an initialised ``pynvml`` module."""
    readings: list[Reading] = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        busy = nvml.nvmlDeviceGetUtilizationRates(handle)
        dims = {**HOST, "DeviceId": str(index)}
        used_share = 100.0 * memory.used / memory.total if memory.total else 0.0
        readings += [Reading("GPUMemoryUtilization", used_share, dims),
                     Reading("GPUMemoryUsed", memory.used / MB, dims),
                     Reading("GPUUtilization", float(busy.gpu), dims)]
    return readings


class SystemMetrics:
    """Reads the system metrics on demand; NVML only when ``gpus`` > 0."""

    def __init__(self, gpus: int, disk: str = "/") -> None:
        self.disk = disk
        self.nvml: Any = _start_nvml() if gpus > 0 else None
        psutil.cpu_percent(interval=None)  # the first reading starts the measurement

    def readings(self) -> list[Reading]:
        found = host_readings(self.disk)
        if self.nvml is not None:
            try:
                found += gpu_readings(self.nvml)
            except Exception as exc:  # noqa: BLE001 - a driver error must not stop the server
                log.warning("GPU metrics are off: NVML failed (%s)", exc)
                self.nvml = None
        return found


def _start_nvml() -> Any:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - ImportError, or NVMLError without a driver
        log.warning("GPU metrics are off: cannot start NVML (%s)", exc)
        return None
    return pynvml
