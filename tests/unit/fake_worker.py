"""A fake worker child on the real socketpair, so the front's classes run without torch.

``FakeWorkerProcess`` is a :class:`WorkerProcess` whose ``_spawn`` starts a thread
instead of ``python -m torchwire.workers.child``: the thread speaks the real wire
protocol on the worker's end of the socketpair. A test answers each batch itself
(``child.next_batch()`` then ``child.answer(batch)``) or gives the child an
``answer`` function; ``child.die()`` is a crash (the front sees EOF).
"""

from __future__ import annotations

import json
import queue
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from torchwire.archive import Manifest
from torchwire.config import ServingConfig
from torchwire.devices import GpuAllocator
from torchwire.errors import InvalidInput
from torchwire.handlers.outcome import error_outcome
from torchwire.model import ModelVersion
from torchwire.protocol import (
    Batch,
    BatchDone,
    FrameWriter,
    Item,
    LoadFailed,
    Outcome,
    Ping,
    Pong,
    Ready,
    recv_message,
)
from torchwire.workers.process import WorkerProcess

Answer = Callable[[Item], Outcome]


def echo(item: Item) -> Outcome:
    """Answer ``{"echo": text}``; the text ``bad`` is a bad input (400), as a handler says."""
    text = "".join(p.value.decode() if isinstance(p.value, bytes) else str(p.value)
                   for p in item.params)
    if text == "bad":
        return error_outcome(InvalidInput("the fake cannot read 'bad'"))
    return Outcome(200, json.dumps({"echo": text}).encode(), "application/json")


class FakeChild:
    """The worker's end of the socketpair, served by a thread."""

    def __init__(self, sock: socket.socket, answer: Answer | None, load_error: str | None):
        self.sock = sock
        self.writer = FrameWriter(sock)
        self.answer_fn = answer
        self.load_error = load_error
        self.batches: queue.Queue[Batch] = queue.Queue()
        self.returncode: int | None = None
        self.exited = threading.Event()
        threading.Thread(target=self._run, daemon=True, name="fake-child").start()

    def _run(self) -> None:
        try:
            self._serve()
        except ConnectionResetError:
            pass  # the front closed its end mid-read: as good as end-of-file for a child
        finally:
            self.sock.close()
            if self.returncode is None:
                self.returncode = 0
            self.exited.set()

    def _serve(self) -> None:
        if recv_message(self.sock) is None:
            return
        if self.load_error is not None:
            self.writer.send(LoadFailed(self.load_error))
            self.returncode = 1
            return
        self.writer.send(Ready(4242, "cpu"))
        while (message := recv_message(self.sock)) is not None:  # EOF: the front let go
            if isinstance(message, Batch) and self.answer_fn is not None:
                self.answer(message)
            elif isinstance(message, Batch):
                self.batches.put(message)
            elif isinstance(message, Ping):  # the heartbeat, answered as the real child does
                try:
                    self.writer.send(Pong(message.seq))
                except OSError:
                    return  # the front closed the socket

    def next_batch(self, timeout: float = 10.0) -> Batch:
        return self.batches.get(timeout=timeout)

    def answer(self, batch: Batch, fn: Answer = echo) -> None:
        outcomes = tuple((self.answer_fn or fn)(item) for item in batch.items)
        self.writer.send(BatchDone(batch.batch_id, outcomes, 1.0))

    def die(self, code: int = -9) -> None:
        """Crash: the front reads EOF at once."""
        if self.returncode is None:
            self.returncode = code
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class FakeProc:
    """What WorkerProcess needs of a ``subprocess.Popen``."""

    pid = 4242

    def __init__(self, child: FakeChild) -> None:
        self.child = child

    def poll(self) -> int | None:
        return self.child.returncode if self.child.exited.is_set() else None

    def kill(self) -> None:
        self.child.die()

    def wait(self) -> int | None:
        self.child.exited.wait()
        return self.child.returncode


class FakeWorkerProcess(WorkerProcess):
    """A WorkerProcess whose child is a :class:`FakeChild`; every one made is recorded."""

    answer: ClassVar[Answer | None] = None  # None: the test answers each batch itself
    load_error: ClassVar[str | None] = None
    made: ClassVar[list[FakeWorkerProcess]] = []

    def _spawn(self, child_sock: socket.socket) -> FakeProc:  # type: ignore[override]
        self.child = FakeChild(child_sock.dup(), type(self).answer, type(self).load_error)
        type(self).made.append(self)
        return FakeProc(self.child)


def fake_workers(answer: Answer | None = None, load_error: str | None = None
                 ) -> type[FakeWorkerProcess]:
    """A fresh FakeWorkerProcess class (its own ``made`` list) with these behaviours."""
    return type("Fake", (FakeWorkerProcess,), {"answer": staticmethod(answer) if answer else None,
                                               "load_error": load_error, "made": []})


def fake_model(name: str = "m", answer: Answer | None = echo, queue_size: int = 10
               ) -> ModelVersion:
    """A ModelVersion whose workers are fake children (call ``await model.start()``)."""
    config = ServingConfig(min_workers=1, max_workers=1, batch_size=4, max_batch_delay=5,
                           response_timeout=30, startup_timeout=5, job_queue_size=queue_size)
    manifest = Manifest(model_name=name, handler="fake.py")
    model = ModelVersion(manifest, Path("/nowhere"), {}, config, GpuAllocator(0))
    model.pool.worker_type = fake_workers(answer)
    return model
