"""The ``ts`` compatibility layer: where it is importable, what its helpers do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests.conftest import ROOT
from torchwire.compat import ts_root
from torchwire.compat.util import (
    PredictionException,
    list_classes_from_module,
    load_label_mapping,
    map_class_to_label,
)
from torchwire.handlers.outcome import as_serve_error

PROBE = """
import importlib.util, json, sys
import torchwire.cli, torchwire.server, torchwire.workers.child
before = importlib.util.find_spec("ts") is not None
from torchwire.compat import enable_ts_compat
enabled = enable_ts_compat()
import ts
from ts.torch_handler.image_classifier import ImageClassifier
print(json.dumps({"before": before, "enabled": enabled, "ts": ts.__file__,
                  "fake": getattr(ts, "FAKE_TORCHSERVE", False),
                  "lazy": "ts.torch_handler.image_segmenter" not in sys.modules}))
"""


def _probe(pythonpath: list[Path]) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath)}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          env=env, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_ts_is_importable_only_after_a_worker_enables_it() -> None:
    seen = _probe([ROOT])
    assert seen["before"] is False  # importing torchwire's front never puts ts on the path
    assert seen["enabled"] is True
    assert Path(str(seen["ts"])).is_relative_to(ts_root())
    assert seen["lazy"] is True  # ts.torch_handler.image_segmenter & co. load on demand


def test_a_real_torchserve_is_never_shadowed(tmp_path: Path) -> None:
    fake = tmp_path / "site" / "ts"
    (fake / "torch_handler").mkdir(parents=True)
    (fake / "__init__.py").write_text("FAKE_TORCHSERVE = True\n")
    (fake / "torch_handler" / "__init__.py").write_text("")
    (fake / "torch_handler" / "image_classifier.py").write_text("class ImageClassifier: pass\n")
    seen = _probe([ROOT, tmp_path / "site"])
    assert seen["before"] is True
    assert seen["enabled"] is False
    assert seen["fake"] is True
    assert seen["ts"] == str(fake / "__init__.py")


def test_no_top_level_ts_package_is_installed() -> None:
    from setuptools import find_packages

    packages = find_packages(str(ROOT), include=["torchwire*"])
    assert "torchwire.compat.ts.torch_handler" in packages
    assert not [p for p in packages if p == "ts" or p.startswith("ts.")]


@pytest.mark.parametrize(("code", "status"), [(422, 422), (404, 404), (503, 503), (500, 500)])
def test_prediction_exception_sets_the_status(code: int, status: int) -> None:
    err = as_serve_error(PredictionException("no such thing", code), "h")
    assert err.status == status
    assert err.message == "no such thing"
    assert err.to_json()["code"] == status


def test_prediction_exception_defaults_and_str() -> None:
    exc = PredictionException("broken")
    assert exc.error_code == 500
    assert str(exc) == "broken : 500"


def test_map_class_to_label() -> None:
    probs = [[0.7, 0.2], [0.6, 0.3]]
    classes = [[2, 0], [1, 2]]
    mapping = {"0": "cat", "1": "dog", "2": "fox"}
    assert map_class_to_label(probs, mapping, classes) == [
        {"fox": 0.7, "cat": 0.2},
        {"dog": 0.6, "fox": 0.3},
    ]
    assert map_class_to_label([[0.5, 0.5]]) == [{"0": 0.5, "1": 0.5}]
    with pytest.raises(TypeError):
        map_class_to_label("nope")  # type: ignore[arg-type]


def test_load_label_mapping(tmp_path: Path) -> None:
    path = tmp_path / "index_to_name.json"
    assert load_label_mapping(path) is None
    path.write_text(json.dumps({"0": ["n01", "tench"], "1": "goldfish"}))
    assert load_label_mapping(path) == {"0": "tench", "1": "goldfish"}
    path.write_text(json.dumps({"object_type_names": ["bg", "person"]}))
    assert load_label_mapping(str(path)) == {"0": "bg", "1": "person"}
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_label_mapping(path)


def test_list_classes_from_module() -> None:
    from torchwire.compat import handlers

    found = list_classes_from_module(handlers)
    assert {c.__name__ for c in found} == {"BaseHandler", "VisionHandler", "ImageClassifier"}
    assert [c.__name__ for c in list_classes_from_module(handlers, handlers.VisionHandler)] == [
        "ImageClassifier", "VisionHandler"]  # fmt: skip


def test_class_defaults_cover_an_init_that_skips_super() -> None:
    from torchwire.compat.handlers import BaseHandler

    class Custom(BaseHandler):
        def __init__(self) -> None:  # as in TorchServe's docs: no super().__init__()
            self.initialized = False

    handler = Custom()
    assert handler.context is None and handler.model_pt_path is None
    assert handler._is_describe() is False and handler._is_explain() is False


def test_torchserve_flavour_layers_ts_under_torchwires_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from torchwire.compat import handlers
    from torchwire.handlers import image_classifier
    from torchwire.handlers.base import BaseHandler

    text = types.ModuleType("fake_text_handlers")
    text.TextThing = type("TextThing", (BaseHandler,), {})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_text_handlers", text)

    vision = handlers.torchserve_flavour("torchwire.handlers.image_classifier",
                                         "ImageClassifier", "ts.torch_handler.x")
    mro = vision.__mro__
    assert mro[1] is image_classifier.ImageClassifier  # torchwire's overrides win
    assert mro.index(handlers.VisionHandler) < mro.index(handlers.BaseHandler)
    assert vision.__module__ == "ts.torch_handler.x"
    plain = handlers.torchserve_flavour("fake_text_handlers", "TextThing", "ts.y")
    assert plain.__mro__[1] is text.TextThing
    assert handlers.BaseHandler in plain.__mro__
    assert handlers.VisionHandler not in plain.__mro__
    same = handlers.torchserve_flavour("torchwire.handlers.base", "BaseHandler", "ts.z")
    assert same is handlers.BaseHandler
