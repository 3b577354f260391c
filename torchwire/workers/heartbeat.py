"""The front's heartbeat for one worker: a process that stops answering is replaced.

Every ``timeout / 5`` seconds (at least 0.2 s) the front sends a ``Ping``; the worker's
reader thread answers it whatever its handler is doing, so a long computation never
looks like a hang. A worker that has not been heard from (any message counts) for
``timeout`` seconds is stopped (SIGSTOP), deadlocked outside Python, or starved: it
is reported unhealthy, its batch fails with a 503 and it is killed, so the pool
starts a replacement. A stall of the front's own event loop is never blamed on it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Protocol


class Beating(Protocol):
    alive: bool
    last_heard: float  # time.monotonic() of the worker's last message

    def ping(self, seq: int) -> None: ...

    def unresponsive_for(self, seconds: float) -> None: ...


def interval_for(timeout: float) -> float:
    return max(0.2, timeout / 5)


async def watch(worker: Beating, timeout: float) -> None:
    """Ping ``worker`` until it ends; declare it unresponsive after ``timeout`` silent s."""
    interval = interval_for(timeout)
    for seq in itertools.count():
        if not worker.alive:
            return
        sent = time.monotonic()
        worker.ping(seq)
        await asyncio.sleep(interval)
        now = time.monotonic()
        if now - sent > 2 * interval + 1.0:
            worker.last_heard = now  # our own loop stalled: its answers may still be queued
            continue
        silent = now - worker.last_heard
        if worker.alive and silent > timeout:
            worker.unresponsive_for(silent)
            return
