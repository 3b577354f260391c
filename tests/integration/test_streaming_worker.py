"""A streaming handler in a worker loaded in-process: which intermediate frames it sends."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TOY
from torchwire.batching import Job
from torchwire.compat.streaming import send_intermediate_predict_response
from torchwire.errors import HandlerError, RequestTimeout
from torchwire.handlers.context import Context
from torchwire.protocol import Batch, Item, Outcome, Param, Partial, WorkerSpec
from torchwire.stream import ResponseStream
from torchwire.workers.child import Worker, load
from torchwire.workers.partials import PartialSender

CHUNK = Outcome(200, b"piece", "text/plain")


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    shutil.copy(TOY / "stream_handler.py", tmp_path)
    manifest = {"runtime": "python", "model": {"modelName": "s", "modelVersion": "1.0",
                                               "handler": "stream_handler.py"}}
    spec = WorkerSpec("s", "1.0", str(tmp_path), manifest, "stream_handler.py", 4, 10, None, 1)
    yield load(spec)
    sys.modules.pop("stream_handler", None)
    sys.path[:] = [p for p in sys.path if p != str(tmp_path)]


def text_item(rid: str, text: str, ctype: str = "text/plain") -> Item:
    return Item(rid, (Param("body", text.encode(), ctype),), {})


def chunks(frames: list[object]) -> list[tuple[int, str, str]]:
    out = []
    for frame in frames:
        assert isinstance(frame, Partial) and frame.batch_id == 7
        out.append((frame.index, frame.request_id, frame.outcome.body.decode()))
    return out


def test_intermediates_name_their_batch_position_and_are_not_repeated_by_reruns(
        worker: Worker) -> None:
    frames: list[object] = []
    batch = Batch(7, (text_item("r0", "{bad", "application/json"), text_item("r1", "a"),
                      text_item("r2", "boom")))
    outcomes = worker.run(batch, frames.append)
    # The batch of a and boom failed after their first tokens; a ran again alone and only
    # its new tokens went out; boom's rerun produced nothing new before it failed again.
    assert chunks(frames) == [(1, "r1", "a0|"), (2, "r2", "boom0|"),
                              (1, "r1", "a1|"), (1, "r1", "a2|")]
    assert [o.status for o in outcomes] == [400, 200, 500]
    assert outcomes[1].body == b"a-end/1"
    first = frames[0]
    assert isinstance(first, Partial)
    assert first.outcome == Outcome(200, b"a0|", "text/plain; charset=utf-8")


def test_without_a_sender_the_final_answers_are_unchanged(worker: Worker) -> None:
    outcomes = worker.run(Batch(1, (text_item("r0", "a"), text_item("r1", "b"))))
    assert [o.body for o in outcomes] == [b"a-end/2", b"b-end/2"]


def test_the_sender_counts_chunks_per_request_across_attempts() -> None:
    sent: list[object] = []
    sender = PartialSender(sent.append, 3, 2)
    ok = Outcome(200, b"x", "text/plain")
    sender.attempt([0, 1])
    sender.send(0, "a", ok)
    sender.send(1, "b", ok)
    sender.attempt([1])
    sender.send(1, "b", ok)  # the rerun's first chunk: already delivered
    sender.send(1, "b", ok)
    assert [(p.index, p.request_id) for p in sent if isinstance(p, Partial)] == [
        (0, "a"), (1, "b"), (1, "b")]
    assert sender.delivered == [1, 2]


def test_send_intermediate_outside_handle_or_for_unknown_requests_says_so() -> None:
    ctx = Context("m", "/tmp", {}, 2, None)
    with pytest.raises(HandlerError, match="only be called while handle"):
        ctx.send_intermediate(0, "x")
    got: list[tuple[int, object]] = []
    ctx.start_batch(["id-a", "id-b"], [{}, {}], lambda i, v: got.append((i, v)))
    ctx.send_intermediate("id-b", "by id")
    ctx.send_intermediate(0, "by index")
    with pytest.raises(HandlerError, match="no request at index 2 in a batch of 2"):
        ctx.send_intermediate(2, "x")
    with pytest.raises(HandlerError, match="no request with id 'id-c'"):
        ctx.send_intermediate("id-c", "x")
    with pytest.raises(HandlerError, match="no response for request 1 in a list of 1"):
        send_intermediate_predict_response(["only one"], ctx.request_ids, "", 200, ctx)
    with pytest.raises(HandlerError, match="needs the handler's context"):
        send_intermediate_predict_response(["x"], {0: "id-a"}, "", 200)
    assert got == [(1, "by id"), (0, "by index"), (0, "only one")]
    ctx.end_batch()
    with pytest.raises(HandlerError):
        ctx.send_intermediate(0, "x")


def test_an_intermediate_response_extends_the_callers_wait() -> None:
    final = Outcome(200, b"final", "text/plain")

    async def wait_past_the_first_deadline() -> list[Outcome]:
        loop = asyncio.get_running_loop()
        job = Job(text_item("r", "x"), loop.create_future(), loop.time())
        stream = ResponseStream(job, 1.0)
        assert job.on_partial is not None
        loop.call_later(0.5, job.on_partial, CHUNK)  # moves the deadline from 1.0 s to 1.5 s
        loop.call_later(1.25, job.answer, final)
        return await stream.results()

    assert asyncio.run(wait_past_the_first_deadline()) == [CHUNK, final]


def test_a_clients_deadline_bounds_the_wait_even_after_an_intermediate_response() -> None:
    async def wait() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        item = text_item("r", "x")
        job = Job(item, loop.create_future(), start, deadline=start + 0.3)
        stream = ResponseStream(job, 10.0)
        assert job.on_partial is not None
        loop.call_later(0.1, job.on_partial, CHUNK)  # the model is at work; still 0.3 s
        with pytest.raises(RequestTimeout, match="X-Request-Timeout"):
            await stream.results()
        return loop.time() - start

    assert asyncio.run(wait()) < 5.0
