"""image_segmenter, object_detector and text_classifier in-process through the worker loop.

Tiny models written into a temporary model dir exercise the handlers' contracts:
output shapes, box scaling, thresholds, vocabularies, batching with bad rows, and
explanations (or their absence).
"""

from __future__ import annotations

import io
import json
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from torchwire.errors import HandlerError
from torchwire.handlers.tokens import basic_english, clean, expand_contractions, ngrams
from torchwire.protocol import (
    DESCRIBE,
    EXPLAIN,
    PREDICT,
    Batch,
    Item,
    Outcome,
    Param,
    WorkerSpec,
)
from torchwire.workers.child import Worker, load

SEGMENTER = """
import torch
from torch import nn


class Seg(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.calls = []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        out = self.conv(x)
        return {"out": out, "aux": None} if WRAP else out
"""

DETECTOR = """
import torch
from torch import nn


class Boxes(nn.Module):
    '''Two boxes per image at fixed fractions of the input tensor's size.'''

    def __init__(self):
        super().__init__()
        self.dummy = nn.Linear(1, 1)

    def forward(self, images):
        out = []
        for image in images:
            _, h, w = image.shape
            boxes = torch.tensor([[0.25 * w, 0.5 * h, 0.75 * w, h], [0, 0, 0.1 * w, 0.1 * h]])
            out.append({"boxes": boxes, "labels": torch.tensor([1, 2]),
                        "scores": torch.tensor([0.9, 0.3])})
        return out
"""

TEXT = """
import torch
from torch import nn


class Bag(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.EmbeddingBag(8, 2, mode="sum")
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.embedding.weight.zero_()
            self.embedding.weight[1] = torch.tensor([1.0, 0.0])  # "good"
            self.embedding.weight[2] = torch.tensor([0.0, 1.0])  # "bad"
            self.fc.weight.copy_(torch.eye(2))

    def forward(self, text, offsets):
        return self.fc(self.embedding(text, offsets))
"""


# -- plumbing ------------------------------------------------------------------------------
@pytest.fixture
def model_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    sys.modules.pop("model", None)
    sys.path[:] = [p for p in sys.path if p != str(tmp_path)]


WorkerFactory = Callable[..., Worker]


@pytest.fixture
def make_worker(model_dir: Path) -> WorkerFactory:
    def make(source: str, handler: str, config: dict[str, Any] | None = None,
             files: dict[str, Any] | None = None) -> Worker:
        (model_dir / "model.py").write_text(textwrap.dedent(source))
        sys.modules.pop("model", None)
        for name, content in (files or {}).items():
            path = model_dir / name
            if isinstance(content, str):
                path.write_text(content)
            else:
                torch.save(content, path)
        manifest = {"runtime": "python", "model": {"modelName": "m", "modelVersion": "1.0",
                                                   "handler": handler, "modelFile": "model.py"}}
        torch.manual_seed(0)
        spec = WorkerSpec("m", "1.0", str(model_dir), manifest, handler, 8, 10, None, 1,
                          {"handler": config or {}})
        return load(spec)

    return make


def item(value: Any, name: str = "body", ctype: str = "application/octet-stream") -> Item:
    return Item(f"r{id(value)}", (Param(name, value, ctype),), {})


def run(worker: Worker, *items: Item, explain: bool = False) -> list[Outcome]:
    return worker.run(Batch(1, tuple(items), EXPLAIN if explain else PREDICT))


def body(outcome: Outcome) -> Any:
    return json.loads(outcome.body)


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 240)).save(buf, "PNG")
    return buf.getvalue()


NATIVE = {"resize": None, "crop": None}


# -- image_segmenter --------------------------------------------------------------------
@pytest.mark.parametrize("wrap", [True, False], ids=["out-dict", "tensor"])
def test_segmenter_answers_classes_by_height_by_width(
    make_worker: WorkerFactory, wrap: bool
) -> None:
    worker = make_worker(SEGMENTER.replace("WRAP", str(wrap)), "image_segmenter", NATIVE)
    outcomes = run(worker, item(png(20, 10)), item(b"not an image"), item(png(20, 10)))
    assert [o.status for o in outcomes] == [200, 400, 200]
    probs = np.array(body(outcomes[0]))
    assert probs.shape == (3, 10, 20)
    assert np.allclose(probs.sum(axis=0), 1.0, atol=1e-3)


def test_segmenter_runs_one_model_call_per_image_size(make_worker: WorkerFactory) -> None:
    worker = make_worker(SEGMENTER.replace("WRAP", "True"), "image_segmenter", NATIVE)
    outcomes = run(worker, item(png(20, 10)), item(png(8, 8)), item(png(20, 10)))
    assert [np.array(body(o)).shape for o in outcomes] == [(3, 10, 20), (3, 8, 8), (3, 10, 20)]
    assert sorted(worker.service.instance.model.calls) == [(1, 3, 8, 8), (2, 3, 10, 20)]


def test_segmenter_resize_and_decimals_from_config(make_worker: WorkerFactory) -> None:
    worker = make_worker(SEGMENTER.replace("WRAP", "False"), "image_segmenter",
                         {"resize": 6, "crop": None, "decimals": 2})
    probs = body(run(worker, item(png(20, 10)))[0])
    assert np.array(probs).shape == (3, 6, 12)
    assert all(round(v, 2) == v for v in np.array(probs).ravel().tolist())


def test_segmenter_defaults_are_torchserves_224_crop(make_worker: WorkerFactory) -> None:
    worker = make_worker(SEGMENTER.replace("WRAP", "True"), "image_segmenter")
    assert np.array(body(run(worker, item(png(300, 260)))[0])).shape == (3, 224, 224)


def test_segmenter_classes_output_is_torchserves_compact_form(
    make_worker: WorkerFactory
) -> None:
    worker = make_worker(SEGMENTER.replace("WRAP", "True"), "image_segmenter",
                         {**NATIVE, "output": "classes"})
    compact = np.array(body(run(worker, item(png(6, 4)))[0]))
    full = np.array(body(run(make_worker(SEGMENTER.replace("WRAP", "True"), "image_segmenter",
                                         NATIVE), item(png(6, 4)))[0]))
    assert compact.shape == (4, 6, 2)
    assert np.array_equal(compact[..., 0], full.argmax(axis=0))
    assert np.allclose(compact[..., 1], full.max(axis=0), atol=1e-4)


def test_segmenter_without_explanations_is_501(make_worker: WorkerFactory) -> None:
    worker = make_worker(SEGMENTER.replace("WRAP", "True"), "image_segmenter")
    outcome = run(worker, item(png(8, 8)), explain=True)[0]
    assert outcome.status == 501 and body(outcome)["type"] == "ExplanationsNotSupportedException"


# -- object_detector ----------------------------------------------------------------------
def test_detector_boxes_in_original_pixels_above_threshold(
    make_worker: WorkerFactory
) -> None:
    labels = json.dumps({"1": "cat", "2": "dog"})
    worker = make_worker(DETECTOR, "object_detector", files={"index_to_name.json": labels})
    outcomes = run(worker, item(png(40, 20)), item(png(100, 60)), item(b""))
    assert [o.status for o in outcomes] == [200, 200, 400]
    assert body(outcomes[0]) == [{"cat": [10.0, 10.0, 30.0, 20.0], "score": pytest.approx(0.9)}]
    assert body(outcomes[1]) == [{"cat": [25.0, 30.0, 75.0, 60.0], "score": pytest.approx(0.9)}]


def test_detector_undoes_a_configured_resize(make_worker: WorkerFactory) -> None:
    worker = make_worker(DETECTOR, "object_detector", {"resize": 10, "threshold": 0.2})
    found = body(run(worker, item(png(40, 20)))[0])
    assert found == [{"1": [10.0, 10.0, 30.0, 20.0], "score": pytest.approx(0.9)},
                     {"2": [0.0, 0.0, 4.0, 2.0], "score": pytest.approx(0.3)}]


def test_detector_refuses_crop(make_worker: WorkerFactory) -> None:
    with pytest.raises(HandlerError, match="does not crop"):
        make_worker(DETECTOR, "object_detector", {"crop": 10})


def test_detector_needs_detection_dicts(make_worker: WorkerFactory) -> None:
    worker = make_worker(DETECTOR.replace('"scores"', '"confidence"'), "object_detector")
    outcome = run(worker, item(png(8, 8)))[0]
    assert outcome.status == 500 and "boxes, labels and scores" in body(outcome)["message"]


# -- text_classifier ------------------------------------------------------------------------
VOCAB = ["<unk>", "good", "bad"]


@pytest.mark.parametrize(
    "vocab_file",
    [("vocab.txt", "\n".join(VOCAB) + "\n"), ("vocab.json", json.dumps(VOCAB)),
     ("source_vocab.pt", {t: i for i, t in enumerate(VOCAB)})],
    ids=["txt", "json", "pt-dict"],
)
def test_text_classifier_batches_and_fails_rows_alone(
    make_worker: WorkerFactory, vocab_file: tuple[str, Any]
) -> None:
    labels = json.dumps({"0": "positive", "1": "negative"})
    worker = make_worker(TEXT, "text_classifier", {"ngrams": 1},
                         files={vocab_file[0]: vocab_file[1], "index_to_name.json": labels})
    outcomes = run(worker, item(b"Good, good and GOOD!"), item(b"\xff\xfe\x00bad"),
                   item("bad bad good", ctype="text/plain"), item(b"?!"))
    assert [o.status for o in outcomes] == [200, 400, 200, 400]
    first, third = body(outcomes[0]), body(outcomes[2])
    assert list(first) == ["positive", "negative"]
    assert first["positive"] == pytest.approx(float(torch.softmax(torch.tensor([3.0, 0]), 0)[0]))
    assert list(third) == ["negative", "positive"]
    assert "UTF-8" in body(outcomes[1])["message"]
    assert "no words" in body(outcomes[3])["message"]


def test_text_classifier_topk_and_numbers_without_labels(make_worker: WorkerFactory) -> None:
    worker = make_worker(TEXT, "text_classifier", {"topk": 1},
                         files={"vocab.txt": "\n".join(VOCAB)})
    assert body(run(worker, item(b"bad"))[0]) == {"1": pytest.approx(0.7310586)}


def test_text_classifier_explains_each_word(make_worker: WorkerFactory) -> None:
    worker = make_worker(TEXT, "text_classifier", {"ngrams": 1},
                         files={"vocab.txt": "\n".join(VOCAB)})
    outcome = run(worker, item(b"good weather, bad news"), explain=True)[0]
    explanation = body(outcome)
    assert explanation["words"] == ["good", "weather", "bad", "news"]
    assert explanation["target"] == 0  # predicted: tie broken towards the first class
    # a sum-pooled linear model: each word's attribution is its own logit contribution
    assert explanation["importances"] == pytest.approx([1.0, 0.0, 0.0, 0.0], abs=1e-4)


def test_text_classifier_needs_a_vocabulary(make_worker: WorkerFactory) -> None:
    with pytest.raises(HandlerError, match="vocabulary"):
        make_worker(TEXT, "text_classifier")


class FakeTorchtextVocab:
    """Stands in for a pickled torchtext Vocab: an object, not a dict or list."""


def test_text_classifier_unreadable_vocab_says_how_to_convert(
    make_worker: WorkerFactory, model_dir: Path
) -> None:
    torch.save(FakeTorchtextVocab(), model_dir / "source_vocab.pt")
    with pytest.raises(HandlerError, match="get_stoi"):
        make_worker(TEXT, "text_classifier")


def test_explanations_without_captum_are_501(
    make_worker: WorkerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker(TEXT, "text_classifier", files={"vocab.txt": "\n".join(VOCAB)})
    monkeypatch.setitem(sys.modules, "captum.attr", None)  # import fails as if not installed
    outcome = run(worker, item(b"good"), explain=True)[0]
    assert outcome.status == 501 and "pip install captum" in body(outcome)["message"]


# -- tokens ---------------------------------------------------------------------------
def test_basic_english_matches_torchtext() -> None:
    assert basic_english("Hello, World! It's (really) 3.5?") == [
        "hello", ",", "world", "!", "it", "'", "s", "(", "really", ")", "3", ".", "5", "?"]


def test_clean_and_ngrams() -> None:
    assert basic_english(clean("We can't <b>stop</b> — café!")) == ["we", "cannot", "stop", "cafe"]
    assert expand_contractions("They're here") == "they are here"
    assert ngrams(["a", "b", "c"], 2) == ["a", "b", "c", "a b", "b c"]


def test_detector_with_user_inference_keeps_boxes_as_given(
    make_worker: WorkerFactory, model_dir: Path
) -> None:
    (model_dir / "my_detector.py").write_text(textwrap.dedent(
        """
        import torch

        from torchwire.handlers.object_detector import ObjectDetector


        class Fixed(ObjectDetector):
            def inference(self, data, *args, **kwargs):
                return [{"boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0]]),
                         "labels": torch.tensor([7]), "scores": torch.tensor([0.8])}
                        for _ in data]
        """))
    worker = make_worker(DETECTOR, "my_detector.py", {"resize": 5})
    outcomes = run(worker, item(png(40, 20)), item(png(10, 10)))
    expected = [{"7": [1.0, 2.0, 3.0, 4.0], "score": pytest.approx(0.8)}]
    assert [body(o) for o in outcomes] == [expected, expected]
    sys.modules.pop("my_detector", None)


# -- request kind: one pipeline in BaseHandler, the kind from the batch --------------------
def test_builtin_handler_answers_describe_from_the_batch_kind(make_worker: WorkerFactory) -> None:
    worker = make_worker(SEGMENTER.replace("WRAP", "True"), "image_segmenter", NATIVE)
    (outcome,) = worker.run(Batch(1, (Item("d", (), {}),), DESCRIBE))
    assert outcome.status == 200 and body(outcome) is None  # no describe_handle: nothing


def test_a_clients_explain_header_does_not_make_an_explanation(
    make_worker: WorkerFactory,
) -> None:
    worker = make_worker(SEGMENTER.replace("WRAP", "True"), "image_segmenter", NATIVE)
    sneaky = Item("s", (Param("body", png(20, 10), "application/octet-stream"),),
                  {"explain": "True", "describe": "True"})
    (outcome,) = worker.run(Batch(1, (sneaky,)))
    assert outcome.status == 200
    assert np.array(body(outcome)).shape == (3, 10, 20)  # a prediction
