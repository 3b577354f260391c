"""TorchServe-made archives with TorchServe-style handlers, served by a real torchwire server."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from tests.conftest import (
    ROOT,
    RunningServer,
    start_server,
    stop_server,
    torch_model_archiver,
)
from torchwire.archive import open_archive
from torchwire.cli import main as torchwire_main
from torchwire.compat import ts_root

HANDLERS = Path(__file__).resolve().parent / "tshandlers"


class Affine(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0 + 1.0


def affine(values: list[float]) -> list[float]:
    return [v * 2.0 + 1.0 for v in values]


def _tma(tmp: Path, *args: str) -> None:
    done = torch_model_archiver(list(args), tmp / "scratch")
    assert done.returncode == 0, done.stderr


def build_store(example_store: Path, tmp: Path) -> Path:
    """Archives made by torch-model-archiver (and one by torchwire archive) for the server."""
    store = tmp / "store"
    store.mkdir()
    digits = open_archive(example_store / "digits.mar", tmp / "unpacked")
    (tmp / "profile.yaml").write_text("handler:\n  profile: true\n")
    _tma(tmp, "--model-name", "tsdigits", "--version", "1.0",
         "--model-file", str(digits / "model.py"), "--serialized-file", str(digits / "digits.pt"),
         "--handler", str(HANDLERS / "digits_classifier.py"),
         "--extra-files", str(digits / "index_to_name.json"),
         "--config-file", str(tmp / "profile.yaml"), "--export-path", str(store))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is what TorchServe loads
        torch.jit.script(Affine()).save(str(tmp / "affine.pt"))
    (tmp / "model-config.yaml").write_text("batchSize: 4\nmaxBatchDelay: 10\ngreeting: hello\n")
    _tma(tmp, "--model-name", "tsdocs", "--version", "1.0",
         "--serialized-file", str(tmp / "affine.pt"),
         "--handler", str(HANDLERS / "docs_handler.py"),
         "--config-file", str(tmp / "model-config.yaml"), "--archive-format", "tgz",
         "--export-path", str(store))  # fmt: skip
    rc = torchwire_main(["archive", "--model-name", "tsscripted", "--version", "1.0",
                         "--serialized-file", str(tmp / "affine.pt"), "--handler",
                         str(HANDLERS / "scripted_handler.py"), "--archive-format", "zip-store",
                         "--export-path", str(store)])  # fmt: skip
    assert rc == 0
    _tma(tmp, "--model-name", "whichts", "--version", "1.0", "--handler",
         str(HANDLERS / "which_ts.py"), "--archive-format", "no-archive",
         "--export-path", str(store))  # fmt: skip
    return store


@pytest.fixture(scope="module")
def ts_server(example_store: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("tscompat")
    store = build_store(example_store, tmp)
    (store / "digits.mar").symlink_to(example_store / "digits.mar")
    models = {"tsdocs": {"1.0": {"batchSize": 2, "maxBatchDelay": 10}}}
    running = start_server(
        tmp, store,
        ["digits.mar", "tsdigits.mar", "tsdocs.tar.gz", "tsscripted.mar", "whichts"],
        {"models": json.dumps(models)},
    )  # fmt: skip
    yield running
    stop_server(running)


def test_ts_image_classifier_answers_like_torchwires_own_handler(
    ts_server: RunningServer, digit_samples: list[tuple[bytes, int]]
) -> None:
    """Same weights, same images: the TorchServe-style handler on a torch-model-archiver
    .mar gives the same top-3 as the example's torchwire handler."""
    with ts_server.client() as c:
        for png, _ in digit_samples[:12]:
            theirs = c.post("/predictions/tsdigits", content=png)
            ours = c.post("/predictions/digits", content=png)
            assert theirs.status_code == ours.status_code == 200, theirs.text
            assert list(theirs.json()) == list(ours.json())
            for label, p in ours.json().items():
                assert math.isclose(theirs.json()[label], p, rel_tol=1e-4, abs_tol=1e-6)
    # @timed from ts.handler_utils.timer measured postprocess (profile: true in its yaml)
    # and recorded it through context.metrics
    metrics = httpx.get(f"{ts_server.metrics_url}/metrics").text
    assert "ts_handler_postprocess" in metrics


def test_docs_style_handler_and_model_config(ts_server: RunningServer) -> None:
    values = [1.0, -2.5, 4.0]
    r = httpx.post(f"{ts_server.url}/predictions/tsdocs", json=values)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["output"] == affine(values)
    assert body["batch_size"] == 4  # model-config.yaml beats config.properties' batchSize 2
    assert body["greeting"] == "hello"  # other yaml keys reach context.model_yaml_config


def test_prediction_exception_error_code_is_the_http_status(ts_server: RunningServer) -> None:
    r = httpx.post(f"{ts_server.url}/predictions/tsdocs", json={"not": "a list"})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == 422 and "send a JSON list of numbers" in body["message"]
    ok = httpx.post(f"{ts_server.url}/predictions/tsdocs", json=[0.5])
    assert ok.json()["output"] == affine([0.5])


def test_base_handler_loading_of_a_torchwire_archive(ts_server: RunningServer) -> None:
    r = httpx.post(f"{ts_server.url}/predictions/tsscripted", json=[1.5, -2.0])
    assert r.status_code == 200, r.text
    assert r.json()["output"] == affine([1.5, -2.0])
    assert r.json()["model_pt_path"].endswith(os.sep + "affine.pt")


def test_handlers_see_the_stand_in_ts(ts_server: RunningServer) -> None:
    r = httpx.post(f"{ts_server.url}/predictions/whichts", content=b"x")
    assert r.status_code == 200, r.text
    assert Path(r.json()["ts"]).is_relative_to(ts_root())
    assert r.json()["fake"] is False


def test_an_installed_torchserve_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a (stand-in for a) real TorchServe on the path, handlers get that one."""
    fake = tmp_path / "site" / "ts"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("FAKE_TORCHSERVE = True\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(tmp_path / "site")]))
    store = tmp_path / "store"
    rc = torchwire_main(["archive", "--model-name", "whichts", "--version", "1.0", "--handler",
                         str(HANDLERS / "which_ts.py"), "--export-path", str(store)])
    assert rc == 0
    server = start_server(tmp_path, store, ["whichts.mar"], {})
    try:
        r = httpx.post(f"{server.url}/predictions/whichts", content=b"x")
    finally:
        stop_server(server)
    assert r.status_code == 200, r.text
    assert r.json() == {"ts": str(fake / "__init__.py"), "fake": True}


def test_customized_describe_of_a_custom_handler_without_describe_handle(
    ts_server: RunningServer,
) -> None:
    """TorchServe's ImageClassifier subclass defines no describe_handle: the base's
    answer (nothing) is the customized metadata, and the request is a 200."""
    with ts_server.management() as mgmt:
        response = mgmt.get("/models/tsdigits", params={"customized": "true"})
    assert response.status_code == 200, response.text
    (doc,) = response.json()
    assert doc["modelName"] == "tsdigits" and "customizedMetadata" in doc
