"""Notice a client that leaves while its request waits: its queued work is then never done.

Once a request's body is read, the only message the server can still receive for
it is ``http.disconnect``. While the request waits for its first answer, a watcher
listens for that message and abandons the request: if it is still queued it is
dropped (and counted), if a worker already has it the answer is discarded.
``/predictions`` abandons its stream; the KServe routes, which await
``ModelVersion.infer``, have their waiting task cancelled, which cancels its jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from starlette.types import Receive

from torchwire.errors import ClientGone
from torchwire.stream import ResponseStream

T = TypeVar("T")


@contextmanager
def abandon_on_disconnect(receive: Receive, stream: ResponseStream) -> Iterator[None]:
    """Within the block, a client that disconnects abandons ``stream``."""
    watcher = asyncio.get_running_loop().create_task(_watch(receive, stream))
    try:
        yield
    finally:
        watcher.cancel()


async def _watch(receive: Receive, stream: ResponseStream) -> None:
    await _disconnected(receive)
    stream.abandon()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_client_leaves(receive: Receive, work: Awaitable[T]) -> T:
    """``work``'s result; if the client disconnects first, ``work`` is cancelled."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ClientGone("the client left before its answer")
    return task.result()
