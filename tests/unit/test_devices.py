"""GPU discovery without torch, and round-robin gpu_id assignment."""

from __future__ import annotations

import pytest

from torchwire.devices import GpuAllocator, visible_gpu_count
from torchwire.errors import BadRequest


def test_configured_number_of_gpu_wins() -> None:
    assert visible_gpu_count({"CUDA_VISIBLE_DEVICES": "0,1,2"}, 1) == 1


def test_cuda_visible_devices_is_counted() -> None:
    assert visible_gpu_count({"CUDA_VISIBLE_DEVICES": "0,1,2"}, None) == 3
    assert visible_gpu_count({"CUDA_VISIBLE_DEVICES": "-1"}, None) == 0
    assert visible_gpu_count({"CUDA_VISIBLE_DEVICES": ""}, None) == 0


def test_gpu_ids_are_handed_out_round_robin() -> None:
    gpus = GpuAllocator(2)
    assert [gpus.pick(None) for _ in range(5)] == [0, 1, 0, 1, 0]


def test_device_ids_restrict_the_choice() -> None:
    gpus = GpuAllocator(4)
    picks = {gpus.pick([2, 3]) for _ in range(8)}
    assert picks == {2, 3}


def test_device_type_decides_gpu_use() -> None:
    assert GpuAllocator(2).uses_gpu(None)
    assert GpuAllocator(2).uses_gpu("gpu")
    assert not GpuAllocator(2).uses_gpu("cpu")
    assert not GpuAllocator(0).uses_gpu(None)
    with pytest.raises(BadRequest, match="no GPU"):
        GpuAllocator(0).uses_gpu("gpu")
