"""One OIP inference request, protocol-neutral: to a worker Item and back to tensors.

Both front ends (REST JSON in :mod:`torchwire.oip.json_codec`, gRPC in
:mod:`torchwire.grpc.oip`) parse into an :class:`InferRequest` and call
:func:`infer`, which sends it through the model's batcher and workers like
any other request: one OIP request is one row of a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torchwire
from torchwire.errors import BadRequest, InternalError
from torchwire.model import ModelVersion
from torchwire.oip.metadata import check_inputs, metadata_of
from torchwire.oip.tensor import TENSORS_CONTENT_TYPE, Tensor, decode_tensors
from torchwire.protocol import PREDICT, Item, Kind, Param

SERVER_NAME = "torchwire"


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InferRequest:
    id: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[RequestedOutput, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)


def check_request(req: InferRequest) -> None:
    if not req.inputs:
        raise BadRequest("the request has no inputs; send at least one input tensor")
    names = [t.name for t in req.inputs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BadRequest(f"input names must be unique; repeated: {', '.join(dupes)}")
    if any(not n for n in names):
        raise BadRequest("every input needs a name")


def to_item(req: InferRequest, request_id: str, headers: dict[str, str]) -> Item:
    return Item(request_id, tuple(Param(t.name, t) for t in req.inputs), headers)


async def infer(model: ModelVersion, req: InferRequest, request_id: str,
                headers: dict[str, str], kind: Kind = PREDICT) -> list[Tensor]:
    """Run ``req`` on ``model``; the output tensors the request asked for."""
    check_request(req)
    check_inputs(metadata_of(model), model.name, req.inputs)
    outcome = await model.submit(to_item(req, request_id, headers), kind).result()
    if outcome.content_type != TENSORS_CONTENT_TYPE:
        raise InternalError("the worker answered an OIP request without tensors")
    return select_outputs(decode_tensors(outcome.body), req.outputs, model.name)


def select_outputs(tensors: list[Tensor], wanted: Sequence[RequestedOutput],
                   model_name: str) -> list[Tensor]:
    if not wanted:
        return tensors
    by_name = {t.name: t for t in tensors}
    missing = [w.name for w in wanted if w.name not in by_name]
    if missing:
        produced = ", ".join(by_name) or "nothing"
        raise BadRequest(f"unknown output(s) {', '.join(missing)} requested from model "
                         f"{model_name!r}; it produced: {produced}")
    return [by_name[w.name] for w in wanted]


# -- metadata and health, as plain JSON-able dicts ----------------------------------
def server_metadata(extensions: Sequence[str]) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": torchwire.__version__,
            "extensions": list(extensions)}


def model_metadata(model: ModelVersion, versions: Sequence[str]) -> dict[str, Any]:
    meta = metadata_of(model)
    return {
        "name": model.name,
        "versions": list(versions),
        "platform": meta.platform,
        "inputs": [s.to_json() for s in meta.inputs],
        "outputs": [s.to_json() for s in meta.outputs],
    }


def model_ready(model: ModelVersion) -> bool:
    from torchwire.model import ModelState

    return model.state is ModelState.READY and model.pool.live > 0
