"""Batcher: a bounded job queue per model version, cut into batches on demand.

A batch is cut only when a worker has a free slot (a worker holds two: one batch
computing, one waiting). It takes up to ``batch_size`` queued jobs. How long a
short batch waits for companions is the batch policy:

- ``adaptive`` (the default): never while a worker is idle, since waiting cannot
  help then; while every worker is busy, queued jobs accumulate until the batch is
  full, a worker goes idle, or ``max_batch_delay`` (from the first job's arrival)
  has passed.
- ``torchserve``: TorchServe's rule; a short batch always waits until it is full or
  ``max_batch_delay`` has passed, even for an idle worker.

Jobs nobody waits for any more are never dispatched: a cancelled one (its client
left) is dropped, and one past its deadline is answered 408.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from torchwire.errors import BadRequest, RequestTimeout, ServiceUnavailable
from torchwire.protocol import PREDICT, Batch, Item, Kind, Outcome

log = logging.getLogger(__name__)

ADAPTIVE = "adaptive"
TORCHSERVE = "torchserve"
POLICIES = (ADAPTIVE, TORCHSERVE)
CLOCK_SLACK = 0.005  # s: a timer may fire this much before its time (uvloop ticks in ms)
TIMEOUT_HEADER = "x-request-timeout"  # the client's deadline, in seconds from its arrival
EXPIRED = "the request's deadline (X-Request-Timeout) passed while it waited in the queue"


@dataclass(eq=False)
class Job:
    """One request waiting for an answer.

    ``arrived``/``dispatched`` are loop times (batching deadlines); ``received``/``sent``
    are ``time.perf_counter()`` stamps for metrics (uvloop's clock ticks in ms).
    ``on_partial`` receives the request's intermediate responses, when someone listens;
    ``on_settled`` is called as soon as ``future`` has its answer or error (a stream's
    reader wakes up at once, without a done callback's extra loop iteration).
    ``deadline`` (loop time) is the client's: past it, a queued job is answered 408.
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
    deadline: float | None = None

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

    def wait_limit(self, limit: float) -> float:
        """How long a wait for the answer may last: ``limit``, or less near the deadline."""
        if self.deadline is None:
            return limit
        return min(limit, max(0.0, self.deadline - asyncio.get_running_loop().time()))

    def timeout_error(self, limit: float) -> RequestTimeout:
        """Why a wait for the answer ended: the client's deadline passed, else ``limit``."""
        now = asyncio.get_running_loop().time()
        if self.deadline is not None and now >= self.deadline - CLOCK_SLACK:
            return RequestTimeout("no answer within the request's X-Request-Timeout")
        return RequestTimeout(f"no worker answered within {limit:g} s")

    def give_up(self, exc: Exception) -> None:
        """Its waiter stopped waiting with ``exc``: a queued job is then never dispatched."""
        self.fail(exc)
        if not self.future.cancelled():
            self.future.exception()  # the waiter raised it itself: mark it retrieved


def deadline_of(item: Item, now: float) -> float | None:
    """The loop time by which the client wants its answer (its X-Request-Timeout), if any."""
    raw = item.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise BadRequest(f"X-Request-Timeout must be a positive number of seconds, not {raw!r}")
    return now + seconds


class Slot(Protocol):
    """What the batcher needs of a worker: is it usable, is it idle, take this batch."""

    @property
    def accepting(self) -> bool: ...

    @property
    def idle(self) -> bool: ...

    def submit(self, batch: Batch, jobs: list[Job]) -> None: ...


@dataclass
class QueueStats:
    """Counters the metrics and the elastic scaler read (totals since the start)."""

    dispatched: int = 0  # requests sent to a worker
    waited: float = 0.0  # their total queue wait, seconds
    cancelled: int = 0  # dropped from the queue: the client left before dispatch
    expired: int = 0  # dropped from the queue: their deadline passed (answered 408)


class Batcher:
    def __init__(self, batch_size: int, max_batch_delay_ms: float, queue_size: int,
                 policy: str = ADAPTIVE) -> None:
        self.batch_size = max(1, batch_size)
        self.max_delay = max(0.0, max_batch_delay_ms) / 1000
        self.queue_size = max(1, queue_size)
        self.policy = policy
        self.pending: deque[Job] = deque()
        self.stats = QueueStats()
        self._changed = asyncio.Event()  # a job arrived or a slot came free
        self._free: list[Slot] = []
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None

    # -- producer side -------------------------------------------------------
    def submit(self, job: Job) -> None:
        if len(self.pending) >= self.queue_size:
            self._prune()
        if len(self.pending) >= self.queue_size:
            raise ServiceUnavailable(
                f"job queue is full ({self.queue_size} requests waiting); retry later"
            )
        self.pending.append(job)
        self._changed.set()

    def requeue(self, jobs: Iterable[Job]) -> None:
        """Put jobs that never ran back at the front, in their order."""
        self.pending.extendleft(reversed(list(jobs)))
        self._changed.set()

    def slot_free(self, slot: Slot) -> None:
        self._free.append(slot)
        self._changed.set()

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
            await self._wait_for(self._has_slot)
            jobs = await self._collect()
            now = asyncio.get_running_loop().time()
            jobs = [job for job in jobs if self._live(job, now)]
            if not jobs:
                continue  # every one of them left (or expired) while the batch filled
            slot = self._pick()
            if slot is None:
                self.requeue(jobs)
                continue
            self._dispatch(slot, jobs)

    def _dispatch(self, slot: Slot, jobs: list[Job]) -> None:
        now = asyncio.get_running_loop().time()
        self.stats.dispatched += len(jobs)
        self.stats.waited += sum(now - job.arrived for job in jobs)
        slot.submit(Batch(next(self._ids), tuple(j.item for j in jobs), jobs[0].kind), jobs)

    async def _wait_for(self, ready: Callable[[], bool]) -> None:
        while not ready():
            self._changed.clear()
            await self._changed.wait()

    # -- slots -------------------------------------------------------------------
    def _has_slot(self) -> bool:
        self._free = [slot for slot in self._free if slot.accepting]
        return bool(self._free)

    def _idle_slot(self) -> bool:
        """True when a free slot's worker computes nothing: waiting cannot help then."""
        return any(slot.idle and slot.accepting for slot in self._free)

    def _pick(self) -> Slot | None:
        """A free slot, an idle worker's first (a lone request never queues behind a batch)."""
        if not self._has_slot():
            return None
        chosen = next((s for s in self._free if s.idle), self._free[0])
        self._free.remove(chosen)
        return chosen

    # -- cutting a batch -----------------------------------------------------------
    def _live(self, job: Job, now: float) -> bool:
        """False for a job nobody waits for any more (client gone, or past its deadline)."""
        if job.future.done():  # cancelled (the client left), or failed by its deadline
            if job.future.cancelled():
                self.stats.cancelled += 1
            elif job.deadline is not None:
                self.stats.expired += 1
            return False
        if job.deadline is not None and now >= job.deadline:
            self.stats.expired += 1
            job.fail(RequestTimeout(EXPIRED))
            return False
        return True

    def _prune(self) -> None:
        now = asyncio.get_running_loop().time()
        self.pending = deque(job for job in self.pending if self._live(job, now))

    def _pop_live(self) -> Job | None:
        now = asyncio.get_running_loop().time()
        while self.pending:
            job = self.pending.popleft()
            if self._live(job, now):
                return job
        return None

    async def _first(self) -> Job:
        while (job := self._pop_live()) is None:
            self._changed.clear()
            await self._changed.wait()
        return job

    def _cut_now(self, jobs: list[Job]) -> bool:
        """The batch goes now: it is full, or (adaptive) a worker is idle."""
        if len(jobs) >= self.batch_size:
            return True
        return self.policy == ADAPTIVE and self._idle_slot()

    async def _collect(self) -> list[Job]:
        first = await self._first()
        jobs = [first]
        if first.alone:
            return jobs
        loop = asyncio.get_running_loop()
        deadline = first.arrived + self.max_delay
        while True:
            self._take_ready(jobs)
            if self._cut_now(jobs) or (self.pending and self.pending[0].alone):
                return jobs
            remaining = deadline - loop.time()
            if remaining <= 0:
                return jobs
            self._changed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                return jobs

    def _take_ready(self, jobs: list[Job]) -> None:
        """Move queued jobs into ``jobs`` up to the batch size (an explain/describe stays)."""
        now = asyncio.get_running_loop().time()
        while len(jobs) < self.batch_size and self.pending:
            if self.pending[0].alone:
                return
            job = self.pending.popleft()
            if self._live(job, now):
                jobs.append(job)
