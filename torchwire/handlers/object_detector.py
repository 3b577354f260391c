"""ObjectDetector: TorchServe's ``object_detector`` built-in handler.

Answers, per image, a list of detections above ``threshold`` (default 0.5), highest
score first: ``[{"dog": [x1, y1, x2, y2], "score": 0.97}, ...]``, with boxes in the
original image's pixels. The model gets a list of image tensors ``[3, H, W]`` in
``[0, 1]`` (images may differ in size) and returns torchvision's detection dicts
(``boxes``, ``labels``, ``scores``) as they are. Names come from ``index_to_name.json``.
A ``resize`` in model-config.yaml is undone on the boxes; ``crop`` is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from torchwire.errors import HandlerError
from torchwire.handlers.context import Context
from torchwire.handlers.labels import label_of
from torchwire.handlers.transforms import fraction, handler_config
from torchwire.handlers.vision import VisionHandler

if TYPE_CHECKING:
    import torch

DEFAULT_THRESHOLD = 0.5
DETECTION_KEYS = ("boxes", "labels", "scores")


def _detection(output: Any) -> tuple[Any, Any, Any]:
    if not isinstance(output, dict) or any(k not in output for k in DETECTION_KEYS):
        got = sorted(output) if isinstance(output, dict) else type(output).__name__
        raise HandlerError(f"a detection model must return dicts with boxes, labels and "
                           f"scores per image; got {got}")
    return output["boxes"], output["labels"], output["scores"]


class ObjectDetector(VisionHandler):
    """Object detection: labelled boxes with scores, per image."""

    transform_defaults: ClassVar[dict[str, Any]] = {
        "resize": None, "crop": None, "mean": None, "std": None,
    }
    threshold: float = DEFAULT_THRESHOLD

    def initialize(self, context: Context) -> None:
        config = handler_config(context)
        if config.get("crop"):
            raise HandlerError("object_detector does not crop: boxes must map back to the "
                               "whole image; remove handler.crop from model-config.yaml")
        super().initialize(context)
        self.threshold = fraction(config, "threshold", self.threshold)
        self.input_sizes: list[tuple[int, int]] = []

    def batches(self, tensors: list[torch.Tensor]) -> list[tuple[list[int], Any]]:
        """One model call with the list of images, whatever their sizes."""
        return [(list(range(len(tensors))), tensors)]

    def inference(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        import torch

        images = [image.to(self.device) for image in data]
        self.input_sizes = [(int(t.shape[-1]), int(t.shape[-2])) for t in images]
        with torch.inference_mode():
            return self.model(images, *args, **kwargs)

    def postprocess(self, data: Any) -> list[Any]:
        outputs = list(data)
        count = len(outputs)
        inputs = self.input_sizes if len(self.input_sizes) == count else self.image_sizes
        originals = self.image_sizes if len(self.image_sizes) == count else inputs
        if len(originals) != count:
            raise HandlerError(f"{type(self).__name__} cannot tell the sizes of the "
                               f"{count} images the model answered for")
        self.input_sizes = []  # this batch's; an overridden inference() sets none
        return [self.detections(out, originals[i], inputs[i]) for i, out in enumerate(outputs)]

    def detections(self, output: Any, original: tuple[int, int],
                   model_input: tuple[int, int]) -> list[dict[str, Any]]:
        """One image's detections above the threshold, boxes in its original pixels."""
        boxes, labels, scores = _detection(output)
        width, height = original
        in_w, in_h = model_input
        scale = boxes.new_tensor([width / in_w, height / in_h, width / in_w, height / in_h])
        limit = boxes.new_tensor([width, height, width, height])
        boxes = (boxes.detach().float() * scale).clamp(min=0).minimum(limit).cpu()
        found = []
        for box, label, score in zip(boxes.tolist(), labels.tolist(), scores.tolist(),
                                     strict=True):
            if score >= self.threshold:
                name = label_of(self.mapping, int(label))
                found.append({name: box, "score": score})
        return sorted(found, key=lambda d: -d["score"])
