"""The inference API: /ping, /predictions, /explanations, OpenAPI description."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import torchwire
from torchwire.api.access import note_model
from torchwire.api.chunked import prediction_response
from torchwire.api.disconnect import abandon_on_disconnect
from torchwire.api.kserve_v2_doc import oip_paths
from torchwire.api.openapi import add_paths, inference_document
from torchwire.api.payload import item_from_request
from torchwire.api.responses import json_response
from torchwire.api.workflows_doc import workflow_inference_paths
from torchwire.config import Settings
from torchwire.protocol import EXPLAIN, PREDICT, Kind
from torchwire.registry import ModelRegistry


class InferenceAPI:
    def __init__(self, registry: ModelRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings

    def routes(self) -> list[Route]:
        predict, explain = self.predictions, self.explanations
        return [
            Route("/", self.describe, methods=["OPTIONS"]),
            Route("/api-description", self.describe, methods=["GET"]),
            Route("/ping", self.ping, methods=["GET"]),
            Route("/live", self.live, methods=["GET"]),
            Route("/predictions/{model_name}", predict, methods=["POST", "PUT"]),
            Route("/predictions/{model_name}/{model_version}", predict, methods=["POST", "PUT"]),
            # TorchServe passes what follows the version to the handler as header url_path
            Route("/predictions/{model_name}/{model_version}/{url_path:path}", predict,
                  methods=["POST", "PUT"]),
            Route("/explanations/{model_name}", explain, methods=["POST"]),
            Route("/explanations/{model_name}/{model_version}", explain, methods=["POST"]),
        ]

    async def describe(self, request: Request) -> Response:
        doc = add_paths(inference_document(torchwire.__version__), oip_paths())
        doc = add_paths(doc, workflow_inference_paths())
        return json_response(doc)

    async def ping(self, request: Request) -> Response:
        """Readiness: 200 when every model can serve; 503 once the server is stopping."""
        if self.registry.healthy():
            return json_response({"status": "Healthy"})  # TorchServe's body, exactly
        if self.registry.draining:
            return json_response({"status": "Unhealthy", "health": "stopping"}, 503)
        return json_response({"status": "Unhealthy"}, 500)

    async def live(self, request: Request) -> Response:
        """Liveness: the process and its event loop answer, whatever the models do."""
        return json_response({"status": "Alive"})

    async def predictions(self, request: Request) -> Response:
        return await self._run(request, PREDICT)

    async def explanations(self, request: Request) -> Response:
        return await self._run(request, EXPLAIN)

    async def _run(self, request: Request, kind: Kind) -> Response:
        params = request.path_params
        model = self.registry.get(params["model_name"], params.get("model_version"))
        note_model(request, model)
        item = await item_from_request(request, self.settings.max_request_size)
        if "url_path" in params:
            item.headers["url_path"] = params["url_path"]
        stream = model.submit(item, kind)
        with abandon_on_disconnect(request.receive, stream):
            return await prediction_response(stream, self.settings.max_response_size)
