"""TorchServe's example handler patterns run unchanged and answer as TorchServe's do.

Each handler under ``tsexamples/`` is written the way one of TorchServe's examples is
(custom_metrics, micro_batching, near_real_time_video, request envelopes); the built-in
vision handlers get TorchServe's JSON-list input. Every archive is made by
``torch-model-archiver`` and registered with ``initial_workers=1&synchronous=true``.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch
from PIL import Image
from torchvision import transforms

from tests.conftest import (
    RunningServer,
    start_server,
    stop_server,
    torch_model_archiver,
)
from torchwire.archive import open_archive
from torchwire.handlers.base import single_module_class

HANDLERS = Path(__file__).resolve().parent / "tsexamples"
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
METRICS_YAML = """\
model_metrics:
  counter:
    - name: ExampleRequestCount
      unit: count
      dimensions: []
    - name: ExamplePreprocessCalls
      unit: count
      dimensions: ["ModelName"]
  gauge:
    - name: ExampleBatchSize
      unit: count
      dimensions: ["ModelName"]
"""
MICRO_BATCHING_YAML = """\
batchSize: 8
maxBatchDelay: 200
micro_batching:
  micro_batch_size: 2
  parallelism:
    preprocess: 2
    inference: 1
    postprocess: 2
"""
SEGMENTER_MODEL = """
import torch
from torch import nn


class TwoClassSegmenter(nn.Module):
    def forward(self, x):
        return {"out": torch.cat([x[:, :1], -x[:, :1]], dim=1)}
"""
DETECTOR_MODEL = """
import torch
from torch import nn


class CornerDetector(nn.Module):
    \"\"\"One detection per image: its box is the first four values of the first row.\"\"\"

    def forward(self, images):
        return [{"boxes": image[0, 0, :4].reshape(1, 4), "labels": torch.tensor([1]),
                 "scores": torch.tensor([0.875])} for image in images]
"""


@dataclass
class Digits:
    """The digits example's files and its model, for computing expected answers."""

    model_file: Path
    weights: Path
    model: torch.nn.Module

    def probabilities(self, values: torch.Tensor) -> list[float]:
        with torch.inference_mode():
            return torch.softmax(self.model(values.unsqueeze(0)), dim=1)[0].tolist()

    def image_probabilities(self, png: bytes) -> list[float]:
        return self.probabilities(transforms.ToTensor()(Image.open(io.BytesIO(png))).flatten())


def top(probs: list[float], k: int = 5, names: list[str] | None = None) -> dict[str, float]:
    best = sorted(range(len(probs)), key=lambda i: -probs[i])[:k]
    return {(names[i] if names else str(i)): probs[i] for i in best}


def assert_close(got: dict[str, float], want: dict[str, float]) -> None:
    assert list(got) == list(want)
    for label, p in want.items():
        assert math.isclose(got[label], p, rel_tol=1e-4, abs_tol=1e-6), (label, got, want)


@dataclass
class Examples:
    server: RunningServer
    management_url: str
    store: Path
    tmp: Path
    digits: Digits

    def archive(self, name: str, handler: str, *extra_args: str, model_file: Path | None = None,
                weights: Path | None = None) -> None:
        model_file = model_file or self.digits.model_file
        args = ["--model-name", name, "--version", "1.0", "--handler", handler,
                "--model-file", str(model_file), "--export-path", str(self.store), *extra_args]
        if weights is not None:
            args += ["--serialized-file", str(weights)]
        done = torch_model_archiver(args, self.tmp / "scratch" / name)
        assert done.returncode == 0, done.stderr

    def register(self, name: str) -> None:
        r = httpx.post(f"{self.management_url}/models", timeout=120, params={
            "url": f"{name}.mar", "initial_workers": 1, "synchronous": "true"})
        assert r.status_code == 200, r.text

    def labels(self, value: object) -> Path:
        path = self.tmp / "index_to_name.json"
        path.write_text(json.dumps(value))
        return path


@pytest.fixture(scope="module")
def examples(example_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Examples]:
    tmp = tmp_path_factory.mktemp("tsexamples")
    unpacked = open_archive(example_store / "digits.mar", tmp / "digits")
    spec = importlib.util.spec_from_file_location("tsexamples_digits_model", unpacked / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)  # not sys.modules["model"]: others use it
    spec.loader.exec_module(module)
    model = single_module_class(module, torch.nn.Module)()
    model.load_state_dict(torch.load(unpacked / "digits.pt", weights_only=True))
    digits = Digits(unpacked / "model.py", unpacked / "digits.pt", model.eval())
    (tmp / "metrics.yaml").write_text(METRICS_YAML)
    store = tmp / "store"
    store.mkdir()
    server = start_server(tmp / "server", store, [], {
        "metrics_config": tmp / "metrics.yaml", "model_metrics_auto_detect": "true",
        "disable_token_authorization": "true", "enable_model_api": "true"})
    yield Examples(server, server.management_url, store, tmp, digits)
    stop_server(server)


def metric_lines(server: RunningServer, name: str) -> list[str]:
    text = httpx.get(f"{server.metrics_url}/metrics").text
    return [line for line in text.splitlines()
            if re.match(rf"{name}(_bucket|_sum|_count)?(\{{|\s)", line)]


def test_custom_metrics_example(examples: Examples,
                                digit_samples: list[tuple[bytes, int]]) -> None:
    """Metrics made by the handler (cached, declared in metrics_config, or made on the fly
    with TorchServe's default dimensions) appear in /metrics."""
    examples.archive("tsmetrics", str(HANDLERS / "metrics_digits.py"),
                     weights=examples.digits.weights)
    examples.register("tsmetrics")
    samples = digit_samples[:3]
    for png, _ in samples:  # the example's request: curl -T image.png (an HTTP PUT)
        r = httpx.put(f"{examples.server.url}/predictions/tsmetrics", content=png, timeout=60)
        assert r.status_code == 200, r.text
        probs = examples.digits.image_probabilities(png)
        assert r.json() == max(range(10), key=lambda i: probs[i])
    server = examples.server
    (requests,) = metric_lines(server, "ExampleRequestCount")
    assert float(requests.split()[-1]) == len(samples)
    (calls,) = metric_lines(server, "ExamplePreprocessCalls")
    assert 'ModelName="tsmetrics"' in calls and float(calls.split()[-1]) == len(samples)
    assert metric_lines(server, "ExampleBatchSize")  # declared only in metrics_config
    (init,) = metric_lines(server, "ExampleInitializeCalls")
    assert 'Level="Model"' in init and 'ModelName="tsmetrics"' in init
    (method,) = metric_lines(server, "ExampleMethodTime")
    assert 'MethodName="preprocess"' in method
    for name in ("ExampleImageSize", "ExamplePostprocessCalls", "ExamplePercent"):
        assert metric_lines(server, name), name


def test_micro_batching_example(examples: Examples,
                                digit_samples: list[tuple[bytes, int]]) -> None:
    """A batch of 8 goes through MicroBatching's threads; each request gets its own
    image's answer, with the ImageNet-style list labels of its index_to_name.json."""
    labels = examples.labels({str(i): [f"n{i:08d}", name] for i, name in enumerate(NAMES)})
    config = examples.tmp / "micro_batching.yaml"
    config.write_text(MICRO_BATCHING_YAML)
    examples.archive("tsmicro", str(HANDLERS / "microbatch_digits.py"),
                     "--extra-files", str(labels), "--config-file", str(config),
                     weights=examples.digits.weights)
    examples.register("tsmicro")
    samples = [png for png, _ in digit_samples[:8]]
    url = f"{examples.server.url}/predictions/tsmicro"
    with ThreadPoolExecutor(len(samples)) as pool:
        answers = list(pool.map(lambda png: httpx.put(url, content=png, timeout=60), samples))
    for png, r in zip(samples, answers, strict=True):
        assert r.status_code == 200, r.text
        body = r.json()
        assert isinstance(body.pop("micro_batch"), int)
        assert_close(body, top(examples.digits.image_probabilities(png), names=NAMES))


def test_near_real_time_video_example(examples: Examples,
                                      digit_samples: list[tuple[bytes, int]]) -> None:
    """Frames sent as one JSON object of base64 images, as the example's client batches
    them; the mapping's list values name the classes."""
    labels = examples.labels({str(i): [f"n{i:08d}", name] for i, name in enumerate(NAMES)})
    examples.archive("tsvideo", str(HANDLERS / "video_digits.py"),
                     "--extra-files", str(labels), weights=examples.digits.weights)
    examples.register("tsvideo")
    frames = [png for png, _ in digit_samples[:4]]
    payload = {str(i): base64.b64encode(png).decode() for i, png in enumerate(frames)}
    r = httpx.post(f"{examples.server.url}/predictions/tsvideo", content=json.dumps(payload),
                   headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 200, r.text
    assert len(r.json()) == len(frames)
    for got, png in zip(r.json(), frames, strict=True):
        assert_close(got, top(examples.digits.image_probabilities(png), names=NAMES))


def test_builtin_vision_handlers_take_a_json_list_of_numbers(examples: Examples) -> None:
    """image_classifier, image_segmenter and object_detector take an application/json
    list of numbers as the model's input tensor, untransformed, as TorchServe does."""
    segmenter, detector = examples.tmp / "segmenter.py", examples.tmp / "detector.py"
    segmenter.write_text(SEGMENTER_MODEL)
    detector.write_text(DETECTOR_MODEL)
    examples.archive("jsonclassifier", "image_classifier", weights=examples.digits.weights)
    examples.archive("jsonsegmenter", "image_segmenter", model_file=segmenter)
    examples.archive("jsondetector", "object_detector", "--extra-files",
                     str(examples.labels({"1": ["n02084071", "dog"]})), model_file=detector)
    for name in ("jsonclassifier", "jsonsegmenter", "jsondetector"):
        examples.register(name)
    url = f"{examples.server.url}/predictions"

    pixels = [(i % 17) / 16 for i in range(64)]
    r = httpx.post(f"{url}/jsonclassifier", json=pixels, timeout=60)
    assert r.status_code == 200, r.text
    assert_close(r.json(), top(examples.digits.probabilities(torch.tensor(pixels))))

    image = [[[0.5, -1.0], [2.0, 0.0]]]  # [C=1, H=2, W=2]
    r = httpx.post(f"{url}/jsonsegmenter", json=image, timeout=60)
    assert r.status_code == 200, r.text
    logits = torch.tensor(image).unsqueeze(0)
    want = torch.softmax(torch.cat([logits, -logits], dim=1), dim=1)[0]
    assert torch.allclose(torch.tensor(r.json()), want, atol=1e-4)

    corners = [0.123456789, 1.987654321, 3.333333333, 4.111111111]
    image = [[corners + [0.0] * 2] * 5] * 3  # [3, 5, 6]: the box stays inside the image
    r = httpx.post(f"{url}/jsondetector", json=image, timeout=60)
    assert r.status_code == 200, r.text
    (found,) = r.json()
    assert found["dog"] == torch.tensor(corners, dtype=torch.float32).tolist()  # not rounded
    assert found["score"] == 0.875

    r = httpx.post(f"{url}/jsonclassifier", json=[[1.0, 2.0], [3.0]], timeout=60)
    assert r.status_code == 400
    assert "nested lists of equal lengths" in r.json()["message"]


def test_request_envelopes(examples: Examples) -> None:
    """A handler wrapped in TorchServe's JSON and KServe v2 envelopes answers in their
    formats."""
    examples.archive("tsenvelope", str(HANDLERS / "envelope_affine.py"),
                     model_file=HANDLERS / "envelope_affine.py")
    examples.register("tsenvelope")
    url = f"{examples.server.url}/predictions/tsenvelope"
    r = httpx.post(url, json={"instances": [[1.0, 2.0], [3.0]]}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [[3.0, 5.0], [7.0]]}
    v2 = {"id": "req-7", "inputs": [
        {"name": "x", "shape": [3], "datatype": "FP32", "data": [1.0, 2.0, 3.0]}]}
    r = httpx.post(url, json=v2, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "req-7", "model_name": "tsenvelope", "model_version": "1.0",
                        "outputs": [{"name": "x", "datatype": "FP64", "shape": [3],
                                     "data": [3.0, 5.0, 7.0]}]}


def test_an_async_handle_is_awaited(examples: Examples,
                                    digit_samples: list[tuple[bytes, int]]) -> None:
    """TorchServe's async worker handler (``async def handle``, ``asyncCommunication``):
    ten concurrent requests, each answered with its own image's class."""
    config = examples.tmp / "async-config.yaml"
    config.write_text("minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\nasyncCommunication: true\n")
    examples.archive("tsasync", str(HANDLERS / "async_digits.py"), "--config-file", str(config),
                     weights=examples.digits.weights)
    examples.register("tsasync")
    samples = digit_samples[:10]
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda s: httpx.post(
            f"{examples.server.url}/predictions/tsasync", content=s[0], timeout=60), samples))
    for (png, _), r in zip(samples, answers, strict=True):
        assert r.status_code == 200, r.text
        probs = examples.digits.image_probabilities(png)
        assert r.text == str(max(range(10), key=lambda i: probs[i]))
