"""OIP over REST: the JSON request and response bodies, and the binary data extension.

A request may carry tensor data in JSON (``"data"``, flat or nested in
row-major order) or, with Triton's binary tensor data extension, after the
JSON: the header ``Inference-Header-Content-Length`` gives the JSON's size and
each binary input says ``"parameters": {"binary_data_size": N}``. Outputs come
back as JSON ``data`` unless the request asks for binary ones (the request
parameter ``binary_data_output: true``, or ``binary_data: true`` on a requested
output); then the response uses the same layout.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from torchwire.errors import BadRequest
from torchwire.oip.request import InferRequest, RequestedOutput
from torchwire.oip.tensor import (
    BYTES,
    Tensor,
    check_shape,
    datatype,
    element_count,
    flatten,
    make_tensor,
    pack,
)

HEADER_LENGTH = "inference-header-content-length"
BINARY_SIZE = "binary_data_size"
STR_PARAMETER = "content_type"


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be a JSON object")
    return value


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON part and the binary part of a request body."""
    if header_length is None:
        return body, b""
    if not header_length.strip().isdigit() or int(header_length) > len(body):
        raise BadRequest(f"{HEADER_LENGTH}: {header_length!r} is not a size within the "
                         f"{len(body)}-byte body")
    size = int(header_length)
    return body[:size], body[size:]


def parse_request(doc: Any, binary: bytes) -> InferRequest:
    if not isinstance(doc, dict):
        raise BadRequest('expected a JSON object with an "inputs" list')
    inputs = doc.get("inputs")
    if not isinstance(inputs, list):
        raise BadRequest('expected an "inputs" list of {name, shape, datatype, data}')
    reader = _BinaryReader(binary)
    tensors = tuple(_input(entry, i, reader) for i, entry in enumerate(inputs))
    reader.check_done()
    req_id = doc.get("id", "")
    if not isinstance(req_id, str):
        raise BadRequest('"id" must be a string')
    outputs = doc.get("outputs") or []
    if not isinstance(outputs, list):
        raise BadRequest('"outputs" must be a list of {name, parameters}')
    return InferRequest(req_id, tensors, tuple(_output(o, i) for i, o in enumerate(outputs)),
                        _mapping(doc.get("parameters"), '"parameters"'))


@dataclass
class _BinaryReader:
    data: bytes
    pos: int = 0

    def take(self, size: Any, where: str) -> bytes:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadRequest(f"{where}: {BINARY_SIZE} must be an integer >= 0")
        if self.pos + size > len(self.data):
            raise BadRequest(f"{where}: {BINARY_SIZE} {size} runs past the binary data "
                             f"({len(self.data) - self.pos} bytes left)")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def check_done(self) -> None:
        if self.pos != len(self.data):
            raise BadRequest(f"{len(self.data) - self.pos} bytes of binary data after the "
                             "JSON are not claimed by any input's binary_data_size")


def _input(entry: Any, index: int, reader: _BinaryReader) -> Tensor:
    where = f"inputs[{index}]"
    if not isinstance(entry, dict):
        raise BadRequest(f"{where} must be an object with name, shape, datatype and data")
    name, dtype = entry.get("name"), entry.get("datatype")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{where}: name must be a non-empty string")
    where = f"input {name!r}"
    if not isinstance(dtype, str):
        raise BadRequest(f"{where}: datatype must be a string such as FP32")
    datatype(dtype, where)
    shape_doc = entry.get("shape")
    if not isinstance(shape_doc, list):
        raise BadRequest(f"{where}: shape must be a list of integers")
    shape = check_shape(shape_doc, where)
    params = dict(_mapping(entry.get("parameters"), f"{where} parameters"))
    if BINARY_SIZE in params:
        raw = reader.take(params.pop(BINARY_SIZE), where)
        return make_tensor(name, dtype, shape, raw, params)
    if "data" not in entry:
        raise BadRequest(f"{where}: no data (give \"data\", or binary data with "
                         f"parameters.{BINARY_SIZE})")
    values = flatten(entry["data"])
    count = element_count(shape)
    if len(values) != count:
        raise BadRequest(f"{where}: shape {list(shape)} holds {count} element(s), "
                         f"data has {len(values)}")
    if dtype == BYTES:
        params.setdefault(STR_PARAMETER, "str")
    return make_tensor(name, dtype, shape, pack(dtype, values, where), params)


def _output(entry: Any, index: int) -> RequestedOutput:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise BadRequest(f"outputs[{index}] must be an object with a name")
    return RequestedOutput(entry["name"], _mapping(entry.get("parameters"),
                                                   f"outputs[{index}] parameters"))


# -- the response ------------------------------------------------------------------------
def _wants_binary(req: InferRequest, name: str) -> bool:
    if req.parameters.get("binary_data_output") is True:
        return True
    return any(o.name == name and o.parameters.get("binary_data") is True for o in req.outputs)


def json_values(tensor: Tensor) -> tuple[list[Any], dict[str, Any]]:
    """A tensor's elements for JSON; BYTES as text (base64 when not UTF-8)."""
    values = tensor.values()
    if tensor.datatype != BYTES:
        return values, {}
    try:
        return [v.decode("utf-8") for v in values], {}
    except UnicodeDecodeError:
        return [base64.b64encode(v).decode() for v in values], {STR_PARAMETER: "base64"}


def response_body(req: InferRequest, model_name: str, model_version: str,
                  tensors: list[Tensor]) -> tuple[bytes, int | None]:
    """The response body, and the JSON part's size when binary outputs follow it."""
    outputs: list[dict[str, Any]] = []
    binary: list[bytes] = []
    for t in tensors:
        out: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        params = dict(t.parameters)
        if _wants_binary(req, t.name):
            params[BINARY_SIZE] = len(t.raw)
            binary.append(t.raw)
        else:
            out["data"], extra = json_values(t)
            params.update(extra)
        if params:
            out["parameters"] = params
        outputs.append(out)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if req.id:
        doc["id"] = req.id
    doc["outputs"] = outputs
    head = json.dumps(doc).encode()
    if not binary:
        return head, None
    return head + b"".join(binary), len(head)
