"""Batch cutting: size, delay from the first arrival, the batch policy for idle workers,
queue bound, skipped cancelled and expired jobs."""

from __future__ import annotations

import asyncio

import pytest

from torchwire.batching import TORCHSERVE, Batcher, Job, deadline_of
from torchwire.errors import BadRequest, RequestTimeout, ServiceUnavailable
from torchwire.protocol import EXPLAIN, PREDICT, Batch, Item, Kind


class FakeSlot:
    """Records the batches it is given; a test hands back slots explicitly.

    ``idle`` says whether its worker computes nothing (busy by default: the delay rules).
    """

    def __init__(self, idle: bool = False) -> None:
        self.accepting = True
        self.idle = idle
        self.batches: asyncio.Queue[tuple[Batch, list[Job]]] = asyncio.Queue()

    def submit(self, batch: Batch, jobs: list[Job]) -> None:
        self.batches.put_nowait((batch, jobs))


def job(name: str, explain: bool = False) -> Job:
    loop = asyncio.get_running_loop()
    kind: Kind = EXPLAIN if explain else PREDICT
    return Job(Item(name, (), {}), loop.create_future(), loop.time(), kind)


def ids(batch: Batch) -> list[str]:
    return [i.request_id for i in batch.items]


async def started(batch_size: int, delay_ms: float, queue: int = 100, idle: bool = False,
                  policy: str = "adaptive") -> tuple[Batcher, FakeSlot]:
    batcher = Batcher(batch_size, delay_ms, queue, policy)
    slot = FakeSlot(idle)
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


def test_an_idle_worker_gets_a_lone_request_at_once() -> None:
    async def scenario() -> None:
        batcher, slot = await started(8, 60_000, idle=True)
        batcher.slot_free(slot)
        batcher.submit(job("a"))
        batch, _ = await asyncio.wait_for(slot.batches.get(), 5)
        assert ids(batch) == ["a"]
        await batcher.stop()

    asyncio.run(scenario())


def test_torchserve_policy_makes_a_lone_request_wait_for_an_idle_worker_too() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        batcher, slot = await started(8, 100, idle=True, policy=TORCHSERVE)
        first = job("a")
        batcher.slot_free(slot)
        batcher.submit(first)
        batch, _ = await asyncio.wait_for(slot.batches.get(), 5)
        assert ids(batch) == ["a"] and loop.time() - first.arrived >= 0.09
        await batcher.stop()

    asyncio.run(scenario())


def test_a_batch_for_a_busy_worker_goes_when_a_worker_turns_idle() -> None:
    async def scenario() -> None:
        batcher, busy = await started(8, 60_000)
        batcher.slot_free(busy)
        batcher.submit(job("a"))
        batcher.submit(job("b"))
        for _ in range(20):
            await asyncio.sleep(0)  # the batch waits for companions: its worker is busy
        assert busy.batches.empty()
        idle = FakeSlot(idle=True)
        batcher.slot_free(idle)  # another worker finished everything it had
        batch, _ = await asyncio.wait_for(idle.batches.get(), 5)
        assert ids(batch) == ["a", "b"] and busy.batches.empty()
        await batcher.stop()

    asyncio.run(scenario())


def test_an_expired_job_is_answered_408_and_never_dispatched() -> None:
    async def scenario() -> None:
        batcher, slot = await started(4, 0)
        late, fresh = job("late"), job("fresh")
        late.deadline = late.arrived  # its deadline has passed
        batcher.submit(late)
        batcher.submit(fresh)
        batcher.slot_free(slot)
        batch, _ = await asyncio.wait_for(slot.batches.get(), 5)
        assert ids(batch) == ["fresh"]
        with pytest.raises(RequestTimeout):
            late.future.result()
        assert (batcher.stats.expired, batcher.stats.dispatched) == (1, 1)
        await batcher.stop()

    asyncio.run(scenario())


def test_cancelled_jobs_are_counted_and_make_room_in_a_full_queue() -> None:
    async def scenario() -> None:
        batcher = Batcher(1, 0, 2)
        gone = job("gone")
        batcher.submit(gone)
        batcher.submit(job("b"))
        gone.future.cancel()
        batcher.submit(job("c"))  # the cancelled one no longer holds a place
        assert [j.item.request_id for j in batcher.pending] == ["b", "c"]
        assert batcher.stats.cancelled == 1

    asyncio.run(scenario())


@pytest.mark.parametrize("raw", ["soon", "0", "-1", "nan", "inf"])
def test_a_bad_request_timeout_header_is_a_400(raw: str) -> None:
    with pytest.raises(BadRequest) as err:
        deadline_of(Item("r", (), {"x-request-timeout": raw}), 0.0)
    assert "X-Request-Timeout" in err.value.message


def test_the_request_timeout_header_sets_the_deadline() -> None:
    assert deadline_of(Item("r", (), {"x-request-timeout": "2.5"}), 10.0) == 12.5
    assert deadline_of(Item("r", (), {}), 10.0) is None


def test_a_job_whose_client_left_while_its_batch_filled_is_not_dispatched() -> None:
    async def scenario() -> None:
        batcher, slot = await started(4, 200)
        stays, leaves = job("stays"), job("leaves")
        batcher.slot_free(slot)
        batcher.submit(stays)
        batcher.submit(leaves)
        await asyncio.sleep(0.05)  # the scenario: the client leaves while the batch waits
        leaves.future.cancel()
        batch, _ = await asyncio.wait_for(slot.batches.get(), 5)
        assert ids(batch) == ["stays"] and batcher.stats.cancelled == 1
        await batcher.stop()

    asyncio.run(scenario())


def test_a_wait_ended_at_the_clients_deadline_says_so() -> None:
    async def scenario() -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        waiting = job("w")
        waiting.deadline = loop.time() + 0.002  # a timer firing a tick early still counts
        early = waiting.timeout_error(60.0).message
        waiting.deadline = loop.time() + 30
        return early, waiting.timeout_error(60.0).message

    early, late = asyncio.run(scenario())
    assert "X-Request-Timeout" in early and late == "no worker answered within 60 s"
