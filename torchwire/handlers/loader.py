"""Turn a manifest's handler string into a service with ``initialize`` and ``handle``."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from torchwire.errors import HandlerError
from torchwire.handlers.base import import_file
from torchwire.handlers.context import Context

BUILTIN_HANDLERS: dict[str, str] = {
    "base_handler": "torchwire.handlers.base:BaseHandler",
    "image_classifier": "torchwire.handlers.image_classifier:ImageClassifier",
    "image_segmenter": "torchwire.handlers.image_segmenter:ImageSegmenter",
    "object_detector": "torchwire.handlers.object_detector:ObjectDetector",
    "text_classifier": "torchwire.handlers.text_classifier:TextClassifier",
}

HandleFn = Callable[[Any, Context], Any]


@dataclass
class Service:
    """A loaded handler: what the worker loop calls."""

    name: str
    handle: HandleFn
    initialize: Callable[[Context], Any]
    instance: Any = None


def split_handler(handler: str) -> tuple[str, str | None]:
    """``"mod:fn"`` → ``("mod", "fn")``; ``"mod"`` → ``("mod", None)``."""
    module, sep, attr = handler.rpartition(":")
    if sep and attr.isidentifier():
        return module, attr
    return handler, None


def import_handler_module(name: str, model_dir: Path) -> ModuleType:
    """Import a handler from a file in the model dir, else as an installed module."""
    candidate = model_dir / (name if name.endswith(".py") else f"{name}.py")
    if candidate.is_file():
        return import_file(candidate)
    if name.endswith(".py"):
        raise HandlerError(f"handler file {name} not found in the model archive")
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise HandlerError(f"cannot import handler module {name!r}: {exc}") from exc


def _defined_classes(module: ModuleType) -> list[type]:
    return [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if obj.__module__ == module.__name__
    ]


def _class_service(name: str, cls: type) -> Service:
    instance = cls()
    if not callable(getattr(instance, "handle", None)):
        raise HandlerError(f"handler class {cls.__name__} in {name} has no handle() method")
    init = getattr(instance, "initialize", None) or (lambda ctx: None)
    return Service(name=name, handle=instance.handle, initialize=init, instance=instance)


def _function_service(name: str, fn: HandleFn) -> Service:
    return Service(name=name, handle=fn, initialize=lambda ctx: fn(None, ctx))


def _module_and_attr(handler: str, model_dir: Path) -> tuple[ModuleType, str | None]:
    module_name, attr = split_handler(handler)
    builtin = BUILTIN_HANDLERS.get(module_name)
    if builtin and not (model_dir / f"{module_name}.py").exists():
        builtin_module, builtin_attr = split_handler(builtin)
        return importlib.import_module(builtin_module), attr or builtin_attr
    return import_handler_module(module_name, model_dir), attr


def resolve(handler: str, model_dir: Path) -> Service:
    """Build the service for ``handler`` without initializing it."""
    if not handler:
        raise HandlerError("the manifest names no handler")
    module, attr = _module_and_attr(handler, model_dir)
    module_handle = getattr(module, "handle", None)
    if attr is None and callable(module_handle) and not inspect.isclass(module_handle):
        attr = "handle"
    if attr is not None:
        obj = getattr(module, attr, None)
        if obj is None:
            raise HandlerError(f"handler {handler!r}: {module.__name__} has no {attr!r}")
        if inspect.isclass(obj):
            return _class_service(handler, obj)
        return _function_service(handler, obj)
    classes = _defined_classes(module)
    if len(classes) != 1:
        raise HandlerError(
            f"handler {handler!r}: expected exactly one class or a handle() function in "
            f"{module.__name__}, found {len(classes)} classes"
        )
    return _class_service(handler, classes[0])
