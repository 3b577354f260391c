"""The Context a handler receives: model facts plus per-request headers and replies.

Mirrors TorchServe's ``ts.context.Context`` so that custom handlers written for
TorchServe find the same attributes and methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torchwire
from torchwire.errors import HandlerError

Emit = Callable[[int, Any], None]

KIND_HEADERS = ("explain", "describe")


def ts_headers(headers: dict[str, str], kind: str) -> dict[str, str]:
    """A request's headers as TorchServe's handlers see them for a batch of ``kind``.

    TorchServe marks an explanation or describe request with an ``explain``/``describe``
    header set to ``"True"``; handlers written for it read that. The mark is set here
    only, from the batch's kind: a client's own ``explain``/``describe`` headers are
    dropped, so no client can turn a prediction into something else.
    """
    clean = {k: v for k, v in headers.items() if k.lower() not in KIND_HEADERS}
    if kind in KIND_HEADERS:
        clean[kind] = "True"
    return clean


class RequestProcessor:
    """Headers of one request in, status and headers of its response out."""

    def __init__(self, request_header: dict[str, str]) -> None:
        self._request_header = request_header
        self._status_code = 200
        self._reason_phrase = ""
        self._response_header: dict[str, str] = {}

    def get_request_property(self, key: str) -> str | None:
        return self._request_header.get(key.lower())

    def get_request_properties(self) -> dict[str, str]:
        return self._request_header

    def report_status(self, code: int, reason_phrase: str = "") -> None:
        self._status_code = code
        self._reason_phrase = reason_phrase

    def get_response_status_code(self) -> int:
        return self._status_code

    def get_response_status_phrase(self) -> str:
        return self._reason_phrase

    def add_response_property(self, key: str, value: str) -> None:
        self._response_header[key] = value

    def get_response_header(self, key: str) -> str | None:
        return self._response_header.get(key)

    def get_response_headers(self) -> dict[str, str]:
        return self._response_header


class Context:
    """Model-level facts (fixed at load) and the current batch's request processors."""

    def __init__(
        self,
        model_name: str,
        model_dir: str,
        manifest: dict[str, Any],
        batch_size: int,
        gpu: int | None,
        model_version: str = "1.0",
        model_yaml_config: dict[str, Any] | None = None,
        metrics: Any = None,
    ) -> None:
        self.model_name = model_name
        self.model_version = model_version
        self.manifest = manifest
        self.system_properties: dict[str, Any] = {
            "model_dir": model_dir,
            "gpu_id": gpu,
            "batch_size": batch_size,
            "server_name": "torchwire",
            "server_version": torchwire.__version__,
            "limit_max_image_pixels": True,
        }
        self.model_yaml_config: dict[str, Any] = model_yaml_config or {}
        self.metrics = metrics
        self.request_ids: dict[int, str] = {}
        self.kind = "predict"  # the current batch's: "predict", "explain" or "describe"
        self.request_processor: list[RequestProcessor] = []
        self._emit: Emit | None = None

    def start_batch(self, request_ids: list[str], headers: list[dict[str, str]],
                    emit: Emit | None = None, kind: str = "predict") -> None:
        """A batch of ``kind`` begins; ``emit`` delivers its intermediate responses."""
        self.kind = kind
        self.request_ids = dict(enumerate(request_ids))
        self.request_processor = [RequestProcessor(ts_headers(h, kind)) for h in headers]
        self._emit = emit

    def end_batch(self) -> None:
        """``handle()`` returned: intermediate responses are no longer possible."""
        self._emit = None

    def send_intermediate(self, request: int | str, data: Any) -> None:
        """Send ``data`` to one request's client now, as a chunk of a streamed answer.

        ``request`` is the request's index in the batch (or its id). ``data`` is encoded
        like a result of ``handle()``: bytes as they are, str as UTF-8, anything else as
        JSON; the request's response status and headers at this moment go with it.
        What ``handle()`` returns for the request is the stream's last chunk.
        """
        emit = self._emit
        if emit is None:
            raise HandlerError("send_intermediate can only be called while handle() runs")
        emit(self._index_of(request), data)

    def _index_of(self, request: int | str) -> int:
        if isinstance(request, str):
            for idx, rid in self.request_ids.items():
                if rid == request:
                    return idx
            raise HandlerError(f"send_intermediate: no request with id {request!r} in this batch")
        if request not in self.request_ids:
            raise HandlerError(f"send_intermediate: no request at index {request!r} in a batch "
                               f"of {len(self.request_ids)}")
        return request

    def get_request_id(self, idx: int = 0) -> str | None:
        return self.request_ids.get(idx)

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self.request_processor[idx].get_request_property(key)

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        return self.request_processor[idx].get_request_properties()

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.set_response_header(idx, "content-type", value)

    def get_response_content_type(self, idx: int) -> str | None:
        return self.get_response_headers(idx).get("content-type")

    def get_response_status(self, idx: int) -> tuple[int, str]:
        proc = self.request_processor[idx]
        return proc.get_response_status_code(), proc.get_response_status_phrase()

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        if idx < len(self.request_processor):
            self.request_processor[idx].report_status(code, phrase)

    def set_all_response_status(self, code: int = 200, phrase: str = "") -> None:
        for proc in self.request_processor:
            proc.report_status(code, phrase)

    def get_response_headers(self, idx: int) -> dict[str, str]:
        return self.request_processor[idx].get_response_headers()

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.request_processor[idx].add_response_property(key.lower(), value)
