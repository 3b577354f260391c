"""The gRPC listeners: grpc.aio servers in the front process, beside uvicorn.

The inference listener (default 127.0.0.1:7070) serves TorchServe's
InferenceAPIsService and the Open Inference Protocol's GRPCInferenceService;
the management listener (default 127.0.0.1:7071) serves TorchServe's
ManagementAPIsService. When token authorization is on, each call must carry
``authorization: Bearer <key>`` metadata, checked by the server's authorizer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import grpc

from torchwire.admin import ModelAdmin
from torchwire.config import Address, Settings
from torchwire.errors import ServeError
from torchwire.grpc.generated import inference_pb2_grpc, management_pb2_grpc, predict_v2_pb2_grpc
from torchwire.grpc.inference import InferenceService
from torchwire.grpc.management import ManagementService
from torchwire.grpc.oip import OpenInferenceService
from torchwire.grpc.status import abort
from torchwire.registry import ModelRegistry
from torchwire.store import ModelStore

log = logging.getLogger(__name__)

STOP_GRACE = 5.0  # s that in-flight calls get at shutdown


class Authorizer(Protocol):
    """Raise a ServeError (InvalidKey) unless ``authorization`` may call ``method`` of ``api``."""

    def __call__(self, api: str, method: str, authorization: str | None) -> None: ...


def _denied(handler: grpc.RpcMethodHandler, err: ServeError) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that refuses the call with ``err``."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await abort(context, err)

    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(refuse, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, api: str, authorize: Authorizer) -> None:
        self.api = api
        self.authorize = authorize

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        metadata = dict(details.invocation_metadata or ())
        token = metadata.get("authorization")
        try:
            self.authorize(self.api, details.method, token if isinstance(token, str) else None)
        except ServeError as err:
            return _denied(handler, err)
        return handler


def server_options(settings: Settings, api: str) -> list[tuple[str, int]]:
    request_limit = max(settings.grpc_max_message_size, settings.max_request_size)
    response_limit = max(settings.grpc_max_message_size, settings.max_response_size)
    options = [
        ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share it
        ("grpc.max_receive_message_length", request_limit),
        ("grpc.max_send_message_length", response_limit),
        # the HTTP listeners' limits, as gRPC has them (docs/limits.md)
        ("grpc.server_handshake_timeout_ms", settings.header_read_timeout * 1000),
        ("grpc.max_metadata_size", settings.max_header_size),
        ("grpc.absolute_max_metadata_size", settings.max_header_size),
        ("grpc.max_connection_idle_ms", settings.grpc_max_connection_idle_ms),
        ("grpc.max_concurrent_streams", settings.grpc_max_concurrent_streams),
    ]
    age = getattr(settings, f"grpc_{api}_max_connection_age_ms")
    grace = getattr(settings, f"grpc_{api}_max_connection_age_grace_ms")
    if age is not None:
        options.append(("grpc.max_connection_age_ms", age))
    if grace is not None:
        options.append(("grpc.max_connection_age_grace_ms", grace))
    return options


def _target(address: Address) -> str:
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{host}:{address.port}"


def _credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not settings.enable_grpc_ssl:
        return None
    assert settings.private_key_file is not None and settings.certificate_file is not None
    key = settings.private_key_file.read_bytes()
    cert = settings.certificate_file.read_bytes()
    return grpc.ssl_server_credentials([(key, cert)])


def bind(server: grpc.aio.Server, address: Address, settings: Settings) -> int:
    target = _target(address)
    credentials = _credentials(settings)
    try:
        if credentials is None:
            port = server.add_insecure_port(target)
        else:
            port = server.add_secure_port(target, credentials)
    except RuntimeError as exc:
        raise OSError(f"cannot listen for gRPC on {target}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {target}")
    return port


class GrpcListeners:
    """Both gRPC servers: built, bound and started together, stopped gracefully."""

    def __init__(self, settings: Settings, registry: ModelRegistry, store: ModelStore,
                 authorize: Authorizer | None = None, admin: ModelAdmin | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.admin = admin or ModelAdmin(registry, store, settings)
        self.authorize = authorize
        self.servers: list[grpc.aio.Server] = []
        self.ports: dict[str, int] = {}

    def _server(self, api: str) -> grpc.aio.Server:
        interceptors = [] if self.authorize is None else [AuthInterceptor(api, self.authorize)]
        return grpc.aio.server(options=server_options(self.settings, api),
                               interceptors=interceptors)

    def build(self) -> None:
        inference = self._server("inference")
        inference_pb2_grpc.add_InferenceAPIsServiceServicer_to_server(
            InferenceService(self.registry), inference)
        predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            OpenInferenceService(self.registry), inference)
        management = self._server("management")
        management_pb2_grpc.add_ManagementAPIsServiceServicer_to_server(
            ManagementService(self.admin), management)
        self.ports["inference"] = bind(inference, self.settings.grpc_inference, self.settings)
        self.ports["management"] = bind(management, self.settings.grpc_management,
                                        self.settings)
        self.servers = [inference, management]

    async def start(self) -> None:
        if not self.settings.enable_grpc:
            return
        self.build()
        for server in self.servers:
            await server.start()
        for api, port in self.ports.items():
            addr = getattr(self.settings, f"grpc_{api}")
            log.info("gRPC %s API listening on %s:%d", api, addr.host, port)

    async def stop(self, grace: float = STOP_GRACE) -> None:
        await asyncio.gather(*(server.stop(grace) for server in self.servers))
        self.servers = []
