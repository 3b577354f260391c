"""Class names from a model's ``index_to_name.json``: one reader for every handler.

TorchServe's file formats are accepted: ``{"0": "cat", ...}``; a list value stands
for its last element (ImageNet's ``{"0": ["n01440764", "tench"]}`` is "tench");
``{"object_type_names": [...]}`` numbers the names from 0.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from torchwire.errors import HandlerError

log = logging.getLogger(__name__)

MAPPING_FILE = "index_to_name.json"


def _label(value: Any, path: Path, key: str) -> str:
    if isinstance(value, list) and value:
        value = value[-1]
    if not isinstance(value, str):
        raise HandlerError(f"{path.name}: the label for {key!r} must be a string or a list "
                           f"of strings (the last one is the name), not {value!r}")
    return value


def load_label_mapping(mapping_file_path: str | Path) -> dict[str, str] | None:
    """``{"0": "cat", ...}`` from an index_to_name.json; None when the file is absent."""
    path = Path(mapping_file_path)
    if not path.is_file():
        log.info("%s is missing; results will have class indices, not names", path)
        return None
    try:
        with path.open(encoding="utf-8") as fh:
            mapping = json.load(fh)
    except (OSError, ValueError) as exc:
        raise HandlerError(f"{path.name} is not readable JSON: {exc}") from exc
    if not isinstance(mapping, dict):
        raise HandlerError(f"{path.name} must hold a JSON object mapping class index to name")
    names = mapping.get("object_type_names")
    if isinstance(names, list):
        return {str(i): _label(name, path, str(i)) for i, name in enumerate(names)}
    return {str(key): _label(value, path, str(key)) for key, value in mapping.items()}


def label_of(mapping: dict[str, str] | None, index: int) -> str:
    """The class name for ``index``; the index as a string when there is none."""
    name = mapping.get(str(index)) if mapping else None
    return str(index) if name is None else name
