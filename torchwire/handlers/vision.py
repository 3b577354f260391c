"""Image decoding and VisionHandler: TorchServe's base for image models.

``decode_image`` turns request bytes (or a base64 string, as KServe envelopes
send) into a Pillow image in RGB (or another mode a model asks for). Every
failure is an :class:`~torchwire.errors.InvalidInput`, so only the request that
sent it gets a 400.

``VisionHandler.handle`` decodes each request on its own: a request whose image
does not decode gets its 400 while the rest of the batch runs as one tensor.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageOps

from torchwire.errors import ExplanationsNotSupported, HandlerError, InvalidInput
from torchwire.handlers.base import BaseHandler
from torchwire.handlers.context import Context

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_RESIZE = 256
DEFAULT_CROP = 224
DEFAULT_MODE = "RGB"
TRANSFORM_KEYS = ("resize", "crop", "mean", "std")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
WHITE = (255, 255, 255)

Transform = Callable[[Image.Image], Any]


# -- decoding ----------------------------------------------------------------------
def _b64_bytes(text: str) -> bytes:
    """A base64 string (plain, URL-safe, unpadded, or a ``data:`` URL) to bytes."""
    text = text.strip()
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or ";base64" not in header:
            raise InvalidInput("a data: URL image must be base64-encoded (data:...;base64,...)")
    text = "".join(text.split()).replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"the input string is not valid base64: {exc}") from exc


def input_bytes(value: object) -> bytes:
    """The raw image bytes of a request value; InvalidInput for anything else."""
    if isinstance(value, str):
        raw = _b64_bytes(value)
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
    else:
        raise InvalidInput(
            f"expected image bytes, a base64 string or a UINT8 [H, W, 3] tensor, "
            f"got {type(value).__name__}"
        )
    if not raw:
        raise InvalidInput("the input is empty: expected an image")
    return raw


def _open(raw: bytes) -> Image.Image:
    """Open and fully decode ``raw``; decompression bombs count as invalid input."""
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInput(f"the image is too large (limit {limit} pixels): {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        raise InvalidInput(
            "the input is not a decodable image (JPEG, PNG, GIF, BMP, WebP, TIFF, ...)"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - Pillow plugins raise OSError, ValueError, ...
        raise InvalidInput(
            f"the input is not a decodable image: {type(exc).__name__}: {exc}"
        ) from exc
    return image


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit grayscale to 8-bit "L", scaled rather than clipped."""
    import numpy as np

    pixels = np.asarray(image)
    if image.mode in SIXTEEN_BIT_MODES or (image.mode == "I" and pixels.max(initial=0) > 255):
        pixels = pixels.astype(np.float64) / 257.0
    elif image.mode == "F" and pixels.max(initial=0.0) <= 1.0:
        pixels = pixels * 255.0
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info


def _convert(image: Image.Image, mode: str) -> Image.Image:
    """``image`` in ``mode``; transparent pixels are shown over white, as a viewer would."""
    if image.mode in (*SIXTEEN_BIT_MODES, "I", "F"):
        image = _to_8bit(image)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (*WHITE, 255)), rgba)
    return image if image.mode == mode else image.convert(mode)


def array_image(value: Any) -> Image.Image:
    """A UINT8 pixel tensor (an OIP input) as an image: ``[H, W, 3]`` RGB, ``[H, W, 4]``
    RGBA, ``[H, W]`` or ``[H, W, 1]`` grayscale; a leading batch dimension of 1 is dropped."""
    import numpy as np

    pixels = np.asarray(value)
    if pixels.dtype != np.uint8:
        raise InvalidInput(f"an image tensor must be UINT8, got {pixels.dtype}")
    if pixels.ndim == 4 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (3, 4)):
        if Image.MAX_IMAGE_PIXELS and pixels.shape[0] * pixels.shape[1] > Image.MAX_IMAGE_PIXELS:
            raise InvalidInput(f"the image is too large (limit {Image.MAX_IMAGE_PIXELS} pixels)")
        return Image.fromarray(np.ascontiguousarray(pixels))
    raise InvalidInput(f"an image tensor must have shape [H, W, 3], [H, W, 4] or [H, W], "
                       f"got {list(pixels.shape)}")


def decode_image(value: Any, mode: str = DEFAULT_MODE) -> Image.Image:
    """Decode one request's image: raw bytes of any Pillow format, base64 text, or a
    UINT8 pixel tensor (a numpy array, as OIP inputs arrive; see :func:`array_image`).

    EXIF orientation is applied; the result is in ``mode`` ("RGB" by default, "L" for
    grayscale models). Raises :class:`InvalidInput` for any input that is not a
    complete, decodable image within Pillow's ``MAX_IMAGE_PIXELS``.
    """
    if hasattr(value, "__array_interface__"):
        return _convert(array_image(value), mode)
    image = _open(input_bytes(value))
    try:
        image = ImageOps.exif_transpose(image) or image
        return _convert(image, mode)
    except InvalidInput:
        raise
    except Exception as exc:  # noqa: BLE001 - conversions of odd modes raise ValueError, ...
        raise InvalidInput(
            f"the image (mode {image.mode}) cannot be converted to {mode}: {exc}"
        ) from exc


# -- configuration -------------------------------------------------------------------
def _size(value: object, key: str) -> int | list[int]:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        return [int(v) for v in value]
    raise HandlerError(f"model config handler.{key} must be a positive int or [height, width]")


def _floats(value: object, key: str) -> list[float]:
    if isinstance(value, list | tuple) and value and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        return [float(v) for v in value]
    raise HandlerError(f"model config handler.{key} must be a list of numbers")


def handler_config(context: Context) -> dict[str, Any]:
    """The ``handler:`` section of the model's model-config.yaml (``{}`` if none)."""
    section = context.model_yaml_config.get("handler") or {}
    if not isinstance(section, dict):
        raise HandlerError("model config 'handler' must be a mapping")
    return section


def build_transform(config: dict[str, Any]) -> Transform:
    """Resize → CenterCrop → ToTensor → Normalize, ImageNet defaults unless configured.

    ``crop: null`` (or 0) leaves the crop out.
    """
    from torchvision import transforms

    steps: list[Any] = [transforms.Resize(_size(config.get("resize", DEFAULT_RESIZE), "resize"))]
    crop = config.get("crop", DEFAULT_CROP)
    if crop:
        steps.append(transforms.CenterCrop(_size(crop, "crop")))
    mean = _floats(config.get("mean", IMAGENET_MEAN), "mean")
    std = _floats(config.get("std", IMAGENET_STD), "std")
    if len(mean) != len(std) or any(s == 0 for s in std):
        raise HandlerError("model config handler.mean and handler.std must match, std non-zero")
    steps += [transforms.ToTensor(), transforms.Normalize(mean=mean, std=std)]
    return transforms.Compose(steps)


def _mode(config: dict[str, Any]) -> str:
    mode = config.get("mode", DEFAULT_MODE)
    if not isinstance(mode, str) or mode not in Image.MODES:
        raise HandlerError(f"model config handler.mode must be a Pillow mode, not {mode!r}")
    return mode


def merge_results(results: list[Any], failures: list[BaseException | None]) -> list[Any]:
    """The good rows' results in order, with each failed row's exception at its place."""
    good = iter(results)
    return [next(good) if err is None else err for err in failures]


# -- the handler ----------------------------------------------------------------------
class VisionHandler(BaseHandler):
    """Base for image models: decode, transform and batch images; one 400 per bad image.

    Subclasses may set ``image_processing`` (a class attribute, as in TorchServe) or
    configure it with ``handler: {resize, crop, mean, std, mode}`` in model-config.yaml;
    the configuration wins. Override ``preprocess_one`` for per-image changes, or
    ``preprocess`` (list of rows in, batch tensor out) to take over batching.
    """

    image_processing: Transform | None = None
    image_mode: str = DEFAULT_MODE

    def initialize(self, context: Context) -> None:
        super().initialize(context)
        config = handler_config(context)
        self.image_mode = _mode(config)
        if self.image_processing is None or any(k in config for k in TRANSFORM_KEYS):
            self.image_processing = build_transform(config)
        if not context.system_properties.get("limit_max_image_pixels", True):
            Image.MAX_IMAGE_PIXELS = None

    # -- preprocessing -----------------------------------------------------------
    def preprocess_one(self, row: dict[str, Any]) -> torch.Tensor:
        """One request's image as a CHW tensor; InvalidInput if it does not decode."""
        value = row.get("data", row.get("body")) if isinstance(row, dict) else None
        if value is None:
            raise InvalidInput("the request has no image: send it as the body or as 'data'")
        image = decode_image(value, self.image_mode)
        if self.image_processing is None:
            raise HandlerError(f"{type(self).__name__} has no image_processing transform")
        return self.image_processing(image)

    def preprocess(self, data: list[dict[str, Any]]) -> torch.Tensor:
        import torch

        return torch.stack([self.preprocess_one(row) for row in data])

    def _preprocess_rows(
        self, data: list[dict[str, Any]]
    ) -> tuple[list[torch.Tensor], list[BaseException | None]]:
        tensors: list[torch.Tensor] = []
        failures: list[BaseException | None] = []
        for row in data:
            try:
                tensors.append(self.preprocess_one(row))
                failures.append(None)
            except InvalidInput as exc:
                failures.append(exc)
        return tensors, failures

    # -- the pipeline --------------------------------------------------------------
    def _overrides_preprocess(self) -> bool:
        return type(self).preprocess is not VisionHandler.preprocess

    def _run(self, batch: torch.Tensor, rows: list[dict[str, Any]]) -> list[Any]:
        if self._is_explain():
            return self.explain_handle(batch, rows)
        return self.postprocess(self.inference(batch))

    def handle(self, data: list[dict[str, Any]], context: Context) -> list[Any]:
        """Run the batch; a request whose image fails to decode gets its own error."""
        self.context = context
        if self._overrides_preprocess():
            return self._run(self.preprocess(data), data)
        import torch

        tensors, failures = self._preprocess_rows(data)
        good_rows = [row for row, err in zip(data, failures, strict=True) if err is None]
        results = self._run(torch.stack(tensors), good_rows) if tensors else []
        if not isinstance(results, list) or len(results) != len(good_rows):
            got = len(results) if isinstance(results, list) else type(results).__name__
            raise HandlerError(
                f"{type(self).__name__} returned {got} results for {len(good_rows)} images"
            )
        return merge_results(results, failures)

    # -- explanations ----------------------------------------------------------------
    def get_insights(self, tensor_data: Any, raw_data: Any, target: Any) -> list[Any]:
        """Integrated-gradients attributions per image, if Captum is installed."""
        try:
            from captum.attr import IntegratedGradients
        except ImportError as exc:
            raise ExplanationsNotSupported(
                f"explanations for {type(self).__name__} need Captum: pip install captum"
            ) from exc
        inputs = tensor_data.to(self.device)
        attributions = IntegratedGradients(self.model).attribute(
            inputs, target=int(target), n_steps=15
        )
        return list(attributions.detach().cpu().tolist())
