"""Image transforms from a model's ``handler:`` settings in model-config.yaml.

Keys: ``resize`` (shorter side, or ``[height, width]``), ``crop`` (centre crop),
``mean`` and ``std`` (normalisation per channel), ``mode`` (Pillow mode the image is
converted to: ``RGB``, ``L`` for grayscale models). ``null`` (or 0) leaves a step out.
Each handler class has its own defaults (TorchServe's): the classifier resizes to
256, crops 224 and normalises with ImageNet's statistics; the detector only turns
the image into a tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PIL import Image

from torchwire.errors import HandlerError
from torchwire.handlers.context import Context
from torchwire.handlers.images import AUTO_MODE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_RESIZE = 256
DEFAULT_CROP = 224
TRANSFORM_KEYS = ("resize", "crop", "mean", "std")
IMAGENET: dict[str, Any] = {
    "resize": DEFAULT_RESIZE,
    "crop": DEFAULT_CROP,
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
}

Transform = Callable[[Image.Image], Any]


def handler_config(context: Context) -> dict[str, Any]:
    """The ``handler:`` section of the model's model-config.yaml (``{}`` if none)."""
    section = context.model_yaml_config.get("handler") or {}
    if not isinstance(section, dict):
        raise HandlerError("model config 'handler' must be a mapping")
    return section


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


def _normalize(settings: dict[str, Any]) -> Any:
    from torchvision import transforms

    mean, std = settings.get("mean"), settings.get("std")
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise HandlerError("model config handler.mean and handler.std go together")
    mean, std = _floats(mean, "mean"), _floats(std, "std")
    if len(mean) != len(std) or any(s == 0 for s in std):
        raise HandlerError("model config handler.mean and handler.std must match, std non-zero")
    return transforms.Normalize(mean=mean, std=std)


def transform_settings(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The handler's defaults with the configured keys laid over them."""
    return {**defaults, **{k: config[k] for k in TRANSFORM_KEYS if k in config}}


def build_transform(config: dict[str, Any], defaults: dict[str, Any] = IMAGENET) -> Transform:
    """Resize → CenterCrop → ToTensor → Normalize, each step present if its setting is."""
    from torchvision import transforms

    settings = transform_settings(config, defaults)
    steps: list[Any] = []
    if settings.get("resize"):
        steps.append(transforms.Resize(_size(settings["resize"], "resize")))
    if settings.get("crop"):
        steps.append(transforms.CenterCrop(_size(settings["crop"], "crop")))
    steps.append(transforms.ToTensor())
    normalize = _normalize(settings)
    if normalize is not None:
        steps.append(normalize)
    return transforms.Compose(steps)


def image_mode(config: dict[str, Any], default: str) -> str:
    mode = config.get("mode", default)
    if not isinstance(mode, str) or (mode not in Image.MODES and mode != AUTO_MODE):
        raise HandlerError(
            f"model config handler.mode must be a Pillow mode or 'auto', not {mode!r}"
        )
    return mode


def positive_int(config: dict[str, Any], key: str, default: int | None) -> int | None:
    """``handler.<key>`` as a positive int (``default`` when absent)."""
    value = config.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise HandlerError(f"model config handler.{key} must be a positive int, not {value!r}")
    return value


def fraction(config: dict[str, Any], key: str, default: float) -> float:
    """``handler.<key>`` as a number between 0 and 1."""
    value = config.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
        raise HandlerError(f"model config handler.{key} must be a number in [0, 1], not {value!r}")
    return float(value)
