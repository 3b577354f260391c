"""TorchServe's ManagementAPIsService over gRPC: a thin face of :class:`ModelAdmin`.

Each reply's ``msg`` is what the REST API answers: a status sentence (register,
scale, set default, unregister) or a JSON document (describe, list); errors carry
the REST message with the matching gRPC code. Registering and unregistering need
``enable_model_api=true``, as in TorchServe (PERMISSION_DENIED "Model API disabled"
otherwise, its words). proto3 cannot tell 0 from unset, so
a 0 means "the default" throughout (``min_worker`` 0 means 1, as in TorchServe).
"""

from __future__ import annotations

import json

import grpc

from torchwire.admin import ModelAdmin, Registration, Scaling
from torchwire.config import ModelSettings
from torchwire.errors import BadRequest
from torchwire.grpc.generated import management_pb2 as pb
from torchwire.grpc.generated import management_pb2_grpc as pb_grpc
from torchwire.grpc.inference import metadata_headers
from torchwire.grpc.status import rpc

__all__ = ["ManagementService", "ModelAdmin"]


def _optional(value: int) -> int | None:
    return value if value > 0 else None


def registration(request: pb.RegisterModelRequest) -> Registration:
    overrides = ModelSettings(
        min_workers=_optional(request.initial_workers),
        batch_size=_optional(request.batch_size),
        max_batch_delay=_optional(request.max_batch_delay),
        response_timeout=_optional(request.response_timeout),
        startup_timeout=_optional(request.startup_timeout),
    )
    return Registration(request.url, request.model_name or None, request.handler or None,
                        request.runtime or "python", overrides, request.synchronous)


def scaling(request: pb.ScaleWorkerRequest) -> Scaling:
    low = request.min_worker or 1
    high = request.max_worker or low
    drain = float(request.timeout) if request.timeout > 0 else None
    return Scaling(low, high, drain, request.synchronous)


def required(value: str, name: str) -> str:
    if not value:
        raise BadRequest(f"Parameter {name} is required.")
    return value


def reply(msg: str) -> pb.ManagementResponse:
    return pb.ManagementResponse(msg=msg)


class ManagementService(pb_grpc.ManagementAPIsServiceServicer):
    def __init__(self, admin: ModelAdmin) -> None:
        self.admin = admin

    @rpc
    async def DescribeModel(self, request: pb.DescribeModelRequest,
                            context: grpc.aio.ServicerContext) -> pb.ManagementResponse:
        name = required(request.model_name, "model_name")
        doc = await self.admin.describe(name, request.model_version or None,
                                        request.customized, metadata_headers(context))
        return reply(json.dumps(doc, indent=2))

    @rpc
    async def ListModels(self, request: pb.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> pb.ManagementResponse:
        doc = self.admin.list_models(request.limit, request.next_page_token)
        return reply(json.dumps(doc, indent=2))

    @rpc
    async def RegisterModel(self, request: pb.RegisterModelRequest,
                            context: grpc.aio.ServicerContext) -> pb.ManagementResponse:
        answer = await self.admin.register(registration(request))
        return reply(answer.message)

    @rpc
    async def ScaleWorker(self, request: pb.ScaleWorkerRequest,
                          context: grpc.aio.ServicerContext) -> pb.ManagementResponse:
        name = required(request.model_name, "model_name")
        answer = await self.admin.scale(name, request.model_version or None, scaling(request))
        return reply(answer.message)

    @rpc
    async def SetDefault(self, request: pb.SetDefaultRequest,
                         context: grpc.aio.ServicerContext) -> pb.ManagementResponse:
        name = required(request.model_name, "model_name")
        version = required(request.model_version, "model_version")
        return reply(self.admin.set_default(name, version))

    @rpc
    async def UnregisterModel(self, request: pb.UnregisterModelRequest,
                              context: grpc.aio.ServicerContext) -> pb.ManagementResponse:
        name = required(request.model_name, "model_name")
        answer = await self.admin.unregister(name, request.model_version or None)
        return reply(answer.message)
