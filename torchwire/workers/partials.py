"""The worker's side of streamed answers: a batch's intermediate responses, sent as they come.

A handler may run more than once over the same request: when a batch fails the
worker runs each request alone to find the culprit. Chunks a client already got
are not sent again: the n-th chunk of a request is sent only the first time any
attempt produces it (exact for handlers that produce the same chunks each time).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from torchwire.protocol import Outcome, Partial

Send = Callable[[object], None]


class PartialSender:
    """One batch's intermediate responses, numbered per request across attempts."""

    def __init__(self, send: Send | None, batch_id: int, size: int) -> None:
        self._send = send
        self.batch_id = batch_id
        self.delivered = [0] * size  # chunks each request's client has been sent
        self._produced = [0] * size  # chunks the current attempt has produced
        self._lock = threading.Lock()  # a handler may send from threads of its own

    def attempt(self, positions: list[int]) -> None:
        """A (re)run of the handler over the requests at ``positions`` begins."""
        with self._lock:
            for pos in positions:
                self._produced[pos] = 0

    def send(self, position: int, request_id: str, outcome: Outcome) -> None:
        with self._lock:
            self._produced[position] += 1
            if self._produced[position] <= self.delivered[position]:
                return  # an earlier attempt already sent this chunk
            self.delivered[position] += 1
            if self._send is not None:
                self._send(Partial(self.batch_id, position, request_id, outcome))
