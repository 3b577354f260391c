"""The REST routers in-process through httpx.ASGITransport, on a model with fake workers:
inference, KServe v1 and management (describe, customized describe) in milliseconds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx

from tests.unit.fake_worker import fake_model
from torchwire.api.inference import InferenceAPI
from torchwire.api.kserve import KServeV1API
from torchwire.api.management import ManagementAPI
from torchwire.config import load_settings
from torchwire.devices import GpuAllocator
from torchwire.registry import ModelRegistry
from torchwire.server import make_app
from torchwire.store import ModelStore

Check = Callable[[httpx.AsyncClient, httpx.AsyncClient], Awaitable[None]]


def serve(check: Check) -> None:
    """Run ``check(inference, management)`` against apps serving one started fake model."""
    async def run() -> None:
        settings = load_settings(env={})
        registry = ModelRegistry()
        model = fake_model()
        registry.add(model)
        await model.start()
        store = ModelStore(settings, GpuAllocator(0))
        inference = make_app(InferenceAPI(registry, settings).routes()
                             + KServeV1API(registry, settings).routes())
        management = make_app(ManagementAPI(registry, store, settings).routes())
        try:
            async with (
                httpx.AsyncClient(transport=httpx.ASGITransport(inference),
                                  base_url="http://inference") as api,
                httpx.AsyncClient(transport=httpx.ASGITransport(management),
                                  base_url="http://management") as mgmt,
            ):
                await check(api, mgmt)
        finally:
            await model.stop(5.0)

    asyncio.run(run())


def test_a_prediction_answers_with_its_request_id() -> None:
    async def check(api: httpx.AsyncClient, mgmt: httpx.AsyncClient) -> None:
        r = await api.post("/predictions/m", content=b"hi", headers={"x-request-id": "abc"})
        assert r.status_code == 200 and r.json() == {"echo": "hi"}
        assert r.headers["x-request-id"] == "abc"

    serve(check)


def test_a_bad_input_is_the_workers_400_over_rest_and_kserve_alike() -> None:
    async def check(api: httpx.AsyncClient, mgmt: httpx.AsyncClient) -> None:
        rest = await api.post("/predictions/m", content=b"bad")
        kserve = await api.post("/v1/models/m:predict", json={"instances": ["bad"]})
        want = {"code": 400, "type": "InvalidInputException",
                "message": "the fake cannot read 'bad'"}
        assert rest.status_code == kserve.status_code == 400
        assert rest.json() == kserve.json() == want

    serve(check)


def test_kserve_v1_answers_each_instance() -> None:
    async def check(api: httpx.AsyncClient, mgmt: httpx.AsyncClient) -> None:
        r = await api.post("/v1/models/m:predict", json={"instances": ["a", "b"]})
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": [{"echo": "a"}, {"echo": "b"}]}

    serve(check)


def test_an_unknown_model_is_a_404() -> None:
    async def check(api: httpx.AsyncClient, mgmt: httpx.AsyncClient) -> None:
        r = await api.post("/predictions/nope", content=b"hi")
        assert r.status_code == 404 and r.json()["type"] == "ModelNotFoundException"

    serve(check)


def test_describe_and_customized_describe() -> None:
    async def check(api: httpx.AsyncClient, mgmt: httpx.AsyncClient) -> None:
        plain = await mgmt.get("/models/m")
        custom = await mgmt.get("/models/m", params={"customized": "true"})
        assert plain.status_code == custom.status_code == 200, custom.text
        assert "customizedMetadata" not in plain.json()[0]
        assert custom.json()[0]["customizedMetadata"] == '{"echo": ""}'
        assert custom.json()[0]["modelName"] == "m"

    serve(check)


def test_scaling_through_the_management_router() -> None:
    async def check(api: httpx.AsyncClient, mgmt: httpx.AsyncClient) -> None:
        r = await mgmt.put("/models/m", params={"min_worker": 2, "synchronous": "true"})
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "Workers scaled to 2 for model: m"}
        (doc,) = (await mgmt.get("/models/m")).json()
        assert [w["status"] for w in doc["workers"]] == ["READY", "READY"]
        bad = await mgmt.put("/models/m", params={"min_worker": 1, "synchronous": "maybe"})
        assert bad.status_code == 400 and "synchronous='maybe' is invalid" in bad.json()["message"]

    serve(check)
