"""TorchServe's ManagementAPIsService over gRPC, on the core registry and store.

Each reply's ``msg`` is what TorchServe's gRPC API answers: a status sentence
(register, scale, set default, unregister) or a JSON document (describe,
list). Registering and unregistering need ``enable_model_api=true``, as in
TorchServe.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import grpc

from torchwire.api.describe import describe_model, list_page
from torchwire.config import ModelSettings, Settings
from torchwire.errors import BadRequest, InternalError, ModelAPIDisabled, NotSupported
from torchwire.grpc.generated import management_pb2 as pb
from torchwire.grpc.generated import management_pb2_grpc as pb_grpc
from torchwire.grpc.status import rpc
from torchwire.registry import ModelRegistry
from torchwire.store import ModelSpec, ModelStore

log = logging.getLogger(__name__)


class ModelAdmin:
    """The management operations, protocol-neutral: plain values in, text or dicts out."""

    def __init__(self, registry: ModelRegistry, store: ModelStore, settings: Settings) -> None:
        self.registry = registry
        self.store = store
        self.settings = settings
        self._background: set[asyncio.Task[None]] = set()

    def describe(self, name: str, version: str | None) -> list[dict[str, Any]]:
        if version == "all":
            return [describe_model(m) for m in self.registry.versions(name)]
        return [describe_model(self.registry.get(name, version))]

    def list_models(self, limit: int, token: int) -> dict[str, Any]:
        return list_page(self.registry, limit, token)

    def _check_model_api(self) -> None:
        if not self.settings.enable_model_api:
            raise ModelAPIDisabled.for_action("registering and unregistering models")

    def _check_url(self, url: str) -> None:
        if not url:
            raise BadRequest("Parameter url is required.")
        if "://" in url and not any(re.fullmatch(p, url) for p in self.settings.allowed_urls):
            raise BadRequest(f"Given URL {url} does not match any allowed URL(s)")
        if url.startswith(("http://", "https://")):
            raise BadRequest("downloading archives is not supported; put the archive in the "
                             "model store and register it by file name")

    async def register(self, url: str, name: str | None, overrides: ModelSettings,
                       handler: str | None, runtime: str | None) -> str:
        self._check_model_api()
        self._check_url(url)
        if runtime and runtime != "python":
            raise BadRequest(f"runtime {runtime!r} is not supported; only 'python'")
        model = self.store.build(ModelSpec(url, name, handler or None), overrides)
        self.registry.add(model)
        await model.start()
        if model.load_error and model.pool.live == 0:
            await model.stop()
            self.registry.remove(model.name, model.version)
            raise InternalError(f"Failed to start workers for model {model.name} version "
                                f"{model.version}: {model.load_error}")
        workers = model.config.min_workers
        msg = f'Model "{model.name}" Version: {model.version} registered with {workers} ' \
              "initial workers"
        if workers == 0:
            msg += ". Use scale workers API to add workers for the model."
        return msg

    async def scale(self, name: str, version: str | None, min_workers: int, max_workers: int,
                    synchronous: bool) -> str:
        model = self.registry.get(name, version)
        if min_workers < 0 or max_workers < min_workers:
            raise BadRequest(f"max_worker ({max_workers}) must be >= min_worker "
                             f"({min_workers}) >= 0")
        if not synchronous:
            task = asyncio.get_running_loop().create_task(model.scale(min_workers, max_workers))
            self._background.add(task)
            task.add_done_callback(self._scaled)
            return "Processing worker updates..."
        await model.scale(min_workers, max_workers)
        msg = f"Workers scaled to {min_workers} for model: {name}"
        return msg + (f", version: {version}" if version else "")

    def _scaled(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("scaling workers failed", exc_info=task.exception())

    def set_default(self, name: str, version: str) -> str:
        if not version:
            raise BadRequest("Parameter model_version is required.")
        self.registry.set_default(name, version)
        return f'Default version successfully updated for model "{name}" to "{version}"'

    async def unregister(self, name: str, version: str | None) -> str:
        self._check_model_api()
        model = self.registry.remove(name, version)
        await model.stop()
        return f'Model "{name}" unregistered'


def _optional(value: int) -> int | None:
    """proto3 cannot tell 0 from unset; 0 means "use the default", as in TorchServe."""
    return value if value > 0 else None


class ManagementService(pb_grpc.ManagementAPIsServiceServicer):
    def __init__(self, admin: ModelAdmin) -> None:
        self.admin = admin

    @rpc
    async def DescribeModel(self, request: pb.DescribeModelRequest,
                            context: grpc.aio.ServicerContext) -> pb.ManagementResponse:
        if request.customized:
            raise NotSupported("customized model metadata (describe_handle) is not "
                               "supported yet")
        doc = self.admin.describe(request.model_name, request.model_version or None)
        return pb.ManagementResponse(msg=json.dumps(doc, indent=2))

    @rpc
    async def ListModels(self, request: pb.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> pb.ManagementResponse:
        doc = self.admin.list_models(request.limit, request.next_page_token)
        return pb.ManagementResponse(msg=json.dumps(doc, indent=2))

    @rpc
    async def RegisterModel(self, request: pb.RegisterModelRequest,
                            context: grpc.aio.ServicerContext) -> pb.ManagementResponse:
        workers = _optional(request.initial_workers)
        overrides = ModelSettings(
            min_workers=workers, max_workers=workers,
            batch_size=_optional(request.batch_size),
            max_batch_delay=_optional(request.max_batch_delay),
            response_timeout=_optional(request.response_timeout),
            startup_timeout=_optional(request.startup_timeout),
        )
        msg = await self.admin.register(request.url, request.model_name or None, overrides,
                                        request.handler or None, request.runtime or None)
        return pb.ManagementResponse(msg=msg)

    @rpc
    async def ScaleWorker(self, request: pb.ScaleWorkerRequest,
                          context: grpc.aio.ServicerContext) -> pb.ManagementResponse:
        low = request.min_worker or 1  # as TorchServe: 0 means 1
        high = request.max_worker or low
        msg = await self.admin.scale(request.model_name, request.model_version or None, low,
                                     high, request.synchronous)
        return pb.ManagementResponse(msg=msg)

    @rpc
    async def SetDefault(self, request: pb.SetDefaultRequest,
                         context: grpc.aio.ServicerContext) -> pb.ManagementResponse:
        msg = self.admin.set_default(request.model_name, request.model_version)
        return pb.ManagementResponse(msg=msg)

    @rpc
    async def UnregisterModel(self, request: pb.UnregisterModelRequest,
                              context: grpc.aio.ServicerContext) -> pb.ManagementResponse:
        if not request.model_name:
            raise BadRequest("Parameter model_name is required.")
        msg = await self.admin.unregister(request.model_name, request.model_version or None)
        return pb.ManagementResponse(msg=msg)
