"""ResponseStream, the one way to wait for an answer: result(), typed errors, the bound on
unread chunks (a reader that falls too far behind loses its stream)."""

from __future__ import annotations

import asyncio

import pytest

from torchwire.batching import Job
from torchwire.errors import BadRequest, InternalError, InvalidInput, RequestTimeout
from torchwire.handlers.outcome import error_outcome
from torchwire.protocol import Item, Outcome, Param
from torchwire.stream import ResponseStream


def chunk(size: int) -> Outcome:
    return Outcome(200, b"x" * size, "text/plain", {})


def new_job() -> Job:
    loop = asyncio.get_running_loop()
    return Job(Item("r1", (Param("body", b"hi"),), {}), loop.create_future(), loop.time())


def test_chunks_within_the_bound_arrive_in_order_then_the_final_answer() -> None:
    async def run() -> list[bytes]:
        job = new_job()
        stream = ResponseStream(job, limit=5.0, max_buffered=100)
        assert job.on_partial is not None
        for size in (40, 50):
            job.on_partial(chunk(size))
        job.answer(chunk(7))
        return [outcome.body async for outcome in stream]

    assert [len(b) for b in asyncio.run(run())] == [40, 50, 7]


def test_a_reader_too_far_behind_gets_an_error_and_the_request_stops_listening() -> None:
    async def run() -> None:
        job = new_job()
        stream = ResponseStream(job, limit=5.0, max_buffered=100)
        push = job.on_partial
        assert push is not None
        push(chunk(60))
        assert (await anext(stream)).body == b"x" * 60  # read: no longer counts
        push(chunk(60))
        push(chunk(60))  # 120 bytes unread now
        with pytest.raises(InternalError, match="too slowly"):
            await anext(stream)
        assert job.future.cancelled()  # a queued request would not run any more
        assert job.on_partial is None  # later chunks are dropped
        with pytest.raises(StopAsyncIteration):
            await anext(stream)

    asyncio.run(run())


def test_a_waiting_reader_learns_of_the_overflow_at_once() -> None:
    async def run() -> None:
        job = new_job()
        stream = ResponseStream(job, limit=5.0, max_buffered=10)
        reader = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)  # one loop step: the reader runs up to its wait
        assert job.on_partial is not None
        job.on_partial(chunk(11))
        with pytest.raises(InternalError, match="too slowly"):
            await reader

    asyncio.run(run())


def test_result_is_the_final_answer_after_dropping_intermediate_ones() -> None:
    async def run() -> Outcome:
        job = new_job()
        stream = ResponseStream(job, limit=5.0)
        assert job.on_partial is not None
        job.on_partial(chunk(3))
        job.answer(chunk(7))
        return await stream.result()

    assert len(asyncio.run(run()).body) == 7


def test_result_raises_the_workers_error_with_its_status_and_type_name() -> None:
    async def run() -> None:
        job = new_job()
        stream = ResponseStream(job, limit=5.0)
        job.answer(error_outcome(InvalidInput("toy cannot read 'bad'")))
        with pytest.raises(BadRequest) as caught:
            await stream.result()
        assert caught.value.to_json() == {"code": 400, "type": "InvalidInputException",
                                          "message": "toy cannot read 'bad'"}

    asyncio.run(run())


def test_a_workers_error_keeps_its_type_name_whatever_face_rebuilds_it() -> None:
    """400 alone would be a BadRequestException; the worker said InvalidInputException."""
    failed = error_outcome(InvalidInput("not an image"))
    assert failed.error is not None
    err = failed.error.as_error()
    assert (err.status, err.type_name, err.message) == (400, "InvalidInputException",
                                                        "not an image")


def test_result_times_out_with_a_request_timeout() -> None:
    async def run() -> None:
        job = new_job()
        stream = ResponseStream(job, limit=0.01)
        with pytest.raises(RequestTimeout, match="no worker answered within 0.01 s"):
            await stream.result()
        assert job.future.done()  # given up: the batcher never dispatches it

    asyncio.run(run())
