"""WorkerProcess and WorkerPool against a fake child on a real socketpair: answers,
death mid-batch, requeue, response timeout, retire/drain, load failure, restarts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import until
from tests.unit.fake_worker import FakeWorkerProcess, fake_workers
from torchwire.batching import Job
from torchwire.errors import RequestTimeout, WorkerDied
from torchwire.protocol import Batch, BatchDone, Item, Param, WorkerSpec
from torchwire.workers.pool import WorkerPool
from torchwire.workers.process import WorkerHooks, WorkerLoadError

SPEC = WorkerSpec("m", "1.0", "/nowhere", {}, "fake.py", 4, 10, None, 1)


class Front:
    """What a model gives its workers: it records free slots, re-queued and done jobs."""

    def __init__(self) -> None:
        self.slots: list[Any] = []
        self.requeued: list[Job] = []
        self.done: list[BatchDone] = []
        self.hooks = WorkerHooks(self.slots.append, self.requeued.extend,
                                 lambda jobs, done: self.done.append(done))


def jobs(*texts: str) -> list[Job]:
    loop = asyncio.get_running_loop()
    return [Job(Item(t, (Param("body", t.encode()),), {}), loop.create_future(), loop.time())
            for t in texts]


def batch(batch_id: int, js: list[Job]) -> Batch:
    return Batch(batch_id, tuple(j.item for j in js))


async def started(front: Front, timeout: float = 30.0,
                  cls: type[FakeWorkerProcess] | None = None) -> FakeWorkerProcess:
    worker = (cls or fake_workers())("m-1", SPEC, front.hooks, timeout)
    await worker.start(5.0)
    return worker


async def in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def test_a_batch_is_answered_and_its_slot_freed() -> None:
    async def run() -> None:
        front = Front()
        worker = await started(front)
        assert worker.alive and worker.pid == 4242 and len(front.slots) == 2
        js = jobs("a", "b")
        worker.submit(batch(1, js), js)
        worker.child.answer(await in_thread(worker.child.next_batch))
        answers = await asyncio.gather(*(j.future for j in js))
        assert [a.body for a in answers] == [b'{"echo": "a"}', b'{"echo": "b"}']
        assert len(front.slots) == 3 and [d.batch_id for d in front.done] == [1]
        await worker.retire(5.0)

    asyncio.run(run())


def test_death_mid_batch_fails_the_running_batch_and_requeues_the_waiting_one() -> None:
    async def run() -> None:
        front = Front()
        worker = await started(front)
        running, waiting = jobs("a"), jobs("b", "c")
        worker.submit(batch(1, running), running)
        worker.submit(batch(2, waiting), waiting)
        await in_thread(worker.child.next_batch)
        worker.child.die()
        with pytest.raises(WorkerDied, match="died while handling this request"):
            await running[0].future
        await worker.exited.wait()
        assert front.requeued == waiting and not any(j.future.done() for j in waiting)
        assert [j.attempts for j in waiting] == [1, 1] and not worker.alive

    asyncio.run(run())


def test_a_batch_past_response_timeout_fails_with_408_and_the_worker_is_killed() -> None:
    async def run() -> None:
        worker = await started(Front(), timeout=0.05)
        js = jobs("slow")
        worker.submit(batch(1, js), js)
        with pytest.raises(RequestTimeout, match=r"response_timeout \(0.05 s\)"):
            await js[0].future
        await worker.exited.wait()
        assert worker.child.returncode == -9

    asyncio.run(run())


def test_a_timed_out_worker_takes_no_batch_and_gives_back_those_behind() -> None:
    """The batch sent behind the stuck one never started: it goes back to the queue
    instead of failing with the worker, and no new batch goes to the condemned worker."""
    async def run() -> None:
        front = Front()
        worker = await started(front, timeout=0.05)
        stuck, behind = jobs("slow"), jobs("next")
        worker.submit(batch(1, stuck), stuck)
        worker.submit(batch(2, behind), behind)
        with pytest.raises(RequestTimeout):
            await stuck[0].future
        assert not worker.accepting
        assert front.requeued == behind and not behind[0].future.done()
        await worker.exited.wait()
        assert not behind[0].future.done()  # its death fails nothing more

    asyncio.run(run())


def test_retire_lets_in_flight_batches_finish_then_the_child_sees_eof() -> None:
    async def run() -> None:
        front = Front()
        worker = await started(front)
        js = jobs("last")
        worker.submit(batch(1, js), js)
        retiring = asyncio.ensure_future(worker.retire(5.0))
        sent = await in_thread(worker.child.next_batch)
        assert not worker.accepting and not retiring.done()
        worker.child.answer(sent)
        await retiring
        assert (await js[0].future).status == 200
        assert worker.child.returncode == 0  # it exited on EOF, not killed
        assert len(front.slots) == 2  # no new slot offered while retiring

    asyncio.run(run())


def test_a_load_failure_is_a_worker_load_error_with_the_childs_message() -> None:
    async def run() -> None:
        with pytest.raises(WorkerLoadError, match="toy refuses to load"):
            await started(Front(), cls=fake_workers(load_error="toy refuses to load"))

    asyncio.run(run())


def pool(cls: type[FakeWorkerProcess], front: Front, failed: list[str]) -> WorkerPool:
    p = WorkerPool("m-1.0", lambda: SPEC, front.hooks, 30.0, 5.0, on_failed=failed.append)
    p.worker_type = cls
    return p


def test_the_pool_restarts_a_dead_worker() -> None:
    async def run() -> None:
        cls, front = fake_workers(), Front()
        workers = pool(cls, front, [])
        await workers.scale(1)
        await workers.wait_started()
        assert workers.live == 1 and len(cls.made) == 1
        cls.made[0].child.die()
        await until(lambda: workers.live == 1 and len(cls.made) == 2, 10, "a restart")
        assert workers.events.restarts == 1 and not workers.failed()
        await workers.stop(5.0)
        assert workers.live == 0 and workers.wanted == 0

    asyncio.run(run())


def test_the_pool_gives_up_after_three_load_failures() -> None:
    async def run() -> None:
        cls, failed = fake_workers(load_error="no weights"), []
        workers = pool(cls, Front(), failed)
        await workers.scale(1)
        await workers.wait_started()
        assert workers.failed() and failed == ["no weights"] and len(cls.made) == 3
        assert workers.events.load_error == "no weights"

    asyncio.run(run())
