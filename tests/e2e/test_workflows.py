"""Workflows end to end: a .war made by torch-workflow-archiver, served by a real server.

The DAG: ``preprocess`` (a function) feeds two real models in parallel (``double``
and ``triple``, 1x1 linear layers), whose answers ``aggregate`` (a function) combines.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    RunningServer,
    handler_archive,
    start_server,
    stop_server,
    torchserve_tool,
)

HERE = Path(__file__).resolve().parent / "workflow"


def workflow_archiver(args: list[str], scratch: Path) -> subprocess.CompletedProcess[str]:
    """TorchServe's torch-workflow-archiver (a test dependency)."""
    return torchserve_tool("torch-workflow-archiver", args, scratch)


def build_store(store: Path, scratch: Path) -> None:
    handler = HERE / "scale_handler.py"
    handler_archive(store, "double", handler, store / "double", yaml_config="factor: 2\n")
    handler_archive(store, "triple", handler, store / "triple", yaml_config="factor: 3\n")
    done = workflow_archiver(["--workflow-name", "arith", "--spec-file", str(HERE / "arith.yaml"),
                              "--handler", str(HERE / "arith_handler.py"), "--export-path",
                              str(store)], scratch)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def wf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("workflows")
    store = tmp / "store"
    store.mkdir()
    build_store(store, tmp / "scratch")
    config = {"enable_model_api": "true", "disable_token_authorization": "true"}
    running = start_server(tmp / "server", store, [], config)
    yield running
    stop_server(running)


def management(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.management_url, timeout=120)





@pytest.fixture(scope="module")
def registered(wf_server: RunningServer) -> Iterator[httpx.Client]:
    with management(wf_server) as mgmt:
        r = mgmt.post("/workflows", params={"url": "arith.war"})
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "Workflow arith has been registered and scaled "
                                      "successfully."}
        yield mgmt


def test_parallel_dag_answers(wf_server: RunningServer, registered: httpx.Client) -> None:
    with wf_server.client() as c:
        r = c.post("/wfpredict/arith", json={"values": [1, 2, 3]})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"double": [2.0, 4.0, 6.0], "triple": [3.0, 6.0, 9.0],
                        "sum": [5.0, 10.0, 15.0]}


def test_a_raising_node_is_named(wf_server: RunningServer, registered: httpx.Client) -> None:
    with wf_server.client() as c:
        crashed = c.post("/wfpredict/arith", json={"values": ["boom"]})
        refused = c.post("/wfpredict/arith", content=b"not json")
    assert crashed.status_code == 500
    assert "preprocess" in crashed.json()["message"]
    assert "cannot take 'boom'" in crashed.json()["message"]
    assert refused.status_code == 400
    assert "Workflow node preprocess (function) failed" in refused.json()["message"]


def test_list_and_describe(registered: httpx.Client) -> None:
    listing = registered.get("/workflows").json()
    assert listing == {"workflows": [{"workflowName": "arith", "workflowUrl": "arith.war"}]}
    [doc] = registered.get("/workflows/arith").json()
    assert doc == {"workflowName": "arith", "workflowUrl": "arith.war", "minWorkers": 1,
                   "maxWorkers": 1, "batchSize": 4, "maxBatchDelay": 20,
                   "workflowDag": "{preprocess=[double, triple], double=[aggregate], "
                                  "triple=[aggregate]}"}
    missing = registered.get("/workflows/nope")
    assert missing.status_code == 404
    assert missing.json()["message"] == "Workflow not found: nope"


def test_nodes_are_models_in_describe_and_metrics(wf_server: RunningServer,
                                                  registered: httpx.Client) -> None:
    names = {m["modelName"] for m in registered.get("/models").json()["models"]}
    assert {"arith__preprocess", "arith__double", "arith__triple", "arith__aggregate"} <= names
    [double] = registered.get("/models/arith__double").json()
    assert (double["batchSize"], double["maxBatchDelay"]) == (8, 20)
    assert double["status"] == "Ready"
    with wf_server.client() as c:
        assert c.post("/wfpredict/arith", json={"values": [1]}).status_code == 200
    metrics = httpx.get(f"{wf_server.metrics_url}/metrics", timeout=30).text
    assert 'model_name="arith__double"' in metrics


def test_registration_errors(wf_server: RunningServer, registered: httpx.Client) -> None:
    again = registered.post("/workflows", params={"url": "arith.war"})
    assert again.status_code == 409
    assert again.json()["message"] == "Workflow arith is already registered."
    no_url = registered.post("/workflows")
    assert no_url.status_code == 400
    assert no_url.json()["message"] == "Parameter url is required."
    missing = registered.post("/workflows", params={"url": "nothing.war"})
    assert missing.status_code == 404
    assert missing.json()["message"] == "Workflow not found in workflow store: nothing.war"


def test_unregister_removes_its_models(tmp_path: Path, wf_server: RunningServer,
                                       registered: httpx.Client) -> None:
    store = Path(str(wf_server.log_dir.parent.parent / "store"))
    subprocess.run([sys.executable, "-m", "torchwire", "workflow-archive", "--workflow-name",
                    "arith2", "--spec-file", str(HERE / "arith.yaml"), "--handler",
                    str(HERE / "arith_handler.py"), "--export-path", str(store)], check=True,
                   capture_output=True)
    r = registered.post("/workflows", params={"url": "arith2.war", "workflow_name": "other"})
    assert r.status_code == 200, r.text
    with wf_server.client() as c:
        assert c.post("/wfpredict/other", json={"values": [2]}).json()["sum"] == [10.0]
    gone = registered.delete("/workflows/other")
    assert gone.json() == {"status": 'Workflow "other" unregistered'}
    names = {m["modelName"] for m in registered.get("/models").json()["models"]}
    assert not any(n.startswith("other__") for n in names)
    with wf_server.client() as c:
        assert c.post("/wfpredict/other", json={"values": [2]}).status_code == 404


def test_our_war_has_the_archivers_layout(tmp_path: Path) -> None:
    args = ["--workflow-name", "arith", "--spec-file", str(HERE / "arith.yaml"), "--handler",
            str(HERE / "arith_handler.py")]
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    theirs.mkdir()
    ours.mkdir()
    assert workflow_archiver([*args, "--export-path", str(theirs)], tmp_path / "s").returncode == 0
    subprocess.run([sys.executable, "-m", "torchwire", "workflow-archive", *args,
                    "--export-path", str(ours)], check=True, capture_output=True)
    with zipfile.ZipFile(theirs / "arith.war") as a, zipfile.ZipFile(ours / "arith.war") as b:
        assert sorted(a.namelist()) == sorted(b.namelist())
        import json
        ma, mb = (json.loads(z.read("WAR-INF/MANIFEST.json")) for z in (a, b))
    assert ma["workflow"] == mb["workflow"]
    assert set(ma) == set(mb)
