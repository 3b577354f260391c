"""Shared HTTP pieces: error bodies and exception handlers for every app."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from torchwire.errors import (
    InternalError,
    MethodNotAllowed,
    ResourceNotFound,
    ServeError,
    error_for_status,
)
from torchwire.protocol import Outcome

log = logging.getLogger(__name__)

NOT_FOUND = "Requested resource is not found, please refer to API document."
NOT_ALLOWED = "Requested method is not allowed, please refer to API document."


def json_response(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, indent=2).encode()
    return Response(body, status_code=status, media_type="application/json")


def error_response(err: ServeError) -> Response:
    return json_response(err.to_json(), err.status)


async def on_serve_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServeError)
    return error_response(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    err: ServeError
    if exc.status_code == 404:
        err = ResourceNotFound(NOT_FOUND)
    elif exc.status_code == 405:
        err = MethodNotAllowed(NOT_ALLOWED)
    else:
        err = error_for_status(exc.status_code, str(exc.detail))
    return error_response(err)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    return JSONResponse(InternalError(f"internal error: {type(exc).__name__}").to_json(), 500)


EXCEPTION_HANDLERS = {
    ServeError: on_serve_error,
    HTTPException: on_http_error,
    Exception: on_unexpected,
}


def outcome_response(outcome: Outcome, request_id: str, max_size: int) -> Response:
    if len(outcome.body) > max_size:
        return error_response(InternalError(
            f"the response of {len(outcome.body)} bytes exceeds max_response_size ({max_size})"
        ))
    headers = {**outcome.headers, "x-request-id": request_id}
    return Response(outcome.body, outcome.status, headers, media_type=outcome.content_type)


def outcome_value(outcome: Outcome) -> Any:
    """A successful outcome's body as a JSON value (for KServe envelopes)."""
    if outcome.content_type.startswith("application/json"):
        return json.loads(outcome.body)
    try:
        return outcome.body.decode()
    except UnicodeDecodeError:
        import base64

        return base64.b64encode(outcome.body).decode()


