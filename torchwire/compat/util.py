"""TorchServe's handler helpers (``ts.utils.util``, ``ts.handler_utils.timer``), reimplemented."""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import yaml

from torchwire.handlers.labels import load_label_mapping as read_label_mapping

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class PredictionException(Exception):
    """Raised by a handler to answer with ``error_code`` (an HTTP status) and ``message``."""

    def __init__(self, message: str, error_code: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code

    def __str__(self) -> str:
        return f"{self.message} : {self.error_code}"


def list_classes_from_module(module: ModuleType, parent_class: type | None = None) -> list[type]:
    """The classes defined in ``module`` (not imported into it), optionally of one kind."""
    classes = [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if obj.__module__ == module.__name__
    ]
    if parent_class is None:
        return classes
    return [cls for cls in classes if issubclass(cls, parent_class)]


def load_label_mapping(mapping_file_path: str | Path) -> dict[str, str] | None:
    """``{"0": "cat", ...}`` from an index_to_name.json; None (with a warning) if absent.

    A list value stands for its last element (``["n02123045", "tabby"]`` is "tabby");
    ``{"object_type_names": [...]}`` numbers the names from 0.
    """
    path = Path(mapping_file_path)
    if not path.is_file():
        log.warning("%s is missing; results will have class indices, not names", path)
        return None
    return read_label_mapping(path)


def map_class_to_label(
    probs: list[list[float]],
    mapping: dict[str, str] | None = None,
    lbl_classes: Iterable[Iterable[int]] | None = None,
) -> list[dict[str, float]]:
    """One ``{label: probability}`` per row; labels from ``mapping``, else the class index."""
    if not isinstance(probs, list):
        raise TypeError("map_class_to_label needs probs as a list (call .tolist() first)")
    if mapping is not None and not isinstance(mapping, dict):
        raise TypeError("map_class_to_label needs mapping as a dict")
    if lbl_classes is None:
        width = len(probs[0]) if probs else 0
        lbl_classes = itertools.repeat(range(width), len(probs))
    def label(index: int) -> str:
        return mapping[str(index)] if mapping is not None else str(index)

    return [
        {label(c): p for c, p in zip(classes, row, strict=False)}
        for classes, row in zip(lbl_classes, probs, strict=False)
    ]


def get_yaml_config(yaml_file_path: str | Path) -> dict[str, Any]:
    with Path(yaml_file_path).open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    return data if isinstance(data, dict) else {}


def _profiling(handler: Any) -> bool:
    config = getattr(getattr(handler, "context", None), "model_yaml_config", None) or {}
    section = config.get("handler") if isinstance(config, dict) else None
    return isinstance(section, dict) and bool(section.get("profile"))


def _record(handler: Any, name: str, millis: float) -> None:
    metrics = getattr(handler.context, "metrics", None)
    add_time = getattr(metrics, "add_time", None)
    if callable(add_time):
        add_time(name, millis)
    else:
        log.info("%s took %.2f ms", name, millis)


def timed(func: F) -> F:
    """Time a handler method when model-config.yaml has ``handler: {profile: true}``."""

    @functools.wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _profiling(self):
            return func(self, *args, **kwargs)
        start = time.perf_counter()
        result = func(self, *args, **kwargs)
        _record(self, f"ts_handler_{func.__name__}", (time.perf_counter() - start) * 1000)
        return result

    return wrapper  # type: ignore[return-value]
