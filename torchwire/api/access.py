"""The access log: one line per HTTP request, written when its response is sent.

``127.0.0.1:52344 "POST /predictions/digits HTTP/1.1" 200 model=digits version=1.0 3.1ms``
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from torchwire.logs import ACCESS_LOG
from torchwire.model import ModelVersion

MODEL_KEY = "torchwire.model"  # scope key: (name, version) of the model that served it

access_log = logging.getLogger(ACCESS_LOG)


def note_model(request: Request, model: ModelVersion) -> None:
    """Record which model version served ``request`` (for its access log line)."""
    request.scope[MODEL_KEY] = (model.name, model.version)


def model_of(scope: Scope) -> tuple[str, str]:
    noted = scope.get(MODEL_KEY)
    if noted is not None:
        return noted
    params = scope.get("path_params") or {}
    return params.get("model_name", "-"), params.get("model_version", "-")


def request_line(scope: Scope) -> str:
    path = scope.get("path", "")
    query = scope.get("query_string", b"")
    if query:
        path = f"{path}?{query.decode('latin-1')}"
    return f'{scope.get("method", "-")} {path} HTTP/{scope.get("http_version", "1.1")}'


def client_of(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


class AccessLog:
    """ASGI middleware: log each request, and tell ``on_response`` its status."""

    def __init__(self, app: ASGIApp, on_response: Callable[[int], None] | None = None) -> None:
        self.app = app
        self.on_response = on_response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app raises

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._log(scope, status, time.perf_counter() - start)

    def _log(self, scope: Scope, status: int, elapsed: float) -> None:
        name, version = model_of(scope)
        access_log.info('%s "%s" %d model=%s version=%s %.1fms', client_of(scope),
                        request_line(scope), status, name, version, elapsed * 1000)
        if self.on_response is not None:
            self.on_response(status)
