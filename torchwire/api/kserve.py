"""KServe v1 on the inference port: ``:predict`` and ``:explain`` with instances."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from torchwire.api.access import note_model
from torchwire.api.disconnect import unless_client_leaves
from torchwire.api.payload import header_view, json_body, read_body, request_id
from torchwire.api.responses import json_response, outcome_value
from torchwire.config import Settings
from torchwire.errors import BadRequest
from torchwire.model import ModelVersion
from torchwire.protocol import EXPLAIN, PREDICT, Item, Kind, Param
from torchwire.registry import ModelRegistry


def instances_of(doc: Any) -> list[Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get("instances"), list):
        raise BadRequest('expected a JSON object with an "instances" list')
    if not doc["instances"]:
        raise BadRequest('"instances" is empty')
    return list(doc["instances"])


def instance_item(instance: Any, rid: str, headers: dict[str, str]) -> Item:
    """One instance becomes one request row, as TorchServe's KServe envelope does."""
    row = instance if isinstance(instance, dict) else {"data": instance}
    params = tuple(Param(str(k), v) for k, v in row.items())
    return Item(rid, params, headers)


class KServeV1API:
    def __init__(self, registry: ModelRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings

    def routes(self) -> list[Route]:
        return [
            Route("/v1/models/{model_name}:predict", self.predict, methods=["POST"]),
            Route("/v1/models/{model_name}:explain", self.explain, methods=["POST"]),
        ]

    async def predict(self, request: Request) -> Response:
        return json_response({"predictions": await self._run(request, PREDICT)})

    async def explain(self, request: Request) -> Response:
        return json_response({"explanations": await self._run(request, EXPLAIN)})

    async def _run(self, request: Request, kind: Kind) -> list[Any]:
        model = self.registry.get(request.path_params["model_name"])
        note_model(request, model)
        body = await read_body(request, self.settings.max_request_size)
        instances = instances_of(json_body(body))
        rid, headers = request_id(request), header_view(request)
        items = [instance_item(x, f"{rid}-{i}", headers) for i, x in enumerate(instances)]
        return await unless_client_leaves(request.receive, run_items(model, items, kind))


async def run_items(model: ModelVersion, items: list[Item], kind: Kind) -> list[Any]:
    streams = model.submit_all(items, kind)  # admitted whole or refused whole
    outcomes = await asyncio.gather(*(stream.result() for stream in streams))
    return [outcome_value(o) for o in outcomes]
