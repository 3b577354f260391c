"""TorchServe's management semantics over real HTTP: register defaults, its message texts
and error types, its describe keys, and the refusals torchwire keeps (each a 4xx that
says why)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    RunningServer,
    free_port,
    serving_archive,
    start_server,
    stop_server,
    toy_archive,
)
from tests.unit.test_openapi_torchserve import (
    TORCHSERVE_INFERENCE,
    TORCHSERVE_MANAGEMENT,
    facts,
    mismatches,
)

ARCHIVE = "extra-1.0/extra.mar"
ERROR_KEYS = {"code", "type", "message"}


@pytest.fixture(scope="module")
def ts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str, Path]]:
    """A server with the model API on and auth off (as TorchServe's CI runs its collections)."""
    tmp = tmp_path_factory.mktemp("tsmgmt")
    store = tmp / "store"
    store.mkdir()
    toy_archive(store, "toy")
    toy_archive(store, "extra")
    toy_archive(store, "pair", yaml_config="minWorkers: 2\nmaxWorkers: 2\n")
    toy_archive(store, "ceil", yaml_config="maxWorkers: 2\n")
    toy_archive(store, "floor", yaml_config="minWorkers: 1\n")
    mgmt = f"http://127.0.0.1:{free_port()}"
    config = {"management_address": mgmt, "enable_model_api": "true",
              "disable_token_authorization": "true",
              "allowed_urls": "file://.*,http://127.0.0.1:[0-9]+/allowed/.*"}
    running = start_server(tmp, store, ["toy=toy-1.0/toy.mar"], config)
    yield running, mgmt, store
    stop_server(running)


@pytest.fixture()
def mgmt(ts: tuple[RunningServer, str, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ts[1], timeout=60) as client:
        yield client


def test_register_without_initial_workers_gives_0_workers_and_200(
        ts: tuple[RunningServer, str, Path], mgmt: httpx.Client) -> None:
    r = mgmt.post("/models", params={"url": ARCHIVE, "model_name": "zero"})
    (doc,) = mgmt.get("/models/zero").json()
    served = httpx.post(f"{ts[0].url}/predictions/zero", content=b"q")
    mgmt.delete("/models/zero")
    assert r.status_code == 200
    assert r.json() == {"status": 'Model "zero" Version: 1.0 registered with 0 initial workers. '
                                  "Use scale workers API to add workers for the model."}
    assert (doc["minWorkers"], doc["maxWorkers"], doc["workers"]) == (0, 0, [])
    assert served.status_code == 503


def test_register_with_workers_is_synchronous_by_default(
        ts: tuple[RunningServer, str, Path], mgmt: httpx.Client) -> None:
    r = mgmt.post("/models", params={"url": ARCHIVE, "model_name": "sync", "initial_workers": 1})
    (doc,) = mgmt.get("/models/sync").json()  # no waiting: the workers are up already
    served = httpx.post(f"{ts[0].url}/predictions/sync", content=b"now")
    mgmt.delete("/models/sync")
    assert r.status_code == 200
    assert r.json() == {"status": 'Model "sync" Version: 1.0 registered with 1 initial workers'}
    assert [w["status"] for w in doc["workers"]] == ["READY"]
    assert served.json()["echo"] == "now"


@pytest.mark.parametrize(("archive", "initial", "workers"), [
    ("pair-1.0/pair.mar", 1, 2), ("pair-1.0/pair.mar", None, 2), ("ceil-1.0/ceil.mar", 1, 1),
    ("floor-1.0/floor.mar", 1, 1)])
def test_an_archive_worker_range_beats_initial_workers(
        mgmt: httpx.Client, archive: str, initial: int | None, workers: int) -> None:
    """TorchServe's register: model-config.yaml's minWorkers (>= 1) with a maxWorkers not
    below it wins over initial_workers, given or not; either key alone does not."""
    params = {"url": archive, "model_name": "ranged"}
    if initial is not None:
        params["initial_workers"] = str(initial)
    r = mgmt.post("/models", params=params)
    (doc,) = mgmt.get("/models/ranged").json()
    mgmt.delete("/models/ranged")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == (f'Model "ranged" Version: 1.0 registered with {workers} '
                                  "initial workers")
    assert (doc["minWorkers"], doc["maxWorkers"], len(doc["workers"])) == (workers,) * 3


def test_an_archive_min_workers_alone_is_ignored_without_initial_workers(
        mgmt: httpx.Client) -> None:
    r = mgmt.post("/models", params={"url": "floor-1.0/floor.mar", "model_name": "floored"})
    (doc,) = mgmt.get("/models/floored").json()
    mgmt.delete("/models/floored")
    assert r.status_code == 200 and "registered with 0 initial workers" in r.json()["status"]
    assert (doc["minWorkers"], doc["maxWorkers"]) == (0, 0)


def test_register_with_synchronous_false_answers_202(mgmt: httpx.Client) -> None:
    r = mgmt.post("/models", params={"url": ARCHIVE, "model_name": "bg", "initial_workers": 1,
                                     "synchronous": "false"})
    assert r.status_code == 202 and r.json() == {"status": "Processing worker updates..."}
    assert mgmt.delete("/models/bg").status_code == 200


def test_startup_models_keep_the_default_workers(mgmt: httpx.Client) -> None:
    (doc,) = mgmt.get("/models/toy").json()
    assert (doc["minWorkers"], doc["maxWorkers"], len(doc["workers"])) == (1, 1, 1)


def test_describe_carries_torchserve_keys_in_its_order(mgmt: httpx.Client) -> None:
    (doc,) = mgmt.get("/models/toy").json()
    expected = {"maxRetryTimeoutInSec": 300, "clientTimeoutInMills": 0, "parallelType": "",
                "parallelLevel": 0, "deviceType": "cpu", "continuousBatching": False,
                "useJobTicket": False, "useVenv": False, "stateful": False,
                "sequenceMaxIdleMSec": 0, "sequenceTimeoutMSec": 0, "maxNumSequence": 0,
                "maxSequenceJobQueueSize": 0}
    assert {k: doc[k] for k in expected} == expected
    keys = list(doc)
    order = ["modelName", "modelVersion", "modelUrl", "runtime", "minWorkers", "maxWorkers",
             "batchSize", "maxBatchDelay", "responseTimeout", "startupTimeout", *expected,
             "loadedAtStartup", "workers", "jobQueueStatus"]
    assert [k for k in keys if k in order] == order


def test_torchserve_messages_and_types(mgmt: httpx.Client) -> None:
    dup = mgmt.post("/models", params={"url": "toy-1.0/toy.mar"})
    runtime = mgmt.post("/models", params={"url": ARCHIVE, "runtime": "python4"})
    default = mgmt.put("/models/toy/0.0/set-default")
    workers = mgmt.put("/models/toy", params={"min_worker": 2, "max_worker": 1})
    negative_max = mgmt.put("/models/toy", params={"max_worker": -1})
    assert (dup.status_code, dup.json()["type"]) == (409, "ConflictStatusException")
    assert dup.json()["message"] == "Model version 1.0 is already registered for model toy"
    assert runtime.json() == {"code": 400, "type": "BadRequestException",
                              "message": "Invalid RuntimeType value: python4"}
    assert default.json() == {"code": 404, "type": "ModelVersionNotFoundException",
                              "message": "Model version 0.0 does not exist for model toy"}
    for r in (workers, negative_max):
        assert r.json() == {"code": 400, "type": "BadRequestException",
                            "message": "max_worker cannot be less than min_worker."}


def test_a_failed_download_is_a_download_archive_exception(
        ts: tuple[RunningServer, str, Path], mgmt: httpx.Client) -> None:
    with serving_archive(b"") as web:
        url = f"{web}/allowed/missing.mar"
        r = mgmt.post("/models", params={"url": url})
    assert r.json() == {"code": 400, "type": "DownloadArchiveException",
                        "message": f"Failed to download archive from: {url} (HTTP 404 Not Found)"}


REFUSED = [  # TorchServe answers these with a 200/202 that ignores the value, or a 500
    ("post", "/models", {"url": ARCHIVE, "batch_size": "dd"}, 400, "batch_size"),
    ("post", "/models", {"url": ARCHIVE, "max_batch_delay": "junk"}, 400, "max_batch_delay"),
    ("post", "/models", {"url": ARCHIVE, "synchronous": "-1"}, 400, "synchronous"),
    ("post", "/models", {"url": ARCHIVE, "startup_timeout": "0"}, 400, "startup_timeout"),
    ("post", "/models", {"url": "", "model_name": "x"}, 400, "url is required"),
    ("put", "/models/toy", {"min_worker": "nan"}, 400, "min_worker"),
    ("put", "/models/toy", {"min_worker": 1, "synchronous": "Nan"}, 400, "synchronous"),
    ("put", "/models/toy", {"min_worker": -1}, 400, "min_worker"),
]


@pytest.mark.parametrize(("method", "path", "params", "code", "says"), REFUSED)
def test_refusals_say_why(mgmt: httpx.Client, method: str, path: str,
                          params: dict[str, object], code: int, says: str) -> None:
    r = mgmt.request(method.upper(), path, params=params)
    assert r.status_code == code and set(r.json()) == ERROR_KEYS
    assert says in r.json()["message"]
    assert mgmt.get("/models/extra").status_code == 404  # nothing was registered


def test_options_documents_match_torchserve_on_shared_paths(
        ts: tuple[RunningServer, str, Path], mgmt: httpx.Client) -> None:
    inference = facts(httpx.request("OPTIONS", f"{ts[0].url}/").json())
    management = facts(mgmt.request("OPTIONS", "/").json())
    assert mismatches(inference, TORCHSERVE_INFERENCE) == []
    assert mismatches(management, TORCHSERVE_MANAGEMENT) == []
    assert "s3_sse_kms" in management["/models"]["post"][0]


def test_a_trailing_slash_is_the_same_path(ts: tuple[RunningServer, str, Path],
                                           mgmt: httpx.Client) -> None:
    """TorchServe answers /models/ as /models (its tests do GET /models/); no redirect."""
    listed = mgmt.get("/models/")
    assert listed.status_code == 200 and listed.json() == mgmt.get("/models").json()
    assert httpx.get(f"{ts[0].url}/ping/").json() == {"status": "Healthy"}
    r = httpx.post(f"{ts[0].url}/predictions/toy/", content=b"slash")
    assert r.status_code == 200 and r.json()["echo"] == "slash"


@pytest.mark.parametrize("flag", ["--model-store", "--workflow-store"])
def test_a_store_that_is_not_a_folder_stops_the_start(tmp_path: Path, flag: str) -> None:
    """TorchServe refuses to start on a missing store (its test_snapshot checks that)."""
    missing = tmp_path / "no-such-store"
    args = ["--model-store", str(tmp_path), flag, str(missing)] if flag != "--model-store" \
        else [flag, str(missing)]
    done = subprocess.run([sys.executable, "-m", "torchwire", "start", "--foreground", "--ncs",
                           *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"{flag} directory not found: {missing}" in done.stderr


def test_the_path_after_the_version_reaches_the_handler_as_url_path(
        ts: tuple[RunningServer, str, Path]) -> None:
    """TorchServe hands what follows /predictions/{m}/{v}/ to the handler as header url_path
    (OpenAI-style routes on one model)."""
    for rest in ("v1/chat/completion", "v1/completion"):
        r = httpx.post(f"{ts[0].url}/predictions/toy/1.0/{rest}", content=b"header:url_path")
        assert r.status_code == 200 and r.json()["value"] == rest
    assert httpx.post(f"{ts[0].url}/predictions/toy/9.9/v1/x", content=b"q").status_code == 404
