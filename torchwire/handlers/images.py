"""Image decoding: request bytes (or base64 text) to a Pillow image in the model's mode.

``decode_image`` accepts raw bytes of any format Pillow reads, or base64 text (plain,
URL-safe, unpadded, a ``data:`` URL, or a ``{"b64": ...}`` object as KServe clients
send). Every failure is an :class:`~torchwire.errors.InvalidInput`, so only the
request that sent it gets a 400.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from typing import Any

from PIL import Image, ImageOps

from torchwire.errors import InvalidInput

DEFAULT_MODE = "RGB"
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
AUTO_MODE = "auto"  # grayscale images become "L", all others "RGB"
GRAYSCALE_MODES = ("1", "L", "LA", "La", "I", "F", *SIXTEEN_BIT_MODES)
WHITE = (255, 255, 255)
B64_KEYS = ("b64", "data")


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
    if isinstance(value, dict):
        value = next((value[k] for k in B64_KEYS if isinstance(value.get(k), str)), value)
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


def image_pixels(value: Any) -> Any:
    """``value`` as image pixels, when it is a UINT8 array shaped like an image:
    ``[H, W, 3]`` RGB, ``[H, W, 4]`` RGBA, ``[H, W]`` or ``[H, W, 1]`` grayscale, with an
    optional leading batch dimension of 1; None for any other array."""
    import numpy as np

    pixels = np.asarray(value)
    if pixels.dtype != np.uint8:
        return None
    if pixels.ndim == 4 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (3, 4)):
        return pixels
    return None


def array_image(pixels: Any) -> Image.Image:
    """Pixels from :func:`image_pixels` as an image, within ``MAX_IMAGE_PIXELS``."""
    import numpy as np

    if Image.MAX_IMAGE_PIXELS and pixels.shape[0] * pixels.shape[1] > Image.MAX_IMAGE_PIXELS:
        raise InvalidInput(f"the image is too large (limit {Image.MAX_IMAGE_PIXELS} pixels)")
    return Image.fromarray(np.ascontiguousarray(pixels))


def array_tensor(value: Any) -> Any:
    """A numeric array that is not image pixels (an OIP tensor such as FP32 ``[1, 28,
    28]``) as a float32 tensor, the model input as it is, as TorchServe's VisionHandler
    takes a KServe v2 tensor; InvalidInput for strings, objects or an empty array."""
    import numpy as np
    import torch

    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise InvalidInput(f"expected image bytes, a base64 string or a numeric tensor, "
                           f"got a {array.dtype} array")
    if array.size == 0:
        raise InvalidInput("the input is an empty tensor: expected an image or a tensor")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def decode_image(value: object, mode: str = DEFAULT_MODE) -> Image.Image:
    """Decode one request's image: raw bytes of any Pillow format, or base64 text.

    EXIF orientation is applied; the result is in ``mode`` ("RGB" by default, "L" for
    grayscale models, "auto" for "L" when the image is grayscale and "RGB" otherwise).
    Raises :class:`InvalidInput` for any input that is not a complete, decodable image
    within Pillow's ``MAX_IMAGE_PIXELS``.
    """
    if hasattr(value, "__array_interface__"):
        pixels = image_pixels(value)
        if pixels is None:
            raise InvalidInput("an image tensor must be UINT8 [H, W, 3], [H, W, 4] or [H, W]")
        image = array_image(pixels)
        if mode == AUTO_MODE:
            mode = "L" if image.mode in GRAYSCALE_MODES else "RGB"
        return _convert(image, mode)
    image = _open(input_bytes(value))
    try:
        image = ImageOps.exif_transpose(image) or image
        if mode == AUTO_MODE:
            mode = "L" if image.mode in GRAYSCALE_MODES else "RGB"
        return _convert(image, mode)
    except InvalidInput:
        raise
    except Exception as exc:  # noqa: BLE001 - conversions of odd modes raise ValueError, ...
        raise InvalidInput(
            f"the image (mode {image.mode}) cannot be converted to {mode}: {exc}"
        ) from exc


def list_tensor(value: list[Any]) -> Any:
    """A JSON list of numbers (nested to any depth) as a float32 tensor, as TorchServe's
    VisionHandler takes it: the model input as it is, no image transform applied."""
    import torch

    try:
        tensor = torch.tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidInput(
            f"a JSON list input must be numbers in nested lists of equal lengths: {exc}"
        ) from exc
    if tensor.numel() == 0:
        raise InvalidInput("the input is an empty list: expected an image or a tensor")
    return tensor


def tensor_size(tensor: Any) -> tuple[int, int]:
    """``(width, height)`` of a ``[..., H, W]`` tensor (a 1-D one is one row)."""
    shape = tuple(tensor.shape)
    if len(shape) < 2:
        return (shape[0] if shape else 1, 1)
    return (int(shape[-1]), int(shape[-2]))
