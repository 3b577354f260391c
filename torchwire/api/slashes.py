"""Trailing slashes: ``/models/`` is ``/models``, answered at once, as TorchServe does.

Starlette would answer 307 with a redirect; TorchServe's router ignores the empty last
segment. Only a final ``/`` is dropped (``/`` itself stays the root).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class DropTrailingSlash:
    """ASGI middleware: routes see the path without its trailing slash."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/") or "/"}
        await self.app(scope, receive, send)
