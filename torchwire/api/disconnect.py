"""Notice a client that leaves while its request waits: its queued work is then never done.

Once a request's body is read, the only message the server can still receive for
it is ``http.disconnect``. While the request waits for its first answer, a watcher
listens for that message and abandons the request's stream: if it is still queued
it is dropped (and counted), if a worker already has it the answer is discarded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.types import Receive

from torchwire.stream import ResponseStream


@contextmanager
def abandon_on_disconnect(receive: Receive, stream: ResponseStream) -> Iterator[None]:
    """Within the block, a client that disconnects abandons ``stream``."""
    watcher = asyncio.get_running_loop().create_task(_watch(receive, stream))
    try:
        yield
    finally:
        watcher.cancel()


async def _watch(receive: Receive, stream: ResponseStream) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            stream.abandon()
            return
