"""The metrics API (:8082): ``GET /metrics`` in Prometheus text format."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from torchwire.metrics import CONTENT_TYPE, Metrics


class MetricsAPI:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def routes(self) -> list[Route]:
        return [Route("/metrics", self.scrape, methods=["GET"])]

    async def scrape(self, request: Request) -> Response:
        """All metrics, or only the families named by ``?name[]=`` (as TorchServe)."""
        names = request.query_params.getlist("name[]")
        return Response(self.metrics.render(names), media_type=CONTENT_TYPE)
