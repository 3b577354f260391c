"""TorchServe's handler classes as thin layers over torchwire's.

Each adds what TorchServe handlers rely on and torchwire's own classes do without:
the attributes TorchServe's ``BaseHandler.__init__`` sets (present as class defaults,
so a subclass whose ``__init__`` skips ``super().__init__()`` still works), the
``_load_torchscript_model`` / ``_load_pickled_model`` hooks, and images kept in
their own colour family ("L" stays grayscale, as TorchServe leaves them).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from torchwire.errors import HandlerError
from torchwire.handlers.base import BaseHandler as _BaseHandler
from torchwire.handlers.context import Context
from torchwire.handlers.image_classifier import ImageClassifier as _ImageClassifier
from torchwire.handlers.vision import AUTO_MODE
from torchwire.handlers.vision import VisionHandler as _VisionHandler


class BaseHandler(_BaseHandler):
    """``ts.torch_handler.base_handler.BaseHandler`` on top of torchwire's."""

    model: Any = None
    mapping: dict[str, Any] | None = None
    device: Any = None
    initialized = False
    context: Context | None = None
    model_pt_path: str | None = None
    map_location: str | None = None
    explain = False
    target = 0

    def __init__(self) -> None:
        super().__init__()
        self.profiler_args: dict[str, Any] = {}

    def initialize(self, context: Context) -> None:
        model_info = context.manifest.get("model") or {}
        serialized = model_info.get("serializedFile")
        model_dir = context.system_properties["model_dir"]
        self.model_pt_path = os.path.join(model_dir, serialized) if serialized else None
        super().initialize(context)

    def load_model(self, model_dir: Path) -> Any:
        self.map_location = getattr(self.device, "type", None)
        model_file = (self.manifest.get("model") or {}).get("modelFile")
        if model_file:
            model = self._load_pickled_model(str(model_dir), model_file, self.model_pt_path)
            model.to(self.device)
        elif self.model_pt_path:
            model = self._load_torchscript_model(self.model_pt_path)
        else:
            raise HandlerError(
                "No model weights could be loaded: the manifest names neither a modelFile "
                "nor a serializedFile"
            )
        model.eval()
        return model

    def _load_torchscript_model(self, model_pt_path: str) -> Any:
        import torch

        return torch.jit.load(model_pt_path, map_location=self.device)

    def _load_pickled_model(
        self, model_dir: str, model_file: str, model_pt_path: str | None
    ) -> Any:
        path = Path(model_dir) / model_file
        if not path.is_file():
            raise HandlerError(f"Missing the model file {model_file} in {model_dir}")
        return self._load_eager(path, Path(model_pt_path) if model_pt_path else None)

    def get_device(self) -> Any:
        return self.device


class VisionHandler(BaseHandler, _VisionHandler):
    """``ts.torch_handler.vision_handler.VisionHandler``: images keep their colour family."""

    image_mode = AUTO_MODE


class ImageClassifier(_ImageClassifier, VisionHandler):
    """``ts.torch_handler.image_classifier.ImageClassifier``.

    torchwire's class comes first, so what it overrides wins over the TorchServe layer;
    the layer still comes before torchwire's VisionHandler and BaseHandler.
    """


def torchserve_flavour(module: str, name: str, as_module: str) -> type:
    """torchwire's handler class ``module.name`` with the TorchServe layer mixed in.

    As for :class:`ImageClassifier`, torchwire's class comes first in the MRO. Imports
    ``module`` now, so call it only from the ``ts`` module that stands for it.
    """
    base = getattr(importlib.import_module(module), name)
    layer = VisionHandler if issubclass(base, _VisionHandler) else BaseHandler
    if issubclass(layer, base):  # torchwire's BaseHandler or VisionHandler itself
        return layer
    return type(name, (base, layer), {"__module__": as_module, "__doc__": base.__doc__})


__all__ = ["BaseHandler", "ImageClassifier", "VisionHandler", "torchserve_flavour"]
