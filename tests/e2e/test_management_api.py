"""The management API over real HTTP: every endpoint, its errors, and token authorization."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from tests.conftest import (
    RunningServer,
    free_port,
    second_version,
    serving_archive,
    start_server,
    stop_server,
    wait_until,
)
from tests.conftest import toy_archive as make_toy


@dataclass
class Mgmt:
    server: RunningServer
    url: str  # management
    metrics_url: str
    store: Path

    @property
    def key_file(self) -> Path:
        return self.server.log_dir.parent / "key_file.json"

    def key(self, kind: str = "management") -> str:
        return str(json.loads(self.key_file.read_text())[kind]["key"])

    def client(self, key: str | None = None) -> httpx.Client:
        token = self.key() if key is None else key
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def mgmt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mgmt]:
    tmp = tmp_path_factory.mktemp("mgmt")
    store = tmp / "store"
    store.mkdir()
    make_toy(store, "toy")
    second_version(store / "toy-1.0" / "toy.mar", store / "toy-2.0", tmp)
    make_toy(store, "extra")
    make_toy(store, "noload", yaml_config="fail_load: true\n")
    config: dict[str, object] = {
        "enable_model_api": "true", "job_queue_size": 200,
        "allowed_urls": "file://.*,http://127.0.0.1:[0-9]+/allowed/.*"}
    models = ["toy=toy-1.0/toy.mar", "toy=toy-2.0/toy.mar"]
    running = start_server(tmp, store, models, config)
    yield Mgmt(running, running.management_url, running.metrics_url, store)
    stop_server(running)


# --------------------------------------------------------------------------- authorization


def test_key_file_is_private_and_holds_three_keys(mgmt: Mgmt) -> None:
    mode = stat.S_IMODE(mgmt.key_file.stat().st_mode)
    assert mode == 0o600
    keys = json.loads(mgmt.key_file.read_text())
    assert set(keys) == {"management", "inference", "API"}
    assert len({keys[k]["key"] for k in keys}) == 3


def test_management_needs_the_management_key(mgmt: Mgmt) -> None:
    with mgmt.client(key="") as c:
        missing = c.get("/models")
    with mgmt.client(key="not-the-key") as c:
        wrong = c.get("/models")
    with mgmt.client(key=mgmt.key("inference")) as c:
        other = c.get("/models")
    for r in (missing, wrong, other):
        assert r.status_code == 400  # TorchServe's status, type and message
        assert r.json() == {
            "code": 400, "type": "InvalidKeyException",
            "message": "Token Authorization failed. Token either incorrect, expired, or not "
                       "provided correctly"}
    with mgmt.client() as c:
        assert c.get("/models").status_code == 200


def test_loopback_inference_and_metrics_are_open(mgmt: Mgmt) -> None:
    assert httpx.post(f"{mgmt.server.url}/predictions/toy", content=b"hi").status_code == 200
    assert httpx.get(f"{mgmt.metrics_url}/metrics").status_code == 200


def test_rotated_key_replaces_the_old_one(mgmt: Mgmt) -> None:
    old, api = mgmt.key(), mgmt.key("API")
    with mgmt.client(key=old) as c:
        assert c.get("/token", params={"type": "management"}).status_code == 400
    with mgmt.client(key=api) as c:
        r = c.get("/token", params={"type": "management"})
        assert c.get("/token", params={"type": "bogus"}).status_code == 400
    assert r.status_code == 200
    new = r.json()["management"]["key"]
    assert new != old and new == mgmt.key()
    with mgmt.client(key=old) as c:
        assert c.get("/models").status_code == 400
    with mgmt.client(key=new) as c:
        assert c.get("/models").status_code == 200


def test_keys_never_reach_the_logs(mgmt: Mgmt) -> None:
    with mgmt.client() as c:
        c.get("/models")
    text = mgmt.server.log_text()
    keys = json.loads(mgmt.key_file.read_text())
    assert all(k["key"] not in text for k in keys.values())
    assert str(mgmt.key_file) in text  # where the keys are, though, is logged


# --------------------------------------------------------------------------- describe / list


def test_describe_has_torchserve_fields(mgmt: Mgmt) -> None:
    with mgmt.client() as c:
        r = c.get("/models/toy")
    assert r.status_code == 200
    (doc,) = r.json()
    assert doc["modelName"] == "toy" and doc["modelVersion"] == "1.0"
    assert doc["modelUrl"] == "toy-1.0/toy.mar"
    assert (doc["minWorkers"], doc["maxWorkers"], doc["batchSize"]) == (1, 1, 1)
    assert doc["maxBatchDelay"] == 100 and doc["loadedAtStartup"] is True
    assert doc["status"] == "Ready"
    (worker,) = doc["workers"]
    assert worker["status"] == "READY" and worker["gpu"] is False
    assert worker["id"].isdigit() and worker["pid"] > 0 and worker["memoryUsage"] > 0
    assert worker["startTime"].endswith("Z")
    assert doc["jobQueueStatus"] == {"remainingCapacity": 200, "pendingRequests": 0}


def test_describe_versions_all_and_customized(mgmt: Mgmt) -> None:
    with mgmt.client() as c:
        v2 = c.get("/models/toy/2.0").json()
        every = c.get("/models/toy/all").json()
        custom = c.get("/models/toy", params={"customized": "true"}).json()
        missing = c.get("/models/toy/9.9")
        unknown = c.get("/models/nope")
    assert [d["modelVersion"] for d in v2] == ["2.0"]
    assert sorted(d["modelVersion"] for d in every) == ["1.0", "2.0"]
    assert json.loads(custom[0]["customizedMetadata"]) == {"toy": "metadata"}
    assert missing.status_code == 404 and missing.json()["type"] == "ModelVersionNotFoundException"
    assert unknown.status_code == 404 and unknown.json()["type"] == "ModelNotFoundException"


def test_list_is_paginated(mgmt: Mgmt) -> None:
    with mgmt.client() as c:
        register(c, "extra-1.0/extra.mar", model_name="pageone", initial_workers=0)
        register(c, "extra-1.0/extra.mar", model_name="pagetwo", initial_workers=0)
        full = c.get("/models").json()
        first = c.get("/models", params={"limit": 1}).json()
        second = c.get("/models", params={"limit": 1, "next_page_token": 1}).json()
        bad = c.get("/models", params={"limit": "many"})
        for name in ("pageone", "pagetwo"):
            assert c.delete(f"/models/{name}").status_code == 200
    names = [m["modelName"] for m in full["models"]]
    assert names == sorted(names) and {"pageone", "pagetwo", "toy"} <= set(names)
    assert "nextPageToken" not in full
    assert first["models"] == full["models"][:1] and first["nextPageToken"] == "1"
    assert second["models"] == full["models"][1:2]
    assert bad.status_code == 400


def test_kserve_v1_model_status(mgmt: Mgmt) -> None:
    with mgmt.client() as c:
        assert c.get("/v1/models/toy").json() == {"name": "toy", "ready": True}
        assert c.get("/v1/models/nope").status_code == 404


def test_openapi_document_validates(mgmt: Mgmt) -> None:
    with mgmt.client() as c:
        doc = c.request("OPTIONS", "/").json()
    validate(doc)
    assert {"get", "post"} <= set(doc["paths"]["/models"])
    assert "put" in doc["paths"]["/models/{model_name}/{model_version}/set-default"]


# --------------------------------------------------------------------------- register


def register(c: httpx.Client, url: str, **params: object) -> httpx.Response:
    return c.post("/models", params={"url": url, "synchronous": "true", **params})


def test_register_synchronously_then_serve_and_delete(mgmt: Mgmt) -> None:
    with mgmt.client() as c:
        r = register(c, "extra-1.0/extra.mar", initial_workers=1, batch_size=4,
                     max_batch_delay=7)
        assert r.status_code == 200
        registered = 'Model "extra" Version: 1.0 registered with 1 initial workers'
        assert r.json() == {"status": registered}
        again = register(c, "extra-1.0/extra.mar")
        (doc,) = c.get("/models/extra").json()
        served = httpx.post(f"{mgmt.server.url}/predictions/extra", content=b"yo")
        gone = c.delete("/models/extra")
        after = httpx.post(f"{mgmt.server.url}/predictions/extra", content=b"yo")
    assert again.status_code == 409 and again.json()["type"] == "ConflictStatusException"
    assert (doc["batchSize"], doc["maxBatchDelay"], doc["loadedAtStartup"]) == (4, 7, False)
    assert served.json()["echo"] == "yo"
    assert gone.json() == {"status": 'Model "extra" unregistered'}
    assert after.status_code == 404


def test_register_asynchronously_answers_202_then_loads(mgmt: Mgmt) -> None:
    with mgmt.client() as c:
        r = c.post("/models", params={"url": "extra-1.0/extra.mar", "model_name": "later",
                                      "initial_workers": 1, "synchronous": "false"})
        assert r.status_code == 202
        wait_until(lambda: c.get("/models/later").json()[0]["status"] == "Ready")
        assert httpx.post(f"{mgmt.server.url}/predictions/later", content=b"q").status_code == 200
        assert c.delete("/models/later").status_code == 200


def test_register_with_zero_workers_says_to_scale(mgmt: Mgmt) -> None:
    with mgmt.client() as c:
        r = register(c, "extra-1.0/extra.mar", model_name="idle", initial_workers=0)
        idle = httpx.post(f"{mgmt.server.url}/predictions/idle", content=b"q")
        ready = c.get("/v1/models/idle").json()["ready"]
        ping = httpx.get(f"{mgmt.server.url}/ping").status_code
        c.delete("/models/idle")
    assert r.status_code == 200 and "Use scale workers API" in r.json()["status"]
    assert idle.status_code == 503 and "min_worker" in idle.json()["message"]
    assert ready is False and ping == 200  # scaled to zero on purpose is not unhealthy


def test_bad_register_requests_say_why(mgmt: Mgmt) -> None:
    with mgmt.client() as c:
        no_url = c.post("/models")
        escape = register(c, "../outside.mar")
        scheme = register(c, "s3://bucket/model.mar")
        refused = register(c, "http://127.0.0.1:9/elsewhere/model.mar")
        absent = register(c, "nothing-here.mar")
        bad_int = register(c, "extra-1.0/extra.mar", batch_size="big")
        bad_bool = register(c, "extra-1.0/extra.mar", synchronous="perhaps")
        not_archive = register(c, str(mgmt.store / ".extra-model-config.yaml"))
    assert no_url.status_code == 400 and "url is required" in no_url.json()["message"]
    assert escape.status_code == 404  # TorchServe's answers, word for word
    assert escape.json()["message"] == "Relative path is not allowed in url: ../outside.mar"
    assert scheme.status_code == 400 and "s3" in scheme.json()["message"]
    assert refused.status_code == 404 and refused.json() == {
        "code": 404, "type": "ModelNotFoundException",
        "message": "Given URL http://127.0.0.1:9/elsewhere/model.mar does not match any "
                   "allowed URL(s)"}
    assert absent.status_code == 404
    assert bad_int.status_code == 400 and "batch_size" in bad_int.json()["message"]
    assert bad_bool.status_code == 400 and "synchronous" in bad_bool.json()["message"]
    assert not_archive.status_code in (400, 404)
    for r in (no_url, escape, scheme, refused, absent, bad_int, bad_bool):
        assert set(r.json()) == {"code", "type", "message"}


def test_failed_synchronous_register_is_500_and_not_kept(mgmt: Mgmt) -> None:
    with mgmt.client() as c:
        r = register(c, "noload-1.0/noload.mar", initial_workers=1)
        after = c.get("/models/noload")
    assert r.status_code == 500 and "refuses to load" in r.json()["message"]
    assert after.status_code == 404


@pytest.fixture()
def web(mgmt: Mgmt) -> Iterator[str]:
    with serving_archive((mgmt.store / "extra-1.0" / "extra.mar").read_bytes()) as url:
        yield url


def test_register_from_an_allowed_http_url(mgmt: Mgmt, web: str) -> None:
    with mgmt.client() as c:
        r = register(c, f"{web}/allowed/web.mar", model_name="web", initial_workers=1)
        (doc,) = c.get("/models/web").json()
        served = httpx.post(f"{mgmt.server.url}/predictions/web", content=b"net")
        hop = register(c, f"{web}/allowed/hop.mar", model_name="hop")
        missing = register(c, f"{web}/allowed/none.mar", model_name="none")
        c.delete("/models/web")
    assert r.status_code == 200 and doc["modelUrl"] == f"{web}/allowed/web.mar"
    assert served.json()["echo"] == "net"
    assert hop.status_code == 404  # redirected to a URL allowed_urls does not allow
    assert hop.json()["message"].endswith("does not match any allowed URL(s)")
    assert missing.status_code == 400 and missing.json()["type"] == "DownloadArchiveException"
    assert "HTTP 404" in missing.json()["message"]


# --------------------------------------------------------------------------- default, delete


def test_set_default_and_the_403_rule(mgmt: Mgmt) -> None:
    with mgmt.client() as c:
        register(c, str(mgmt.store / "toy-2.0" / "toy.mar"), model_name="pair", initial_workers=0)
        register(c, "extra-1.0/extra.mar", model_name="pair", initial_workers=0)
        # versions: 2.0 (default, first registered) and 1.0
        forbidden = c.delete("/models/pair")
        switched = c.put("/models/pair/1.0/set-default")
        unknown = c.put("/models/pair/7.0/set-default")
        described = c.get("/models/pair").json()[0]["modelVersion"]
        old_default = c.delete("/models/pair/2.0")
        last = c.delete("/models/pair")
    assert forbidden.status_code == 403
    assert forbidden.json()["type"] == "InvalidModelVersionException"
    assert switched.json() == {
        "status": 'Default version successfully updated for model "pair" to "1.0"'}
    assert unknown.status_code == 404
    assert described == "1.0"
    assert old_default.status_code == 200 and last.status_code == 200


async def _slow_then_delete(mgmt: Mgmt) -> tuple[list[int], int, int]:
    headers = {"Authorization": f"Bearer {mgmt.key()}"}
    async with httpx.AsyncClient(timeout=60) as c:
        slow = [asyncio.ensure_future(c.post(f"{mgmt.server.url}/predictions/drained",
                                             content=b"sleep:0.6")) for _ in range(4)]
        # one worker holds two batches: the other two requests wait in the queue
        while await _pending(c, mgmt, headers) < 2:
            await asyncio.sleep(0.02)
        gone = await c.delete(f"{mgmt.url}/models/drained", headers=headers)
        after = await c.post(f"{mgmt.server.url}/predictions/drained", content=b"x")
        statuses = [r.status_code for r in await asyncio.gather(*slow)]
        return statuses, gone.status_code, after.status_code


async def _pending(c: httpx.AsyncClient, mgmt: Mgmt, headers: dict[str, str]) -> int:
    r = await c.get(f"{mgmt.url}/models/drained", headers=headers)
    return int(r.json()[0]["jobQueueStatus"]["pendingRequests"])


def test_delete_lets_accepted_requests_finish(mgmt: Mgmt) -> None:
    with mgmt.client() as c:
        assert register(c, "extra-1.0/extra.mar", model_name="drained",
                        initial_workers=1).status_code == 200
    statuses, gone, after = asyncio.run(_slow_then_delete(mgmt))
    assert statuses == [200, 200, 200, 200]
    assert gone == 200 and after == 404


async def _steady(url: str, stop: asyncio.Event) -> list[int]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        statuses: list[int] = []
        while not stop.is_set():
            r = await c.post("/predictions/toy/1.0", content=b"sleep:0.01")
            statuses.append(r.status_code)
        return statuses


async def _serve_while_registering(mgmt: Mgmt) -> tuple[list[int], list[int]]:
    stop = asyncio.Event()
    load = [asyncio.ensure_future(_steady(mgmt.server.url, stop)) for _ in range(3)]
    headers = {"Authorization": f"Bearer {mgmt.key()}"}
    codes: list[int] = []
    async with httpx.AsyncClient(base_url=mgmt.url, headers=headers, timeout=120) as c:
        for _ in range(2):
            r = await c.post("/models", params={"url": "extra-1.0/extra.mar", "model_name":
                                                "side", "initial_workers": 1,
                                                "synchronous": "true"})
            codes.append(r.status_code)
            codes.append((await c.delete("/models/side")).status_code)
    stop.set()
    results = await asyncio.gather(*load)
    return [s for r in results for s in r], codes


def test_register_and_unregister_while_another_model_serves(mgmt: Mgmt) -> None:
    statuses, codes = asyncio.run(_serve_while_registering(mgmt))
    assert codes == [200, 200, 200, 200]
    assert len(statuses) > 20 and set(statuses) == {200}


def test_access_log_names_model_and_version(mgmt: Mgmt) -> None:
    httpx.post(f"{mgmt.server.url}/predictions/toy", content=b"logged")
    log_file = mgmt.server.log_dir / "access_log.log"
    wait_until(lambda: '"POST /predictions/toy HTTP/1.1" 200 model=toy version=1.0'
               in log_file.read_text(), 10)
    assert '"GET /models HTTP/1.1" 400' in log_file.read_text()


# --------------------------------------------------------------------------- other setups


def test_model_api_off_by_default_and_forced_auth(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    make_toy(store, "toy")
    config: dict[str, object] = {"enable_token_authorization": "true"}
    server = start_server(tmp_path, store, ["toy=toy-1.0/toy.mar"], config)
    url, metrics_url = server.management_url, server.metrics_url
    try:
        keys = json.loads((tmp_path / "key_file.json").read_text())
        manage = {"Authorization": f"Bearer {keys['management']['key']}"}
        infer = {"Authorization": f"Bearer {keys['inference']['key']}"}
        open_ping = httpx.get(f"{server.url}/ping")
        no_key = httpx.post(f"{server.url}/predictions/toy", content=b"a")
        keyed = httpx.post(f"{server.url}/predictions/toy", content=b"a", headers=infer)
        scrape = httpx.get(f"{metrics_url}/metrics")
        scrape_keyed = httpx.get(f"{metrics_url}/metrics", headers=infer)
        post = httpx.post(f"{url}/models", params={"url": "toy-1.0/toy.mar"}, headers=manage)
        delete = httpx.delete(f"{url}/models/toy", headers=manage)
        scale = httpx.put(f"{url}/models/toy", params={"min_worker": 1, "synchronous": "true"},
                          headers=manage)
    finally:
        stop_server(server)
    assert open_ping.status_code == 200
    assert no_key.status_code == 400 and keyed.json()["echo"] == "a"
    assert scrape.status_code == 400 and scrape_keyed.status_code == 200
    for r in (post, delete):  # TorchServe's answer, word for word (its tests compare it)
        assert r.status_code == 405 and r.json() == {
            "code": 405, "type": "MethodNotAllowedException",
            "message": "Requested method is not allowed, please refer to API document."}
    assert scale.status_code == 200
    assert not (tmp_path / "key_file.json").exists()  # removed at shutdown


def test_disabled_auth_opens_management_and_writes_no_keys(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    make_toy(store, "toy")
    config: dict[str, object] = {"disable_token_authorization": "true"}
    server = start_server(tmp_path, store, ["toy=toy-1.0/toy.mar"], config)
    url = server.management_url
    try:
        listed = httpx.get(f"{url}/models")
        token = httpx.get(f"{url}/token", params={"type": "management"})
        key_file = (tmp_path / "key_file.json").exists()
        warned = "DISABLED" in server.log_text()
    finally:
        stop_server(server)
    assert listed.status_code == 200 and listed.json()["models"][0]["modelName"] == "toy"
    assert token.status_code == 404 and not key_file and warned


def test_a_failed_startup_model_shows_as_failed(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    make_toy(store, "good")
    make_toy(store, "noload", yaml_config="fail_load: true\n")
    config: dict[str, object] = {"disable_token_authorization": "true"}
    server = start_server(tmp_path, store, ["good=good-1.0/good.mar", "noload-1.0/noload.mar"],
                          config, want_ping=500)
    url = server.management_url
    try:
        wait_until(lambda: httpx.get(f"{url}/models/noload").json()[0]["status"] == "Failed")
        (doc,) = httpx.get(f"{url}/models/noload").json()
        ready = httpx.get(f"{url}/v1/models/noload").json()
        scaled = httpx.put(f"{url}/models/noload", params={"min_worker": 0,
                                                           "synchronous": "true"})
        ping_after = httpx.get(f"{server.url}/ping").status_code
    finally:
        stop_server(server)
    assert doc["status"] == "Failed" and "refuses to load" in doc["loadError"]
    assert doc["workers"] == []
    assert ready == {"name": "noload", "ready": False}
    assert scaled.status_code == 200 and ping_after == 200


def test_bind_failure_stops_the_server(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    cfg = tmp_path / "config.properties"
    cfg.write_text(f"inference_address=http://127.0.0.1:{free_port()}\n"
                   f"management_address=http://127.0.0.1:{port}\n"
                   f"metrics_address=http://127.0.0.1:{free_port()}\n")
    try:
        done = subprocess.run([sys.executable, "-m", "torchwire", "start", "--foreground",
                               "--ts-config", str(cfg), "--log-location", str(tmp_path / "l")],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              env={**os.environ})
    finally:
        busy.close()
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in done.stderr
