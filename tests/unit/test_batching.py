"""Batch cutting: size, delay from the first arrival, queue bound, skipped cancelled jobs."""

from __future__ import annotations

import asyncio

import pytest

from torchwire.batching import Batcher, Job
from torchwire.errors import ServiceUnavailable
from torchwire.protocol import EXPLAIN, PREDICT, Batch, Item, Kind


class FakeSlot:
    """Records the batches it is given; a test hands back slots explicitly."""

    def __init__(self) -> None:
        self.accepting = True
        self.batches: asyncio.Queue[tuple[Batch, list[Job]]] = asyncio.Queue()

    def submit(self, batch: Batch, jobs: list[Job]) -> None:
        self.batches.put_nowait((batch, jobs))


def job(name: str, explain: bool = False) -> Job:
    loop = asyncio.get_running_loop()
    kind: Kind = EXPLAIN if explain else PREDICT
    return Job(Item(name, (), {}), loop.create_future(), loop.time(), kind)


def ids(batch: Batch) -> list[str]:
    return [i.request_id for i in batch.items]


async def started(batch_size: int, delay_ms: float, queue: int = 100) -> tuple[Batcher, FakeSlot]:
    batcher = Batcher(batch_size, delay_ms, queue)
    slot = FakeSlot()
    batcher.start()
    return batcher, slot


def test_full_batch_is_cut_without_waiting_for_the_delay() -> None:
    async def scenario() -> None:
        batcher, slot = await started(4, 60_000)
        for i in range(6):
            batcher.submit(job(f"r{i}"))
        batcher.slot_free(slot)
        batch, _ = await asyncio.wait_for(slot.batches.get(), 5)
        assert ids(batch) == ["r0", "r1", "r2", "r3"]
        await batcher.stop()

    asyncio.run(scenario())


def test_short_batch_waits_at_most_max_delay_from_first_arrival() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        batcher, slot = await started(8, 100)
        first = job("a")
        batcher.submit(first)
        batcher.slot_free(slot)
        batch, _ = await asyncio.wait_for(slot.batches.get(), 5)
        waited = loop.time() - first.arrived
        assert ids(batch) == ["a"]
        assert 0.09 <= waited < 0.5
        await batcher.stop()

    asyncio.run(scenario())


def test_jobs_arriving_within_the_delay_join_the_batch() -> None:
    async def scenario() -> None:
        batcher, slot = await started(8, 300)
        batcher.submit(job("a"))
        batcher.slot_free(slot)
        await asyncio.sleep(0.05)  # a second client arrives later (this is the scenario)
        batcher.submit(job("b"))
        batch, _ = await asyncio.wait_for(slot.batches.get(), 5)
        assert ids(batch) == ["a", "b"]
        await batcher.stop()

    asyncio.run(scenario())


def test_no_batch_is_cut_until_a_worker_slot_is_free() -> None:
    async def scenario() -> None:
        batcher, slot = await started(2, 0)
        for name in "abc":
            batcher.submit(job(name))
        for _ in range(20):
            await asyncio.sleep(0)  # let the dispatch loop run as far as it can
        assert slot.batches.empty()
        batcher.slot_free(slot)
        batcher.slot_free(slot)
        first, _ = await asyncio.wait_for(slot.batches.get(), 5)
        second, _ = await asyncio.wait_for(slot.batches.get(), 5)
        assert (ids(first), ids(second)) == (["a", "b"], ["c"])
        await batcher.stop()

    asyncio.run(scenario())


def test_queue_bound_refuses_with_503() -> None:
    async def scenario() -> None:
        batcher = Batcher(1, 0, 2)
        batcher.submit(job("a"))
        batcher.submit(job("b"))
        with pytest.raises(ServiceUnavailable) as err:
            batcher.submit(job("c"))
        assert err.value.status == 503 and "queue is full" in err.value.message

    asyncio.run(scenario())


def test_cancelled_jobs_are_skipped_and_requeued_jobs_go_first() -> None:
    async def scenario() -> None:
        batcher, slot = await started(3, 0)
        gone, kept, later = job("gone"), job("kept"), job("later")
        for j in (gone, kept, later):
            batcher.submit(j)
        gone.future.cancel()
        retry = job("retry")
        batcher.requeue([retry])
        batcher.slot_free(slot)
        batch, _ = await asyncio.wait_for(slot.batches.get(), 5)
        assert ids(batch) == ["retry", "kept", "later"]
        await batcher.stop()

    asyncio.run(scenario())


def test_explanations_are_batched_alone() -> None:
    async def scenario() -> None:
        batcher, slot = await started(4, 0)
        batcher.submit(job("p1"))
        batcher.submit(job("x", explain=True))
        batcher.submit(job("p2"))
        for _ in range(3):
            batcher.slot_free(slot)
        got = [await asyncio.wait_for(slot.batches.get(), 5) for _ in range(3)]
        assert [(ids(b), b.explain) for b, _ in got] == [
            (["p1"], False), (["x"], True), (["p2"], False)]
        await batcher.stop()

    asyncio.run(scenario())


def test_a_slot_that_stopped_accepting_is_passed_over() -> None:
    async def scenario() -> None:
        batcher, slot = await started(1, 0)
        dead = FakeSlot()
        dead.accepting = False
        batcher.slot_free(dead)
        batcher.slot_free(slot)
        batcher.submit(job("a"))
        batch, _ = await asyncio.wait_for(slot.batches.get(), 5)
        assert ids(batch) == ["a"] and dead.batches.empty()
        await batcher.stop()

    asyncio.run(scenario())
