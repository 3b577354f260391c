"""WorkerPool: keeps a model version's workers alive, restarts them, scales them.

Each wanted worker has a supervising task: start it, wait for it to exit, back
off, start it again. A model that fails to load stops being retried after a few
attempts and is reported as failed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torchwire.protocol import WorkerSpec
from torchwire.workers.process import WorkerHooks, WorkerLoadError, WorkerProcess

log = logging.getLogger(__name__)

MAX_LOAD_ATTEMPTS = 3
BACKOFF_START = 0.1
BACKOFF_MAX = 10.0
STABLE_AFTER = 30.0  # a worker that lived this long resets the back-off


@dataclass
class PoolEvents:
    """Counters the model and metrics read."""

    restarts: int = 0
    load_error: str | None = None
    loaded: asyncio.Event = field(default_factory=asyncio.Event)


class WorkerPool:
    worker_type: type[WorkerProcess] = WorkerProcess  # tests put a fake child behind it

    def __init__(
        self,
        name: str,
        make_spec: Callable[[], WorkerSpec],
        hooks: WorkerHooks,
        response_timeout: float,
        startup_timeout: float,
        log_dir: Path | None = None,
        on_failed: Callable[[str], None] | None = None,
        heartbeat_timeout: float = 5.0,
    ) -> None:
        self.heartbeat_timeout = heartbeat_timeout
        self.name = name
        self.on_failed = on_failed
        self.make_spec = make_spec
        self.hooks = hooks
        self.response_timeout = response_timeout
        self.startup_timeout = startup_timeout
        self.log_dir = log_dir
        self.events = PoolEvents()
        self.workers: dict[int, WorkerProcess] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._ids = itertools.count(9000)
        self._attempts: dict[int, asyncio.Future[None]] = {}

    @property
    def live(self) -> int:
        return sum(1 for w in self.workers.values() if w.alive)

    @property
    def wanted(self) -> int:
        return len(self._tasks)

    def failed(self) -> bool:
        return self.events.load_error is not None and not self._tasks and self.live == 0

    # -- scaling -----------------------------------------------------------------
    async def scale(self, count: int, drain_timeout: float = 120.0) -> None:
        """Grow or shrink to ``count`` workers; shrinking drains before stopping."""
        self.events.load_error = None
        while len(self._tasks) < count:
            self._add()
            await asyncio.sleep(0)  # each start is a task: let the loop run between them
        victims = sorted(self._tasks)[count:]
        await asyncio.gather(*(self._remove(slot, drain_timeout) for slot in victims))

    def _add(self) -> None:
        slot = next(self._ids)
        loop = asyncio.get_running_loop()
        self._attempts[slot] = loop.create_future()
        self._tasks[slot] = loop.create_task(self._supervise(slot), name=f"{self.name}-{slot}")

    async def _remove(self, slot: int, drain_timeout: float) -> None:
        task = self._tasks.pop(slot)
        worker = self.workers.get(slot)
        task.cancel()
        attempt = self._attempts.pop(slot, None)
        if attempt is not None and not attempt.done():
            attempt.set_result(None)  # a worker removed while loading: nobody waits on it
        if worker is not None:
            await worker.retire(drain_timeout)
        await asyncio.gather(task, return_exceptions=True)
        self.workers.pop(slot, None)

    async def wait_started(self) -> None:
        """Wait until every wanted worker has either loaded or given up."""
        await asyncio.gather(*self._attempts.values(), return_exceptions=True)

    async def stop(self, drain_timeout: float = 30.0) -> None:
        await self.scale(0, drain_timeout)

    # -- supervision ---------------------------------------------------------------
    async def _supervise(self, slot: int) -> None:
        backoff = BACKOFF_START
        failures = 0
        while True:
            worker = self.worker_type(
                f"{self.name}-{slot}", self.make_spec(), self.hooks, self.response_timeout,
                self.log_dir is not None, self.heartbeat_timeout,
            )
            self.workers[slot] = worker
            try:
                await worker.start(self.startup_timeout)
            except WorkerLoadError as exc:
                failures += 1
                log.error("%s: worker %s failed to load: %s", self.name, slot, exc)
                if failures >= MAX_LOAD_ATTEMPTS:
                    self._give_up(slot, str(exc))
                    return
            else:
                failures = 0
                self._started(slot)
                await worker.wait()
                if worker.retiring:
                    return
                self.events.restarts += 1
                if worker_lifetime(worker) > STABLE_AFTER:
                    backoff = BACKOFF_START
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX, backoff * 2)

    def _started(self, slot: int) -> None:
        self.events.loaded.set()
        attempt = self._attempts.get(slot)
        if attempt is not None and not attempt.done():
            attempt.set_result(None)

    def _give_up(self, slot: int, error: str) -> None:
        self.events.load_error = error
        self._tasks.pop(slot, None)
        self.workers.pop(slot, None)
        attempt = self._attempts.get(slot)
        if attempt is not None and not attempt.done():
            attempt.set_result(None)
        if self.failed() and self.on_failed is not None:
            self.on_failed(error)


def worker_lifetime(worker: WorkerProcess) -> float:
    return time.time() - worker.started_at
