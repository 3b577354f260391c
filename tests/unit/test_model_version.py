"""ModelVersion with fake workers: states, submit().result(), typed errors, scaling, stop."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.fake_worker import fake_model
from torchwire.errors import BadRequest, ServiceUnavailable
from torchwire.model import ModelState
from torchwire.protocol import Item, Param


def item(text: str) -> Item:
    return Item(f"r-{text}", (Param("body", text.encode()),), {})


def test_a_started_model_is_ready_and_answers() -> None:
    async def run() -> None:
        model = fake_model()
        assert model.state is ModelState.LOADING
        await model.start()
        assert model.state is ModelState.READY and model.healthy
        outcome = await model.submit(item("hi")).result()
        assert outcome.status == 200 and outcome.body == b'{"echo": "hi"}'
        await model.stop(5.0)
        assert model.state is ModelState.UNLOADING

    asyncio.run(run())


def test_a_failed_answer_raises_its_typed_error() -> None:
    async def run() -> None:
        model = fake_model()
        await model.start()
        with pytest.raises(BadRequest) as caught:
            await model.submit(item("bad")).result()
        assert caught.value.type_name == "InvalidInputException"
        assert caught.value.message == "the fake cannot read 'bad'"
        await model.stop(5.0)

    asyncio.run(run())


def test_scaled_to_zero_it_is_stopped_and_refuses_with_a_503_saying_how_to_scale() -> None:
    async def run() -> None:
        model = fake_model()
        await model.start()
        await model.scale(0)
        assert model.state is ModelState.STOPPED and model.healthy
        with pytest.raises(ServiceUnavailable, match=r"min_worker=1"):
            model.submit(item("hi"))
        await model.scale(1)
        assert (await model.submit(item("again")).result()).status == 200
        await model.stop(5.0)

    asyncio.run(run())


def test_a_full_queue_refuses_with_a_503() -> None:
    async def run() -> None:
        model = fake_model(queue_size=1)
        model.batcher.start()  # no worker started: the first request stays queued
        stream = model.submit(item("one"))
        with pytest.raises(ServiceUnavailable, match="job queue is full"):
            model.submit(item("two"))
        stream.close()
        await model.batcher.stop()

    asyncio.run(run())


def test_stop_answers_what_it_accepted_first() -> None:
    async def run() -> None:
        model = fake_model()
        await model.start()
        streams = [model.submit(item(str(i))) for i in range(6)]
        await model.stop(5.0)
        answers = await asyncio.gather(*(s.result() for s in streams))
        assert [a.status for a in answers] == [200] * 6

    asyncio.run(run())
