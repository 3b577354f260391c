"""KServe v1 on the inference port: ``:predict`` and ``:explain`` with instances."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from torchwire.api.access import note_model
from torchwire.api.payload import header_view, json_body, read_body, request_id
from torchwire.api.responses import json_response, outcome_value
from torchwire.config import Settings
from torchwire.errors import BadRequest
from torchwire.model import ModelVersion
from torchwire.registry import ModelRegistry
from torchwire.workers.outcome import outcome_error
from torchwire.workers.protocol import Item, Param


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
        return json_response({"predictions": await self._run(request, explain=False)})

    async def explain(self, request: Request) -> Response:
        return json_response({"explanations": await self._run(request, explain=True)})

    async def _run(self, request: Request, explain: bool) -> list[Any]:
        model = self.registry.get(request.path_params["model_name"])
        note_model(request, model)
        body = await read_body(request, self.settings.max_request_size)
        instances = instances_of(json_body(body))
        rid, headers = request_id(request), header_view(request)
        items = [instance_item(x, f"{rid}-{i}", headers) for i, x in enumerate(instances)]
        return await run_items(model, items, explain)


async def run_items(model: ModelVersion, items: list[Item], explain: bool) -> list[Any]:
    outcomes = await model.infer_all(items, explain)  # admitted whole or refused whole
    for outcome in outcomes:
        if outcome.status >= 400:
            raise outcome_error(outcome)
    return [outcome_value(o) for o in outcomes]
