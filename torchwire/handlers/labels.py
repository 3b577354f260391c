"""Class names: ``index_to_name.json`` read once for every handler, TorchServe's way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torchwire.errors import HandlerError


class LabelMappingError(HandlerError, ValueError):
    """``index_to_name.json`` does not map class indices to names (a ValueError, as in
    TorchServe's ``load_label_mapping``)."""


def load_label_mapping(path: Path) -> dict[str, str] | None:
    """``{"0": "cat", ...}`` from an index_to_name.json; None when there is none.

    A list value stands for its last element (ImageNet's ``["n02123045", "tabby"]`` is
    "tabby"); ``{"object_type_names": [...]}`` numbers the names from 0.
    """
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as fh:
        mapping = json.load(fh)
    if not isinstance(mapping, dict):
        raise LabelMappingError(f"{path} must hold a JSON object mapping class index to name")
    names = mapping.get("object_type_names")
    if isinstance(names, list):
        return {str(i): str(name) for i, name in enumerate(names)}
    return {str(key): _name(value, str(key)) for key, value in mapping.items()}


def _name(value: Any, key: str) -> str:
    if isinstance(value, list) and value:
        value = value[-1]
    if not isinstance(value, str):
        raise LabelMappingError(
            f"index_to_name label for {key!r} must be a string or a list of them")
    return value


def label_of(mapping: dict[str, Any] | None, index: int) -> str:
    """The class name for ``index``; the index as a string when there is none.

    A mapping value may be a name or a list whose last element is the name, as in
    ImageNet's ``["n02123045", "tabby"]``.
    """
    name = mapping.get(str(index)) if mapping else None
    if isinstance(name, list | tuple):
        name = name[-1] if name else None
    return str(index) if name is None else str(name)
