"""Workflow APIs: management (:8081 ``/workflows``) and inference (:8080 ``/wfpredict``).

TorchServe's paths, parameters and answers. Registering and deleting workflows
registers and deletes models, so both follow ``enable_model_api`` as ``POST
/models`` does; listing and describing are always on.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from torchwire.admin import require_model_api
from torchwire.api.management import int_param, page_params, register_params, status
from torchwire.api.payload import item_from_request
from torchwire.api.responses import json_response
from torchwire.config import Settings
from torchwire.workflow.manager import WorkflowManager, WorkflowRegistration


class WorkflowManagementAPI:
    def __init__(self, manager: WorkflowManager, settings: Settings) -> None:
        self.manager = manager
        self.settings = settings

    def routes(self) -> list[Route]:
        one = "/workflows/{workflow_name}"
        return [
            Route("/workflows", self.list_workflows, methods=["GET"]),
            Route("/workflows", self.register, methods=["POST"]),
            Route(one, self.describe, methods=["GET"]),
            Route(one, self.unregister, methods=["DELETE"]),
        ]

    async def list_workflows(self, request: Request) -> Response:
        return json_response(self.manager.list_page(*page_params(request.query_params)))

    async def describe(self, request: Request) -> Response:
        return json_response(self.manager.describe(request.path_params["workflow_name"]))

    async def register(self, request: Request) -> Response:
        require_model_api(self.settings, "registering workflows")
        params = await register_params(request)
        reg = WorkflowRegistration(
            url=str(params.get("url") or ""),
            name=str(params["workflow_name"]) if params.get("workflow_name") else None,
            response_timeout=int_param(params, "response_timeout", 120, 1),
            startup_timeout=int_param(params, "startup_timeout", 120, 1),
        )
        return status(await self.manager.register(reg))

    async def unregister(self, request: Request) -> Response:
        require_model_api(self.settings, "deleting workflows")
        return status(await self.manager.unregister(request.path_params["workflow_name"]))


class WorkflowInferenceAPI:
    def __init__(self, manager: WorkflowManager, settings: Settings) -> None:
        self.manager = manager
        self.settings = settings

    def routes(self) -> list[Route]:
        return [Route("/wfpredict/{workflow_name}", self.predict, methods=["POST"])]

    async def predict(self, request: Request) -> Response:
        name = request.path_params["workflow_name"]
        self.manager.get(name)  # a 404 before reading the body
        item = await item_from_request(request, self.settings.max_request_size)
        body = await self.manager.predict(name, item)
        return Response(body, media_type="application/json")
