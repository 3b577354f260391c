"""Downloading an archive to register: bounded in size and time, and abortable.

- More than ``max_download_size`` bytes (declared or received) is refused.
- The whole download, redirects included, must end within ``download_timeout``.
- A body shorter than its ``Content-Length`` (or a cut chunked body) is an error.
- :meth:`Downloads.stop_all` (server shutdown) cuts every download's connection at
  once, so none delays the stop.
- Every redirect target must be allowed too (``allowed_urls``, after normalising).
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from torchwire.config import Settings
from torchwire.errors import BadRequest, DownloadArchiveError, ServeError, ServiceUnavailable

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class DownloadLimits:
    max_size: int = 4 * 1024**3  # bytes
    timeout: float = 600.0  # s for the whole download


def download_limits(settings: Settings) -> DownloadLimits:
    return DownloadLimits(settings.max_download_size, float(settings.download_timeout))


class Downloads:
    """The sockets of downloads in progress, so that a stop can cut them."""

    def __init__(self) -> None:
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.stopping = False

    @contextmanager
    def tracking(self, sock: socket.socket) -> Iterator[None]:
        with self._lock:
            if self.stopping:
                raise ServiceUnavailable("the server is stopping; no download starts now")
            self._open.add(sock)
        try:
            yield
        finally:
            with self._lock:
                self._open.discard(sock)

    def stop_all(self) -> None:
        """Cut every download now (their threads see EOF and give up at once)."""
        with self._lock:
            self.stopping = True
            socks = list(self._open)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Clock:
    def __init__(self, url: str, limits: DownloadLimits) -> None:
        self.url = url
        self.limits = limits
        self.deadline = time.monotonic() + limits.timeout

    def left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise BadRequest(f"downloading {self.url} took longer than download_timeout "
                             f"({self.limits.timeout:g} s)")
        return left


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    if parts.hostname is None:
        raise BadRequest(f"url {url} has no host")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    return cls(parts.hostname, parts.port, timeout=timeout), target


def _save(response: http.client.HTTPResponse, sock: socket.socket, target: Path,
          clock: _Clock) -> int:
    limit = clock.limits.max_size
    declared = response.getheader("content-length")
    expected = int(declared) if declared and declared.isdigit() else None
    if expected is not None and expected > limit:
        raise BadRequest(f"{clock.url} is {expected} bytes, more than max_download_size "
                         f"({limit} bytes)")
    got = 0
    with target.open("wb") as out:
        while True:
            sock.settimeout(clock.left())
            chunk = response.read1(_CHUNK)  # what has come: the deadline is checked per chunk
            if not chunk:
                break
            got += len(chunk)
            if got > limit:
                raise BadRequest(f"{clock.url} sent more than max_download_size ({limit} bytes)")
            out.write(chunk)
    if expected is not None and got != expected:
        raise BadRequest(f"downloading {clock.url} failed: the connection ended after {got} "
                         f"of {expected} bytes (a short read)")
    return got


def download_to(url: str, target: Path, limits: DownloadLimits, downloads: Downloads,
                allowed: Callable[[str], str]) -> int:
    """Fetch ``url`` (already allowed) into ``target``; the byte count."""
    clock = _Clock(url, limits)
    for _ in range(MAX_REDIRECTS + 1):
        conn, path = _connection(url, clock.left())
        try:
            conn.connect()
        except OSError as exc:
            raise _failure(url, exc, clock) from None
        sock = conn.sock  # kept: the connection lets go of it when the response ends it
        assert sock is not None
        with downloads.tracking(sock), closing(conn), closing(sock):
            try:
                conn.request("GET", path, headers={"User-Agent": "torchwire"})
                response = conn.getresponse()
                if response.status in _REDIRECTS:
                    url = allowed(urljoin(url, response.getheader("location") or ""))
                    clock.url = url
                    continue
                if response.status != 200:
                    raise DownloadArchiveError(f"Failed to download archive from: {url} "
                                               f"(HTTP {response.status} {response.reason})")
                got = _save(response, sock, target, clock)
            except ServeError as exc:
                raise _stopped(url, downloads) or exc from None
            except (OSError, http.client.HTTPException) as exc:
                raise _stopped(url, downloads) or _failure(url, exc, clock) from None
            if (stopped := _stopped(url, downloads)) is not None:
                raise stopped
            return got
    raise BadRequest(f"downloading {url} failed: more than {MAX_REDIRECTS} redirects")


def _stopped(url: str, downloads: Downloads) -> ServeError | None:
    if downloads.stopping:
        return ServiceUnavailable(f"downloading {url} was stopped: the server is stopping")
    return None


def _failure(url: str, exc: Exception, clock: _Clock) -> ServeError:
    if isinstance(exc, TimeoutError):
        return BadRequest(f"downloading {url} took longer than download_timeout "
                          f"({clock.limits.timeout:g} s)")
    if isinstance(exc, http.client.IncompleteRead):
        return BadRequest(f"downloading {url} failed: the connection ended early (a short read)")
    return DownloadArchiveError(f"Failed to download archive from: {url} ({exc})")
