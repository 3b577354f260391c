"""The Open Inference Protocol over gRPC: service ``inference.GRPCInferenceService``.

Tensors arrive in typed ``contents`` or in ``raw_input_contents``; the reply
uses ``raw_output_contents`` when the request used raw inputs (as Triton's
clients expect) or when an output is FP16/BF16 (which has no typed field),
typed ``contents`` otherwise.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import grpc

from torchwire.errors import BadRequest
from torchwire.grpc.generated import predict_v2_pb2 as pb
from torchwire.grpc.generated import predict_v2_pb2_grpc as pb_grpc
from torchwire.grpc.inference import metadata_headers
from torchwire.grpc.status import rpc
from torchwire.oip.request import (
    InferRequest,
    RequestedOutput,
    infer,
    model_metadata,
    model_ready,
    server_metadata,
)
from torchwire.oip.tensor import (
    BYTES,
    Tensor,
    check_shape,
    datatype,
    element_count,
    make_tensor,
    pack,
)
from torchwire.registry import ModelRegistry

# datatype → the InferTensorContents field that carries it (FP16/BF16: raw only)
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents",
    BYTES: "bytes_contents",
}
RAW_ONLY = frozenset({"FP16", "BF16"})


# -- parameters ------------------------------------------------------------------------
def parameter_value(param: pb.InferParameter) -> Any:
    choice = param.WhichOneof("parameter_choice")
    return getattr(param, choice) if choice else None


def parameters_dict(params: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    return {k: parameter_value(v) for k, v in params.items()}


def set_parameters(target: Any, values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        param = target[key]
        if isinstance(value, bool):
            param.bool_param = value
        elif isinstance(value, int):
            param.int64_param = value
        elif isinstance(value, float):
            param.double_param = value
        else:
            param.string_param = str(value)


# -- request → tensors -------------------------------------------------------------------
def input_tensor(entry: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> Tensor:
    where = f"input {entry.name!r}"
    datatype(entry.datatype, where)
    shape = check_shape(entry.shape, where)
    params = parameters_dict(entry.parameters)
    if raw is not None:
        if entry.HasField("contents") and entry.contents.ByteSize():
            raise BadRequest(f"{where}: give its data in contents or raw_input_contents, "
                             "not both")
        return make_tensor(entry.name, entry.datatype, shape, raw, params)
    if entry.datatype in RAW_ONLY:
        raise BadRequest(f"{where}: {entry.datatype} data must be sent in raw_input_contents")
    values = list(getattr(entry.contents, CONTENTS_FIELD[entry.datatype]))
    count = element_count(shape)
    if len(values) != count:
        raise BadRequest(f"{where}: shape {list(shape)} holds {count} element(s), "
                         f"contents.{CONTENTS_FIELD[entry.datatype]} has {len(values)}")
    return make_tensor(entry.name, entry.datatype, shape,
                       pack(entry.datatype, values, where), params)


def infer_request(request: pb.ModelInferRequest) -> InferRequest:
    raws: list[bytes | None] = list(request.raw_input_contents)
    if raws and len(raws) != len(request.inputs):
        raise BadRequest(f"raw_input_contents has {len(raws)} entries for "
                         f"{len(request.inputs)} inputs; give one per input, in order")
    if not raws:
        raws = [None] * len(request.inputs)
    inputs = tuple(input_tensor(t, raw) for t, raw in zip(request.inputs, raws, strict=True))
    outputs = tuple(RequestedOutput(o.name, parameters_dict(o.parameters))
                    for o in request.outputs)
    return InferRequest(request.id, inputs, outputs, parameters_dict(request.parameters))


# -- tensors → response --------------------------------------------------------------------
def infer_response(request: pb.ModelInferRequest, name: str, version: str,
                   tensors: Iterable[Tensor]) -> pb.ModelInferResponse:
    tensors = list(tensors)
    raw = bool(request.raw_input_contents) or any(t.datatype in RAW_ONLY for t in tensors)
    reply = pb.ModelInferResponse(model_name=name, model_version=version, id=request.id)
    for t in tensors:
        out = reply.outputs.add(name=t.name, datatype=t.datatype, shape=list(t.shape))
        set_parameters(out.parameters, t.parameters)
        if raw:
            reply.raw_output_contents.append(t.raw)
        else:
            getattr(out.contents, CONTENTS_FIELD[t.datatype]).extend(t.values())
    return reply


def tensor_metadata(entries: list[dict[str, Any]]) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    return [pb.ModelMetadataResponse.TensorMetadata(**e) for e in entries]


class OpenInferenceService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    @rpc
    async def ServerLive(self, request: pb.ServerLiveRequest,
                         context: grpc.aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @rpc
    async def ServerReady(self, request: pb.ServerReadyRequest,
                          context: grpc.aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.registry.healthy())

    @rpc
    async def ModelReady(self, request: pb.ModelReadyRequest,
                         context: grpc.aio.ServicerContext) -> pb.ModelReadyResponse:
        model = self.registry.get(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=model_ready(model))

    @rpc
    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**server_metadata(()))

    @rpc
    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        model = self.registry.get(request.name, request.version or None)
        versions = ([model.version] if request.version
                    else [m.version for m in self.registry.versions(model.name)])
        meta = model_metadata(model, versions)
        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=tensor_metadata(meta["inputs"]), outputs=tensor_metadata(meta["outputs"]),
        )

    @rpc
    async def ModelInfer(self, request: pb.ModelInferRequest,
                         context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        if not request.model_name:
            raise BadRequest("model_name is required")
        model = self.registry.get(request.model_name, request.model_version or None)
        req = infer_request(request)
        headers = metadata_headers(context)
        rid = request.id or headers.get("x-request-id") or uuid.uuid4().hex
        tensors = await infer(model, req, rid, headers)
        return infer_response(request, model.name, model.version, tensors)
