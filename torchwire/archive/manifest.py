"""TorchServe's ``MAR-INF/MANIFEST.json`` and the model's ``model-config.yaml``."""

from __future__ import annotations

import copy
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from torchwire.archive.paths import unsafe_member_reason
from torchwire.errors import ArchiveError

logger = logging.getLogger(__name__)

MANIFEST_PATH = "MAR-INF/MANIFEST.json"
DEFAULT_MODEL_VERSION = "1.0"
MAX_MANIFEST_BYTES = 1024 * 1024

_MODEL_NAME = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_\-.]*$")

# Manifest "model" keys, in the order torch-model-archiver writes them.
_MODEL_KEYS = (
    "modelName",
    "serializedFile",
    "handler",
    "modelFile",
    "modelVersion",
    "requirementsFile",
    "configFile",
)
_TOP_KEYS = ("createdOn", "runtime", "model", "archiverVersion")


def model_name_problem(name: object) -> str | None:
    """Why ``name`` is not a usable model name, or None if it is fine."""
    if not isinstance(name, str) or not name:
        return "modelName is missing or empty"
    if not _MODEL_NAME.match(name):
        return (
            f"modelName {name!r} is unsafe: use letters, digits, '_', '-', '.' only, "
            "not starting with '.'"
        )
    return None


def _optional_str(model: dict[str, Any], key: str, source: str) -> str | None:
    value = model.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ArchiveError(f"{source}: manifest model.{key} must be a string, got {value!r}")
    return value or None


def _version(model: dict[str, Any], source: str) -> str:
    value = model.get("modelVersion")
    if value is None or value == "":
        return DEFAULT_MODEL_VERSION
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ArchiveError(f"{source}: manifest model.modelVersion must be a string")
    return str(value)


def _top_str(data: dict[str, Any], key: str, source: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ArchiveError(f"{source}: manifest {key} must be a string, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """The parsed manifest of a model archive.

    ``extra`` holds the raw JSON dict the manifest was read from (empty when built in
    code); keys this class does not model are written back by :meth:`to_json`.
    """

    model_name: str
    model_version: str = DEFAULT_MODEL_VERSION
    handler: str
    serialized_file: str | None = None
    model_file: str | None = None
    config_file: str | None = None
    requirements_file: str | None = None
    runtime: str = "python"
    created_on: str | None = None
    archiver_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> Manifest:
        """Validate a decoded MANIFEST.json; ``source`` names it in error messages."""
        if not isinstance(data, dict):
            raise ArchiveError(f"{source}: manifest must be a JSON object")
        model = data.get("model")
        if not isinstance(model, dict):
            raise ArchiveError(f'{source}: manifest has no "model" object')
        problem = model_name_problem(model.get("modelName"))
        if problem is not None:
            raise ArchiveError(f"{source}: {problem}")
        handler = _optional_str(model, "handler", source)
        if handler is None:
            raise ArchiveError(f"{source}: manifest model.handler is missing or empty")
        return cls(
            model_name=model["modelName"],
            model_version=_version(model, source),
            handler=handler,
            serialized_file=_optional_str(model, "serializedFile", source),
            model_file=_optional_str(model, "modelFile", source),
            config_file=_optional_str(model, "configFile", source),
            requirements_file=_optional_str(model, "requirementsFile", source),
            runtime=_top_str(data, "runtime", source) or "python",
            created_on=_top_str(data, "createdOn", source),
            archiver_version=_top_str(data, "archiverVersion", source),
            extra=copy.deepcopy(data),
        )

    def _model_json(self) -> dict[str, Any]:
        known: dict[str, str | None] = {
            "modelName": self.model_name,
            "serializedFile": self.serialized_file,
            "handler": self.handler,
            "modelFile": self.model_file,
            "modelVersion": self.model_version,
            "requirementsFile": self.requirements_file,
            "configFile": self.config_file,
        }
        model: dict[str, Any] = {k: v for k, v in known.items() if v is not None}
        raw_model = self.extra.get("model")
        if isinstance(raw_model, dict):
            model.update({k: v for k, v in raw_model.items() if k not in _MODEL_KEYS})
        return model

    def to_json(self) -> dict[str, Any]:
        """The manifest in TorchServe's layout (None values are left out)."""
        out: dict[str, Any] = {}
        if self.created_on is not None:
            out["createdOn"] = self.created_on
        out["runtime"] = self.runtime
        out["model"] = self._model_json()
        if self.archiver_version is not None:
            out["archiverVersion"] = self.archiver_version
        out.update({k: v for k, v in self.extra.items() if k not in _TOP_KEYS})
        return out


def read_manifest(model_dir: Path) -> Manifest:
    """Read and validate ``<model_dir>/MAR-INF/MANIFEST.json``."""
    path = model_dir / MANIFEST_PATH
    if not path.is_file():
        raise ArchiveError(f"{model_dir} has no {MANIFEST_PATH}")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ArchiveError(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArchiveError(f"{path} is not valid JSON: {exc}") from exc
    manifest = Manifest.from_json(data, str(path))
    logger.debug(
        "read manifest of %s %s from %s", manifest.model_name, manifest.model_version, path
    )
    return manifest


def _config_path(model_dir: Path, config_file: str) -> Path:
    reason = unsafe_member_reason(config_file)
    if reason is not None:
        raise ArchiveError(f"{model_dir}: configFile {config_file!r} is unsafe ({reason})")
    return model_dir / config_file


def read_model_config(model_dir: Path, manifest: Manifest) -> dict[str, Any]:
    """Load the manifest's ``configFile`` (model-config.yaml); {} when it names none."""
    if manifest.config_file is None:
        return {}
    path = _config_path(model_dir, manifest.config_file)
    if not path.is_file():
        raise ArchiveError(f"{model_dir}: configFile {manifest.config_file!r} is missing")
    try:
        with path.open("rb") as fh:
            data = yaml.safe_load(fh)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ArchiveError(f"{path} must hold a YAML mapping, got {type(data).__name__}")
    return data
