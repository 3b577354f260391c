"""The worker process: load one model, then serve batches from the front.

Started as ``python -m torchwire.workers.child FD``; FD is this worker's end of
a socketpair. A reader thread receives the next batch while the main thread
computes the current one; if the front goes away the worker exits.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import queue
import site
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchwire.compat import enable_ts_compat
from torchwire.config.environment import worker_log_level
from torchwire.errors import HandlerError, InvalidInput
from torchwire.handlers.context import Context
from torchwire.handlers.loader import Service, resolve
from torchwire.handlers.metrics import MetricsCache
from torchwire.handlers.outcome import as_serve_error, error_outcome, result_outcome
from torchwire.jsondoc import parse_json
from torchwire.oip.tensor import is_tensor_item
from torchwire.protocol import (
    Batch,
    BatchDone,
    FrameWriter,
    Item,
    Kind,
    LoadFailed,
    Outcome,
    Param,
    Ping,
    Pong,
    Ready,
    WorkerSpec,
    encode,
    recv_message,
)
from torchwire.workers.partials import PartialSender, Send
from torchwire.workers.warmup import warm_up

log = logging.getLogger(__name__)


def decode_param(param: Param) -> Any:
    """TorchServe's input decoding: JSON parsed, text decoded, anything else bytes."""
    value = param.value
    if not isinstance(value, bytes):
        return value
    ctype = param.content_type.split(";")[0].strip().lower()
    if ctype == "application/json":
        return parse_json(value, repr(param.name), InvalidInput)
    if ctype.startswith("text/"):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{param.name!r} is not valid UTF-8 text: {exc}") from exc
    return value


def decode_item(item: Item) -> dict[str, Any]:
    if is_tensor_item(item):
        from torchwire.oip.arrays import tensor_row  # numpy only for OIP requests

        return tensor_row(item)
    return {p.name: decode_param(p) for p in item.params}


def outcome_of(result: Any, ctx: Context, idx: int, handler: str, item: Item) -> Outcome:
    if is_tensor_item(item):
        from torchwire.oip.arrays import tensor_outcome

        return tensor_outcome(result, ctx, idx, handler, item)
    return result_outcome(result, ctx, idx, handler)


class Worker:
    """One loaded service and its context; runs batches."""

    def __init__(self, spec: WorkerSpec, service: Service, ctx: Context) -> None:
        self.spec = spec
        self.service = service
        self.ctx = ctx
        self._loop: asyncio.AbstractEventLoop | None = None  # for async handlers, made once

    def _emitter(self, items: list[Item], positions: list[int],
                 sender: PartialSender) -> Callable[[int, Any], None]:
        """What ``context.send_intermediate(idx, value)`` calls during this handler run."""
        name = self.service.name

        def emit(idx: int, value: Any) -> None:
            item = items[idx]
            if is_tensor_item(item):
                return  # the Open Inference Protocol answers with the final tensors only
            outcome = result_outcome(value, self.ctx, idx, name)
            sender.send(positions[idx], item.request_id, outcome)

        return emit

    def _call(self, rows: list[dict[str, Any]], items: list[Item], positions: list[int],
              kind: Kind, sender: PartialSender) -> list[Any]:
        sender.attempt(positions)
        self.ctx.start_batch([i.request_id for i in items], [dict(i.headers) for i in items],
                             self._emitter(items, positions, sender), kind)
        try:
            results = self._settled(self.service.handle(rows, self.ctx))
        finally:
            self.ctx.end_batch()
        if not isinstance(results, list) or len(results) != len(rows):
            got = len(results) if isinstance(results, list) else type(results).__name__
            raise HandlerError(
                f"handler {self.service.name} returned {got} results for a batch of {len(rows)}"
            )
        name = self.service.name
        return [outcome_of(r, self.ctx, i, name, items[i]) for i, r in enumerate(results)]

    def _settled(self, results: Any) -> Any:
        """An ``async def handle``'s results (TorchServe's asyncCommunication handlers),
        awaited on this worker's own event loop; anything else as it is."""
        if not inspect.isawaitable(results):
            return results
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(results)

    def _run_rows(self, rows: list[dict[str, Any]], items: list[Item], positions: list[int],
                  kind: Kind, sender: PartialSender) -> list[Any]:
        try:
            return self._call(rows, items, positions, kind, sender)
        except Exception as exc:  # noqa: BLE001 - user code may raise anything
            if len(rows) == 1:
                return [error_outcome(as_serve_error(exc, self.service.name))]
            # Find the culprit: run each request alone so only the bad one fails.
            return [self._run_rows([r], [i], [p], kind, sender)[0]
                    for r, i, p in zip(rows, items, positions, strict=True)]

    def run(self, batch: Batch, send: Send | None = None) -> list[Outcome]:
        """Answer every request of ``batch``; intermediate responses go to ``send``."""
        outcomes: list[Outcome | None] = [None] * len(batch.items)
        rows: list[dict[str, Any]] = []
        good: list[int] = []
        for idx, item in enumerate(batch.items):
            try:
                rows.append(decode_item(item))
                good.append(idx)
            except InvalidInput as exc:
                outcomes[idx] = error_outcome(exc)
        if rows:
            items = [batch.items[i] for i in good]
            sender = PartialSender(send, batch.batch_id, len(batch.items))
            done = self._run_rows(rows, items, good, batch.kind, sender)
            for idx, outcome in zip(good, done, strict=True):
                outcomes[idx] = outcome
        return [o for o in outcomes if o is not None]


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set by an import in the handler


def set_paths(spec: WorkerSpec) -> None:
    """Model dir first, then its own dependencies (their .pth files read), then ``ts``."""
    for path in reversed((spec.model_dir, *spec.extra_sys_path)):
        if path not in sys.path:
            sys.path.insert(0, path)
    for path in spec.extra_sys_path:
        site.addsitedir(path)  # already on sys.path: only its .pth files are processed
    enable_ts_compat()


def load(spec: WorkerSpec) -> Worker:
    set_paths(spec)
    set_threads(spec.threads)
    ctx = Context(
        spec.model_name,
        spec.model_dir,
        spec.manifest,
        spec.batch_size,
        spec.gpu_id,
        model_version=spec.model_version,
        model_yaml_config=spec.model_yaml_config,
        metrics=MetricsCache(spec.model_name, spec.model_metrics),
    )
    service = resolve(spec.handler, Path(spec.model_dir))
    service.initialize(ctx)
    worker = Worker(spec, service, ctx)
    initialized = ctx.metrics.drain()  # initialize()'s records go out with the first batch
    warm_up(worker.run, spec.model_yaml_config, Path(spec.model_dir))
    ctx.metrics.drain()  # what the warm-up recorded is not the clients' traffic
    ctx.metrics.restore(initialized)
    return worker


def device_of(worker: Worker) -> str:
    device = getattr(worker.service.instance, "device", None)
    return str(device) if device is not None else "cpu"


def reader(sock: socket.socket, jobs: queue.SimpleQueue[Batch | None],
           writer: FrameWriter) -> None:
    """Queue batches; answer heartbeats here, whatever the handler is doing."""
    while True:
        message = recv_message(sock)
        if message is None:
            os._exit(0)  # the front is gone: nobody is waiting for results
        if isinstance(message, Batch):
            jobs.put(message)
        elif isinstance(message, Ping):
            try:
                writer.send(Pong(message.seq))
            except OSError:
                os._exit(0)  # the front closed the socket (it is retiring this worker)


def serve(sock: socket.socket, worker: Worker) -> None:
    jobs: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
    writer = FrameWriter(sock)  # the handler may send intermediate responses meanwhile
    threading.Thread(target=reader, args=(sock, jobs, writer), daemon=True,
                     name="reader").start()
    while (batch := jobs.get()) is not None:
        start = time.perf_counter()
        outcomes = worker.run(batch, writer.send)
        elapsed = (time.perf_counter() - start) * 1000
        records = worker.ctx.metrics.drain()
        writer.send(BatchDone(batch.batch_id, tuple(outcomes), elapsed, records))


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=worker_log_level(),
        format=f"%(asctime)s [worker {os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
    sock = socket.socket(fileno=int(argv[1]))
    spec = recv_message(sock)
    if not isinstance(spec, WorkerSpec):
        return 2
    try:
        worker = load(spec)
    except BaseException as exc:  # noqa: BLE001 - report any load failure to the front
        log.error("loading %s failed:\n%s", spec.model_name, traceback.format_exc())
        sock.sendall(encode(LoadFailed(f"{type(exc).__name__}: {exc}")))
        return 1
    log.info("%s %s ready on %s", spec.model_name, spec.model_version, device_of(worker))
    sock.sendall(encode(Ready(os.getpid(), device_of(worker))))
    serve(sock, worker)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
