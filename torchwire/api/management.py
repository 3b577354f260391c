"""The management API (:8081): TorchServe's paths, parameters, status codes and JSON.

Registering and deleting models is off unless ``enable_model_api`` is set (as in
TorchServe >= 0.11); listing, describing and scaling are always on. This module
reads the HTTP parameters and writes the answers; the operations themselves are
:class:`torchwire.admin.ModelAdmin`'s, shared with the gRPC management service.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import torchwire
from torchwire.admin import Answer, ModelAdmin, Registration, Scaling
from torchwire.api.access import note_model
from torchwire.api.management_doc import management_document
from torchwire.api.payload import header_view, json_body, read_body
from torchwire.api.responses import json_response
from torchwire.auth import ROTATABLE, KeyRing
from torchwire.config import ModelSettings, Settings, model_settings_from_mapping
from torchwire.config.values import to_bool
from torchwire.errors import BadRequest, ConfigError
from torchwire.registry import ModelRegistry
from torchwire.store import ModelStore

log = logging.getLogger(__name__)

Params = Mapping[str, Any]
REGISTER_SETTINGS = ("batch_size", "max_batch_delay", "initial_workers", "response_timeout",
                     "startup_timeout")
MAX_REGISTER_BODY = 64 * 1024


def status(message: str, code: int = 200) -> Response:
    return json_response({"status": message}, code)


def answered(request: Request, answer: Answer) -> Response:
    note_model(request, answer.model)
    return status(answer.message, 202 if answer.pending else 200)


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


def page_params(params: Params) -> tuple[int, int]:
    """``limit`` (default 100) and ``next_page_token`` (default 0) of a list request."""
    return (int_param(params, "limit", 100, -(2**31)),
            int_param(params, "next_page_token", 0, -(2**31)))


def bool_param(params: Params, key: str, default: bool) -> bool:
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    try:
        return to_bool(str(raw), key)
    except ConfigError:
        raise BadRequest(f"{key}={raw!r} is invalid; expected true or false") from None


def register_overrides(params: Params) -> ModelSettings:
    """The per-version settings given to POST /models (-1 means not given, as TorchServe)."""
    given = {k: params[k] for k in REGISTER_SETTINGS if str(params.get(k, "")).strip()
             not in ("", "-1")}
    try:
        return model_settings_from_mapping(given, "POST /models")
    except ConfigError as exc:
        raise BadRequest(str(exc)) from None


async def register_params(request: Request) -> dict[str, Any]:
    """Query parameters, merged with a JSON body's fields when one is sent (as TorchServe)."""
    params: dict[str, Any] = dict(request.query_params)
    if request.headers.get("content-type", "").startswith("application/json"):
        body = json_body(await read_body(request, MAX_REGISTER_BODY))
        if not isinstance(body, dict):
            raise BadRequest("the JSON body of POST /models must be an object")
        params.update({k: v for k, v in body.items() if v is not None})
    return params


def registration(params: Params) -> Registration:
    synchronous = bool_param(params, "synchronous", True)  # TorchServe's default on register
    return Registration(
        url=str(params.get("url") or ""),
        name=str(params["model_name"]) if params.get("model_name") else None,
        handler=str(params["handler"]) if params.get("handler") else None,
        overrides=register_overrides(params),
        runtime=str(params.get("runtime") or "python"),
        synchronous=synchronous,
    )


def scaling(params: Params) -> Scaling:
    low = int_param(params, "min_worker", 1, 0)
    high = int_param(params, "max_worker", low, -(2**31))  # < min_worker: TorchServe's 400
    timeout = int_param(params, "timeout", -1, -1)
    drain = None if timeout < 0 else float(timeout)
    return Scaling(low, high, drain, bool_param(params, "synchronous", False))


class ManagementAPI:
    """The REST face of :class:`~torchwire.admin.ModelAdmin` (and the key rotation)."""

    def __init__(self, registry: ModelRegistry, store: ModelStore, settings: Settings,
                 keys: KeyRing | None = None, admin: ModelAdmin | None = None) -> None:
        self.registry = registry
        self.keys = keys
        self.admin = admin or ModelAdmin(registry, store, settings)

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
        return json_response(self.admin.list_models(*page_params(request.query_params)))

    async def describe(self, request: Request) -> Response:
        name = request.path_params["model_name"]
        version = request.path_params.get("model_version")
        customized = bool_param(request.query_params, "customized", False)
        docs = await self.admin.describe(name, version, customized, header_view(request))
        return json_response(docs)

    async def kserve_ready(self, request: Request) -> Response:
        name = request.path_params["model_name"]
        model = self.registry.get(name)
        return json_response({"name": name, "ready": model.ready})

    # -- scaling and default version ---------------------------------------------
    async def scale(self, request: Request) -> Response:
        name = request.path_params["model_name"]
        version = request.path_params.get("model_version")
        note_model(request, self.registry.get(name, version))  # a 404 before a bad parameter
        answer = await self.admin.scale(name, version, scaling(request.query_params))
        return answered(request, answer)

    async def set_default(self, request: Request) -> Response:
        name = request.path_params["model_name"]
        version = request.path_params["model_version"]
        return status(self.admin.set_default(name, version))

    # -- register and unregister -------------------------------------------------
    async def register(self, request: Request) -> Response:
        self.admin.require_model_api("registering models")  # before reading the body
        reg = registration(await register_params(request))
        answer = await self.admin.register(reg, seen=functools.partial(note_model, request))
        return answered(request, answer)

    async def unregister(self, request: Request) -> Response:
        name = request.path_params["model_name"]
        answer = await self.admin.unregister(name, request.path_params.get("model_version"))
        return answered(request, answer)

    # -- keys ------------------------------------------------------------------------
    async def rotate_key(self, request: Request) -> Response:
        assert self.keys is not None
        kind = request.query_params.get("type", "")
        if kind not in ROTATABLE:
            raise BadRequest(f"type={kind!r} is invalid; expected management or inference")
        key = self.keys.rotate(kind)
        log.info("the %s key was replaced (%s)", kind, self.keys.path)
        return json_response({kind: key.to_json()})
