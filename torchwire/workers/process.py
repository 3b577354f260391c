"""WorkerProcess: the front's handle on one spawned worker process.

It owns the socket to the worker, the batches in flight there, and their
response timers. It notices the worker's death at once (socket EOF): the batch
that was computing fails with a 503, batches that had not started go back to
the batcher, so no request is left without an answer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from torchwire.batching import Job
from torchwire.config.environment import environment
from torchwire.errors import RequestTimeout, ServeError, WorkerDied, WorkerUnresponsive
from torchwire.logs import MODEL_LOG
from torchwire.protocol import (
    HEADER,
    Batch,
    BatchDone,
    LoadFailed,
    Partial,
    Ping,
    Ready,
    WorkerSpec,
    decode,
    encode,
)
from torchwire.workers import heartbeat

log = logging.getLogger(__name__)

SLOTS_PER_WORKER = 2  # one batch computing, one waiting in the worker


class WorkerLoadError(Exception):
    """The worker could not load its model (its message says why)."""


@dataclass
class InFlight:
    batch: Batch
    jobs: list[Job]
    timer: asyncio.TimerHandle | None


@dataclass(frozen=True)
class WorkerHooks:
    """How a worker reports back to its model: free slots, re-queued jobs, batch timings."""

    slot_free: Callable[[WorkerProcess], None]
    requeue: Callable[[list[Job]], None]
    batch_done: Callable[[list[Job], BatchDone], None]
    loaded: Callable[[WorkerProcess, float], None] | None = None  # seconds from spawn to Ready


def worker_env(threads: int, gpu_id: int | None) -> dict[str, str]:
    env = environment()
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    if gpu_id is not None:
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    return env


class WorkerProcess:
    def __init__(
        self,
        worker_id: str,
        spec: WorkerSpec,
        hooks: WorkerHooks,
        response_timeout: float,
        log_output: bool = False,
        heartbeat_timeout: float = 5.0,
    ) -> None:
        self.worker_id = worker_id
        self.spec = spec
        self.hooks = hooks
        self.response_timeout = response_timeout
        self.log_output = log_output  # True: the worker's output goes to the model log
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.device = "cpu"
        self.started_at = time.time()
        self.alive = False
        self.retiring = False
        self.heartbeat_timeout = heartbeat_timeout
        self.last_heard = time.monotonic()
        self.unresponsive = False  # missed its heartbeats: being replaced
        self._heartbeat: asyncio.Task[None] | None = None
        self.inflight: dict[int, InFlight] = {}
        self.exited = asyncio.Event()
        self._drained = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    @property
    def accepting(self) -> bool:
        return self.alive and not self.retiring

    @property
    def idle(self) -> bool:
        """No batch is computing or waiting here: a batch sent now starts at once."""
        return not self.inflight

    @property
    def gpu_id(self) -> int | None:
        return self.spec.gpu_id

    # -- start -----------------------------------------------------------------
    def _spawn(self, child_sock: socket.socket) -> subprocess.Popen[bytes]:
        fd = child_sock.fileno()
        out = subprocess.PIPE if self.log_output else None
        proc = subprocess.Popen(
            [sys.executable, "-m", "torchwire.workers.child", str(fd)],
            pass_fds=(fd,),
            env=worker_env(self.spec.threads, self.spec.gpu_id),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            start_new_session=True,
        )
        if proc.stdout is not None:
            threading.Thread(target=forward_output, args=(proc.stdout, self.worker_id),
                             daemon=True, name=f"log-{self.worker_id}").start()
        return proc

    async def start(self, startup_timeout: float) -> None:
        """Spawn the worker and wait until its model is loaded."""
        spawned = time.monotonic()
        parent_sock, child_sock = socket.socketpair()
        try:
            self.proc = self._spawn(child_sock)
        finally:
            child_sock.close()
        self.pid = self.proc.pid
        reader, self._writer = await asyncio.open_unix_connection(sock=parent_sock)
        self._writer.write(encode(self.spec))
        try:
            async with asyncio.timeout(startup_timeout):
                first = await self._read_message(reader)
        except TimeoutError:
            self.kill()
            raise WorkerLoadError(f"model did not load within {startup_timeout:g} s") from None
        if isinstance(first, LoadFailed):
            await self._reap()
            raise WorkerLoadError(first.message)
        if not isinstance(first, Ready):
            self.kill()
            await self._reap()
            raise WorkerLoadError("worker exited while loading the model (see the model log)")
        self.device = first.device
        self.started_at = time.time()
        if self.hooks.loaded is not None:
            self.hooks.loaded(self, time.monotonic() - spawned)
        self.alive = True
        loop = asyncio.get_running_loop()
        self._reader_task = loop.create_task(self._read_loop(reader))
        self.last_heard = time.monotonic()
        self._heartbeat = loop.create_task(heartbeat.watch(self, self.heartbeat_timeout))
        for _ in range(SLOTS_PER_WORKER):
            self.hooks.slot_free(self)

    @staticmethod
    async def _read_message(reader: asyncio.StreamReader) -> object | None:
        try:
            header = await reader.readexactly(HEADER.size)
            (size,) = HEADER.unpack(header)
            return decode(await reader.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    # -- batches -----------------------------------------------------------------
    def submit(self, batch: Batch, jobs: list[Job]) -> None:
        assert self._writer is not None
        timer = None
        if not self.inflight:
            timer = self._arm_timer(batch.batch_id)
        self.inflight[batch.batch_id] = InFlight(batch, jobs, timer)
        now, stamp = asyncio.get_running_loop().time(), time.perf_counter()
        for job in jobs:
            job.dispatched, job.sent = now, stamp
        self._writer.write(encode(batch))

    def _arm_timer(self, batch_id: int) -> asyncio.TimerHandle:
        loop = asyncio.get_running_loop()
        return loop.call_later(self.response_timeout, self._timed_out, batch_id)

    def _timed_out(self, batch_id: int) -> None:
        entry = self.inflight.pop(batch_id, None)
        if entry is None:
            return
        log.warning("worker %s: batch exceeded %g s; restarting it", self.worker_id,
                    self.response_timeout)
        self.alive = False  # condemned: no batch goes to it from now on
        waiting = list(self.inflight.values())  # sent behind the stuck batch, never started
        self.inflight.clear()
        self._drained.set()
        _fail(entry.jobs, RequestTimeout(
            f"the model did not answer within response_timeout ({self.response_timeout:g} s)"
        ))
        self._requeue(waiting, WorkerDied(
            f"the worker process for model {self.spec.model_name} was restarted after "
            "a batch exceeded response_timeout"))
        self.kill()

    def _finish(self, done: BatchDone) -> None:
        entry = self.inflight.pop(done.batch_id, None)
        if entry is None:
            return  # already timed out
        if entry.timer is not None:
            entry.timer.cancel()
        self._arm_next()
        if not self.inflight:
            self._drained.set()
        for job, outcome in zip(entry.jobs, done.outcomes, strict=False):
            job.answer(outcome)
        self.hooks.batch_done(entry.jobs, done)
        if self.accepting:
            self.hooks.slot_free(self)

    def _arm_next(self) -> None:
        """The oldest batch still in flight is the one computing now: time it."""
        for entry in self.inflight.values():
            if entry.timer is None:
                entry.timer = self._arm_timer(entry.batch.batch_id)
            return

    def _partial(self, message: Partial) -> None:
        """An intermediate response: hand it to its listener; the batch's clock restarts."""
        entry = self.inflight.get(message.batch_id)
        if entry is None or message.index >= len(entry.jobs):
            return  # the batch already timed out
        if entry.timer is not None:  # like TorchServe: response_timeout bounds the silence
            entry.timer.cancel()
            entry.timer = self._arm_timer(message.batch_id)
        job = entry.jobs[message.index]
        if job.on_partial is not None and not job.future.done():
            job.on_partial(message.outcome)

    def ping(self, seq: int) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(encode(Ping(seq)))

    def unresponsive_for(self, seconds: float) -> None:
        """Missed heartbeats: unhealthy now, its batch fails (503), the process is killed."""
        log.error("worker %s (pid %s) answered no heartbeat for %.1f s "
                  "(worker_heartbeat_timeout %g s); replacing it", self.worker_id, self.pid,
                  seconds, self.heartbeat_timeout)
        self.unresponsive = True
        self.alive = False
        entries = list(self.inflight.values())
        self.inflight.clear()
        self._drained.set()
        if entries:
            self._fail_running(entries, WorkerUnresponsive(
                f"the worker process for model {self.spec.model_name} stopped responding "
                f"(no heartbeat for {seconds:.1f} s); it is being replaced"))
        self.kill()

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        while (message := await self._read_message(reader)) is not None:
            self.last_heard = time.monotonic()
            if isinstance(message, BatchDone):
                self._finish(message)
            elif isinstance(message, Partial):
                self._partial(message)
        await self._on_exit()

    async def _on_exit(self) -> None:
        self.alive = False
        code = await self._reap()
        entries = list(self.inflight.values())
        self.inflight.clear()
        self._drained.set()
        if entries:
            if not self.retiring:
                log.error("worker %s (pid %s) died with exit code %s", self.worker_id,
                          self.pid, code)
            err = WorkerDied(
                f"the worker process for model {self.spec.model_name} died while handling "
                f"this request (exit code {code}); it is being restarted"
            )
            self._fail_running(entries, err)
        self.exited.set()

    def _fail_running(self, entries: list[InFlight], err: ServeError) -> None:
        """The computing batch fails; batches never started are re-queued once."""
        running, waiting = entries[0], entries[1:]
        if running.timer is not None:
            running.timer.cancel()
        _fail(running.jobs, err)
        self._requeue(waiting, err)

    def _requeue(self, waiting: list[InFlight], err: ServeError) -> None:
        """Batches that never started go back to the queue, once; a second time, ``err``."""
        retry: list[Job] = []
        for entry in waiting:
            for job in entry.jobs:
                job.attempts += 1
            retry += [j for j in entry.jobs if j.attempts <= 1]
            _fail([j for j in entry.jobs if j.attempts > 1], err)
        if retry:
            self.hooks.requeue(retry)

    async def _reap(self) -> int | None:
        if self.proc is None:
            return None
        if self._writer is not None:
            self._writer.close()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.proc.wait)

    # -- stop ----------------------------------------------------------------
    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    async def retire(self, timeout: float) -> None:
        """Take no new batches, let in-flight ones finish, then end the process."""
        self.retiring = True
        if self._reader_task is None:  # still loading, or never loaded
            self.kill()
            await self._reap()
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self.inflight and self.alive:
            self._drained.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._drained.wait()  # also set when the worker exits
            except TimeoutError:
                log.warning("worker %s did not drain within %g s", self.worker_id, timeout)
        if self._writer is not None:
            self._writer.close()  # the worker exits on EOF
        try:
            async with asyncio.timeout(max(1.0, deadline - loop.time())):
                await self.exited.wait()
        except TimeoutError:
            self.kill()
            await self.exited.wait()

    async def wait(self) -> None:
        if self._reader_task is not None:
            await self.exited.wait()


def forward_output(stream: IO[bytes], worker_id: str) -> None:
    """Copy a worker's stdout/stderr, line by line, to the model log until it exits."""
    model_log = logging.getLogger(MODEL_LOG)
    with stream:
        for raw in iter(stream.readline, b""):
            model_log.info("[%s] %s", worker_id, raw.decode("utf-8", "replace").rstrip("\n"))


def _fail(jobs: list[Job], err: ServeError) -> None:
    for job in jobs:
        job.fail(err)

