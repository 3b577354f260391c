"""Turn an HTTP request into a worker Item: body bytes stay bytes, never decoded here."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from torchwire.errors import BadRequest, PayloadTooLarge
from torchwire.jsondoc import parse_json
from torchwire.protocol import Item, Param

EMPTY_BODY = (
    "the request body is empty: send the input as the body (curl -T file) "
    "or as a multipart form field (curl -F data=@file)"
)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) anything over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(_too_large(int(declared), limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(_too_large(size, limit))
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(size: int, limit: int) -> str:
    return f"request body of {size} bytes exceeds max_request_size ({limit} bytes)"


def request_id(request: Request) -> str:
    return request.headers.get("x-request-id") or uuid.uuid4().hex


def query_params(request: Request) -> list[Param]:
    # TorchServe passes query parameters to the handler as bytes without a content type.
    return [Param(k, v.encode()) for k, v in request.query_params.multi_items()]


async def form_params(request: Request, body: bytes) -> list[Param]:
    request._body = body  # let Starlette's form parser read the bytes we already hold
    try:
        form = await request.form()
    except Exception as exc:  # noqa: BLE001 - python-multipart raises several types
        raise BadRequest(f"malformed multipart form: {exc}") from exc
    params: list[Param] = []
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            params.append(Param(name, await value.read(), value.content_type or ""))
        else:
            params.append(Param(name, value))
    return params


async def item_from_request(request: Request, limit: int) -> Item:
    body = await read_body(request, limit)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        params = await form_params(request, body)
        if not any(_has_content(p) for p in params):
            raise BadRequest(EMPTY_BODY)
    elif body:
        params = [Param("body", body, content_type)]
    else:
        raise BadRequest(EMPTY_BODY)
    params.extend(query_params(request))
    return Item(request_id(request), tuple(params), header_view(request))


def header_view(request: Request) -> dict[str, str]:
    """The handler's headers, first value of each name winning, built in linear time.

    ``dict(request.headers)`` looks every name up again in the raw list (quadratic in
    the header count); this walks the list once, backwards, so the first value wins.
    """
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(request.headers.raw)}


def _has_content(param: Param) -> bool:
    return bool(param.value)


def json_body(body: bytes) -> Any:
    if not body:
        raise BadRequest("the request body is empty; expected a JSON document")
    return parse_json(body, "the request body")
