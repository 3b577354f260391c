"""The management API (:8081): TorchServe's paths, parameters, status codes and JSON.

Registering and deleting models is off unless ``enable_model_api`` is set (as in
TorchServe >= 0.11); listing, describing and scaling are always on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import torchwire
from torchwire.api.access import note_model
from torchwire.api.describe import describe_model, list_page
from torchwire.api.management_doc import management_document
from torchwire.api.payload import json_body, read_body, request_id
from torchwire.api.responses import json_response, outcome_error
from torchwire.auth import ROTATABLE, KeyRing
from torchwire.config import ModelSettings, Settings, model_settings_from_mapping
from torchwire.errors import BadRequest, ConfigError, InternalError, ModelAPIDisabled
from torchwire.handlers.base import DESCRIBE_HEADER
from torchwire.model import ModelState, ModelVersion
from torchwire.registry import ModelRegistry
from torchwire.sources import fetch
from torchwire.store import ModelSpec, ModelStore
from torchwire.workers.protocol import Item

log = logging.getLogger(__name__)

Params = Mapping[str, Any]
REGISTER_SETTINGS = ("batch_size", "max_batch_delay", "initial_workers", "response_timeout",
                     "startup_timeout")
RUNTIMES = ("python", "python3")
MAX_REGISTER_BODY = 64 * 1024
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def status(message: str, code: int = 200) -> Response:
    return json_response({"status": message}, code)


def int_param(params: Params, key: str, default: int, minimum: int) -> int:
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise BadRequest(f"{key}={raw!r} is invalid; expected an integer") from None
    if value < minimum:
        raise BadRequest(f"{key}={raw!r} is invalid; expected an integer >= {minimum}")
    return value


def bool_param(params: Params, key: str, default: bool) -> bool:
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BadRequest(f"{key}={raw!r} is invalid; expected true or false")


def register_overrides(params: Params) -> ModelSettings:
    """The per-version settings given to POST /models (-1 means not given, as TorchServe)."""
    given = {k: params[k] for k in REGISTER_SETTINGS if str(params.get(k, "")).strip()
             not in ("", "-1")}
    try:
        overrides = model_settings_from_mapping(given, "POST /models")
    except ConfigError as exc:
        raise BadRequest(str(exc)) from None
    if overrides.min_workers is not None:  # initial_workers fixes both ends
        overrides = dataclasses.replace(overrides, max_workers=overrides.min_workers)
    return overrides


async def register_params(request: Request) -> dict[str, Any]:
    """Query parameters, merged with a JSON body's fields when one is sent (as TorchServe)."""
    params: dict[str, Any] = dict(request.query_params)
    if request.headers.get("content-type", "").startswith("application/json"):
        body = json_body(await read_body(request, MAX_REGISTER_BODY))
        if not isinstance(body, dict):
            raise BadRequest("the JSON body of POST /models must be an object")
        params.update({k: v for k, v in body.items() if v is not None})
    return params


class ManagementAPI:
    def __init__(self, registry: ModelRegistry, store: ModelStore, settings: Settings,
                 keys: KeyRing | None = None) -> None:
        self.registry = registry
        self.store = store
        self.settings = settings
        self.keys = keys
        self._tasks: set[asyncio.Task[None]] = set()

    def routes(self) -> list[Route]:
        one, versioned = "/models/{model_name}", "/models/{model_name}/{model_version}"
        routes = [
            Route("/", self.api_description, methods=["OPTIONS"]),
            Route("/api-description", self.api_description, methods=["GET"]),
            Route("/models", self.list_models, methods=["GET"]),
            Route("/models", self.register, methods=["POST"]),
            Route(one, self.describe, methods=["GET"]),
            Route(one, self.scale, methods=["PUT"]),
            Route(one, self.unregister, methods=["DELETE"]),
            Route(versioned, self.describe, methods=["GET"]),
            Route(versioned, self.scale, methods=["PUT"]),
            Route(versioned, self.unregister, methods=["DELETE"]),
            Route(versioned + "/set-default", self.set_default, methods=["PUT"]),
            Route("/v1/models/{model_name}", self.kserve_ready, methods=["GET"]),
        ]
        if self.keys is not None:
            routes.append(Route("/token", self.rotate_key, methods=["GET"]))
        return routes

    # -- description -------------------------------------------------------------
    async def api_description(self, request: Request) -> Response:
        doc = management_document(torchwire.__version__, with_token=self.keys is not None)
        return json_response(doc)

    async def list_models(self, request: Request) -> Response:
        q = request.query_params
        limit = int_param(q, "limit", 100, -(2**31))
        token = int_param(q, "next_page_token", 0, -(2**31))
        return json_response(list_page(self.registry, limit, token))

    async def describe(self, request: Request) -> Response:
        name = request.path_params["model_name"]
        version = request.path_params.get("model_version")
        customized = bool_param(request.query_params, "customized", False)
        if version == "all":
            models = self.registry.versions(name)
        else:
            models = [self.registry.get(name, version)]
        docs = [describe_model(m) for m in models]
        if customized and version != "all":
            docs[0]["customizedMetadata"] = await self._customized(models[0], request)
        return json_response(docs)

    async def _customized(self, model: ModelVersion, request: Request) -> str:
        """Ask the handler's describe_handle() (TorchServe's ``describe: True`` request)."""
        headers = {**request.headers, DESCRIBE_HEADER: "True"}
        outcome = await model.infer(Item(request_id(request), (), headers), explain=True)
        if outcome.status >= 400:
            raise outcome_error(outcome)
        return outcome.body.decode("utf-8", "replace")

    async def kserve_ready(self, request: Request) -> Response:
        name = request.path_params["model_name"]
        model = self.registry.get(name)
        return json_response({"name": name, "ready": model.ready})

    # -- scaling and default version ---------------------------------------------
    async def scale(self, request: Request) -> Response:
        name = request.path_params["model_name"]
        version = request.path_params.get("model_version")
        model = self.registry.get(name, version)
        note_model(request, model)
        q = request.query_params
        low = int_param(q, "min_worker", 1, 0)
        high = int_param(q, "max_worker", low, 0)
        if high < low:
            raise BadRequest("max_worker cannot be less than min_worker.")
        timeout = int_param(q, "timeout", -1, -1)
        drain = None if timeout < 0 else float(timeout)
        work = model.scale(low, high, drain)
        if not bool_param(q, "synchronous", False):
            self._background(work, f"scaling {name} {model.version} to {low}")
            return status("Processing worker updates...", 202)
        await work
        if low and model.state is ModelState.FAILED:
            raise InternalError(f"Failed to start workers for model {name}: {model.load_error}")
        where = f"{name}, version: {version}" if version else name
        return status(f"Workers scaled to {low} for model: {where}")

    async def set_default(self, request: Request) -> Response:
        name = request.path_params["model_name"]
        version = request.path_params["model_version"]
        self.registry.set_default(name, version)
        return status(f'Default version successfully updated for model "{name}" to "{version}"')

    # -- register and unregister -------------------------------------------------
    def _model_api(self, what: str) -> None:
        if not self.settings.enable_model_api:
            raise ModelAPIDisabled.for_action(what)

    async def register(self, request: Request) -> Response:
        self._model_api("registering models")
        params = await register_params(request)
        url = str(params.get("url") or "")
        sync = bool_param(params, "synchronous", False)
        overrides = register_overrides(params)
        runtime = str(params.get("runtime") or "python").lower()
        if runtime not in RUNTIMES:
            raise BadRequest(f"runtime {runtime!r} is not supported; torchwire runs python")
        spec_name = str(params["model_name"]) if params.get("model_name") else None
        handler = str(params["handler"]) if params.get("handler") else None
        model = await self._build(url, spec_name, handler, overrides)
        try:
            self.registry.add(model)
        except Exception:
            self._discard(model)
            raise
        note_model(request, model)
        log.info("registered %s %s from %s", model.name, model.version, url)
        return await self._start(model, sync)

    async def _build(self, url: str, name: str | None, handler: str | None,
                     overrides: ModelSettings) -> ModelVersion:
        s = self.settings
        path, downloaded = await fetch(url, s.model_store, s.allowed_urls, self.store.work_dir,
                                       float(s.default_startup_timeout))
        spec = ModelSpec(str(path), name, handler)
        try:
            model = await asyncio.to_thread(self.store.build, spec, overrides)
        except ConfigError as exc:
            raise BadRequest(str(exc)) from None
        finally:
            if downloaded:
                shutil.rmtree(path.parent, ignore_errors=True)
        model.model_url = url
        return model

    async def _start(self, model: ModelVersion, sync: bool) -> Response:
        workers = model.config.min_workers
        head = f'Model "{model.name}" Version: {model.version} registered with'
        if workers == 0:
            await model.start()
            return status(f"{head} 0 initial workers. Use scale workers API to add workers "
                          "for the model.")
        if not sync:
            self._background(model.start(), f"starting {model.name} {model.version}")
            return status("Processing worker updates...", 202)
        await model.start()
        if model.state is ModelState.FAILED:
            error = model.load_error
            self.registry.discard(model)
            await model.stop(0)
            self._discard(model)
            raise InternalError(f"Failed to start workers for model {model.name} version "
                                f"{model.version}: {error}")
        return status(f"{head} {workers} initial workers")

    async def unregister(self, request: Request) -> Response:
        self._model_api("deleting models")
        name = request.path_params["model_name"]
        model = self.registry.remove(name, request.path_params.get("model_version"))
        note_model(request, model)
        await model.stop(model.config.response_timeout)  # answers what it accepted first
        self._discard(model)
        log.info("unregistered %s %s", model.name, model.version)
        return status(f'Model "{name}" unregistered')

    def _discard(self, model: ModelVersion) -> None:
        """Delete an unpacked archive (never a directory archive the user owns)."""
        if Path(model.model_dir).is_relative_to(self.store.work_dir):
            shutil.rmtree(model.model_dir, ignore_errors=True)

    # -- keys ------------------------------------------------------------------------
    async def rotate_key(self, request: Request) -> Response:
        assert self.keys is not None
        kind = request.query_params.get("type", "")
        if kind not in ROTATABLE:
            raise BadRequest(f"type={kind!r} is invalid; expected management or inference")
        key = self.keys.rotate(kind)
        log.info("the %s key was replaced (%s)", kind, self.keys.path)
        return json_response({kind: key.to_json()})

    # -- background work ---------------------------------------------------------------
    def _background(self, work: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=what)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._finished(t, what))

    def _finished(self, task: asyncio.Task[None], what: str) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", what, exc_info=task.exception())
