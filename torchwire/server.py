"""The server: its listeners, its models, and their start and orderly stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

import torchwire
from torchwire.api.inference import InferenceAPI
from torchwire.api.kserve import KServeV1API
from torchwire.api.kserve_v2 import KServeV2API
from torchwire.api.responses import EXCEPTION_HANDLERS
from torchwire.config import Address, Settings
from torchwire.devices import GpuAllocator, visible_gpu_count
from torchwire.errors import ServeError
from torchwire.grpc.server import Authorizer, GrpcListeners
from torchwire.registry import ModelRegistry
from torchwire.store import ModelSpec, ModelStore

log = logging.getLogger(__name__)


class _Listener(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :class:`Server`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_app(routes: list[BaseRoute]) -> Starlette:
    return Starlette(routes=routes, exception_handlers=dict(EXCEPTION_HANDLERS))


def bind(address: Address) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address.host, address.port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {address}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


class Server:
    def __init__(self, settings: Settings, models: list[ModelSpec]) -> None:
        self.settings = settings
        self.model_specs = models
        self.registry = ModelRegistry()
        self.gpus = GpuAllocator(visible_gpu_count(dict(os.environ), settings.number_of_gpu))
        self.store = ModelStore(settings, self.gpus)
        self._stop = asyncio.Event()
        self._listeners: list[_Listener] = []
        self.grpc_authorizer: Authorizer | None = None  # token auth for gRPC calls, when on
        self.grpc: GrpcListeners | None = None

    # -- apps --------------------------------------------------------------------
    def inference_routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = []
        routes += InferenceAPI(self.registry, self.settings).routes()
        routes += KServeV1API(self.registry, self.settings).routes()
        routes += KServeV2API(self.registry, self.settings).routes()
        return routes

    def apps(self) -> list[tuple[str, Address, Starlette]]:
        return [("inference", self.settings.inference_address, make_app(self.inference_routes()))]

    # -- run -----------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        self.grpc = GrpcListeners(self.settings, self.registry, self.store,
                                  self.grpc_authorizer)
        await self.grpc.start()
        serving = [self._serve(name, addr, app) for name, addr, app in self.apps()]
        tasks = [loop.create_task(c) for c in serving]
        try:
            await self.load_startup_models()
            await self._stop.wait()
        finally:
            await self.shutdown(tasks)

    async def _serve(self, name: str, address: Address, app: Starlette) -> None:
        sock = bind(address)
        config = uvicorn.Config(
            app, http="httptools", lifespan="off", access_log=False, log_config=None,
            timeout_keep_alive=120, server_header=False, ssl_keyfile=self._tls("key"),
            ssl_certfile=self._tls("cert"), limit_max_requests=None,
        )
        listener = _Listener(config)
        self._listeners.append(listener)
        log.info("%s API listening on %s", name, address)
        await listener.serve(sockets=[sock])

    def _tls(self, which: str) -> str | None:
        path = self.settings.private_key_file if which == "key" else self.settings.certificate_file
        return str(path) if path is not None else None

    async def load_startup_models(self) -> None:
        specs = self.model_specs
        if any(s.url == "all" for s in specs):
            specs = [ModelSpec(str(p)) for p in self.store.archives()]
        await asyncio.gather(*(self.load(spec) for spec in specs))
        log.info("torchwire %s ready: %d model version(s) loaded", torchwire.__version__,
                 sum(1 for _ in self.registry))

    async def load(self, spec: ModelSpec) -> None:
        try:
            model = self.store.build(spec, loaded_at_startup=True)
            self.registry.add(model)
        except ServeError as exc:
            self.registry.startup_failures[spec.name or spec.url] = exc.message
            log.error("cannot load %s: %s", spec.url, exc.message)
            return
        except Exception as exc:  # noqa: BLE001 - one bad archive must not stop the server
            self.registry.startup_failures[spec.name or spec.url] = repr(exc)
            log.exception("cannot load %s", spec.url)
            return
        await model.start()
        if model.load_error:
            log.error("model %s failed to load: %s", model.name, model.load_error)

    async def shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        log.info("stopping: draining requests and workers")
        if self.grpc is not None:
            await self.grpc.stop()
        for listener in self._listeners:
            listener.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(m.stop() for m in self.registry), return_exceptions=True)
        shutil.rmtree(self.store.work_dir, ignore_errors=True)


def run_server(settings: Settings, models: list[ModelSpec]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(Server(settings, models).run())
        return
    uvloop.run(Server(settings, models).run())


def default_log_dir(settings: Settings) -> Path:
    return settings.log_location or Path.cwd() / "logs"
