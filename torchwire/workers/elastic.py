"""Elastic workers: grow a model version's workers while its queue waits, shrink when quiet.

Every ``TICK`` seconds the scaler looks at the batcher's counters:

- **grow** by one worker when, for ``HOT_TICKS`` ticks in a row, requests waited in the
  queue longer than ``max_batch_delay + scale_up_wait_ms`` (the mean wait of the requests
  dispatched in the tick, or the age of the oldest one still queued); never past
  ``max_workers``, the machine (cores per torch thread; GPUs), or a count where the last
  added worker did not raise throughput by ``HELPS``;
- **shrink** by one worker after ``scale_down_after`` seconds in which the queue was empty
  and some worker idle at every tick; never below ``min_workers``. A retired worker
  finishes its batches first.

The scale API stays authoritative: it sets ``min_workers`` (the floor, and the count it
starts) and ``max_workers`` (the ceiling); the scaler only moves between them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torchwire.config.models import ElasticSettings

if TYPE_CHECKING:
    from torchwire.model import ModelVersion

log = logging.getLogger(__name__)

TICK = 0.5  # seconds between looks
HOT_TICKS = 2  # ticks of long queue waits before a worker is added
HELPS = 1.1  # an added worker must raise throughput by 10 % for growth to go on


@dataclass
class ScaleEvents:
    """Decisions taken so far (the metrics read them)."""

    up: int = 0
    down: int = 0


@dataclass(frozen=True)
class Sample:
    """What one tick saw."""

    wait: float  # seconds: mean wait of the requests dispatched, or the oldest queued one's age
    rate: float  # requests dispatched per second
    quiet: bool  # nothing queued and some worker idle


@dataclass
class Trial:
    """A grow whose effect is not judged yet: throughput before it, and the count it made."""

    rate_before: float
    workers: int


class ElasticScaler:
    def __init__(self, model: ModelVersion, settings: ElasticSettings) -> None:
        self.model = model
        self.settings = settings
        self.events = ScaleEvents()
        self.ceiling: int | None = None  # growth stopped here: more did not help
        self._hot = 0
        self._quiet_for = 0.0
        self._rates: list[float] = []
        self._trial: Trial | None = None
        self._last = (0, 0.0)  # batcher's (dispatched, waited) at the previous tick
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        if self.settings.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"elastic-{self.model.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def reset(self) -> None:
        """The operator rescaled: judge the new range afresh."""
        self.ceiling, self._trial, self._hot, self._quiet_for = None, None, 0, 0.0

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            if self.model.config.max_workers <= self.model.config.min_workers:
                continue
            step = self.decide(self.sample())
            if step:
                await self.model.resize(self.model.pool.wanted + step)

    # -- looking ---------------------------------------------------------------------
    def sample(self) -> Sample:
        stats = self.model.batcher.stats
        dispatched, waited = stats.dispatched - self._last[0], stats.waited - self._last[1]
        self._last = (stats.dispatched, stats.waited)
        wait = waited / dispatched if dispatched else 0.0
        pending = self.model.batcher.pending
        if pending:
            wait = max(wait, asyncio.get_running_loop().time() - pending[0].arrived)
        workers = [w for w in self.model.workers() if w.accepting]
        quiet = not self.model.queue_depth and any(w.idle for w in workers)
        return Sample(wait, dispatched / TICK, quiet)

    # -- deciding --------------------------------------------------------------------
    def decide(self, sample: Sample) -> int:
        """+1 to add a worker, -1 to retire one, 0 to stay."""
        pool = self.model.pool
        if pool.live < pool.wanted:
            self._rates = []
            return 0  # a worker is still loading: judge once it serves
        self._rates = [*self._rates[-1:], sample.rate]
        self._judge_trial()
        if self._hot_tick(sample) and pool.wanted < self.limit():
            return self._grow()
        self._quiet_for = self._quiet_for + TICK if sample.quiet else 0.0
        if self._quiet_for >= self.settings.scale_down_after and \
                pool.wanted > self.model.config.min_workers:
            return self._shrink()
        return 0

    def _hot_tick(self, sample: Sample) -> bool:
        threshold = (self.model.config.max_batch_delay + self.settings.scale_up_wait_ms) / 1000
        self._hot = self._hot + 1 if sample.wait > threshold else 0
        return self._hot >= HOT_TICKS

    def _judge_trial(self) -> None:
        trial = self._trial
        if trial is None or len(self._rates) < 2:
            return
        self._trial = None
        rate = sum(self._rates) / len(self._rates)
        if rate < trial.rate_before * HELPS:
            self.ceiling = trial.workers
            log.info("%s: worker %d did not raise throughput (%.1f -> %.1f req/s); "
                     "not growing past %d", self.model.name, trial.workers, trial.rate_before,
                     rate, trial.workers)

    def _grow(self) -> int:
        count = self.model.pool.wanted
        rate = sum(self._rates) / len(self._rates)
        self._trial, self._hot, self._rates = Trial(rate, count + 1), 0, []
        self.events.up += 1
        log.info("%s: queue wait is high; growing workers %d -> %d (max %d)",
                 self.model.name, count, count + 1, self.limit())
        return 1

    def _shrink(self) -> int:
        count = self.model.pool.wanted
        self._quiet_for, self.ceiling, self._trial = 0.0, None, None
        self.events.down += 1
        log.info("%s: quiet for %g s; shrinking workers %d -> %d", self.model.name,
                 self.settings.scale_down_after, count, count - 1)
        return -1

    def limit(self) -> int:
        """The most workers growth may reach: max_workers, the machine, the measured ceiling."""
        limit = min(self.model.config.max_workers, machine_limit(self.model))
        return limit if self.ceiling is None else min(limit, self.ceiling)


def machine_limit(model: ModelVersion) -> int:
    """One worker per GPU it may use; on CPU, cores divided by each worker's torch threads."""
    if model.use_gpu:
        ids = model.config.gpu_ids
        return max(1, len(ids) if ids else model.gpus.count)
    threads = model.torch_threads or 1
    return max(1, (os.cpu_count() or 1) // threads)
