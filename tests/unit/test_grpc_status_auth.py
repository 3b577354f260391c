"""gRPC status codes for HTTP statuses, and token checks on every kind of call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.protobuf import empty_pb2

from torchwire.errors import InvalidKey
from torchwire.grpc.generated import inference_pb2 as pb
from torchwire.grpc.generated import inference_pb2_grpc as pb_grpc
from torchwire.grpc.inference import InferenceService
from torchwire.grpc.server import AuthInterceptor
from torchwire.grpc.status import grpc_code
from torchwire.registry import ModelRegistry


@pytest.mark.parametrize(("status", "code"), [
    (400, grpc.StatusCode.INVALID_ARGUMENT), (401, grpc.StatusCode.UNAUTHENTICATED),
    (404, grpc.StatusCode.NOT_FOUND), (408, grpc.StatusCode.DEADLINE_EXCEEDED),
    (409, grpc.StatusCode.ALREADY_EXISTS), (413, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (422, grpc.StatusCode.INVALID_ARGUMENT), (500, grpc.StatusCode.INTERNAL),
    (501, grpc.StatusCode.UNIMPLEMENTED), (503, grpc.StatusCode.UNAVAILABLE),
    (599, grpc.StatusCode.INTERNAL),
])
def test_http_status_to_grpc_code(status: int, code: grpc.StatusCode) -> None:
    assert grpc_code(status) is code


Call = Callable[[pb_grpc.InferenceAPIsServiceStub, tuple[tuple[str, str], ...]], Awaitable[object]]


async def _ping(stub: pb_grpc.InferenceAPIsServiceStub, md: tuple[tuple[str, str], ...]) -> object:
    return await stub.Ping(empty_pb2.Empty(), metadata=md)


async def _stream(stub: pb_grpc.InferenceAPIsServiceStub,
                  md: tuple[tuple[str, str], ...]) -> object:
    request = pb.PredictionsRequest(model_name="m", input={"data": b"x"})
    return [r async for r in stub.StreamPredictions(request, metadata=md)]


async def _bidi(stub: pb_grpc.InferenceAPIsServiceStub,
                md: tuple[tuple[str, str], ...]) -> object:
    requests = [pb.PredictionsRequest(model_name="m", input={"data": b"x"})]
    return [r async for r in stub.StreamPredictions2(iter(requests), metadata=md)]


async def _serve_and_call(call: Call, md: tuple[tuple[str, str], ...],
                          seen: list[tuple[str, str]]) -> object:
    def authorize(api: str, method: str, authorization: str | None) -> None:
        seen.append((api, method))
        if authorization != "Bearer good":
            raise InvalidKey(InvalidKey.TOKEN)

    server = grpc.aio.server(interceptors=[AuthInterceptor("inference", authorize)])
    pb_grpc.add_InferenceAPIsServiceServicer_to_server(InferenceService(ModelRegistry()), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            return await call(pb_grpc.InferenceAPIsServiceStub(channel), md)
    finally:
        await server.stop(None)


@pytest.mark.parametrize("call", [_ping, _stream, _bidi], ids=["unary", "stream", "bidi"])
def test_calls_without_the_token_are_refused(call: Call) -> None:
    seen: list[tuple[str, str]] = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        asyncio.run(_serve_and_call(call, (("authorization", "Bearer wrong"),), seen))
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED  # as TorchServe
    assert "Token Authorization failed" in (info.value.details() or "")
    assert seen and seen[0][0] == "inference"
    assert seen[0][1].startswith("/org.pytorch.serve.grpc.inference.InferenceAPIsService/")


def test_calls_with_the_token_go_through() -> None:
    seen: list[tuple[str, str]] = []
    md = (("authorization", "Bearer good"),)
    reply = asyncio.run(_serve_and_call(_ping, md, seen))
    assert isinstance(reply, pb.TorchServeHealthResponse) and "Healthy" in reply.health
    answers = asyncio.run(_serve_and_call(_bidi, md, seen))
    assert isinstance(answers, list)
    assert answers[0].status.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert answers[0].status.message == "Model not found: m"
