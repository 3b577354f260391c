"""ModelAdmin: the management operations, whatever protocol asks for them.

Register, scale, set the default version, unregister, describe and list, on the
registry and the store. Plain values come in (the REST router and the gRPC
service parse their own parameters); answers go out as :class:`Answer` (a
TorchServe status sentence and the model version it concerns) or as JSON-ready
documents; every failure is a :class:`~torchwire.errors.ServeError` with its
status, which each protocol reports its own way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchwire.ceiling import WorkerCeiling
from torchwire.config import ModelSettings, Settings
from torchwire.describe import describe_model, list_page
from torchwire.errors import BadRequest, ConfigError, InternalError, ModelAPIDisabled
from torchwire.model import ModelState, ModelVersion
from torchwire.protocol import DESCRIBE, Item
from torchwire.registry import ModelRegistry
from torchwire.store import ModelSpec, ModelStore

log = logging.getLogger(__name__)

RUNTIMES = ("python", "python3")
OTHER_RUNTIMES = ("lsp",)  # valid in TorchServe's manifests, not run by torchwire
PROCESSING = "Processing worker updates..."


@dataclass(frozen=True)
class Registration:
    """What to register: the archive's ``url`` and the caller's choices."""

    url: str
    name: str | None = None
    handler: str | None = None
    runtime: str = "python"
    overrides: ModelSettings = field(default_factory=ModelSettings)  # min_workers: initial
    synchronous: bool = True  # TorchServe's RegisterModelRequest default


@dataclass(frozen=True)
class Scaling:
    min_workers: int
    max_workers: int
    drain: float | None = None  # s a retiring worker may finish in; None: response_timeout
    synchronous: bool = False


@dataclass(frozen=True)
class Answer:
    """A status sentence; ``pending`` when the work goes on in the background (REST's 202)."""

    message: str
    model: ModelVersion
    pending: bool = False


Seen = Callable[[ModelVersion], None]


class ModelAdmin:
    def __init__(self, registry: ModelRegistry, store: ModelStore, settings: Settings,
                 on_change: Callable[[], None] | None = None) -> None:
        self.registry = registry
        self.store = store
        self.settings = settings
        self.ceiling = WorkerCeiling(settings, store.gpus.count)
        self.on_change = on_change  # the models changed (the server writes a snapshot)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- describe and list ---------------------------------------------------------
    def list_models(self, limit: int, token: int) -> dict[str, Any]:
        return list_page(self.registry, limit, token)

    async def describe(self, name: str, version: str | None, customized: bool = False,
                       headers: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """One description per version (``version="all"``: every version)."""
        if version == "all":
            models = self.registry.versions(name)
        else:
            models = [self.registry.get(name, version)]
        docs = [describe_model(m) for m in models]
        if customized and version != "all" and models[0].state is not ModelState.STOPPED:
            # scaled to 0: no handler to ask; the description still answers (TorchServe: 503)
            docs[0]["customizedMetadata"] = await self.customized(models[0], headers or {})
        return docs

    async def customized(self, model: ModelVersion, headers: Mapping[str, str]) -> str:
        """Ask the handler's describe_handle() (TorchServe's ``describe: True`` request)."""
        request_id = headers.get("x-request-id") or uuid.uuid4().hex
        item = Item(request_id, (), dict(headers))
        outcome = await model.submit(item, DESCRIBE).result()
        return outcome.body.decode("utf-8", "replace")

    # -- scaling and default version -------------------------------------------------
    async def scale(self, name: str, version: str | None, scaling: Scaling) -> Answer:
        model = self.registry.get(name, version)
        low, high = scaling.min_workers, scaling.max_workers
        if low < 0:
            raise BadRequest(f"min_worker={low} is invalid; expected an integer >= 0")
        if high < low:
            raise BadRequest("max_worker cannot be less than min_worker.")
        self.ceiling.check(model, low, self.registry)
        work = self._then_changed(model.scale(low, high, scaling.drain))
        if not scaling.synchronous:
            self._background(work, f"scaling {name} {model.version} to {low}")
            return Answer(PROCESSING, model, pending=True)
        await work
        if low and model.state is ModelState.FAILED:
            raise InternalError(f"Failed to start workers for model {name}: {model.load_error}")
        where = f"{name}, version: {version}" if version else name
        return Answer(f"Workers scaled to {low} for model: {where}", model)

    def check_workers(self, model: ModelVersion) -> None:
        """Refuse (400) a model whose configured workers exceed the ceilings."""
        cfg = model.config
        self.ceiling.check(model, cfg.min_workers, self.registry)

    def set_default(self, name: str, version: str) -> str:
        self.registry.set_default(name, version)
        self._changed()
        return f'Default version successfully updated for model "{name}" to "{version}"'

    # -- register and unregister -----------------------------------------------------
    def require_model_api(self, what: str) -> None:
        require_model_api(self.settings, what)

    async def register(self, reg: Registration, seen: Seen | None = None) -> Answer:
        """Build, add and start a version; ``seen`` learns it as soon as it is added."""
        self.require_model_api("registering models")
        check_runtime(reg.runtime)
        model = await self._build(reg)
        try:
            self.check_workers(model)
            self.registry.add(model)
        except Exception:
            self._discard(model)
            raise
        if seen is not None:
            seen(model)
        log.info("registered %s %s from %s", model.name, model.version, reg.url)
        answer = await self._start(model, reg.synchronous)
        self._changed()
        return answer

    async def _build(self, reg: Registration) -> ModelVersion:
        # initial_workers, else the configured default_workers_per_model, else 0 (TorchServe)
        workers = reg.overrides.min_workers
        if workers is None:
            workers = self.settings.default_workers_per_model or 0
        spec = ModelSpec(reg.url, reg.name, reg.handler, initial_workers=workers)
        overrides = dataclasses.replace(reg.overrides, min_workers=None, max_workers=None)
        try:
            return await self.store.fetch_build(spec, overrides)
        except ConfigError as exc:
            raise BadRequest(str(exc)) from None

    async def _start(self, model: ModelVersion, sync: bool) -> Answer:
        workers = model.config.min_workers
        head = f'Model "{model.name}" Version: {model.version} registered with'
        if workers == 0:
            await model.start()
            return Answer(f"{head} 0 initial workers. Use scale workers API to add workers "
                          "for the model.", model)
        if not sync:
            self._background(model.start(), f"starting {model.name} {model.version}")
            return Answer(PROCESSING, model, pending=True)
        await model.start()
        if model.state is ModelState.FAILED:
            error = model.load_error
            self.registry.discard(model)
            await model.stop(0)
            self._discard(model)
            raise InternalError(f"Failed to start workers for model {model.name} version "
                                f"{model.version}: {error}")
        return Answer(f"{head} {workers} initial workers", model)

    async def unregister(self, name: str, version: str | None) -> Answer:
        self.require_model_api("deleting models")
        model = self.registry.remove(name, version)
        self._changed()
        await model.stop(model.config.response_timeout)  # answers what it accepted first
        self._discard(model)
        log.info("unregistered %s %s", model.name, model.version)
        return Answer(f'Model "{name}" unregistered', model)

    def _discard(self, model: ModelVersion) -> None:
        self.store.discard(Path(model.model_dir))

    # -- background work ---------------------------------------------------------------
    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def _then_changed(self, work: Coroutine[Any, Any, None]) -> None:
        await work
        self._changed()

    def _background(self, work: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=what)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._finished(t, what))

    def _finished(self, task: asyncio.Task[None], what: str) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", what, exc_info=task.exception())


def require_model_api(settings: Settings, what: str) -> None:
    """TorchServe's 405 while ``enable_model_api`` is off; the log says how to turn it on."""
    if not settings.enable_model_api:
        log.warning("%s is disabled: start torchwire with --enable-model-api (or set "
                    "enable_model_api=true) to allow it", what)
        raise ModelAPIDisabled.for_action(what)


def check_runtime(runtime: str) -> None:
    """TorchServe's runtime names; torchwire runs the Python ones."""
    value = runtime.lower()
    if value in RUNTIMES:
        return
    if value in OTHER_RUNTIMES:
        raise BadRequest(f"runtime {runtime!r} is not supported; torchwire runs python")
    raise BadRequest(f"Invalid RuntimeType value: {runtime}")
