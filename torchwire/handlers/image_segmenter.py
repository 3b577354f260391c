"""ImageSegmenter: TorchServe's ``image_segmenter`` built-in handler.

Answers, per image, the per-pixel class probabilities shaped ``[classes, H, W]`` (so a
batch is ``[N, CL, H, W]``), rounded to ``decimals`` places (default 4) to keep the
JSON small. Models may return a tensor ``[N, CL, H, W]`` of logits or torchvision's
``{"out": ...}`` dict. Images are normalised with ImageNet's statistics and kept at
their own size unless model-config.yaml's ``handler:`` section sets ``resize``/``crop``;
images of different sizes in one batch run as one model call per size.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torchwire.errors import HandlerError
from torchwire.handlers.context import Context
from torchwire.handlers.transforms import IMAGENET_MEAN, IMAGENET_STD, handler_config
from torchwire.handlers.vision import VisionHandler

DEFAULT_DECIMALS = 4


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

    transform_defaults: ClassVar[dict[str, Any]] = {
        "resize": None, "crop": None, "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
    }
    decimals: int | None = DEFAULT_DECIMALS

    def initialize(self, context: Context) -> None:
        super().initialize(context)
        self.decimals = _decimals(handler_config(context))

    def postprocess(self, data: Any) -> list[Any]:
        import torch

        probs = torch.softmax(logits_of(data).detach().float(), dim=1).cpu().double()
        if self.decimals is not None:
            probs = torch.round(probs, decimals=self.decimals)
        return [image.tolist() for image in probs]
