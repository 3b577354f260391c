"""pt2 (torch.compile at load) and warm-up, on a real server with real worker processes.

The default run compiles with the ``eager`` backend (dynamo traces the model; no C
compiler): seconds. The inductor case compiles C++ on the CPU (a minute on a cold
cache) and runs only with TORCHWIRE_HEAVY_TESTS=1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from tests.conftest import (
    RunningServer,
    start_server,
    stop_server,
    wait_until,
)
from torchwire.archive import (
    Manifest,
    open_archive,
    read_manifest,
    read_model_config,
    write_archive,
)

HERE = Path(__file__).resolve().parent / "pt2"
SAMPLE = [1.0, -2.0, 3.0, 0.5]
heavy = pytest.mark.skipif(not os.environ.get("TORCHWIRE_HEAVY_TESTS"),
                           reason="compiles C++ with inductor; set TORCHWIRE_HEAVY_TESTS=1")


def net_archive(store: Path, name: str, yaml_config: str) -> str:
    src = store / f".{name}-src"
    src.mkdir(parents=True)
    for f in ("net.py", "counting_handler.py"):
        (src / f).write_text((HERE / f).read_text())
    torch.manual_seed(0)
    net = __import__("runpy").run_path(str(src / "net.py"))["Net"]()
    torch.save(net.state_dict(), src / "net.pt")
    (src / "model-config.yaml").write_text(yaml_config)
    (src / "sample.json").write_text(str(SAMPLE))
    manifest = Manifest(model_name=name, handler="counting_handler.py", model_file="net.py",
                        serialized_file="net.pt", config_file="model-config.yaml")
    write_archive(manifest, {p.name: p for p in src.iterdir()}, store / name, force=True)
    return f"{name}/{name}.mar"


def expected() -> list[float]:
    torch.manual_seed(0)
    net = __import__("runpy").run_path(str(HERE / "net.py"))["Net"]()
    return [round(v, 5) for v in net(torch.tensor([SAMPLE])).tolist()[0]]


@pytest.fixture(scope="module")
def pt2_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("pt2")
    store = tmp / "store"
    store.mkdir()
    config = {"enable_model_api": "true", "disable_token_authorization": "true"}
    running = start_server(tmp / "server", store, [], config)
    yield running
    stop_server(running)


def register(server: RunningServer, name: str, yaml_config: str,
             sync: bool = True) -> httpx.Response:
    store = server.log_dir.parent.parent / "store"
    url = net_archive(store, name, yaml_config)
    params = {"url": url, "initial_workers": "1", "synchronous": str(sync).lower()}
    return httpx.post(f"{server.management_url}/models",
                      params=params, timeout=300)


def predict(server: RunningServer, name: str) -> dict[str, object]:
    r = httpx.post(f"{server.url}/predictions/{name}", json=SAMPLE, timeout=120)
    assert r.status_code == 200, r.text
    return dict(r.json())


def load_error(server: RunningServer, name: str) -> str:
    def describe() -> dict[str, object]:
        return dict(httpx.get(f"{server.management_url}/models/{name}",
                              timeout=30).json()[0])

    wait_until(lambda: describe()["status"] == "Failed", 120, f"{name} failing to load")
    return str(describe()["loadError"])


def test_compiled_and_warmed_before_ready(pt2_server: RunningServer) -> None:
    cfg = ("pt2:\n  compile:\n    enable: true\n    backend: eager\n"
           "warmup:\n  file: sample.json\n  content_type: application/json\n")
    assert register(pt2_server, "compiled", cfg).status_code == 200
    first = predict(pt2_server, "compiled")
    assert first["model"] == "OptimizedModule"  # torch.compile wrapped the model at load
    assert first["batches"] == 2  # the warm-up batch ran through the handler before ready
    assert [round(v, 5) for v in first["y"]] == expected()


def test_older_string_form_and_disabled(pt2_server: RunningServer) -> None:
    assert register(pt2_server, "oldform", "pt2: eager\n").status_code == 200
    disabled = "pt2:\n  compile:\n    enable: false\n    backend: inductor\n"
    assert register(pt2_server, "disabled", disabled).status_code == 200
    old, plain = predict(pt2_server, "oldform"), predict(pt2_server, "disabled")
    assert (old["model"], old["batches"]) == ("OptimizedModule", 1)  # no warm-up: lazy
    assert (plain["model"], plain["batches"]) == ("Net", 1)


def test_compile_failure_is_a_load_error(pt2_server: RunningServer) -> None:
    assert register(pt2_server, "nobackend", "pt2: nonexistent\n", sync=False).status_code == 202
    assert "backend 'nonexistent' is not available" in load_error(pt2_server, "nobackend")


def test_failing_warmup_fails_the_load(tmp_path: Path) -> None:
    """In-process, as a worker loads (a failed load is retried 3 times by a server)."""
    from torchwire.errors import HandlerError
    from torchwire.protocol import WorkerSpec
    from torchwire.workers.child import load

    archive = Path(net_archive(tmp_path, "badwarm", "warmup:\n  text: not numbers\n"))
    model_dir = open_archive(tmp_path / archive, tmp_path / "unpacked")
    manifest = read_manifest(model_dir)
    spec = WorkerSpec("badwarm", "1.0", str(model_dir), manifest.to_json(), manifest.handler,
                      1, 0, None, 1, read_model_config(model_dir, manifest))
    with pytest.raises(HandlerError, match=r"warm-up \(batch of 1\) failed"):
        load(spec)


@heavy
def test_inductor_compiles_at_load(pt2_server: RunningServer) -> None:
    cfg = ("pt2:\n  compile:\n    enable: true\n    backend: inductor\n    dynamic: false\n"
           "warmup:\n  json: [1, 2, 3, 4]\n  batch_sizes: [1]\n")
    assert register(pt2_server, "inductor", cfg).status_code == 200
    first = predict(pt2_server, "inductor")
    assert (first["model"], first["batches"]) == ("OptimizedModule", 2)
    assert [round(v, 4) for v in first["y"]] == [round(v, 4) for v in expected()]
