"""TorchServe's ``send_intermediate_predict_response``, on top of ``context.send_intermediate``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torchwire.errors import HandlerError
from torchwire.handlers.context import Context


def send_intermediate_predict_response(ret: Sequence[Any], req_id_map: Mapping[int, str],
                                       message: str, code: int,
                                       context: Context | None = None) -> None:
    """Send ``ret[idx]`` to the client of each request ``idx`` of ``req_id_map``, right away.

    ``req_id_map`` is ``context.request_ids`` (or part of it). As in TorchServe, each
    chunk carries the request's response status and headers from ``context``;
    ``message`` and ``code`` are accepted for compatibility and not used.
    """
    if context is None:
        raise HandlerError("send_intermediate_predict_response needs the handler's context")
    for idx in req_id_map:
        if not 0 <= idx < len(ret):
            raise HandlerError(f"send_intermediate_predict_response: no response for request "
                               f"{idx} in a list of {len(ret)}")
        context.send_intermediate(idx, ret[idx])
