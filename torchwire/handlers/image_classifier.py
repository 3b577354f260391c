"""ImageClassifier: TorchServe's ``image_classifier`` built-in handler.

Answers, per image, the top-k classes with their softmax probabilities, highest
first: ``{"tabby, tabby cat": 0.42, "tiger cat": 0.21, ...}``. Names come from
``index_to_name.json``; a class without a name is answered as its index. ``topk``
(default 5) is set in model-config.yaml's ``handler:`` section.

Explanations are Integrated Gradients attributions shaped like the model's input
image tensor, for the class in the request's ``target`` or else the predicted one.
"""

from __future__ import annotations

from typing import Any

from torchwire.errors import InvalidInput
from torchwire.handlers.attributions import integrated_gradients
from torchwire.handlers.base import row_target
from torchwire.handlers.context import Context
from torchwire.handlers.labels import label_of
from torchwire.handlers.transforms import handler_config, positive_int
from torchwire.handlers.vision import VisionHandler

__all__ = ["DEFAULT_TOPK", "ImageClassifier", "label_of"]

DEFAULT_TOPK = 5


class ImageClassifier(VisionHandler):
    """Image classification: top-k class names → probability, per image."""

    topk: int = DEFAULT_TOPK

    def initialize(self, context: Context) -> None:
        super().initialize(context)
        self.topk = positive_int(handler_config(context), "topk", self.topk) or DEFAULT_TOPK

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

    # -- explanations ------------------------------------------------------------
    def explain_handle(self, data_preprocess: Any, raw_data: list[dict[str, Any]]) -> list[Any]:
        import torch

        inputs = data_preprocess.to(self.device)
        with torch.inference_mode():
            logits = self.model(inputs).flatten(1)
        classes = logits.shape[1]
        wanted = [row_target(row) for row in raw_data]
        for t in wanted:
            if t is not None and not 0 <= t < classes:
                raise InvalidInput(f"target {t} is not a class of this model (0 to {classes - 1})")
        predicted = logits.argmax(1).tolist()
        wanted = [p if t is None else t for t, p in zip(wanted, predicted, strict=True)]
        return self.get_insights(inputs, raw_data, wanted)

    def get_insights(self, tensor_data: Any, raw_data: Any, target: Any) -> list[Any]:
        """Integrated-gradients attributions per image (needs Captum)."""
        targets = target if isinstance(target, list) else [int(target)] * len(tensor_data)
        attributions, _ = integrated_gradients(self.model, tensor_data, targets)
        return list(attributions.cpu().tolist())
