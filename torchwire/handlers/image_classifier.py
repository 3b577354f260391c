"""ImageClassifier: TorchServe's ``image_classifier`` built-in handler.

Answers, per image, the top-k classes with their softmax probabilities, highest
first: ``{"tabby, tabby cat": 0.42, "tiger cat": 0.21, ...}``. Names come from
``index_to_name.json`` (a name, or a list whose last element is the name, as in
``["n02123045", "tabby"]``); a class without a name is answered as its index.
"""

from __future__ import annotations

from typing import Any

from torchwire.errors import HandlerError
from torchwire.handlers.context import Context
from torchwire.handlers.vision import VisionHandler, handler_config

DEFAULT_TOPK = 5


def label_of(mapping: dict[str, Any] | None, index: int) -> str:
    """The class name for ``index``; the index as a string when there is none."""
    name = mapping.get(str(index)) if mapping else None
    if isinstance(name, list | tuple):
        name = name[-1] if name else None
    return str(index) if name is None else str(name)


def _topk(config: dict[str, Any], default: int = DEFAULT_TOPK) -> int:
    value = config.get("topk", default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise HandlerError(f"model config handler.topk must be a positive int, not {value!r}")
    return value


class ImageClassifier(VisionHandler):
    """Image classification: top-k class names → probability, per image."""

    topk: int = DEFAULT_TOPK

    def initialize(self, context: Context) -> None:
        super().initialize(context)
        self.topk = _topk(handler_config(context), self.topk)

    def set_max_result_classes(self, topk: int) -> None:
        """TorchServe's setter for the number of classes answered."""
        self.topk = topk

    def get_max_result_classes(self) -> int:
        return self.topk

    def postprocess(self, data: Any) -> list[Any]:
        import torch

        logits = data.detach().float().cpu()
        probs = torch.softmax(logits.flatten(1), dim=1)
        top = torch.topk(probs, min(self.topk, probs.shape[1]), dim=1)
        return [
            {label_of(self.mapping, i): p for i, p in zip(idx, ps, strict=True)}
            for idx, ps in zip(top.indices.tolist(), top.values.tolist(), strict=True)
        ]
