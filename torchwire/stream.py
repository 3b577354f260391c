"""ResponseStream: one request's answers as they arrive, for the APIs that stream.

A streaming handler sends intermediate responses before it returns; the worker
forwards each at once and the request's stream yields them in order, then the
final outcome (what ``handle()`` returned). For an ordinary handler the stream
yields just the final outcome. Nothing waits on the client: chunks it has not
read yet wait here, and the worker never blocks on a slow or vanished client;
a client so slow that more than ``max_buffered`` bytes of its answer wait unread
loses the stream (it ends with an error) rather than the front its memory.
"""

from __future__ import annotations

import asyncio
from collections import deque

from torchwire.batching import Job
from torchwire.errors import ClientGone, InternalError
from torchwire.protocol import Outcome

MAX_BUFFERED = 64 * 1024 * 1024  # bytes of one request's chunks that may wait unread


class ResponseStream:
    """The one way to wait for an answer (``ModelVersion.submit`` returns it).

    ``await stream.result()`` is the final answer, or raises its ServeError. Iterate
    it for every Outcome as it arrives (a failed one is yielded with its ``error``
    set, for REST to send as the worker built it); ``finished`` turns True with the
    final one. A failure in the front (a timeout, a dead worker) raises its ServeError
    from the iteration. Each wait is bounded by ``limit`` seconds (every chunk
    restarts it).
    """

    __slots__ = ("_job", "_limit", "_chunks", "_wake", "_buffered", "_max_buffered",
                 "_overflow", "finished", "partials")

    def __init__(self, job: Job, limit: float, max_buffered: int = MAX_BUFFERED) -> None:
        self._job = job
        self._limit = limit
        self._chunks: deque[Outcome] = deque()
        self._buffered = 0  # bytes of the chunks in _chunks
        self._max_buffered = max_buffered
        self._overflow = False
        self._wake: asyncio.Future[None] | None = None
        self.finished = False
        self.partials = 0  # intermediate responses handed out so far
        job.on_partial = self._push
        job.on_settled = self._wakeup

    @property
    def request_id(self) -> str:
        return self._job.item.request_id

    def _push(self, outcome: Outcome) -> None:
        self._buffered += len(outcome.body)
        if self._buffered > self._max_buffered:
            self.close()
            self._overflow = True
        else:
            self._chunks.append(outcome)
        self._wakeup()

    def _wakeup(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def __aiter__(self) -> ResponseStream:
        return self

    def _check_overflow(self) -> None:
        if self._overflow:
            self._overflow = False  # said once; the stream is over
            raise InternalError(
                f"request {self.request_id}: the client read its streamed answer too slowly "
                f"(more than {self._max_buffered} bytes waited unread), so the stream was ended")

    async def __anext__(self) -> Outcome:
        self._check_overflow()
        if self.finished:
            raise StopAsyncIteration
        future = self._job.future
        while not self._chunks and not future.done():
            self._wake = wake = future.get_loop().create_future()
            try:
                async with asyncio.timeout(self._job.wait_limit(self._limit)):
                    await wake
            except TimeoutError:
                err = self._job.timeout_error(self._limit)
                self._job.give_up(err)  # still queued: it is never dispatched
                self.close()
                raise err from None
            finally:
                self._wake = None
        self._check_overflow()
        if future.cancelled():
            self.finished = True
            raise ClientGone(f"request {self.request_id}: the client left before its answer")
        if self._chunks:
            self.partials += 1
            chunk = self._chunks.popleft()
            self._buffered -= len(chunk.body)
            return chunk
        self._detach()
        return future.result()

    def abandon(self) -> None:
        """The client left: stop listening, and wake the reader (it raises ClientGone)."""
        self.close()
        self._wakeup()

    async def results(self) -> list[Outcome]:
        """Every answer in order (intermediate ones, then the final one).

        Raises the ServeError of the first failed answer (a handler's error, a timeout,
        a dead worker); the stream is closed afterwards either way.
        """
        try:
            return [outcome.check() async for outcome in self]
        finally:
            self.close()

    async def result(self) -> Outcome:
        """The final answer (intermediate ones are read and dropped); raises like results()."""
        last: Outcome | None = None
        try:
            async for outcome in self:
                last = outcome.check()
        finally:
            self.close()
        if last is None:
            raise InternalError(f"request {self.request_id} ended without an answer")
        return last

    def _detach(self) -> None:
        """The last answer is out: unhook from the job (no reference cycle is left)."""
        self.finished = True
        self._job.on_partial = None
        self._job.on_settled = None

    def close(self) -> None:
        """Stop listening: later chunks are dropped, and a request still queued never runs.

        A batch already running goes on (its other requests are not affected).
        """
        self._detach()
        self._chunks.clear()
        self._buffered = 0
        if not self._job.future.done():
            self._job.future.cancel()
