"""One HTTP connection, guarded against clients that hold the server without asking.

uvicorn's httptools protocol with four additions (each limit in docs/limits.md):

- more than ``max_header_count`` headers, or more than ``max_header_size`` bytes of
  them, is refused with a 431 before the request reaches the application;
- the headers must arrive within ``header_read_timeout`` seconds of the connection
  (or of the request's first byte), else the connection is closed (a 408 when part
  of a request had come);
- the body must arrive within ``body_read_timeout`` seconds of the headers, else
  the client gets a 408 and the connection is closed;
- nothing else: a client that half-closes after sending (``nc -N``) cannot be told from
  one that left (TCP shows both as end-of-file), so both are a client gone: a queued
  request is dropped and the access log says 499, never a 200 nobody received.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from torchwire.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_count: int = 100
    max_header_size: int = 8192
    header_read_timeout: float = 5.0
    body_read_timeout: float = 30.0


class HeadersTooLarge(Exception):
    """Raised inside the parser's header callback to stop parsing at once."""


def error_response(status: int, reason: str, type_name: str, message: str) -> bytes:
    """A whole ``Connection: close`` response with torchwire's JSON error body."""
    body = json.dumps({"code": status, "type": type_name, "message": message}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("latin-1") + body


class GuardedProtocol(HttpToolsProtocol):
    limits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_count = 0
        self._header_bytes = 0
        self._refusal: bytes | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._begun = False

    # -- timers ----------------------------------------------------------------------
    def _arm(self, seconds: float, on_expiry: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, on_expiry)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_late(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._begun:
            self.transport.write(error_response(
                408, "Request Timeout", "RequestTimeoutException",
                f"the request headers did not arrive within header_read_timeout "
                f"({self.limits.header_read_timeout:g} s)"))
        self.transport.close()

    def _body_late(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_started:
            self.transport.write(error_response(
                408, "Request Timeout", "RequestTimeoutException",
                f"the request body did not arrive within body_read_timeout "
                f"({self.limits.body_read_timeout:g} s)"))
            self.cycle.response_complete = True  # the application's answer is not sent
        self.transport.close()

    # -- connection ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_read_timeout, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -- parser callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = self._header_bytes = 0
        self._begun = True
        self._arm(self.limits.header_read_timeout, self._headers_late)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value)
        limits = self.limits
        if self._header_count > limits.max_header_count:
            self._refuse(f"more than max_header_count ({limits.max_header_count}) headers")
        if self._header_bytes > limits.max_header_size:
            self._refuse(f"headers larger than max_header_size ({limits.max_header_size} bytes)")
        super().on_header(name, value)

    def _refuse(self, what: str) -> None:
        self._refusal = error_response(
            431, "Request Header Fields Too Large", "RequestHeaderFieldsTooLargeException",
            f"the request has {what}")
        raise HeadersTooLarge(what)

    def on_headers_complete(self) -> None:
        self._begun = False
        self._arm(self.limits.body_read_timeout, self._body_late)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """The parser stopped: a 431 when a header limit stopped it, else uvicorn's 400."""
        if self._refusal is None:
            super().send_400_response(msg)
            return
        log.warning("refused a request: %s", self._refusal.rsplit(b'"message": ', 1)[-1][:200])
        self.transport.write(self._refusal)
        self.transport.close()


def connection_limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(settings.max_header_count, settings.max_header_size,
                            float(settings.header_read_timeout), float(settings.body_read_timeout))


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedProtocol]:
    """The protocol class for one server's listeners, carrying its limits."""
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": limits})
