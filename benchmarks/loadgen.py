"""A small closed-loop HTTP/1.1 load generator (asyncio, uvloop when importable).

``concurrency`` keep-alive connections each send one POST, wait for the whole
response, and send the next, until ``total`` requests have been sent or
``max_seconds`` have passed (requests still in flight then get ``grace`` seconds
to be answered; after that they are abandoned and counted as failures).
Responses are parsed just enough to know where each one ends: status line,
``Content-Length``, ``Transfer-Encoding: chunked``, or the connection closing.

    python benchmarks/loadgen.py http://127.0.0.1:8080/predictions/digits \\
        --file sample.png --content-type image/png -c 16 -n 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024  # a response head larger than this is treated as a protocol error


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 response we can frame."""


@dataclass
class LoadResult:
    concurrency: int
    sent: int  # requests written
    completed: int  # full responses received (any status)
    non_2xx: int  # completed with a status outside 200-299
    failures: int  # connection errors, protocol errors, unanswered after the grace period
    elapsed_s: float  # first request written to last response received
    rps: float  # completed / elapsed_s
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    statuses: dict[int, int] = field(default_factory=dict)
    error_samples: dict[str, str] = field(default_factory=dict)  # status/error -> first body
    timed_out: bool = False  # the wall-time cap ended the run before ``total`` were sent
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def errors(self) -> int:
        """Everything that was not a 2xx answer."""
        return self.non_2xx + self.failures

    def summary(self) -> dict[str, object]:
        out = asdict(self)
        out.pop("latencies_ms")
        return out


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks; ``q`` in [0, 100]; NaN when empty."""
    if not sorted_values:
        return float("nan")
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def request_headers(host: str, port: int, content_type: str, length: int) -> list[tuple[str, str]]:
    """The headers every request carries (the ceiling builds its Items from these too)."""
    headers = [("Host", f"{host}:{port}")]
    if content_type:
        headers.append(("Content-Type", content_type))
    headers += [("Content-Length", str(length)), ("Connection", "keep-alive")]
    return headers


def build_request(host: str, port: int, path: str, body: bytes, content_type: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in request_headers(host, port, content_type, len(body))]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# --------------------------------------------------------------------------- response parser

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILERS, _UNTIL_CLOSE = range(6)


class ResponseParser:
    """Incremental HTTP/1.1 response framing for responses to POST requests.

    ``feed`` returns a list of completed ``(status, body, keep_alive)`` tuples;
    ``eof`` finishes a body delimited by the connection closing.
    """

    __slots__ = ("buf", "state", "status", "remaining", "keep_alive", "body", "keep_body")

    def __init__(self, keep_body: bool = True) -> None:
        self.buf = bytearray()
        self.keep_body = keep_body
        self.state = _HEAD
        self.status = 0
        self.remaining = 0
        self.keep_alive = True
        self.body = bytearray()

    @property
    def idle(self) -> bool:
        """No partial response is buffered."""
        return self.state == _HEAD and not self.buf

    def feed(self, data: bytes) -> list[tuple[int, bytes, bool]]:
        self.buf += data
        done: list[tuple[int, bytes, bool]] = []
        while True:
            state = self.state
            if state == _HEAD:
                if not self._head():
                    break
            elif state == _LENGTH:
                n = min(self.remaining, len(self.buf))
                self._take_body(n)
                self.remaining -= n
                if self.remaining:
                    break
                done.append(self._complete())
            elif state == _CHUNK_SIZE:
                end = self.buf.find(b"\r\n")
                if end < 0:
                    if len(self.buf) > MAX_HEAD:
                        raise ProtocolError("chunk size line too long")
                    break
                line = bytes(self.buf[:end]).split(b";", 1)[0].strip()
                del self.buf[: end + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {line!r}") from None
                if size < 0:
                    raise ProtocolError(f"bad chunk size {line!r}")
                if size == 0:
                    self.state = _TRAILERS
                else:
                    self.remaining = size
                    self.state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                if self.remaining:
                    n = min(self.remaining, len(self.buf))
                    self._take_body(n)
                    self.remaining -= n
                    if self.remaining:
                        break
                if len(self.buf) < 2:
                    break
                if self.buf[:2] != b"\r\n":
                    raise ProtocolError("chunk data not followed by CRLF")
                del self.buf[:2]
                self.state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = self.buf.find(b"\r\n")
                if end < 0:
                    if len(self.buf) > MAX_HEAD:
                        raise ProtocolError("trailer line too long")
                    break
                del self.buf[: end + 2]
                if end == 0:
                    done.append(self._complete())
            else:  # _UNTIL_CLOSE
                self._take_body(len(self.buf))
                break
        return done

    def eof(self) -> tuple[int, bytes, bool] | None:
        """The connection closed: the response if its end was the close, else None."""
        if self.state == _UNTIL_CLOSE:
            return self._complete()
        return None

    def _take_body(self, n: int) -> None:
        if self.keep_body:
            self.body += self.buf[:n]
        del self.buf[:n]

    def _complete(self) -> tuple[int, bytes, bool]:
        out = (self.status, bytes(self.body), self.keep_alive)
        self.state = _HEAD
        self.body = bytearray()
        return out

    def _head(self) -> bool:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                raise ProtocolError("response head too large")
            return False
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        status_line, _, header_text = head.partition("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ProtocolError(f"bad status line {status_line!r}")
        try:
            status = int(parts[1])
        except ValueError:
            raise ProtocolError(f"bad status line {status_line!r}") from None
        length: int | None = None
        chunked = False
        connection = ""
        for line in header_text.split("\r\n") if header_text else ():
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError(f"bad header line {line!r}")
            name = name.strip().lower()
            value = value.strip()
            if name == "content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise ProtocolError(f"bad Content-Length {value!r}")
                length = int(value)
            elif name == "transfer-encoding":
                codings = [c.strip().lower() for c in value.split(",")]
                chunked = codings[-1] == "chunked"
            elif name == "connection":
                connection = value.lower()
        if 100 <= status < 200:
            return True  # an interim response: the real one follows
        self.status = status
        self.keep_alive = "close" not in connection and parts[0] != "HTTP/1.0"
        self.body = bytearray()
        if status in (204, 304):
            self.remaining = 0
            self.state = _LENGTH
        elif chunked:
            self.state = _CHUNK_SIZE
        elif length is not None:
            self.remaining = length
            self.state = _LENGTH
        else:
            self.keep_alive = False
            self.state = _UNTIL_CLOSE
        return True


# --------------------------------------------------------------------------- the run


class _Run:
    """Shared state of one load run: the request budget and the results."""

    def __init__(self, request: bytes, total: int, deadline: float, concurrency: int) -> None:
        self.request = request
        self.total = total
        self.deadline = deadline
        self.sent = 0
        self.completed = 0
        self.failures = 0
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.samples: dict[str, str] = {}
        self.first_sent = 0.0
        self.last_done = 0.0
        self.open = concurrency
        self.aborted = False  # the grace period passed: in-flight requests were dropped
        self.finished = asyncio.get_running_loop().create_future()

    def take(self) -> bool:
        """May one more request be sent?"""
        if self.sent >= self.total or time.perf_counter() >= self.deadline:
            return False
        if self.sent == 0:
            self.first_sent = time.perf_counter()
        self.sent += 1
        return True

    def record(self, status: int, body: bytes, latency: float) -> None:
        self.completed += 1
        self.last_done = time.perf_counter()
        self.latencies.append(latency)
        self.statuses[status] += 1
        if not 200 <= status < 300:
            self.samples.setdefault(str(status), body[:300].decode("utf-8", "replace"))

    def fail(self, reason: str) -> None:
        self.failures += 1
        self.samples.setdefault(reason, "")

    def connection_done(self) -> None:
        self.open -= 1
        if self.open == 0 and not self.finished.done():
            self.finished.set_result(None)


class _Client(asyncio.Protocol):
    """One keep-alive connection sending requests back to back."""

    def __init__(self, run: _Run, conn: _Connection) -> None:
        self.run = run
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self.started = 0.0
        self.waiting = False
        self.reuse = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.send_next()

    def send_next(self) -> None:
        assert self.transport is not None
        if not self.reuse:
            self.transport.close()
            return
        if not self.run.take():
            self.conn.stop()
            self.transport.close()
            return
        self.waiting = True
        self.started = time.perf_counter()
        self.transport.write(self.run.request)

    def data_received(self, data: bytes) -> None:
        try:
            responses = self.parser.feed(data)
        except ProtocolError as exc:
            self._abort(f"protocol error: {exc}")
            return
        for status, body, keep_alive in responses:
            if not self.waiting:
                self._abort("response without a request")
                return
            self.waiting = False
            self.run.record(status, body, time.perf_counter() - self.started)
            self.reuse = keep_alive
            self.send_next()

    def eof_received(self) -> bool | None:
        return None  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiting:
            response = self.parser.eof()
            if response is not None:
                status, body, _ = response
                self.run.record(status, body, time.perf_counter() - self.started)
            elif self.run.aborted:
                self.run.fail("unanswered after the grace period")
            else:
                self.run.fail(f"connection lost mid-request: {exc or 'closed by server'}")
            self.waiting = False
        self.conn.closed()

    def _abort(self, reason: str) -> None:
        if self.waiting:
            self.run.fail(reason)
            self.waiting = False
        assert self.transport is not None
        self.transport.abort()


class _Connection:
    """A connection slot: reconnects while the run wants requests."""

    def __init__(self, run: _Run, host: str, port: int) -> None:
        self.run = run
        self.host = host
        self.port = port
        self.stopped = False
        self.client: _Client | None = None

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopped:
            try:
                await loop.create_connection(self._new_client, self.host, self.port)
                return
            except OSError as exc:
                # A request that could not even connect still uses up its place in the
                # budget, so a dead server ends the run instead of spinning.
                if not self.run.take():
                    self.stop()
                    break
                self.run.fail(f"connect failed: {exc}")
                await asyncio.sleep(0.05)
        self.run.connection_done()

    def _new_client(self) -> _Client:
        self.client = _Client(self.run, self)
        return self.client

    def stop(self) -> None:
        self.stopped = True

    def closed(self) -> None:
        self.client = None
        if self.stopped or self.run.sent >= self.run.total:
            self.run.connection_done()
        else:
            asyncio.get_running_loop().create_task(self.connect())

    def abort(self) -> None:
        self.stopped = True
        if self.client is not None and self.client.transport is not None:
            self.client.transport.abort()


async def run_load(
    host: str,
    port: int,
    path: str,
    body: bytes,
    content_type: str,
    concurrency: int,
    total: int,
    max_seconds: float,
    grace: float = 10.0,
) -> LoadResult:
    """Send ``total`` POSTs over ``concurrency`` keep-alive connections, closed loop.

    No request is sent after ``max_seconds``; those still in flight then get ``grace``
    more seconds to be answered before they are abandoned (and counted as failures).
    """
    concurrency = max(1, min(concurrency, total)) if total > 0 else 1
    start = time.perf_counter()
    run = _Run(build_request(host, port, path, body, content_type), total,
               start + max_seconds, concurrency)
    conns = [_Connection(run, host, port) for _ in range(concurrency)]
    if total > 0:
        for conn in conns:
            asyncio.get_running_loop().create_task(conn.connect())
        timed_out = False
        try:
            await asyncio.wait_for(asyncio.shield(run.finished), max_seconds + grace)
        except TimeoutError:
            timed_out = True
            run.aborted = True
            for conn in conns:
                conn.abort()
            await asyncio.sleep(0)  # let connection_lost callbacks run
            try:
                await asyncio.wait_for(asyncio.shield(run.finished), 2.0)
            except TimeoutError:
                pass
    else:
        timed_out = False
    unfinished = run.sent - run.completed - run.failures
    if unfinished > 0:
        run.failures += unfinished
        run.samples.setdefault("unanswered after the grace period", "")
    elapsed = (run.last_done - run.first_sent) if run.completed else 0.0
    lat_ms = sorted(x * 1000 for x in run.latencies)
    return LoadResult(
        concurrency=concurrency,
        sent=run.sent,
        completed=run.completed,
        non_2xx=sum(n for s, n in run.statuses.items() if not 200 <= s < 300),
        failures=run.failures,
        elapsed_s=elapsed,
        rps=run.completed / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(lat_ms, 50),
        p90_ms=percentile(lat_ms, 90),
        p99_ms=percentile(lat_ms, 99),
        mean_ms=sum(lat_ms) / len(lat_ms) if lat_ms else float("nan"),
        max_ms=lat_ms[-1] if lat_ms else float("nan"),
        statuses=dict(sorted(run.statuses.items())),
        error_samples=run.samples,
        timed_out=timed_out or run.sent < total,  # the cap (or a dead server) cut it short
        latencies_ms=lat_ms,
    )


def run_sync(host: str, port: int, path: str, body: bytes, content_type: str,
             concurrency: int, total: int, max_seconds: float,
             grace: float = 10.0) -> LoadResult:
    """``run_load`` on a fresh event loop (uvloop when importable)."""
    coro = run_load(host, port, path, body, content_type, concurrency, total, max_seconds,
                    grace)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", help="http://HOST:PORT/PATH")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--file", type=Path, help="request body from this file")
    src.add_argument("--data", default="", help="request body as text")
    ap.add_argument("--content-type", default="application/octet-stream")
    ap.add_argument("-c", "--concurrency", type=int, default=1)
    ap.add_argument("-n", "--requests", type=int, default=1000, help="total requests")
    ap.add_argument("-t", "--max-seconds", type=float, default=30.0,
                    help="send no request after this many seconds")
    ap.add_argument("--grace", type=float, default=10.0,
                    help="then wait this long for answers still in flight")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    url = urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        ap.error("expected an http://HOST:PORT/PATH url (no TLS)")
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    body = args.file.read_bytes() if args.file else args.data.encode()
    result = run_sync(url.hostname, url.port or 80, path, body, args.content_type,
                      args.concurrency, args.requests, args.max_seconds, args.grace)
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    else:
        print(f"{loop_name()}: {result.completed}/{result.sent} responses in "
              f"{result.elapsed_s:.2f} s over {result.concurrency} connection(s)")
        print(f"  req/s {result.rps:.1f}   p50 {result.p50_ms:.2f} ms   "
              f"p90 {result.p90_ms:.2f} ms   p99 {result.p99_ms:.2f} ms   "
              f"max {result.max_ms:.2f} ms")
        print(f"  statuses {result.statuses}   non-2xx {result.non_2xx}   "
              f"failures {result.failures}{'   (hit the time cap)' if result.timed_out else ''}")
        for key, sample in result.error_samples.items():
            print(f"  {key}: {sample}")
    return 0 if result.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
