"""VisionHandler and ImageClassifier run in-process through the worker loop."""

from __future__ import annotations

import base64
import importlib
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

from torchwire.errors import InvalidInput
from torchwire.handlers.image_classifier import label_of
from torchwire.handlers.vision import VisionHandler, decode_image
from torchwire.protocol import (
    EXPLAIN,
    PREDICT,
    Batch,
    Item,
    Kind,
    Outcome,
    Param,
    WorkerSpec,
)
from torchwire.workers.child import Worker, load

TINY_MODEL = textwrap.dedent(
    """
    import torch
    from torch import nn


    class TinyNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, kernel_size=3, stride=2)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))
    """
)
SMALL = {"resize": 32, "crop": 28}


# -- images ---------------------------------------------------------------------
def encode(image: Image.Image, fmt: str = "PNG", **kw: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def gradient(size: tuple[int, int] = (40, 30)) -> Image.Image:
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.float64)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float64)[:, None].repeat(w, 1)
    rgb = np.stack([x, y, 255 - x], axis=2).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def jpeg() -> bytes:
    return encode(gradient(), "JPEG", quality=90)


# -- a tiny model dir and its worker -------------------------------------------------
def tiny_net() -> dict[str, Any]:
    """A fresh TinyNet's state dict, from the model.py on sys.path."""
    module = importlib.import_module("model")
    return dict(module.TinyNet().state_dict())


@pytest.fixture
def model_dir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "model.py").write_text(TINY_MODEL)
    sys.path.insert(0, str(tmp_path))
    torch.manual_seed(0)
    torch.save(tiny_net(), tmp_path / "tiny.pt")
    saved_path = list(sys.path)
    yield tmp_path
    sys.path[:] = [p for p in saved_path if p != str(tmp_path)]
    sys.modules.pop("model", None)


def manifest(handler: str = "image_classifier") -> dict[str, Any]:
    return {
        "runtime": "python",
        "model": {
            "modelName": "tiny",
            "modelVersion": "1.0",
            "handler": handler,
            "serializedFile": "tiny.pt",
            "modelFile": "model.py",
        },
    }


WorkerFactory = Callable[..., Worker]


@pytest.fixture
def make_worker(model_dir: Path) -> WorkerFactory:
    def make(
        handler_cfg: dict[str, Any] | None = None,
        labels: dict[str, Any] | None = None,
        handler: str = "image_classifier",
    ) -> Worker:
        if labels is not None:
            (model_dir / "index_to_name.json").write_text(json.dumps(labels))
        spec = WorkerSpec(
            model_name="tiny",
            model_version="1.0",
            model_dir=str(model_dir),
            manifest=manifest(handler),
            handler=handler,
            batch_size=8,
            max_batch_delay=10,
            gpu_id=None,
            threads=1,
            model_yaml_config={"handler": dict(SMALL if handler_cfg is None else handler_cfg)},
        )
        return load(spec)

    return make


def item(value: Any, ctype: str = "application/octet-stream", name: str = "body") -> Item:
    return Item(request_id=f"r{id(value)}", params=(Param(name, value, ctype),), headers={})


def run(worker: Worker, *values: Any, explain: bool = False) -> list[Outcome]:
    kind: Kind = EXPLAIN if explain else PREDICT
    return worker.run(Batch(batch_id=1, items=tuple(item(v) for v in values), kind=kind))


def body(outcome: Outcome) -> Any:
    return json.loads(outcome.body)


def assert_topk(outcome: Outcome, k: int) -> dict[str, float]:
    assert outcome.status == 200, outcome.body
    result = body(outcome)
    probs = list(result.values())
    assert len(result) == k
    assert probs == sorted(probs, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probs)
    assert sum(probs) <= 1.0 + 1e-6
    return result


def assert_invalid(outcome: Outcome, words: str) -> None:
    assert outcome.status == 400
    err = body(outcome)
    assert err["code"] == 400
    assert err["type"] == "InvalidInputException"
    assert words in err["message"]


# -- decode_image ------------------------------------------------------------------
def test_rgba_png_is_rgb_over_white() -> None:
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:5, :, 3] = 255  # top half opaque red, bottom half fully transparent
    image = decode_image(encode(Image.fromarray(rgba, "RGBA")))
    assert image.mode == "RGB" and image.size == (10, 10)
    assert image.getpixel((0, 0)) == (200, 0, 0)
    assert image.getpixel((0, 9)) == (255, 255, 255)


def test_palette_png() -> None:
    palette = gradient().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    image = decode_image(encode(palette))
    assert image.mode == "RGB" and image.size == (40, 30)


def test_palette_with_transparency() -> None:
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 10, 20, 30])
    palette.putpixel((0, 0), 1)
    image = decode_image(encode(palette, transparency=0))
    assert image.getpixel((0, 0)) == (10, 20, 30)
    assert image.getpixel((3, 3)) == (255, 255, 255)


def test_grayscale_png_as_rgb_and_as_l() -> None:
    data = encode(gradient().convert("L"))
    rgb = decode_image(data)
    assert rgb.mode == "RGB"
    r, g, b = rgb.getpixel((5, 5))  # type: ignore[misc]
    assert r == g == b
    assert decode_image(data, mode="L").mode == "L"


def test_sixteen_bit_grayscale_is_scaled_not_clipped() -> None:
    pixels = np.full((4, 4), 32896, np.uint16)  # half of 65535
    image = decode_image(encode(Image.fromarray(pixels)))
    assert image.getpixel((0, 0)) == (128, 128, 128)


def test_la_and_cmyk() -> None:
    assert decode_image(encode(gradient().convert("LA"))).mode == "RGB"
    assert decode_image(encode(gradient().convert("CMYK"), "JPEG")).mode == "RGB"


def test_jpeg_bytes_and_bytearray() -> None:
    assert decode_image(jpeg()).size == (40, 30)
    assert decode_image(bytearray(jpeg())).mode == "RGB"


def test_base64_string_and_data_url() -> None:
    text = base64.b64encode(jpeg()).decode()
    assert decode_image(text).size == (40, 30)
    assert decode_image(f"data:image/jpeg;base64,{text}").size == (40, 30)
    assert decode_image(text.rstrip("=") + "\n").size == (40, 30)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (b"", "empty"),
        (b"definitely not an image", "not a decodable image"),
        (jpeg()[: len(jpeg()) // 2], "not a decodable image"),
        ("%%% not base64 %%%", "not valid base64"),
        ("", "empty"),
        ("data:image/png,rawdata", "base64"),
    ],
    ids=["empty", "garbage", "truncated-jpeg", "bad-base64", "empty-str", "data-url-raw"],
)
def test_decode_failures_are_invalid_input(value: Any, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        decode_image(value)


def test_truncated_png_is_invalid_input() -> None:
    data = encode(gradient((200, 200)))
    with pytest.raises(InvalidInput, match="not a decodable image"):
        decode_image(data[:-200])


def test_non_bytes_value_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="expected image bytes"):
        decode_image([1, 2, 3])  # type: ignore[arg-type]


def test_decompression_bomb_is_invalid_input(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(gradient((100, 100)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # over twice the limit: an error
    with pytest.raises(InvalidInput, match="too large"):
        decode_image(data)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 8000)  # over the limit but under 2x
    with pytest.raises(InvalidInput, match="too large"):
        decode_image(data)


# -- the handlers through the worker loop -------------------------------------------
def test_batch_with_one_corrupt_image(make_worker: WorkerFactory) -> None:
    worker = make_worker()
    b64 = base64.b64encode(encode(gradient().convert("RGBA"))).decode()
    outcomes = run(worker, jpeg(), b"\x89PNG\r\n\x1a\n garbage", encode(gradient()), b64)
    assert len(outcomes) == 4
    for i in (0, 2, 3):
        assert_topk(outcomes[i], 3)
    assert_invalid(outcomes[1], "not a decodable image")


def test_good_rows_run_as_one_batch(make_worker: WorkerFactory) -> None:
    worker = make_worker()
    handler = worker.service.instance
    shapes: list[tuple[int, ...]] = []
    original = handler.inference

    def spy(batch: torch.Tensor, *a: Any, **kw: Any) -> Any:
        shapes.append(tuple(batch.shape))
        return original(batch, *a, **kw)

    handler.inference = spy
    outcomes = run(worker, jpeg(), b"junk", jpeg(), jpeg())
    assert [o.status for o in outcomes] == [200, 400, 200, 200]
    assert shapes == [(3, 3, 28, 28)]


def test_same_image_same_answer_alone_or_batched(make_worker: WorkerFactory) -> None:
    worker = make_worker()
    alone = body(run(worker, jpeg())[0])
    batched = run(worker, encode(gradient((64, 64))), jpeg(), b"")
    assert body(batched[1]) == pytest.approx(alone)


def test_truncated_jpeg_is_400(make_worker: WorkerFactory) -> None:
    data = jpeg()
    assert_invalid(run(make_worker(), data[: len(data) // 2])[0], "not a decodable image")


def test_empty_body_is_400(make_worker: WorkerFactory) -> None:
    assert_invalid(run(make_worker(), b"")[0], "empty")


def test_all_rows_bad(make_worker: WorkerFactory) -> None:
    outcomes = run(make_worker(), b"", b"nope")
    assert [o.status for o in outcomes] == [400, 400]


def test_base64_data_param(make_worker: WorkerFactory) -> None:
    text = base64.b64encode(jpeg()).decode()
    outcome = make_worker().run(Batch(1, (item(text, ctype="", name="data"),)))[0]
    assert_topk(outcome, 3)


def test_default_transform_is_imagenet_224(make_worker: WorkerFactory) -> None:
    worker = make_worker(handler_cfg={})
    handler = worker.service.instance
    tensor = handler.preprocess_one({"body": encode(gradient((300, 400)))})
    assert tuple(tensor.shape) == (3, 224, 224)
    assert_topk(run(worker, jpeg())[0], 3)


def test_topk_from_model_config(make_worker: WorkerFactory) -> None:
    worker = make_worker(handler_cfg={**SMALL, "topk": 2})
    assert_topk(run(worker, jpeg())[0], 2)


def test_topk_larger_than_classes(make_worker: WorkerFactory) -> None:
    assert_topk(run(make_worker(handler_cfg={**SMALL, "topk": 10}), jpeg())[0], 3)


def test_grayscale_mode_config(make_worker: WorkerFactory, model_dir: Path) -> None:
    model_file = model_dir / "model.py"
    model_file.write_text(model_file.read_text().replace("nn.Conv2d(3,", "nn.Conv2d(1,"))
    sys.modules.pop("model", None)
    torch.save(tiny_net(), model_dir / "tiny.pt")
    cfg = {**SMALL, "mode": "L", "mean": [0.5], "std": [0.25]}
    assert_topk(run(make_worker(handler_cfg=cfg), jpeg())[0], 3)


def test_labels_with_list_values(make_worker: WorkerFactory) -> None:
    labels = {"0": ["n01", "cat"], "1": ["n02", "dog"], "2": ["n03", "tabby, tabby cat"]}
    result = assert_topk(run(make_worker(labels=labels), jpeg())[0], 3)
    assert set(result) == {"cat", "dog", "tabby, tabby cat"}


def test_labels_with_string_values_and_gaps(make_worker: WorkerFactory) -> None:
    result = assert_topk(run(make_worker(labels={"0": "cat", "2": "bird"}), jpeg())[0], 3)
    assert set(result) == {"cat", "1", "bird"}


def test_without_labels_the_index_is_the_name(make_worker: WorkerFactory) -> None:
    result = assert_topk(run(make_worker(), jpeg())[0], 3)
    assert set(result) == {"0", "1", "2"}


def test_label_of() -> None:
    assert label_of(None, 7) == "7"
    assert label_of({"7": "x"}, 7) == "x"
    assert label_of({"8": "x"}, 7) == "7"


def test_explain_without_captum_is_501(
    make_worker: WorkerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker()
    monkeypatch.setitem(sys.modules, "captum.attr", None)  # import fails as if not installed
    outcome = run(worker, jpeg(), explain=True)[0]
    assert outcome.status == 501
    assert "pip install captum" in body(outcome)["message"]


def test_explain_is_shaped_like_the_input(make_worker: WorkerFactory) -> None:
    outcomes = run(make_worker(), jpeg(), b"junk", encode(gradient((64, 64))), explain=True)
    assert [o.status for o in outcomes] == [200, 400, 200]
    for outcome in (outcomes[0], outcomes[2]):
        attributions = np.array(body(outcome))
        assert attributions.shape == (3, 28, 28) and np.isfinite(attributions).all()


def test_user_preprocess_override_still_used(make_worker: WorkerFactory, model_dir: Path) -> None:
    (model_dir / "my_handler.py").write_text(
        textwrap.dedent(
            """
            import torch

            from torchwire.handlers.image_classifier import ImageClassifier


            class MyHandler(ImageClassifier):
                def preprocess(self, data):
                    return torch.zeros(len(data), 3, 28, 28)
            """
        )
    )
    outcomes = run(make_worker(handler="my_handler.py"), b"not an image", b"")
    assert [o.status for o in outcomes] == [200, 200]
    sys.modules.pop("my_handler", None)


def test_bad_handler_config_fails_load(make_worker: WorkerFactory) -> None:
    from torchwire.errors import HandlerError

    with pytest.raises(HandlerError, match="topk"):
        make_worker(handler_cfg={"topk": 0})
    with pytest.raises(HandlerError, match="resize"):
        make_worker(handler_cfg={"resize": "big"})


def test_vision_handler_is_a_base_handler() -> None:
    from torchwire.handlers.base import BaseHandler

    assert issubclass(VisionHandler, BaseHandler)
