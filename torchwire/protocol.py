"""Messages between the front and a worker process, and their framing.

Frames are an 8-byte big-endian length followed by a pickle (protocol 5) of one
message. Both ends are torchwire's own processes, so pickle is safe here; it is
never used for anything a client sends except opaque ``bytes`` values.
"""

from __future__ import annotations

import pickle
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from torchwire.errors import ServeError, error_for_status
from torchwire.metrics_yaml import MetricSpec

HEADER = struct.Struct(">Q")

Kind = Literal["predict", "explain", "describe"]
"""What a batch asks of the handler; explain and describe requests run alone."""
PREDICT: Kind = "predict"
EXPLAIN: Kind = "explain"
DESCRIBE: Kind = "describe"


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to load its model; the first frame it receives."""

    model_name: str
    model_version: str
    model_dir: str
    manifest: dict[str, Any]
    handler: str
    batch_size: int
    max_batch_delay: int
    gpu_id: int | None
    threads: int
    model_yaml_config: dict[str, Any] = field(default_factory=dict)
    extra_sys_path: tuple[str, ...] = ()
    model_metrics: tuple[MetricSpec, ...] = ()  # created in context.metrics before initialize


@dataclass(frozen=True)
class Param:
    """One named input of a request: bytes to be decoded by content type, or a parsed value."""

    name: str
    value: Any
    content_type: str = ""


@dataclass(frozen=True)
class Item:
    """One request inside a batch."""

    request_id: str
    params: tuple[Param, ...]
    headers: dict[str, str]


@dataclass(frozen=True)
class Batch:
    batch_id: int
    items: tuple[Item, ...]
    kind: Kind = PREDICT

    @property
    def explain(self) -> bool:
        return self.kind == EXPLAIN


@dataclass(frozen=True)
class Failure:
    """Why an answer failed, built once where it failed (in the worker)."""

    status: int
    type_name: str  # TorchServe's, e.g. "InvalidInputException"
    message: str

    def as_error(self) -> ServeError:
        """The ServeError this failure stands for, with its status and type name."""
        return error_for_status(self.status, self.message, self.type_name)


@dataclass(frozen=True)
class Outcome:
    """One request's answer: status, body bytes and headers to send back.

    ``error`` is set when the answer is a failure (status >= 400); ``body`` is then
    what an HTTP client sees (the error's JSON, or the handler's own body).
    """

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    error: Failure | None = None

    def check(self) -> Outcome:
        """This outcome if it is an answer; its ServeError raised if it is a failure."""
        if self.error is not None:
            raise self.error.as_error()
        return self


@dataclass(frozen=True)
class MetricRecord:
    """One value a handler recorded through ``context.metrics``, sent back with its batch."""

    name: str
    kind: str  # "counter" (an increment), "gauge" (a new value) or "histogram" (an observation)
    value: float
    unit: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    request_id: str = ""  # the request the value belongs to, when the handler said


@dataclass(frozen=True)
class BatchDone:
    batch_id: int
    outcomes: tuple[Outcome, ...]
    handler_ms: float
    metrics: tuple[MetricRecord, ...] = ()


@dataclass(frozen=True)
class Partial:
    """An intermediate answer for one request of a batch that is still running.

    A streaming handler sends these (``context.send_intermediate``) before it returns;
    ``index`` is the request's position in the batch, ``request_id`` its id.
    """

    batch_id: int
    index: int
    request_id: str
    outcome: Outcome


@dataclass(frozen=True)
class Ping:
    """A heartbeat from the front; the worker's reader thread answers it at once."""

    seq: int


@dataclass(frozen=True)
class Pong:
    seq: int


@dataclass(frozen=True)
class Ready:
    pid: int
    device: str


@dataclass(frozen=True)
class LoadFailed:
    message: str


def encode(message: object) -> bytes:
    payload = pickle.dumps(message, protocol=5)
    return HEADER.pack(len(payload)) + payload


class FrameWriter:
    """Writes whole frames to a blocking socket; safe to share between threads."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, message: object) -> None:
        frame = encode(message)
        with self._lock:
            self._sock.sendall(frame)


def decode(payload: bytes) -> object:
    return pickle.loads(payload)


def recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """Read exactly ``size`` bytes from a blocking socket; None on EOF."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            return None
        got += n
    return bytes(buf)


def recv_message(sock: socket.socket) -> object | None:
    """Blocking read of one framed message; None when the peer closed."""
    header = recv_exact(sock, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    payload = recv_exact(sock, size)
    return None if payload is None else decode(payload)
