"""VisionHandler: TorchServe's base for image models, batched, one 400 per bad image.

Each request is decoded on its own (:func:`~torchwire.handlers.images.decode_image`)
and transformed; the good images of the batch run through the model together, and a
request whose image does not decode gets its own 400 while the rest get answers.

A request carries its image as the raw body, as the multipart field ``data`` (or
``body``), as base64 text, or as a KServe instance ``{"data": ...}``: one image, one
answer, as in TorchServe. A multipart request with several files and no ``data``
field is answered with a list: one answer per file, in the order the files were sent.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar

from PIL import Image

from torchwire.errors import HandlerError, InvalidInput
from torchwire.handlers.base import BaseHandler, Prepared, input_fields, one_thread
from torchwire.handlers.context import Context
from torchwire.handlers.images import (
    AUTO_MODE,
    DEFAULT_MODE,
    array_tensor,
    decode_image,
    image_pixels,
    list_tensor,
    tensor_size,
)
from torchwire.handlers.transforms import (
    IMAGENET,
    TRANSFORM_KEYS,
    Transform,
    build_transform,
    handler_config,
    image_mode,
)

if TYPE_CHECKING:
    import torch

__all__ = ["AUTO_MODE", "VisionHandler", "decode_image", "handler_config", "image_fields"]

SINGLE_FIELDS = ("data", "body")


def is_tensor_input(value: Any) -> bool:
    """An array (an OIP input) that is not UINT8 image pixels."""
    return hasattr(value, "__array_interface__") and image_pixels(value) is None


def image_fields(row: Any) -> tuple[list[tuple[str, Any]], bool]:
    """A request's images as ``(field, value)`` pairs, and whether it sent several."""
    return input_fields(row, SINGLE_FIELDS, "image")


class VisionHandler(BaseHandler):
    """Base for image models: decode, transform and batch images; one 400 per bad image.

    Subclasses may set ``image_processing`` (a class attribute, as in TorchServe) or
    configure it with ``handler: {resize, crop, mean, std, mode}`` in model-config.yaml;
    the configuration wins. ``transform_defaults`` holds the class's own defaults.
    Override ``preprocess_image`` for per-image changes, ``batches`` to change how
    images are put together, or ``preprocess`` (rows in, model input out) to take
    over batching entirely. ``image_sizes`` holds, while a batch runs, each image's
    ``(width, height)`` as it was decoded, in batch order.
    """

    image_processing: Transform | None = None
    image_mode: str = DEFAULT_MODE
    input_noun = "images"
    transform_defaults: ClassVar[dict[str, Any]] = IMAGENET

    def initialize(self, context: Context) -> None:
        super().initialize(context)
        config = handler_config(context)
        self.image_mode = image_mode(config, self.image_mode)
        if self.image_processing is None or any(k in config for k in TRANSFORM_KEYS):
            self.image_processing = build_transform(config, self.transform_defaults)
        self.image_sizes: list[tuple[int, int]] = []
        if not context.system_properties.get("limit_max_image_pixels", True):
            Image.MAX_IMAGE_PIXELS = None

    # -- preprocessing -----------------------------------------------------------
    def decode(self, value: Any) -> Image.Image:
        return decode_image(value, self.image_mode)

    def preprocess_image(self, image: Image.Image) -> torch.Tensor:
        """One decoded image as the model's input tensor (CHW)."""
        if self.image_processing is None:
            raise HandlerError(f"{type(self).__name__} has no image_processing transform")
        return self.image_processing(image)

    def prepare_input(self, value: Any) -> tuple[torch.Tensor, tuple[int, int]]:
        """One input as the model's tensor and its ``(width, height)`` as decoded.

        An image is decoded and transformed; a JSON list of numbers, or a numeric OIP
        tensor that is not UINT8 image pixels, is the tensor itself, untransformed, as
        in TorchServe's VisionHandler.
        """
        if isinstance(value, list) or is_tensor_input(value):
            tensor = list_tensor(value) if isinstance(value, list) else array_tensor(value)
            return tensor, tensor_size(tensor)
        image = self.decode(value)
        return self.preprocess_image(image), image.size

    def preprocess_one(self, row: dict[str, Any]) -> torch.Tensor:
        """One request's (first) image as a CHW tensor; InvalidInput if it does not decode."""
        (_, value), *_ = image_fields(row)[0]
        return self.prepare_input(value)[0]

    def preprocess(self, data: list[dict[str, Any]]) -> Any:
        """TorchServe's contract: one image per row, stacked into one batch tensor."""
        import torch

        return torch.stack([self.preprocess_one(row) for row in data])

    def prepare(self, data: list[dict[str, Any]]) -> Prepared:
        self._decoded_sizes: list[tuple[int, int]] = []  # per input, as prepare_row adds them
        return super().prepare(data)

    def prepare_row(self, row: dict[str, Any]) -> tuple[list[Any], bool]:
        fields, several = image_fields(row)
        tensors, sizes = [], []
        for name, value in fields:
            try:
                tensor, size = self.prepare_input(value)
            except InvalidInput as exc:
                raise InvalidInput(f"field {name!r}: {exc}" if several else str(exc)) from exc
            sizes.append(size)
            tensors.append(tensor)
        self._decoded_sizes += sizes
        return tensors, several

    def decoding(self) -> AbstractContextManager[Any]:
        return one_thread()  # per-image transforms gain nothing from many threads

    def begin_group(self, positions: list[int]) -> None:
        self.image_sizes = [self._decoded_sizes[i] for i in positions]

    def batches(self, tensors: list[torch.Tensor]) -> list[tuple[list[int], Any]]:
        """Model inputs for ``tensors``: one stacked batch per distinct image shape."""
        import torch

        groups: dict[tuple[int, ...], list[int]] = {}
        for i, tensor in enumerate(tensors):
            groups.setdefault(tuple(tensor.shape), []).append(i)
        return [(idx, torch.stack([tensors[i] for i in idx])) for idx in groups.values()]
