"""A prediction's HTTP response: whole, or chunked when the handler streams.

An ordinary handler's answer is one response with its Content-Length, exactly as
before. When the handler sends intermediate responses, the first one decides the
status and headers and each becomes one chunk of a ``Transfer-Encoding: chunked``
body; the final answer is the last chunk. Once chunks are on the wire a failure
can no longer change the status: the error's JSON body is sent as one more chunk
and the connection is closed without the terminating chunk, so an HTTP client
sees the body cut short instead of a complete answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

from starlette.responses import Response, StreamingResponse
from starlette.types import Send

from torchwire.api.responses import outcome_response
from torchwire.errors import InternalError, ServeError
from torchwire.protocol import Outcome
from torchwire.stream import ResponseStream

log = logging.getLogger(__name__)


class StreamBroken(Exception):
    """The answer failed after its first chunk was sent."""


class ChunkedResponse(StreamingResponse):
    """A StreamingResponse that ends without its last chunk when the body raises StreamBroken."""

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        try:
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except StreamBroken:
            return  # the server closes the connection: the client sees an incomplete body
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def failure_body(outcome: Outcome, max_size: int) -> bytes | None:
    """The error body that ends a stream at this chunk; None when the chunk is fine."""
    if outcome.error is not None:
        return outcome.body  # as the worker built it
    if len(outcome.body) > max_size:
        err = InternalError(f"a response chunk of {len(outcome.body)} bytes exceeds "
                            f"max_response_size ({max_size})")
        return error_body(err)
    return None


def error_body(err: ServeError) -> bytes:
    return json.dumps(err.to_json()).encode()


def _broken(stream: ResponseStream, reason: bytes) -> bytes:
    log.warning("request %s: the streamed answer failed after %d chunk(s): %s",
                stream.request_id, stream.partials, reason.decode(errors="replace"))
    return reason


async def chunks(first: Outcome, stream: ResponseStream, max_size: int) -> AsyncIterator[bytes]:
    try:
        yield first.body
        async for outcome in stream:
            failure = failure_body(outcome, max_size)
            if failure is not None:
                yield _broken(stream, failure)
                raise StreamBroken
            yield outcome.body
    except ServeError as err:  # a timeout or a dead worker
        yield _broken(stream, error_body(err))
        raise StreamBroken from None
    finally:
        stream.close()


async def prediction_response(stream: ResponseStream, max_size: int) -> Response:
    """Wait for the first answer; it is either the whole answer or a stream's first chunk."""
    try:
        first = await anext(stream)
    except BaseException:
        stream.close()
        raise
    if stream.finished or failure_body(first, max_size) is not None:
        stream.close()
        return outcome_response(first, stream.request_id, max_size)
    headers = {**first.headers, "x-request-id": stream.request_id}
    return ChunkedResponse(chunks(first, stream, max_size), first.status, headers,
                           media_type=first.content_type)
