"""HTTP status → gRPC status code, in one place, and ending a call with a ServeError.

A gRPC client gets the message a REST client would get, with the code that
matches the HTTP status; the TorchServe error type name travels in the
trailing metadata as ``error-type``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from torchwire.errors import InternalError, InvalidKey, ModelAPIDisabled, ServeError

log = logging.getLogger(__name__)

_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
    507: grpc.StatusCode.RESOURCE_EXHAUSTED,
}

ERROR_TYPE_KEY = "error-type"

Request = TypeVar("Request")
Reply = TypeVar("Reply")
Method = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Reply]]


def grpc_code(http_status: int) -> grpc.StatusCode:
    """The gRPC code for an HTTP status (other 4xx: INVALID_ARGUMENT, other 5xx: INTERNAL)."""
    code = _CODES.get(http_status)
    if code is not None:
        return code
    if 400 <= http_status < 500:
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


def code_number(code: grpc.StatusCode) -> int:
    number: int = code.value[0]
    return number


# Where TorchServe's gRPC answer is not the HTTP status's code: (code, message, type);
# None keeps the error's own message or type.
_TORCHSERVE_ANSWERS: dict[type[ServeError], tuple[grpc.StatusCode, str | None, str | None]] = {
    InvalidKey: (grpc.StatusCode.PERMISSION_DENIED, None, None),
    ModelAPIDisabled: (grpc.StatusCode.PERMISSION_DENIED, "Model API disabled", "ModelException"),
}


async def abort(context: grpc.aio.ServicerContext, err: ServeError) -> NoReturn:
    """End the call with ``err``: its HTTP status's code, or TorchServe's own answer."""
    code, message, type_name = _TORCHSERVE_ANSWERS.get(type(err), (None, None, None))
    await context.abort(code or grpc_code(err.status), message or err.message,
                        ((ERROR_TYPE_KEY, type_name or err.type_name),))
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def unexpected(exc: Exception, method: str) -> ServeError:
    log.exception("unexpected error in gRPC method %s", method)
    return InternalError(f"internal error: {type(exc).__name__}")


def rpc(method: Method[Request, Reply]) -> Method[Request, Reply]:
    """Run a unary servicer method; a ServeError ends the call with its status."""

    @functools.wraps(method)
    async def wrapped(self: Any, request: Request, context: grpc.aio.ServicerContext) -> Reply:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except ServeError as err:
            await abort(context, err)
        except Exception as exc:  # noqa: BLE001 - every call must end with a status
            await abort(context, unexpected(exc, method.__name__))

    return wrapped
