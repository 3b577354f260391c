"""The Open Inference Protocol (KServe v2) over REST, on the inference port.

Every route also takes ``/versions/{model_version}``. Errors are
``{"error": "..."}`` with the HTTP status, as the protocol says.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from torchwire.api.disconnect import unless_client_leaves
from torchwire.api.payload import header_view, json_body, read_body, request_id
from torchwire.api.responses import json_response
from torchwire.config import Settings
from torchwire.errors import InternalError, ServeError
from torchwire.model import ModelVersion
from torchwire.oip import json_codec
from torchwire.oip.request import infer, model_metadata, model_ready, server_metadata
from torchwire.protocol import EXPLAIN, PREDICT, Kind
from torchwire.registry import ModelRegistry

Endpoint = Callable[[Request], Awaitable[Response]]
EXTENSIONS = ("binary_tensor_data",)


def oip_errors(endpoint: Endpoint) -> Endpoint:
    """Answer a ServeError as ``{"error": message}`` with its status."""

    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ServeError as err:
            return json_response({"error": err.message}, err.status)

    return wrapped


class KServeV2API:
    def __init__(self, registry: ModelRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings

    def routes(self) -> list[Route]:
        model = "/v2/models/{model_name}"
        both = (model, model + "/versions/{model_version}")
        routes = [
            Route("/v2", oip_errors(self.server_metadata), methods=["GET"]),
            Route("/v2/health/live", oip_errors(self.live), methods=["GET"]),
            Route("/v2/health/ready", oip_errors(self.ready), methods=["GET"]),
        ]
        for path in both:
            routes += [
                Route(path, oip_errors(self.metadata), methods=["GET"]),
                Route(path + "/ready", oip_errors(self.model_ready), methods=["GET"]),
                Route(path + "/infer", oip_errors(self.infer), methods=["POST"]),
                Route(path + "/explain", oip_errors(self.explain), methods=["POST"]),
            ]
        return routes

    def _model(self, request: Request) -> ModelVersion:
        params = request.path_params
        return self.registry.get(params["model_name"], params.get("model_version"))

    # -- health and metadata ---------------------------------------------------------
    async def server_metadata(self, request: Request) -> Response:
        return json_response(server_metadata(EXTENSIONS))

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        ready = self.registry.healthy()
        return json_response({"ready": ready}, 200 if ready else 503)

    async def metadata(self, request: Request) -> Response:
        model = self._model(request)
        if "model_version" in request.path_params:
            versions = [model.version]
        else:
            versions = [m.version for m in self.registry.versions(model.name)]
        return json_response(model_metadata(model, versions))

    async def model_ready(self, request: Request) -> Response:
        model = self._model(request)
        ready = model_ready(model)
        return json_response({"name": model.name, "ready": ready}, 200 if ready else 503)

    # -- inference -----------------------------------------------------------------
    async def infer(self, request: Request) -> Response:
        return await self._run(request, PREDICT)

    async def explain(self, request: Request) -> Response:
        return await self._run(request, EXPLAIN)

    async def _run(self, request: Request, kind: Kind) -> Response:
        model = self._model(request)
        body = await read_body(request, self.settings.max_request_size)
        head, binary = json_codec.split_body(body, request.headers.get(json_codec.HEADER_LENGTH))
        req = json_codec.parse_request(json_body(head), binary)
        rid = request_id(request)
        tensors = await unless_client_leaves(
            request.receive, infer(model, req, rid, header_view(request), kind))
        out, head_size = json_codec.response_body(req, model.name, model.version, tensors)
        if len(out) > self.settings.max_response_size:
            raise InternalError(f"the response of {len(out)} bytes exceeds max_response_size "
                                f"({self.settings.max_response_size})")
        headers = {"x-request-id": rid}
        if head_size is None:
            return Response(out, 200, headers, media_type="application/json")
        headers[json_codec.HEADER_LENGTH] = str(head_size)
        return Response(out, 200, headers, media_type="application/octet-stream")
