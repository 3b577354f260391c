"""Turn a handler's per-request result, or an exception, into an Outcome."""

from __future__ import annotations

import binascii
import json
import logging
import sys
from typing import Any

from torchwire.errors import HandlerError, InvalidInput, ServeError, error_for_status
from torchwire.handlers.context import Context
from torchwire.protocol import Failure, Outcome

log = logging.getLogger(__name__)

JSON = "application/json"


def _decode_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [UnicodeDecodeError, json.JSONDecodeError, binascii.Error]
    pil = sys.modules.get("PIL.Image")
    if pil is not None:
        types.append(pil.UnidentifiedImageError)
    return tuple(types)


def _decode_message(exc: BaseException) -> str:
    pil = sys.modules.get("PIL.Image")
    if pil is not None and isinstance(exc, pil.UnidentifiedImageError):
        return "the input is not an image that can be decoded (JPEG, PNG, GIF, BMP, WebP, ...)"
    return f"could not decode the input: {type(exc).__name__}: {exc}"


def as_serve_error(exc: BaseException, handler: str) -> ServeError:
    """Classify by type: our errors keep their status; decode failures are 400s."""
    if isinstance(exc, ServeError):
        return exc
    code = getattr(exc, "error_code", None)
    if isinstance(code, int) and 400 <= code < 600:
        return error_for_status(code, str(getattr(exc, "message", exc)))
    if isinstance(exc, _decode_error_types()):
        return InvalidInput(_decode_message(exc))
    log.error("handler %s raised", handler, exc_info=exc)
    return HandlerError(f"handler {handler} failed: {type(exc).__name__}: {exc}")


def error_outcome(err: ServeError) -> Outcome:
    """A failed answer: the error's JSON body, and the error itself as the typed field."""
    body = json.dumps(err.to_json()).encode()
    return Outcome(err.status, body, JSON, error=Failure(err.status, err.type_name, err.message))


def jsonable(value: Any) -> Any:
    """``json.dumps``'s ``default``: arrays and tensors as lists (their ``tolist()``)."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"object of type {type(value).__name__} is not JSON serializable")


def _encode(result: Any) -> tuple[bytes, str]:
    if isinstance(result, bytes | bytearray | memoryview):
        return bytes(result), "application/octet-stream"
    if isinstance(result, str):
        return result.encode(), "text/plain; charset=utf-8"
    return json.dumps(result, default=jsonable).encode(), JSON


def result_outcome(result: Any, ctx: Context, idx: int, handler: str) -> Outcome:
    if isinstance(result, BaseException):
        return error_outcome(as_serve_error(result, handler))
    try:
        body, content_type = _encode(result)
    except (TypeError, ValueError) as exc:
        return error_outcome(HandlerError(f"handler {handler} returned {exc}"))
    headers = dict(ctx.get_response_headers(idx))
    content_type = headers.pop("content-type", content_type)
    status, _ = ctx.get_response_status(idx)
    error = _handler_failure(status, body) if status >= 400 else None
    return Outcome(status, body, content_type, headers, error)


def _handler_failure(status: int, body: bytes) -> Failure:
    """A handler answered with an error status of its own: its body's message says why."""
    try:
        data = json.loads(body)
        message = str(data.get("message", data))
    except (ValueError, AttributeError):
        message = body.decode(errors="replace")
    return Failure(status, error_for_status(status, message).type_name, message)
