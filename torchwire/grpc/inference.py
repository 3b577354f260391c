"""TorchServe's InferenceAPIsService: Ping, Predictions and the two streaming forms.

A prediction becomes the same :class:`~torchwire.protocol.Item` the
REST API builds: each entry of the ``input`` map is one named parameter of
the request's row, as bytes without a content type (as TorchServe passes
them), and it goes through the model's batcher and workers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import grpc
from google.protobuf import empty_pb2

from torchwire.batching import TIMEOUT_HEADER
from torchwire.errors import BadRequest, ServeError
from torchwire.grpc.generated import inference_pb2 as pb
from torchwire.grpc.generated import inference_pb2_grpc as pb_grpc
from torchwire.grpc.generated.google.rpc import status_pb2
from torchwire.grpc.status import abort, code_number, grpc_code, rpc, unexpected
from torchwire.model import ModelVersion
from torchwire.protocol import Item, Param
from torchwire.registry import ModelRegistry
from torchwire.stream import ResponseStream


def metadata_headers(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The call's text metadata, as the request headers a handler sees: never the
    ``authorization`` entry, which carries the server's key (as REST drops that header
    once it is checked)."""
    return {
        key: value
        for key, value in (context.invocation_metadata() or ())
        if isinstance(value, str) and key != "authorization"
    }


def with_deadline(headers: dict[str, str],
                  context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The call's gRPC deadline, as the X-Request-Timeout a REST client would send."""
    remaining = context.time_remaining()
    if remaining is not None and TIMEOUT_HEADER not in headers:
        headers[TIMEOUT_HEADER] = f"{max(remaining, 1e-6):.6f}"
    return headers


def prediction_item(request: pb.PredictionsRequest, headers: dict[str, str]) -> Item:
    if not request.input:
        raise BadRequest("the request has no input: put the data in the input map, "
                         "e.g. input={'data': image_bytes}")
    params = tuple(Param(name, value) for name, value in request.input.items())
    return Item(headers.get("x-request-id") or uuid.uuid4().hex, params, headers)


class InferenceService(pb_grpc.InferenceAPIsServiceServicer):
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def target(self, request: pb.PredictionsRequest,
               context: grpc.aio.ServicerContext) -> tuple[ModelVersion, Item]:
        """The model version a request names, and the request as the batcher takes it."""
        if not request.model_name:
            raise BadRequest("Parameter model_name is required.")
        model = self.registry.get(request.model_name, request.model_version or None)
        return model, prediction_item(request, with_deadline(metadata_headers(context), context))

    def start(self, request: pb.PredictionsRequest,
              context: grpc.aio.ServicerContext) -> ResponseStream:
        model, item = self.target(request, context)
        return model.submit(item)

    async def predict(self, request: pb.PredictionsRequest,
                      context: grpc.aio.ServicerContext) -> pb.PredictionResponse:
        """The whole answer; a streaming handler's chunks joined, as an HTTP client reads them."""
        parts = await self.start(request, context).results()
        body = b"".join(p.body for p in parts) if len(parts) > 1 else parts[0].body
        return pb.PredictionResponse(prediction=body)

    async def replies(self, request: pb.PredictionsRequest,
                      context: grpc.aio.ServicerContext) -> AsyncIterator[pb.PredictionResponse]:
        """One response per intermediate answer, then the final one; an error status raises."""
        stream = self.start(request, context)
        try:
            async for outcome in stream:
                yield pb.PredictionResponse(prediction=outcome.check().body)
        finally:
            stream.close()

    async def answers(self, request: pb.PredictionsRequest, context: grpc.aio.ServicerContext
                      ) -> AsyncIterator[pb.PredictionResponse]:
        """One request's replies in a bidi stream; a failure is a last reply with ``status``."""
        try:
            async for reply in self.replies(request, context):
                yield reply
        except ServeError as err:
            yield failed_reply(err)
        except Exception as exc:  # noqa: BLE001 - the stream goes on with the next request
            yield failed_reply(unexpected(exc, "StreamPredictions2"))

    @rpc
    async def Ping(self, request: empty_pb2.Empty,
                   context: grpc.aio.ServicerContext) -> pb.TorchServeHealthResponse:
        status = "Healthy" if self.registry.healthy() else "Unhealthy"
        return pb.TorchServeHealthResponse(health=json.dumps({"status": status}, indent=2))

    @rpc
    async def Predictions(self, request: pb.PredictionsRequest,
                          context: grpc.aio.ServicerContext) -> pb.PredictionResponse:
        return await self.predict(request, context)

    async def StreamPredictions(self, request: pb.PredictionsRequest,
                                context: grpc.aio.ServicerContext
                                ) -> AsyncIterator[pb.PredictionResponse]:
        """One response per intermediate answer of the handler, then the final one.

        A failure ends the call with its status, also after responses were sent.
        """
        try:
            async for reply in self.replies(request, context):
                yield reply
        except ServeError as err:
            await abort(context, err)
        except Exception as exc:  # noqa: BLE001 - every call must end with a status
            await abort(context, unexpected(exc, "StreamPredictions"))

    async def StreamPredictions2(self, requests: AsyncIterator[pb.PredictionsRequest],
                                 context: grpc.aio.ServicerContext
                                 ) -> AsyncIterator[pb.PredictionResponse]:
        """Each request's responses in order, as StreamPredictions sends them.

        A failed request answers with a reply carrying ``status``; the stream goes on.
        """
        async for request in requests:
            async for reply in self.answers(request, context):
                if request.HasField("sequenceId"):
                    reply.sequenceId = request.sequenceId
                yield reply


def failed_reply(err: ServeError) -> pb.PredictionResponse:
    status = status_pb2.Status(code=code_number(grpc_code(err.status)), message=err.message)
    return pb.PredictionResponse(status=status)
