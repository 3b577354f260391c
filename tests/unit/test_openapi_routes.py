"""The inference port's OpenAPI document describes exactly the routes the server has."""

from __future__ import annotations

import asyncio
import json
import re

from openapi_spec_validator import validate
from starlette.requests import Request
from starlette.routing import Route

from torchwire.api.inference import InferenceAPI
from torchwire.config import load_settings
from torchwire.server import Server


def test_every_inference_route_is_described_and_nothing_else() -> None:
    server = Server(load_settings({}, env={}), [])
    try:
        api = InferenceAPI(server.registry, server.settings)
        options = Request({"type": "http", "method": "OPTIONS", "path": "/", "headers": []})
        doc = json.loads(bytes(asyncio.run(api.describe(options)).body))
        routes = [r for r in server.inference_routes() if isinstance(r, Route)]
    finally:
        server.store.close()
    validate(doc)
    plain = {r.path: re.sub(r":\w+}", "}", r.path) for r in routes}  # {url_path:path}
    served = {(plain[r.path], m.lower()) for r in routes for m in (r.methods or ()) if m != "HEAD"}
    described = {(path, method) for path, item in doc["paths"].items() for method in item
                 if method in ("get", "put", "post", "delete", "options", "patch")}
    assert served == described
    assert ("/v2/models/{model_name}/versions/{model_version}/infer", "post") in described
