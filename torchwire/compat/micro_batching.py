"""``ts.handler_utils.micro_batching.MicroBatching``: a batch cut into micro-batches that
flow through preprocess → inference → postprocess with threads per step.

While one micro-batch is in inference the next is being preprocessed and the one
before is being postprocessed. A step's exception does not hang the pipeline (as
it does in TorchServe): the micro-batches still drain and the batch raises it, so
the worker answers each request on its own.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STEPS = ("preprocess", "inference", "postprocess")
POLL_S = 0.2  # how soon a thread being retired notices


@dataclass
class _Failed:
    error: BaseException


@dataclass
class _Thread:
    stop: threading.Event
    thread: threading.Thread


class MicroBatching:
    """Replaces a handler's ``handle``: ``self.handle = MicroBatching(self)`` in ``__init__``.

    ``micro_batch_size`` requests go through the steps together; ``parallelism`` maps a
    step name to its number of threads (1 each by default).
    """

    def __init__(self, parent_handler: Any, micro_batch_size: int = 1,
                 parallelism: Mapping[str, int] | None = None) -> None:
        self.handler = parent_handler
        self.micro_batch_size = micro_batch_size
        self._parallelism: dict[str, int] = {}
        self._local = threading.local()
        self._queues: list[queue.SimpleQueue[tuple[int, Any]]] = [
            queue.SimpleQueue() for _ in range(len(STEPS) + 1)
        ]
        self._threads: dict[str, list[_Thread]] = {step: [] for step in STEPS}
        self.parallelism = dict(parallelism or {})

    @property
    def parallelism(self) -> dict[str, int]:
        return dict(self._parallelism)

    @parallelism.setter
    def parallelism(self, parallelism: Mapping[str, int]) -> None:
        """Set the number of threads of some steps (the others keep theirs)."""
        for step, count in parallelism.items():
            if step not in STEPS:
                raise ValueError(f"micro_batching parallelism: {step!r} is not one of {STEPS}")
            if not isinstance(count, int) or count < 1:
                raise ValueError(f"micro_batching parallelism of {step} must be an integer "
                                 f">= 1, not {count!r}")
        self._parallelism.update(parallelism)
        for index, step in enumerate(STEPS):
            self._resize(index, self._parallelism.get(step, 1))

    def _resize(self, index: int, wanted: int) -> None:
        group = self._threads[STEPS[index]]
        while len(group) < wanted:
            stop = threading.Event()
            thread = threading.Thread(target=self._serve, args=(index, stop), daemon=True,
                                      name=f"micro-batch-{STEPS[index]}-{len(group)}")
            thread.start()
            group.append(_Thread(stop, thread))
        while len(group) > wanted:
            self._retire(group.pop())

    @staticmethod
    def _retire(worker: _Thread) -> None:
        worker.stop.set()
        worker.thread.join()

    def shutdown(self) -> None:
        """Stop every thread."""
        for group in self._threads.values():
            while group:
                self._retire(group.pop())

    def _serve(self, index: int, stop: threading.Event) -> None:
        inbox, outbox = self._queues[index], self._queues[index + 1]
        while not stop.is_set():
            try:
                idx, value = inbox.get(timeout=POLL_S)
            except queue.Empty:
                continue
            self._local.micro_batch_idx = idx
            if not isinstance(value, _Failed):
                try:
                    value = getattr(self.handler, STEPS[index])(value)
                except Exception as exc:  # noqa: BLE001 - user code; re-raised by handle()
                    value = _Failed(exc)
            outbox.put((idx, value))

    def get_micro_batch_idx(self) -> int | None:
        """The index of the micro-batch the calling step thread is working on."""
        return getattr(self._local, "micro_batch_idx", None)

    def handle(self, data: list[Any]) -> list[Any]:
        """Run ``data`` through the pipeline; results in request order."""
        size = max(1, int(self.micro_batch_size))
        chunks = [data[i:i + size] for i in range(0, len(data), size)]
        for idx, chunk in enumerate(chunks):
            self._queues[0].put((idx, chunk))
        done = dict(self._queues[-1].get() for _ in chunks)
        for idx in sorted(done):
            if isinstance(done[idx], _Failed):
                raise done[idx].error
        return [item for idx in sorted(done) for item in done[idx]]

    def __call__(self, data: list[Any], context: Any) -> list[Any]:
        """The handler's ``handle(data, context)``."""
        handler = self.handler
        handler.context = context
        start = time.perf_counter()
        if getattr(handler, "_is_describe", lambda: False)():
            output = [handler.describe_handle()]
        elif getattr(handler, "_is_explain", lambda: False)():
            output = handler.explain_handle(handler.preprocess(data), data)
        else:
            output = self.handle(data)
        metrics = getattr(context, "metrics", None)
        if metrics is not None:
            millis = round((time.perf_counter() - start) * 1000, 2)
            metrics.add_time("HandlerTime", millis, None, "ms")
        return output
