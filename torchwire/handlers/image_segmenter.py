"""ImageSegmenter: TorchServe's ``image_segmenter`` built-in handler.

Answers, per image, the per-pixel class probabilities shaped ``[classes, H, W]`` (so a
batch is ``[N, CL, H, W]``), rounded to ``decimals`` places (default 4) to keep the
JSON small; ``output: classes`` answers TorchServe's compact ``[H, W, 2]`` instead
(each pixel's top class and its probability). Models may return a tensor
``[N, CL, H, W]`` of logits or torchvision's ``{"out": ...}`` dict. Transforms are
TorchServe's (resize 256, centre crop 224, ImageNet normalisation) unless
model-config.yaml's ``handler:`` section says otherwise (``resize: null`` and
``crop: null`` keep each image's own size; images of different sizes in one batch
then run as one model call per size).
"""

from __future__ import annotations

from typing import Any

from torchwire.errors import HandlerError
from torchwire.handlers.context import Context
from torchwire.handlers.transforms import handler_config
from torchwire.handlers.vision import VisionHandler

DEFAULT_DECIMALS = 4
OUTPUTS = ("probabilities", "classes")


def _decimals(config: dict[str, Any]) -> int | None:
    value = config.get("decimals", DEFAULT_DECIMALS)
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise HandlerError(f"model config handler.decimals must be an int >= 0 or null, not {value!r}")


def logits_of(output: Any) -> Any:
    """The ``[N, CL, H, W]`` tensor of a segmentation model's output."""
    if isinstance(output, dict):
        if "out" not in output:
            raise HandlerError(f"the segmentation model returned a dict without 'out': "
                               f"{sorted(output)}")
        output = output["out"]
    shape = getattr(output, "shape", None)
    if shape is None or len(shape) != 4:
        raise HandlerError(f"the segmentation model must return [N, classes, H, W], got "
                           f"{tuple(shape) if shape is not None else type(output).__name__}")
    return output


class ImageSegmenter(VisionHandler):
    """Semantic segmentation: class probabilities per pixel, ``[classes, H, W]`` per image."""


    decimals: int | None = DEFAULT_DECIMALS
    output: str = "probabilities"

    def initialize(self, context: Context) -> None:
        super().initialize(context)
        config = handler_config(context)
        self.decimals = _decimals(config)
        self.output = config.get("output", self.output)
        if self.output not in OUTPUTS:
            raise HandlerError(f"model config handler.output must be one of {OUTPUTS}, "
                               f"not {self.output!r}")

    def postprocess(self, data: Any) -> list[Any]:
        import torch

        probs = torch.softmax(logits_of(data).detach().float(), dim=1).cpu().double()
        if self.output == "classes":
            top = probs.max(dim=1)
            probs = torch.stack([top.indices.to(probs.dtype), top.values], dim=3)
        if self.decimals is not None:
            probs = torch.round(probs, decimals=self.decimals)
        return [image.tolist() for image in probs]
