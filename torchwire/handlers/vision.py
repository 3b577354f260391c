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

from typing import TYPE_CHECKING, Any, ClassVar

from PIL import Image

from torchwire.errors import HandlerError, InvalidInput
from torchwire.handlers.base import (
    BaseHandler,
    check_count,
    input_fields,
    merge_results,
    one_thread,
    regroup,
)
from torchwire.handlers.context import Context
from torchwire.handlers.images import (
    AUTO_MODE,
    DEFAULT_MODE,
    decode_image,
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


def image_fields(row: Any) -> tuple[list[tuple[str, Any]], bool]:
    """A request's images as ``(field, value)`` pairs, and whether it sent several."""
    return input_fields(row, SINGLE_FIELDS, "image")


class _Prepared:
    """The decoded images of a batch: tensors, their owners and their original sizes."""

    def __init__(self) -> None:
        self.tensors: list[torch.Tensor] = []
        self.sizes: list[tuple[int, int]] = []  # (width, height) before transforms
        self.counts: list[tuple[int, bool]] = []  # per good row: images, sent several
        self.rows: list[dict[str, Any]] = []  # per tensor: the request it came from
        self.failures: list[BaseException | None] = []


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

        An image is decoded and transformed; a JSON list of numbers is the tensor
        itself, untransformed, as in TorchServe's VisionHandler.
        """
        if isinstance(value, list):
            tensor = list_tensor(value)
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

    def _prepare_row(self, row: dict[str, Any], out: _Prepared) -> None:
        fields, several = image_fields(row)
        tensors, sizes = [], []
        for name, value in fields:
            try:
                tensor, size = self.prepare_input(value)
            except InvalidInput as exc:
                raise InvalidInput(f"field {name!r}: {exc}" if several else str(exc)) from exc
            sizes.append(size)
            tensors.append(tensor)
        out.tensors += tensors
        out.sizes += sizes
        out.rows += [row] * len(tensors)
        out.counts.append((len(tensors), several))

    def _prepare(self, data: list[dict[str, Any]]) -> _Prepared:
        out = _Prepared()
        for row in data:
            try:
                self._prepare_row(row, out)
                out.failures.append(None)
            except InvalidInput as exc:
                out.failures.append(exc)
        return out

    def batches(self, tensors: list[torch.Tensor]) -> list[tuple[list[int], Any]]:
        """Model inputs for ``tensors``: one stacked batch per distinct image shape."""
        import torch

        groups: dict[tuple[int, ...], list[int]] = {}
        for i, tensor in enumerate(tensors):
            groups.setdefault(tuple(tensor.shape), []).append(i)
        return [(idx, torch.stack([tensors[i] for i in idx])) for idx in groups.values()]

    # -- the pipeline --------------------------------------------------------------
    def _overrides_preprocess(self) -> bool:
        return type(self).preprocess is not VisionHandler.preprocess

    def _run(self, batch: Any, rows: list[dict[str, Any]]) -> list[Any]:
        if self._is_explain():
            return self.explain_handle(batch, rows)
        return self.postprocess(self.inference(batch))

    def _run_all(self, prepared: _Prepared) -> list[Any]:
        results: list[Any] = [None] * len(prepared.tensors)
        for idx, batch in self.batches(prepared.tensors):
            self.image_sizes = [prepared.sizes[i] for i in idx]
            rows = [prepared.rows[i] for i in idx]
            out = check_count(self, self._run(batch, rows), len(idx), "images")
            for i, result in zip(idx, out, strict=True):
                results[i] = result
        return results

    def handle(self, data: list[dict[str, Any]], context: Context) -> list[Any]:
        """Run the batch; a request whose image fails to decode gets its own error."""
        self.context = context
        if self._overrides_preprocess():
            self.image_sizes = []
            return self._run(self.preprocess(data), data)
        with one_thread():
            prepared = self._prepare(data)
        flat = self._run_all(prepared) if prepared.tensors else []
        return merge_results(regroup(flat, prepared.counts), prepared.failures)
