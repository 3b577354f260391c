"""The server: its listeners, its models, and their start and orderly stop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import resource
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

import torchwire
from torchwire.admin import ModelAdmin
from torchwire.api.access import AccessLog
from torchwire.api.connection import connection_limits, guarded_protocol
from torchwire.api.inference import InferenceAPI
from torchwire.api.kserve import KServeV1API
from torchwire.api.kserve_v2 import KServeV2API
from torchwire.api.management import ManagementAPI
from torchwire.api.metrics import MetricsAPI
from torchwire.api.responses import EXCEPTION_HANDLERS
from torchwire.api.slashes import DropTrailingSlash
from torchwire.api.workflows import WorkflowInferenceAPI, WorkflowManagementAPI
from torchwire.auth import (
    API,
    KEY_FILE,
    OPEN_PATHS,
    GrpcKeyCheck,
    KeyRing,
    TokenAuth,
    describe_policy,
    key_ring,
    policy_for,
)
from torchwire.config import Address, Settings
from torchwire.config.environment import environment
from torchwire.devices import GpuAllocator, visible_gpu_count
from torchwire.errors import ServeError
from torchwire.grpc.server import Authorizer, GrpcListeners
from torchwire.metrics import Metrics, MetricsOptions
from torchwire.metrics_yaml import DEFAULT_SPEC, load_metrics_config
from torchwire.model import ModelVersion
from torchwire.registry import ModelRegistry
from torchwire.snapshot import Restorer, SnapshotWriter, read_models
from torchwire.store import ModelSpec, ModelStore
from torchwire.workflow.manager import WorkflowManager

log = logging.getLogger(__name__)


class _Listener(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :class:`Server`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_app(routes: list[BaseRoute], middleware: list[Middleware] | None = None) -> Starlette:
    app = Starlette(routes=routes, middleware=[Middleware(DropTrailingSlash), *(middleware or [])],
                    exception_handlers=dict(EXCEPTION_HANDLERS))
    app.router.redirect_slashes = False
    return app


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


def bind_all(addresses: list[Address]) -> list[socket.socket]:
    """Bind every address, or none: a failure closes those already bound."""
    bound: list[socket.socket] = []
    try:
        for address in addresses:
            bound.append(bind(address))
    except OSError:
        for sock in bound:
            sock.close()
        raise
    return bound


class Server:
    def __init__(self, settings: Settings, models: list[ModelSpec],
                 snapshots: bool = True) -> None:
        self.settings = settings
        self.model_specs = models
        self.registry = ModelRegistry()
        self.gpus = GpuAllocator(visible_gpu_count(environment(), settings.number_of_gpu))
        options = metrics_options(settings, self.gpus.count)
        self.metrics = Metrics(options=options)
        self.metrics.watch(self.registry)
        self.store = ModelStore(settings, self.gpus, observer=self.metrics,
                                model_metrics=options.spec.model_metrics)
        self.snapshots = SnapshotWriter(default_log_dir(settings) / "config", settings,
                                        self.registry, enabled=snapshots)
        self.admin = ModelAdmin(self.registry, self.store, settings,  # for REST and gRPC
                                on_change=self.snapshots.changed)
        self.workflows = WorkflowManager(self.registry, self.store)
        self.policy = policy_for(settings)
        self.keys: KeyRing | None = None
        self._stop = asyncio.Event()
        self._hurry = asyncio.Event()  # a second signal: skip the rest of drain_delay
        self._listeners: list[_Listener] = []
        self.grpc_authorizer: Authorizer | None = None  # token auth for gRPC calls, when on
        self.grpc: GrpcListeners | None = None

    # -- apps --------------------------------------------------------------------
    def inference_routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = []
        routes += InferenceAPI(self.registry, self.settings).routes()
        routes += KServeV1API(self.registry, self.settings).routes()
        routes += KServeV2API(self.registry, self.settings).routes()
        routes += WorkflowInferenceAPI(self.workflows, self.settings).routes()
        return routes

    def middleware(self, listener: str, count: bool = True) -> list[Middleware]:
        """Access log (and Requests2XX/4XX/5XX counts) outside, then the key check."""
        on_response = self.metrics.count_response if count else None
        stack = [Middleware(AccessLog, on_response=on_response)]
        kinds = self.policy.for_listener(listener)
        if kinds and self.keys is not None:
            per_path = {"/token": (API,)} if listener == "management" else {}
            open_paths = OPEN_PATHS if listener == "inference" else frozenset()
            stack.append(Middleware(TokenAuth, keys=self.keys, kinds=kinds, per_path=per_path,
                                    open_paths=open_paths))
        return stack

    def listeners(self) -> list[tuple[str, Address]]:
        s = self.settings
        found = [("inference", s.inference_address), ("management", s.management_address)]
        if s.enable_metrics_api:
            found.append(("metrics", s.metrics_address))
        return found

    def app(self, listener: str) -> Starlette:
        routes: list[BaseRoute] = []
        if listener == "inference":
            routes += self.inference_routes()
        elif listener == "management":
            routes += ManagementAPI(self.registry, self.store, self.settings, self.keys,
                                    self.admin).routes()
            routes += WorkflowManagementAPI(self.workflows, self.settings).routes()
        else:
            routes += MetricsAPI(self.metrics).routes()
        return make_app(routes, self.middleware(listener, count=listener != "metrics"))

    def apps(self) -> list[tuple[str, Address, Starlette]]:
        return [(name, address, self.app(name)) for name, address in self.listeners()]

    def start_auth(self) -> None:
        """Write the key file (when any listener needs a key) and say who needs one."""
        if self.policy.enabled:
            self.keys = key_ring(self.settings, Path.cwd() / KEY_FILE)
            self.keys.write()
        describe_policy(self.policy, self.settings, self.keys.path if self.keys else None)

    # -- run -----------------------------------------------------------------------
    def request_stop(self) -> None:
        if self._stop.is_set():
            self._hurry.set()
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        raise_fd_limit()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            sockets = bind_all([address for _, address in self.listeners()])
        except OSError:
            self.store.close()
            raise
        self.start_auth()
        self.registry.starting = (bool(self.model_specs)
                                 or self.settings.model_snapshot is not None)
        serving = [self._serve(name, addr, app, sock)
                   for (name, addr, app), sock in zip(self.apps(), sockets, strict=True)]
        if self.keys is not None:
            self.grpc_authorizer = GrpcKeyCheck(self.keys, self.settings)
        self.grpc = GrpcListeners(self.settings, self.registry, self.store,
                                  self.grpc_authorizer, self.admin)
        await self.grpc.start()
        tasks = [loop.create_task(c) for c in serving]
        if self.metrics.mode != "prometheus":  # system metrics go to ts_metrics.log
            tasks.append(loop.create_task(self.log_system_metrics()))
        # Loading runs beside the wait for a signal: SIGTERM during a slow load drains too.
        loading = loop.create_task(self.load_startup_models())
        try:
            await self._stop.wait()
        finally:
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            await self.shutdown(tasks)

    async def log_system_metrics(self) -> None:
        while not self._stop.is_set():
            self.metrics.sample_system()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.settings.metric_time_interval)

    async def _serve(self, name: str, address: Address, app: Starlette,
                     sock: socket.socket) -> None:
        config = uvicorn.Config(
            app, http=guarded_protocol(connection_limits(self.settings)), lifespan="off",
            access_log=False, log_config=None,
            timeout_keep_alive=120, server_header=False, ssl_keyfile=self._tls("key"),
            ssl_certfile=self._tls("cert"), limit_max_requests=None,
        )
        listener = _Listener(config)
        self._listeners.append(listener)
        bound = dataclasses.replace(address, port=sock.getsockname()[1])  # port 0: the OS's
        log.info("%s API listening on %s", name, bound)
        await listener.serve(sockets=[sock])

    def _tls(self, which: str) -> str | None:
        path = self.settings.private_key_file if which == "key" else self.settings.certificate_file
        return str(path) if path is not None else None

    async def load_startup_models(self) -> None:
        try:
            if self.settings.model_snapshot is not None:
                await self.restore(self.settings.model_snapshot)
            else:
                await self.load_models()
        finally:
            self.registry.starting = False
        log.info("torchwire %s ready: %d model version(s) loaded", torchwire.__version__,
                 sum(1 for _ in self.registry))
        self.snapshots.save("startup")

    async def restore(self, model_snapshot: str) -> None:
        """Register the models of the snapshot the settings came from (``--models`` ignored)."""
        try:
            entries = read_models(model_snapshot)
        except ServeError as exc:
            self.registry.startup_failures["model_snapshot"] = exc.message
            log.error("cannot restore the snapshot: %s", exc.message)
            return
        await Restorer(self.store, self.registry, self.settings, self.snapshots).restore(entries)

    async def load_models(self) -> None:
        specs = self.model_specs
        if any(s.url == "all" for s in specs):
            specs = [ModelSpec(p.name) for p in self.store.archives()]
        # Unpacked side by side, in threads (a large archive must not stall liveness
        # probes), but added in the order given: the first version of a name is its default.
        built = await asyncio.gather(*(self._build(spec) for spec in specs))
        await asyncio.gather(*(self._start(model) for model in built if model is not None))

    async def _build(self, spec: ModelSpec) -> ModelVersion | None:
        try:
            return await asyncio.to_thread(self.store.build, spec, loaded_at_startup=True)
        except ServeError as exc:
            self._startup_failed(spec, exc.message)
        except Exception as exc:  # noqa: BLE001 - one bad archive must not stop the server
            log.exception("cannot load %s", spec.url)
            self._startup_failed(spec, repr(exc))
        return None

    def _startup_failed(self, spec: ModelSpec, message: str) -> None:
        self.registry.startup_failures[spec.name or spec.url] = message
        log.error("cannot load %s: %s", spec.url, message)

    async def _start(self, model: ModelVersion) -> None:
        """Check the workers it asks for, add it to the registry, start its workers."""
        try:
            self.admin.check_workers(model)
            self.registry.add(model)
        except ServeError as exc:
            self.registry.startup_failures[model.name] = exc.message
            log.error("cannot load %s: %s", model.model_url or model.name, exc.message)
            return
        await model.start()
        if model.load_error:
            log.error("model %s failed to load: %s", model.name, model.load_error)

    async def shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        """Drain: readiness fails at once; after ``drain_delay`` the listeners stop
        accepting; accepted requests are answered (within ``drain_timeout``); workers stop.
        """
        self.registry.draining = True
        self.store.downloads.stop_all()  # no download (register, workflow, snapshot) delays it
        self.snapshots.save("shutdown")
        delay, timeout = self.settings.drain_delay, self.settings.drain_timeout
        log.info("stopping: readiness now fails; listeners close in %d s", delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._hurry.wait(), delay)
        log.info("stopping: listeners closed; answering accepted requests (up to %d s)", timeout)
        for listener in self._listeners:
            listener.config.timeout_graceful_shutdown = timeout
            listener.should_exit = True
        if self.grpc is not None:
            tasks.append(asyncio.ensure_future(self.grpc.stop(timeout)))
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(m.stop(timeout) for m in self.registry), return_exceptions=True)
        self.store.close()
        if self.keys is not None:
            self.keys.remove()


def raise_fd_limit() -> None:
    """Let the soft open-file limit reach the hard one: every connection is a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d: %s", soft, exc)


def metrics_options(settings: Settings, gpus: int) -> MetricsOptions:
    """metrics_config (TorchServe's default set without one), mode and auto-detection."""
    path = settings.metrics_config
    spec = load_metrics_config(path) if path is not None else DEFAULT_SPEC
    auto = settings.model_metrics_auto_detect
    return MetricsOptions(spec, settings.metrics_mode, path is None if auto is None else auto,
                          gpus)


def run_server(settings: Settings, models: list[ModelSpec], snapshots: bool = True) -> None:
    server = Server(settings, models, snapshots)
    try:
        import uvloop
    except ImportError:
        asyncio.run(server.run())
        return
    uvloop.run(server.run())


def default_log_dir(settings: Settings) -> Path:
    return settings.log_location or Path.cwd() / "logs"
