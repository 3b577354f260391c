"""Batcher: a bounded job queue per model version, cut into batches on demand.

A batch is cut only when a worker has a free slot. It takes up to ``batch_size``
queued jobs; while it is short it waits for more, but never past
``max_batch_delay`` counted from the first job's arrival.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from torchwire.errors import ServiceUnavailable
from torchwire.protocol import PREDICT, Batch, Item, Kind, Outcome

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """One request waiting for an answer.

    ``arrived``/``dispatched`` are loop times (batching deadlines); ``received``/``sent``
    are ``time.perf_counter()`` stamps for metrics (uvloop's clock ticks in ms).
    ``on_partial`` receives the request's intermediate responses, when someone listens;
    ``on_settled`` is called as soon as ``future`` has its answer or error (a stream's
    reader wakes up at once, without a done callback's extra loop iteration).
    """

    item: Item
    future: asyncio.Future[Outcome]
    arrived: float
    kind: Kind = PREDICT
    attempts: int = 0
    dispatched: float = field(default=0.0)
    received: float = field(default_factory=time.perf_counter)
    sent: float = 0.0
    on_partial: Callable[[Outcome], None] | None = None
    on_settled: Callable[[], None] | None = None

    @property
    def alone(self) -> bool:
        """Explain and describe requests run in a batch of their own."""
        return self.kind != PREDICT

    def answer(self, outcome: Outcome) -> None:
        if not self.future.done():
            self.future.set_result(outcome)
            if self.on_settled is not None:
                self.on_settled()

    def fail(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
            if self.on_settled is not None:
                self.on_settled()


class Slot(Protocol):
    """What the batcher needs of a worker: is it usable, and take this batch."""

    @property
    def accepting(self) -> bool: ...

    def submit(self, batch: Batch, jobs: list[Job]) -> None: ...


class Batcher:
    def __init__(self, batch_size: int, max_batch_delay_ms: float, queue_size: int) -> None:
        self.batch_size = max(1, batch_size)
        self.max_delay = max(0.0, max_batch_delay_ms) / 1000
        self.queue_size = max(1, queue_size)
        self.pending: deque[Job] = deque()
        self._arrival = asyncio.Event()
        self._free: asyncio.Queue[Slot] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None

    # -- producer side -------------------------------------------------------
    def submit(self, job: Job) -> None:
        if len(self.pending) >= self.queue_size:
            raise ServiceUnavailable(
                f"job queue is full ({self.queue_size} requests waiting); retry later"
            )
        self.pending.append(job)
        self._arrival.set()

    def requeue(self, jobs: Iterable[Job]) -> None:
        """Put jobs that never ran back at the front, in their order."""
        self.pending.extendleft(reversed(list(jobs)))
        self._arrival.set()

    def slot_free(self, slot: Slot) -> None:
        self._free.put_nowait(slot)

    # -- the dispatch loop -----------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def fail_pending(self, exc: Exception) -> None:
        while self.pending:
            self.pending.popleft().fail(exc)

    async def _run(self) -> None:
        while True:
            slot = await self._next_slot()
            jobs = await self._collect()
            if not slot.accepting:
                self.requeue(jobs)
                continue
            batch = Batch(next(self._ids), tuple(j.item for j in jobs), jobs[0].kind)
            slot.submit(batch, jobs)

    async def _next_slot(self) -> Slot:
        while True:
            slot = await self._free.get()
            if slot.accepting:
                return slot

    def _pop_live(self) -> Job | None:
        while self.pending:
            job = self.pending.popleft()
            if not job.future.done():
                return job
        return None

    async def _first(self) -> Job:
        while (job := self._pop_live()) is None:
            self._arrival.clear()
            await self._arrival.wait()
        return job

    async def _collect(self) -> list[Job]:
        first = await self._first()
        jobs = [first]
        if first.alone:
            return jobs
        loop = asyncio.get_running_loop()
        deadline = first.arrived + self.max_delay
        while len(jobs) < self.batch_size:
            if self.pending and self.pending[0].alone:
                break
            if self._take_ready(jobs):
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._arrival.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrival.wait()
            except TimeoutError:
                break
        return jobs

    def _take_ready(self, jobs: list[Job]) -> bool:
        """Move queued jobs into ``jobs`` up to the batch size; True if any moved."""
        moved = False
        while len(jobs) < self.batch_size and self.pending:
            if self.pending[0].alone:
                return moved
            job = self.pending.popleft()
            if not job.future.done():
                jobs.append(job)
                moved = True
        return moved
