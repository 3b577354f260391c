"""Worker side of OIP: tensors to the handler's row, the handler's result to tensors.

The row a handler gets for an OIP request (one request is one row):

* each input's name maps to a numpy array of its datatype and shape (BF16
  arrives as float32); a BYTES input with a single element maps to that
  element (``bytes``, or ``str`` when the tensor's ``content_type`` parameter is
  ``"str"``, as KServe sets it, and for strings sent in REST JSON); any other
  BYTES input is a numpy object array of such elements;
* ``"data"`` maps to the first input as well (unless an input is named
  ``data``), so handlers written for ``/predictions`` read OIP requests unchanged.

The handler's result for that row becomes the response's output tensors:

* a dict whose values are all numpy arrays or torch tensors: one output per key;
* a numpy array or torch tensor: one output, datatype and shape from it;
* a number, a bool, ``str`` or ``bytes``: one output of shape ``[1]``;
* a (nested) list of numbers, bools or strings: one output of its shape;
* anything else (a dict of scores, a list of dicts, ...): one BYTES output of
  shape ``[1]`` holding the JSON the REST API would send, with the parameter
  ``content_type: application/json``.

A single output is named after the one output the model's ``oip.outputs``
declares; with none declared, after the request's first input, as TorchServe's
kservev2 envelope names it (``input-0`` answers ``input-0``); ``output0`` only
when the request had no input.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

from torchwire.errors import HandlerError, InvalidInput, error_for_status
from torchwire.handlers.context import Context
from torchwire.handlers.outcome import as_serve_error, error_outcome, jsonable
from torchwire.oip.metadata import output_names
from torchwire.oip.tensor import BYTES, Tensor, join_bytes, split_bytes
from torchwire.protocol import Item, Outcome

_NUMPY: dict[str, str] = {
    "BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}
_FROM_NUMPY: dict[str, str] = {
    "b": "BOOL", "u1": "UINT8", "u2": "UINT16", "u4": "UINT32", "u8": "UINT64",
    "i1": "INT8", "i2": "INT16", "i4": "INT32", "i8": "INT64",
    "f2": "FP16", "f4": "FP32", "f8": "FP64",
}
STR_PARAMETER = "content_type"
JSON = "application/json"


# -- into the handler ----------------------------------------------------------------
def tensor_value(tensor: Tensor) -> Any:
    """The value a handler sees for one input tensor (see the module docstring)."""
    if tensor.datatype == BYTES:
        return _bytes_value(tensor)
    if tensor.datatype == "BF16":
        bits = np.frombuffer(tensor.raw, "<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(tensor.shape)
    return np.frombuffer(bytearray(tensor.raw), _NUMPY[tensor.datatype]).reshape(tensor.shape)


def _bytes_value(tensor: Tensor) -> Any:
    elements: list[Any] = split_bytes(tensor.raw, f"input {tensor.name!r}")
    if tensor.parameters.get(STR_PARAMETER) == "str":
        try:
            elements = [e.decode("utf-8") for e in elements]
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"input {tensor.name!r} is not valid UTF-8: {exc}") from exc
    if len(elements) == 1:
        return elements[0]
    out = np.empty(len(elements), dtype=object)
    out[:] = elements
    return out.reshape(tensor.shape)


def tensor_row(item: Item) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for param in item.params:
        if isinstance(param.value, Tensor):
            row[param.name] = tensor_value(param.value)
    if "data" not in row and item.params:
        row["data"] = row[item.params[0].name]
    return row


# -- out of the handler ----------------------------------------------------------------
def _torch_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) or _torch_tensor(value)


def result_tensors(result: Any, names: list[str]) -> list[Tensor]:
    if isinstance(result, dict) and result and all(_is_array(v) for v in result.values()):
        return [array_tensor(str(k), v) for k, v in result.items()]
    name = names[0] if len(names) == 1 else "output0"
    return [value_tensor(name, result)]


def value_tensor(name: str, value: Any) -> Tensor:
    if _is_array(value):
        return array_tensor(name, value)
    if isinstance(value, str | bytes | bytearray):
        raw = value.encode() if isinstance(value, str) else bytes(value)
        return Tensor(name, BYTES, (1,), join_bytes([raw]))
    if isinstance(value, bool | int | float | np.generic):
        return array_tensor(name, np.asarray([value]))
    if isinstance(value, list | tuple):
        arr = _list_array(value)
        if arr is not None:
            return array_tensor(name, arr)
    text = json.dumps(value, default=jsonable).encode()
    return Tensor(name, BYTES, (1,), join_bytes([text]), {STR_PARAMETER: JSON})


def _list_array(value: list[Any] | tuple[Any, ...]) -> np.ndarray | None:
    try:
        arr = np.asarray(value)
    except ValueError:  # ragged
        return None
    if arr.dtype.kind in "biuf":
        return arr
    if arr.dtype.kind in "US" and arr.size:
        return arr.astype(object)
    return None


def array_tensor(name: str, value: Any) -> Tensor:
    if _torch_tensor(value):
        return _torch_array_tensor(name, value)
    arr = np.asarray(value)
    shape = tuple(int(d) for d in arr.shape)
    if arr.dtype.kind in "OUS":
        elements = [e if isinstance(e, bytes) else str(e).encode() for e in arr.reshape(-1)]
        return Tensor(name, BYTES, shape, join_bytes(elements))
    key = "b" if arr.dtype.kind == "b" else f"{arr.dtype.kind}{arr.dtype.itemsize}"
    dtype = _FROM_NUMPY.get(key)
    if dtype is None:
        raise TypeError(f"output {name!r} has dtype {arr.dtype}, which OIP cannot carry")
    little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return Tensor(name, dtype, shape, np.ascontiguousarray(little).tobytes())


def _torch_array_tensor(name: str, value: Any) -> Tensor:
    import torch

    tensor = value.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        bits = tensor.view(torch.int16).numpy().astype("<i2")
        return Tensor(name, "BF16", tuple(tensor.shape), bits.tobytes())
    return array_tensor(name, tensor.numpy())


# -- the outcome -------------------------------------------------------------------------
def single_output_name(ctx: Context, item: Item) -> list[str]:
    """The declared output's name, else the request's first input's (as TorchServe)."""
    declared = output_names(ctx.model_yaml_config)
    if declared:
        return declared
    return [p.name for p in item.params if isinstance(p.value, Tensor)][:1]


def tensor_outcome(result: Any, ctx: Context, idx: int, handler: str, item: Item) -> Outcome:
    """The Outcome of an OIP request: its output tensors, or its error."""
    from torchwire.oip.tensor import TENSORS_CONTENT_TYPE, encode_tensors

    if isinstance(result, BaseException):
        return error_outcome(as_serve_error(result, handler))
    status, _ = ctx.get_response_status(idx)
    if status >= 400:
        message = result if isinstance(result, str) else json.dumps(result, default=jsonable)
        return error_outcome(error_for_status(status, message))
    try:
        tensors = result_tensors(result, single_output_name(ctx, item))
    except (TypeError, ValueError) as exc:
        return error_outcome(HandlerError(f"handler {handler} returned {exc}"))
    return Outcome(status, encode_tensors(tensors), TENSORS_CONTENT_TYPE)
