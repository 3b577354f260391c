"""The elastic scaler's decisions: grow on long queue waits, stop when it does not help,
shrink after quiet, stay within the floor, the ceiling and the machine."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pytest

from torchwire.workers.elastic import TICK, ElasticScaler, ElasticSettings, Sample


@dataclass
class FakePool:
    wanted: int = 1
    live: int = 1


@dataclass
class FakeConfig:
    min_workers: int = 1
    max_workers: int = 3
    max_batch_delay: int = 10
    gpu_ids: tuple[int, ...] | None = None


@dataclass
class FakeModel:
    name: str = "m"
    pool: FakePool = field(default_factory=FakePool)
    config: FakeConfig = field(default_factory=FakeConfig)
    use_gpu: bool = False
    torch_threads: int | None = 1


HOT = Sample(wait=1.0, rate=10.0, quiet=False)
QUIET = Sample(wait=0.0, rate=0.0, quiet=True)


def scaler(model: FakeModel, **settings: Any) -> ElasticScaler:
    return ElasticScaler(model, ElasticSettings(**settings))  # type: ignore[arg-type]


def test_long_waits_two_ticks_in_a_row_add_one_worker() -> None:
    s = scaler(FakeModel())
    assert s.decide(HOT) == 0
    assert s.decide(HOT) == 1
    assert s.events.up == 1


def test_a_wait_within_the_batch_delay_and_threshold_adds_nothing() -> None:
    s = scaler(FakeModel(), scale_up_wait_ms=100)
    calm = Sample(wait=0.105, rate=10.0, quiet=False)  # under 10 ms delay + 100 ms
    assert [s.decide(calm) for _ in range(5)] == [0] * 5


def test_growth_stops_when_the_added_worker_did_not_raise_throughput() -> None:
    model = FakeModel()
    s = scaler(model)
    s.decide(HOT)
    assert s.decide(HOT) == 1
    model.pool.wanted = model.pool.live = 2
    results = [s.decide(HOT) for _ in range(4)]  # throughput stayed at 10 req/s
    assert results == [0] * 4 and s.ceiling == 2


def test_growth_goes_on_while_each_worker_helps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torchwire.workers.elastic.os.cpu_count", lambda: 8)
    model = FakeModel()
    s = scaler(model)
    s.decide(HOT)
    s.decide(HOT)
    model.pool.wanted = model.pool.live = 2
    faster = Sample(wait=1.0, rate=20.0, quiet=False)
    assert [s.decide(faster), s.decide(faster)] == [0, 1]
    assert s.ceiling is None


def test_no_decision_while_a_worker_is_still_loading() -> None:
    s = scaler(FakeModel(pool=FakePool(wanted=2, live=1)))
    assert [s.decide(HOT) for _ in range(4)] == [0] * 4


def test_quiet_for_the_configured_time_retires_one_worker_down_to_the_floor() -> None:
    model = FakeModel(pool=FakePool(wanted=2, live=2))
    s = scaler(model, scale_down_after=1.0)
    ticks = int(1.0 / TICK)
    assert [s.decide(QUIET) for _ in range(ticks)][-1] == -1
    model.pool.wanted = model.pool.live = 1  # now at min_workers
    assert [s.decide(QUIET) for _ in range(3 * ticks)] == [0] * 3 * ticks
    assert s.events.down == 1


def test_never_beyond_max_workers_or_the_machine() -> None:
    at_max = scaler(FakeModel(pool=FakePool(wanted=3, live=3)))
    assert [at_max.decide(HOT) for _ in range(4)] == [0] * 4
    cores = os.cpu_count() or 1
    whole_machine = FakeModel(torch_threads=cores)  # one worker already uses every core
    assert scaler(whole_machine).limit() == 1
    gpus = FakeModel(use_gpu=True, config=FakeConfig(max_workers=8, gpu_ids=(0, 1)))
    assert scaler(gpus).limit() == 2
