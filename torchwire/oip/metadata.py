"""A model's OIP metadata: its platform and declared input and output tensors.

Declared in the archive's model-config.yaml (all optional)::

    oip:
      platform: pytorch
      inputs:
        - {name: pixels, datatype: FP32, shape: [-1, 64]}
      outputs:
        - {name: top3, datatype: BYTES, shape: [1]}

When inputs are declared, every request must send exactly those inputs with
those datatypes and matching shapes (-1 matches any size); with none declared
any inputs are passed to the handler. One declared output names the handler's
single result tensor (otherwise it is named after the first input).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torchwire.errors import BadRequest, InternalError
from torchwire.oip.tensor import DATATYPES, Tensor

if TYPE_CHECKING:
    from torchwire.model import ModelVersion

DEFAULT_PLATFORM = "pytorch"
SECTION = "oip"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: any size

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ModelMetadata:
    platform: str = DEFAULT_PLATFORM
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()


def read_metadata(yaml_config: dict[str, Any]) -> ModelMetadata:
    """The ``oip`` section of model-config.yaml; InternalError naming the bad key."""
    section = yaml_config.get(SECTION)
    if section is None:
        return ModelMetadata()
    if not isinstance(section, dict):
        raise _bad("must be a mapping with platform, inputs and outputs")
    platform = section.get("platform", DEFAULT_PLATFORM)
    if not isinstance(platform, str):
        raise _bad("platform must be a string")
    return ModelMetadata(platform, _specs(section, "inputs"), _specs(section, "outputs"))


def _bad(problem: str) -> InternalError:
    return InternalError(f"model-config.yaml {SECTION}: {problem}")


def _specs(section: dict[str, Any], key: str) -> tuple[TensorSpec, ...]:
    entries = section.get(key) or []
    if not isinstance(entries, list):
        raise _bad(f"{key} must be a list of {{name, datatype, shape}}")
    return tuple(_spec(entry, f"{key}[{i}]") for i, entry in enumerate(entries))


def _spec(entry: Any, where: str) -> TensorSpec:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise _bad(f"{where} must be a mapping with a name")
    dtype = entry.get("datatype")
    if dtype not in DATATYPES:
        raise _bad(f"{where}.datatype must be one of {', '.join(DATATYPES)}, not {dtype!r}")
    shape = entry.get("shape", [])
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape
    ):
        raise _bad(f"{where}.shape must be a list of integers >= -1")
    return TensorSpec(entry["name"], dtype, tuple(shape))


_CACHE: weakref.WeakKeyDictionary[ModelVersion, ModelMetadata] = weakref.WeakKeyDictionary()


def metadata_of(model: ModelVersion) -> ModelMetadata:
    found = _CACHE.get(model)
    if found is None:
        found = _CACHE[model] = read_metadata(model.yaml_config)
    return found


def output_names(yaml_config: dict[str, Any]) -> list[str]:
    section = yaml_config.get(SECTION)
    if not isinstance(section, dict) or not isinstance(section.get("outputs"), list):
        return []
    return [o["name"] for o in section["outputs"] if isinstance(o, dict) and "name" in o]


# -- request checks ------------------------------------------------------------------
def check_inputs(meta: ModelMetadata, model_name: str, inputs: Sequence[Tensor]) -> None:
    """Inputs must match the declared ones, when the model declares any."""
    if not meta.inputs:
        return
    declared = {spec.name: spec for spec in meta.inputs}
    names = ", ".join(declared)
    for tensor in inputs:
        spec = declared.get(tensor.name)
        if spec is None:
            raise BadRequest(f"unexpected input {tensor.name!r} for model {model_name!r}; "
                             f"it takes: {names}")
        _check_one(spec, tensor)
    sent = {t.name for t in inputs}
    missing = [n for n in declared if n not in sent]
    if missing:
        raise BadRequest(f"model {model_name!r} expects input(s) {', '.join(missing)}; "
                         f"it takes: {names}")


def _check_one(spec: TensorSpec, tensor: Tensor) -> None:
    if tensor.datatype != spec.datatype:
        raise BadRequest(f"input {tensor.name!r} must be {spec.datatype}, got {tensor.datatype}")
    if len(tensor.shape) != len(spec.shape) or any(
        want not in (-1, got) for want, got in zip(spec.shape, tensor.shape, strict=True)
    ):
        raise BadRequest(f"input {tensor.name!r} has shape {list(tensor.shape)}; the model "
                         f"expects {list(spec.shape)} (-1: any size)")
